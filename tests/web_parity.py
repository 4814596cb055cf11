"""The harness tests/test_web_runtime.py and test_web_logits_to_keep.py share: edgeformer.js run under Node
on a job of calls (web/tools/parity.mjs), the tolerances its answers are held to, and the speech bundles
and clips the Python runtime answers alongside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeformer.runtime.speech_stream import AudioStream, GreedyText

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
NODE = shutil.which("node")
ATOL = 1e-5  # float32 outputs, onnxruntime-web's WASM kernels against onnxruntime's CPU kernels
# A stream's logits: each step reads the caches the steps before it wrote, so rounding differences are
# carried from chunk to chunk; over 19 steps of the golden stream they stay near 7e-7 (logits up to 1.7).
STREAM_ATOL = 1e-5
GOLDEN_STREAM = ROOT / "tests" / "golden" / "v4" / "stream"  # a format-4 streaming Conformer (80 ms chunks)


def ensure_node_modules() -> None:
    if (WEB / "node_modules" / "onnxruntime-web").is_dir() and (WEB / "node_modules" / "@huggingface" / "tokenizers").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("web/node_modules is missing and npm is not installed to run `npm ci` in web/")
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, capture_output=True, text=True,
                          env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    if proc.returncode != 0:
        pytest.skip(f"`npm ci` in web/ failed (no registry access?): {proc.stderr.strip().splitlines()[-1:]}")


def tensor(a: np.ndarray) -> dict:
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}


def run_js(tmp_path: Path, calls: list[dict]) -> list[dict]:
    ensure_node_modules()
    job, out = tmp_path / "job.json", tmp_path / "out.json"
    job.write_text(json.dumps({"calls": calls}))
    proc = subprocess.run([NODE, str(WEB / "tools" / "parity.mjs"), str(job), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())["results"]


def ok(result: dict) -> dict:
    assert "ok" in result, result
    return result["ok"]


def max_abs(js, py) -> float:
    return float(np.abs(np.asarray(js, dtype=np.float64) - np.asarray(py, dtype=np.float64)).max())


# --- speech bundles and clips -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def spotter(tmp_path_factory):
    """A random one-block keyword spotter with four labels, its head scaled up so that clips differ in label."""
    from edgeformer.export import export_bundle
    from edgeformer.modeling.checkpoint import save
    from edgeformer.modeling.models.conformer import Conformer
    from edgeformer.modeling.training.speech import conformer_config

    root = tmp_path_factory.mktemp("web_kws")
    torch.manual_seed(3)
    model = Conformer(conformer_config("tiny", labels=["yes", "no", "up", "down"], d_model=32, n_heads=2, n_layers=1,
                                       d_ff=64, conv_kernel=5, dropout=0.0)).eval()
    with torch.no_grad():  # a random head gives every clip nearly the same label; scaled up, clips differ
        model.classifier.weight.mul_(20.0)
    save(model, root / "ckpt")
    return export_bundle(root / "ckpt", root / "bundle").path


def clip(n: int, seed: int) -> np.ndarray:
    """n samples at 16 kHz: four tones one after another, and noise (a random recogniser's text then varies)."""
    rng = np.random.default_rng(seed)
    pitch = rng.uniform(200, 3000, 4)[np.minimum(3, 4 * np.arange(n) // n)]
    return (0.4 * np.sin(2 * np.pi * pitch * np.arange(n) / 16000) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def python_stream(model, pieces) -> list[tuple[str, np.ndarray]]:
    """(text so far, logits) of each call of one stream fed `pieces` and then finished (runtime.speech_stream)."""
    stream, text = AudioStream(model), GreedyText(model.manifest.config["alphabet"])
    return [(text.add(logits), logits) for logits in [stream.feed(p) for p in pieces] + [stream.finish()]]
