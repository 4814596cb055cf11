"""The distillation report (export/distill_report.py) for image and speech students: the same report
as text, both models exported behind the parity gate and timed on full inputs of their kind."""

import pytest
import torch

from edgeformer.export.distill_report import REPORT_BATCHES, distill_report
from edgeformer.modeling import ModelConfig, save
from edgeformer.modeling.build import build_model
from edgeformer.modeling.distillation.media import MediaDistillResult
from edgeformer.modeling.training.speech import conformer_config

VIT = dict(arch="encoder", vocab_size=1, image_size=8, patch_size=4, num_channels=1, positional="learned", max_len=5,
           pooling="cls", num_labels=10, d_model=32, n_heads=4, d_ff=64, dropout=0.0)
CONFIGS = {  # kind: (teacher config, student config, metric, how the report names the input)
    "image": (ModelConfig.from_dict(dict(**VIT, n_layers=2)), ModelConfig.from_dict(dict(**VIT, n_layers=1)), "accuracy", "8x8 images"),
    "speech": (conformer_config("tiny", d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0),
               conformer_config("tiny", d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0), "cer", "2.00 s of audio"),
}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_image_and_speech_students_get_the_text_report(tmp_path, kind):
    teacher_cfg, student_cfg, metric, described = CONFIGS[kind]
    torch.manual_seed(0)
    for name, cfg in (("teacher", teacher_cfg), ("student", student_cfg)):
        save(build_model(cfg).eval(), tmp_path / name)
    result = MediaDistillResult(kind, metric, 0.2 if metric == "cer" else 0.9, 0.3 if metric == "cer" else 0.8)
    report = distill_report(tmp_path / "teacher", tmp_path / "student", result, tmp_path / "bundles", seconds=0.1, rounds=1)
    assert report["input"] == described and report["seq"] is None
    assert report["metric"] == metric and report["retention"] == pytest.approx(result.retention)
    t, s = report["models"]["teacher"], report["models"]["student"]
    assert t["parameters"] > s["parameters"] > 0 and t["bundle_mb"] > s["bundle_mb"] > 0
    for m in (t, s):
        assert set(m["latency_ms"]) == {str(b) for b in REPORT_BATCHES} and all(v > 0 for v in m["latency_ms"].values())
        assert m["parity_max_abs"] < 1e-4
    assert (tmp_path / "bundles" / "student" / "manifest.json").is_file()
