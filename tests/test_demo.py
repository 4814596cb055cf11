"""`edgeformer demo --quick`: the demo's whole path, as `make demo` runs it, only shorter.

The 5-minute budget of the full demo is measured by benchmarks/demo_time.py, not asserted here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STAGES = ["train", "export", "benchmark", "quantize", "generate", "distill", "deploy", "web", "vision"]


@pytest.mark.slow
def test_quick_demo(tmp_path):
    exe = str(Path(sys.executable).with_name("edgeformer"))
    # a wide terminal: the summary table's eleven columns on one line each, so its cells can be looked up
    proc = subprocess.run([exe, "demo", "--quick", "--out", str(tmp_path / "demo"), "--json", str(tmp_path / "s.json")],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert json.loads((tmp_path / "demo" / "summary.json").read_text()) == summary
    for arch in ("encoder", "decoder"):
        m = summary["models"][arch]
        assert m["parity_max_abs"] <= 1e-4
        assert m["bench"]["runtime"]["median_ms"] > 0 and m["bench"]["eager"]["median_ms"] > 0
        assert isinstance(m["bench"]["reliable"], bool) and m["bench"]["reason"]  # settled, or says why not
        assert m["bench"]["spread_p10_p90_over_median"]["eager"] >= 0
        assert (Path(m["bundle"]) / "manifest.json").is_file() and (Path(m["checkpoint"]) / "config.json").is_file()
    assert summary["models"]["encoder"]["accuracy"] > 0.45  # held out; the largest class is 32%
    assert len(summary["examples"]) == 5 and all(e["predicted"] in ["math", "files", "network", "text", "time", "concurrency"]
                                                   for e in summary["examples"])
    assert "edgeformer demo" in proc.stdout and "speed-up" in proc.stdout
    table = proc.stdout[proc.stdout.index("edgeformer demo ("):]
    for arch in ("encoder", "decoder"):  # the ratio is printed only when its timings settled
        b = summary["models"][arch]["bench"]
        assert (f"{b['speedup_vs_eager']:.2f}x" if b["reliable"] else "unreliable (") in table
    q = summary["quantization"]  # the quantize step: int8-dynamic of the encoder, measured on the held-out set
    assert q["recipe"] == "int8-dynamic" and q["eval_texts"] >= 100 and q["int8_mb"] < q["float32_mb"]
    assert q["float32_accuracy"] == pytest.approx(summary["models"]["encoder"]["accuracy"])
    assert abs(q["accuracy_drop"]) <= 0.05 and q["agreement"] >= 0.9 and (Path(q["bundle"]) / "manifest.json").is_file()
    assert "int8-dynamic encoder" in proc.stdout
    d = summary["distillation"]["report"]["models"]  # the distillation step: a smaller student, both exported
    assert d["student"]["parameters"] < d["teacher"]["parameters"] and d["student"]["parity_max_abs"] <= 1e-4
    assert d["teacher"]["accuracy"] == summary["models"]["encoder"]["accuracy"] and "distillation report" in proc.stdout
    g = summary["generation"]  # the decoder, exported with its cache, generating through the runtime
    assert g["parity_max_abs"] <= 1e-4 and g["per_token_ms"] > 0 and g["text"]
    assert 1 <= g["new_tokens"] <= 24 and f"[{g['prompt']}]{g['text']}" in proc.stdout
    qg = summary["quantized_generation"]  # the same decoder in int4, generating from the same prompt
    assert qg["recipe"] == "int4" and qg["new_tokens"] >= 1 and f"int4: [{g['prompt']}]{qg['text']}" in proc.stdout
    assert qg["fidelity"]["perplexity_increase"] <= 0.05 and qg["size_ratio"] < 0.5
    assert (Path(qg["bundle"]) / "manifest.json").is_file()
    android, arm64 = summary["deployments"]  # the deploy step: device folders the runtime can load
    assert android["target"] == "android" and (Path(android["folder"]) / "model.ort").is_file()
    assert android["fixed_shape"] == {"batch": 1, "seq": 64} and android["checks"] and all(c["passed"] for c in android["checks"])
    assert arm64["target"] == "arm64" and (Path(arm64["folder"]) / "model.onnx").is_file()
    for dep in (android, arm64):
        assert (Path(dep["folder"]) / "manifest.json").is_file() and dep["folder"] in proc.stdout
    w = summary["web"]  # the web step: the encoder's folder checked in Chromium (skipped only without Chromium/Node)
    if "skipped" not in w:
        assert w["checks"] and all(c["passed"] for c in w["checks"]) and Path(w["screenshot"]).is_file()
        assert (Path(w["folder"]) / "edgeformer.js").is_file() and [p["threads"] for p in w["pages"]] == [1, 2]
    v = summary["vision"]  # the vision step: a ViT classifying held-out images through the runtime
    assert v["held_out_images"] == 359 and v["parity_max_abs"] <= 1e-4 and v["runtime_accuracy"] > 0.1
    assert v["runtime_accuracy"] == pytest.approx(v["train_accuracy_eval"], abs=0.01) and "ViT tiny on 8x8 digits" in proc.stdout
    assert list(summary["stages"]) == STAGES and all(s > 0 for s in summary["stages"].values())  # timed, every stage
    assert summary["total_seconds"] >= sum(summary["stages"].values()) * 0.99 and "stage times" in proc.stdout
    assert list(summary["stage_cpu_seconds"]) == STAGES
