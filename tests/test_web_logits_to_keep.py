"""edgeformer.js and bundle format 3: it asks a format 3 cached decoder for the last position's logits
(`logits_to_keep`), still reads format 2 (whose graph returns every row), generates what Python
generates from both golden decoders, and refuses a cache record that names no such input in Python's words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.runtime.errors import BundleError

from .test_web_runtime import NODE, ok, run_js, tensor

GOLDEN = Path(__file__).resolve().parent / "golden"
ATOL = 1e-5  # float32, onnxruntime-web's WASM kernels against onnxruntime's CPU kernels

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)")


def test_js_generates_the_python_tokens_from_format_2_and_3_decoders(tmp_path):
    prompts = [[5, 17, 59, 3], [7, 60]]
    calls, expected = [], []
    for version in ("v2", "v3"):
        model = runtime.load(GOLDEN / version / "cached")
        for options in ({"max_new_tokens": 8}, {"max_new_tokens": 8, "temperature": 0.9, "top_k": 20, "seed": 3}):
            calls.append({"bundle": str(model.bundle.path), "call": "generate",
                          "args": {"prompt": prompts, "options": options}})
            expected.append(model.generate(prompts, **options).token_ids)
    results = run_js(tmp_path, calls)
    assert [ok(r)["tokenIds"] for r in results] == expected
    assert expected[0] == expected[2]  # v2 and v3 hold the same weights: the same greedy tokens either way


def test_js_runs_the_format_3_graph_for_the_last_rows(tmp_path):
    model = runtime.load(GOLDEN / "v3" / "cached")
    cache = model.manifest.cache
    ids = np.array([[5, 17, 59, 3, 9], [0, 0, 7, 60, 2]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": np.maximum(mask.cumsum(1) - 1, 0),
             **{n: np.zeros((2, cache.heads, 0, cache.head_dim), np.float32) for n in cache.past}}
    calls, expected = [], []
    for k in (0, 1, 3):
        step = {**feeds, cache.logits_to_keep: np.array([k], np.int64)}
        calls.append({"bundle": str(model.bundle.path), "call": "run",
                      "args": {"inputs": {name: tensor(v) for name, v in step.items()}}})
        expected.append(model(step)["logits"])
    for got, want in zip(run_js(tmp_path, calls), expected):
        logits = ok(got)["logits"]
        assert logits["shape"] == list(want.shape)
        assert float(np.abs(np.asarray(logits["data"]) - want.ravel()).max()) <= ATOL
    assert expected[1].shape == (2, 1, 64) and np.abs(expected[1] - expected[0][:, -1:]).max() <= ATOL


@pytest.mark.parametrize("version, edit", [
    ("v3", lambda cache: cache.update(logits_to_keep="keep_rows")),
    ("v2", lambda cache: cache.update(logits_to_keep="logits_to_keep")),
])
def test_js_refuses_a_cache_record_naming_no_such_input_in_python_words(tmp_path, version, edit):
    bad = shutil.copytree(GOLDEN / version / "cached", tmp_path / "bundle")
    data = json.loads((bad / "manifest.json").read_text())
    edit(data["model"]["cache"])
    (bad / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError) as err:
        runtime.load(bad, verify=False)
    got = run_js(tmp_path, [{"bundle": str(bad), "call": "generate", "args": {"prompt": [[5]]}}])[0]
    assert got.get("type") == "BundleError" and got["error"] == str(err.value)
