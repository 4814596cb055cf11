"""Resources a loaded model may ask for: threads within the machine's cores, rows per call within
the manifest's maximum and the load option, memory per call within the budget; refused in one
line before anything is allocated for the call."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.runtime import EdgeformerError, InputError
from edgeformer.runtime.limits import Limits

GOLDEN = Path(__file__).parent / "golden" / "v1"
EDGEFORMER = str(Path(sys.executable).with_name("edgeformer"))


@pytest.mark.parametrize("threads", [10**6, os.cpu_count() + 1, 0, -1, "2", 1.5, True])
def test_threads_beyond_the_machine_are_refused(threads):
    with pytest.raises(EdgeformerError, match=rf"threads={threads!r}; this machine has {os.cpu_count()} cores"):
        runtime.load(GOLDEN / "plain", threads=threads)


def test_every_core_is_allowed():
    assert runtime.load(GOLDEN / "plain", threads=os.cpu_count()).session is not None


def test_the_load_option_bounds_rows_per_call():
    model = runtime.load(GOLDEN / "plain", max_batch=4)
    ids = np.ones((5, 3), dtype=np.int64)
    with pytest.raises(InputError, match="batch of 5 rows; this model takes at most 4 per call"):
        model({"input_ids": ids})
    assert model({"input_ids": ids[:4]})["logits"].shape == (4, 3)
    # text calls chunk within the limit: the same answers as unchunked
    texts = ["the quick brown fox", "a", "edge devices", "the lazy dog", "run", "small transformers"]
    np.testing.assert_array_equal(model.classify(texts, batch_size=32).probabilities,
                                  np.concatenate([model.classify(texts[:4]).probabilities, model.classify(texts[4:]).probabilities]))
    for bad in (0, -1, 1.5, "8"):
        with pytest.raises(EdgeformerError, match="max_batch=.*expected a positive integer"):
            runtime.load(GOLDEN / "plain", max_batch=bad)


def test_the_manifest_maximum_bounds_rows_per_call(tmp_path):
    b = shutil.copytree(GOLDEN / "plain", tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    m["axes"]["batch"]["max"] = 2
    (b / "manifest.json").write_text(json.dumps(m))
    model = runtime.load(b, max_batch=100)
    assert model.max_batch == 2
    with pytest.raises(InputError, match=r"input_ids has batch=3; this model accepts at most 2 \(batch limit\)"):
        model({"input_ids": np.ones((3, 4), dtype=np.int64)})


def test_the_memory_budget_bounds_a_call_before_its_inputs_exist():
    model = runtime.load(GOLDEN / "plain", memory_budget=1 << 20)
    assert 1 <= model.max_batch < 100  # what fits 1 MiB at the longest input (32 tokens)
    with pytest.raises(InputError, match="batch of 200000 rows; this model takes at most"):
        model.check_size(200_000, 32)
    with pytest.raises(InputError, match=r"needs about \d+ MiB; this model's budget is 1 MiB"):
        Limits(max_batch=10**9, budget=1 << 20).check(model.manifest, {"batch": 10**5, "seq": 32})


def test_generation_rows_are_bounded(tmp_path):
    model = runtime.load(GOLDEN / "cached", max_batch=2)
    with pytest.raises(InputError, match="batch of 3 rows"):
        model.generate([[1, 2], [3], [4]], max_new_tokens=2)
    assert len(model.generate([[1, 2], [3]], max_new_tokens=2).token_ids) == 2


@pytest.mark.parametrize("args, message", [
    (["bench", str(GOLDEN / "plain"), "--batch-size", "200000000", "--seq-len", "32"], "batch of 200000000 rows"),
    (["run", str(GOLDEN / "plain"), "--ids", "1 2", "--threads", "1000000"], "threads=1000000; this machine has"),
    (["run", str(GOLDEN / "plain"), "--ids", "1 2", "--ids", "3", "--max-batch", "1"], "batch of 2 rows; this model takes at most 1"),
    (["bench", str(GOLDEN / "plain"), "--batch-size", "4", "--max-batch", "2"], "batch of 4 rows; this model takes at most 2"),
    (["generate", str(GOLDEN / "cached"), "--ids", "1 2", "--ids", "3", "--max-batch", "1"], "batch of 2 rows"),
    (["run", str(GOLDEN / "plain"), "--ids", "1 2", "--max-batch", "0"], "Invalid value for '--max-batch'"),
])
def test_the_cli_refuses_beyond_the_limits_at_once(args, message):
    out = subprocess.run([EDGEFORMER, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and message in out.stderr
