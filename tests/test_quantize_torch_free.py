"""`edgeformer quantize` on image and speech bundles where PyTorch cannot be imported, and the task library's data.

The bundles are made here with torch (random weights, the built-in tasks' geometry); quantization
then runs in a subprocess whose `import torch` fails, as on a machine with the core install only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeformer import runtime
from edgeformer.modeling.checkpoint import save

# Makes torch unimportable, as where it is not installed: a finder placed first answers "no module named torch".
# (`sys.modules["torch"] = None` is not the same: scipy, under scikit-learn, then finds a "torch" that is None.)
BLOCK_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
"""
NO_TORCH = BLOCK_TORCH + "sys.argv = ['edgeformer'] + sys.argv[1:]\nfrom edgeformer.cli.main import main\nmain()\n"


def quantize_without_torch(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, "quantize", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def media_bundles(tmp_path_factory):
    """(image bundle, speech bundle): a random 1-layer ViT of the digits task and a random Conformer over digits."""
    from edgeformer.export import export_bundle
    from edgeformer.modeling.models.conformer import Conformer
    from edgeformer.modeling.models.transformer import Transformer
    from edgeformer.modeling.training.speech import conformer_config
    from edgeformer.modeling.training.vision import vit_config
    from edgeformer.tasks.images import digits

    d = tmp_path_factory.mktemp("media")
    torch.manual_seed(0)
    save(Transformer(vit_config("tiny", digits(), n_layers=1)).eval(), d / "vit-ckpt")
    save(Conformer(conformer_config("tiny", d_model=32, n_heads=2, n_layers=1, d_ff=64, conv_kernel=5, dropout=0.0)).eval(),
         d / "speech-ckpt")
    return export_bundle(d / "vit-ckpt", d / "vit").path, export_bundle(d / "speech-ckpt", d / "speech").path


def test_the_no_torch_wrapper_really_blocks_torch():
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + "import torch\n"], capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


@pytest.mark.parametrize("which, metric", [(0, "accuracy"), (1, "CER")])
def test_quantize_a_media_bundle_without_torch(media_bundles, tmp_path, which, metric):
    bundle = media_bundles[which]
    proc = quantize_without_torch(bundle, "--out", tmp_path / "q", "--recipe", "int8-dynamic", "--max-drop", "0.05",
                                  "--json", "-")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] and result["fidelity"]["metric"] == metric and result["fidelity"]["drop"] <= 0.05
    assert result["fidelity"]["mean_cosine"] > 0.9  # the quantized logits follow float32's
    manifest = runtime.load(tmp_path / "q").manifest  # hashes verified
    assert manifest.quantization.recipe == "int8-dynamic"
    assert manifest.parity.kind == "budget" and manifest.parity.passed and manifest.parity.max_drop == 0.05
    expected_rows = 359 if which == 0 else 200  # the built-in held-out sets (quantize/builtin.py)
    assert manifest.parity.eval_texts == expected_rows


def test_media_bundle_refuses_text_eval_data_without_torch(media_bundles, tmp_path):
    (tmp_path / "t.txt").write_text("a text\n")
    proc = quantize_without_torch(media_bundles[0], "--out", tmp_path / "q", "--eval-data", tmp_path / "t.txt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "image and speech bundles are measured on their built-in task" in proc.stderr
    assert not (tmp_path / "q").exists()


def test_task_library_imports_no_torch_and_matches_modeling():
    code = ("import sys, edgeformer.tasks, edgeformer.quantize.builtin, edgeformer.pipeline.quantize; "
            "from edgeformer.modeling.config import ModelConfig; ModelConfig.from_preset('tiny'); "
            "assert 'torch' not in sys.modules")  # edgeformer.modeling loads its models only when asked
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    from edgeformer.modeling.training import data, speech as speech_training, vision
    from edgeformer.tasks import images, speech, text

    assert data.reverse_words is text.reverse_words and vision.digits is images.digits
    assert speech_training.speech_task(None).held_out is speech.held_out  # the default task: audio-digits
    # the English paragraphs: evaluation takes each topic's first, calibration its second, never the same text
    first, second = text.python_paragraphs(0), text.python_paragraphs(1)
    assert len(first) >= 64 and not set(first) & set(second)
    assert text.pydoc_corpus().train.startswith(text.pydoc_topics()[0].strip())


def test_builtin_media_sets_hold_the_held_out_rows(media_bundles):
    from edgeformer.quantize.kinds import evaluation_sets

    image_set, _ = evaluation_sets(media_bundles[0])
    speech_set, _ = evaluation_sets(media_bundles[1])
    assert image_set.rows == 359 and speech_set.rows == 200
    assert image_set.subset(32).rows == 64  # whole batches: at least one
    assert all(b["pixel_values"].dtype == np.float32 for b in image_set.feeds)
    shapes = {b["waveforms"].shape for b in speech_set.calibration}
    assert len(shapes) == 1  # calibration batches share one shape (the histogram calibrators stack them)
