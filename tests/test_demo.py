"""`edgeformer demo --quick`: the demo's whole path, as `make demo` runs it, only shorter."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_demo(tmp_path):
    exe = str(Path(sys.executable).with_name("edgeformer"))
    proc = subprocess.run([exe, "demo", "--quick", "--out", str(tmp_path / "demo"), "--json", str(tmp_path / "s.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert json.loads((tmp_path / "demo" / "summary.json").read_text()) == summary
    for arch in ("encoder", "decoder"):
        m = summary["models"][arch]
        assert m["parity_max_abs"] <= 1e-4
        assert m["bench"]["runtime"]["median_ms"] > 0 and m["bench"]["eager"]["median_ms"] > 0
        assert (Path(m["bundle"]) / "manifest.json").is_file() and (Path(m["checkpoint"]) / "config.json").is_file()
    assert len(summary["examples"]) == 5 and all(e["predicted"] in ["math", "files", "network", "text", "time", "concurrency"]
                                                   for e in summary["examples"])
    assert "edgeformer demo" in proc.stdout and "speed-up" in proc.stdout
    d = summary["distillation"]["report"]["models"]  # the distillation step: a smaller student, both exported
    assert d["student"]["parameters"] < d["teacher"]["parameters"] and d["student"]["parity_max_abs"] <= 1e-4
    assert d["teacher"]["accuracy"] == summary["models"]["encoder"]["accuracy"] and "distillation report" in proc.stdout
    g = summary["generation"]  # the decoder, exported with its cache, generating through the runtime
    assert g["parity_max_abs"] <= 1e-4 and g["per_token_ms"] > 0 and g["text"]
    assert 1 <= g["new_tokens"] <= 24 and f"[{g['prompt']}]{g['text']}" in proc.stdout
