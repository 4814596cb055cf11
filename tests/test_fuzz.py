"""Property-based fuzzing of the runtime's entry points, the manifest and config readers, and the
CLI: every input either succeeds with a well-formed answer or raises the project's own error (the
CLI: exit 2, one stderr line, no traceback). Bounded (max_examples, derandomized) so the suite
stays within its time budget; benchmarks/soak.py and the README give the larger runs' figures."""

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.modeling.config import ModelConfig
from edgeformer.runtime import EdgeformerError

GOLDEN = Path(__file__).parent / "golden" / "v1"
# EDGEFORMER_FUZZ_EXAMPLES=N (with EDGEFORMER_FUZZ_RANDOM=1 for fresh cases) runs a longer campaign.
SCALE = int(os.environ.get("EDGEFORMER_FUZZ_EXAMPLES", "60")) / 60
RANDOM = os.environ.get("EDGEFORMER_FUZZ_RANDOM") == "1"
FUZZ = settings(max_examples=int(60 * SCALE), deadline=None, derandomize=not RANDOM,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Values of every kind a caller might hand over by mistake.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=6),
    st.sampled_from([np.float32(0.5), np.int64(3), np.uint64(2**63 + 5), object(), {1, 2}, (i for i in [1])]),
)
garbage = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                                        st.dictionaries(st.text(max_size=4), inner, max_size=2)),
                       max_leaves=12)
def cast_array(shape, dtype, fill) -> np.ndarray:
    """An array of `fill` cast unsafely (NaN and inf into integers on purpose: garbage the runtime must refuse)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.full(shape, fill).astype(dtype, casting="unsafe")


arrays = st.one_of(
    garbage,
    st.builds(cast_array,
              st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple),
              st.sampled_from(["int64", "int32", "uint64", "float32", "float64", "bool", "U3"]),
              st.sampled_from([0, 1, 7, 299, 300, -1, 2**40, np.nan, np.inf])),
)


def answers_or_refuses(call):
    """Run `call`; the only acceptable failure is an EdgeformerError of one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return call()
        except EdgeformerError as e:
            assert "\n" not in str(e) and str(e) and "__init__" not in str(e), repr(e)
            return None


@FUZZ
@given(ids=arrays, mask=st.one_of(st.none(), arrays))
def test_fuzz_run(plain, ids, mask):
    feeds = {"input_ids": ids} if mask is None else {"input_ids": ids, "attention_mask": mask}
    out = answers_or_refuses(lambda: plain(feeds))
    if out is not None:
        B = np.asarray(ids).shape[0]
        assert out["logits"].shape == (B, 3) and np.isfinite(out["logits"]).all()


@FUZZ
@given(texts=st.one_of(garbage, st.text(max_size=300), st.lists(st.text(max_size=300), max_size=5)),
       batch_size=st.one_of(st.just(32), garbage), truncation=st.one_of(st.just(True), garbage))
def test_fuzz_embed_and_classify(plain, texts, batch_size, truncation):
    out = answers_or_refuses(lambda: plain.embed(texts, batch_size=batch_size, truncation=truncation))
    if out is not None:
        n = 1 if isinstance(texts, str) else len(texts)
        assert out.shape == (n, 32) and np.isfinite(out).all()
    result = answers_or_refuses(lambda: plain.classify(texts, batch_size=batch_size, truncation=truncation))
    if result is not None:
        assert np.allclose(result.probabilities.sum(-1), 1, atol=1e-5)


SETTINGS = ["max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "stop", "seed", "on_overflow",
            "return_logits", "io_binding", "colour"]


@FUZZ
@given(prompt=st.one_of(garbage, st.lists(st.integers(0, 299), min_size=1, max_size=8),
                        st.lists(st.lists(st.integers(-1, 300), max_size=5), max_size=3)),
       settings_=st.dictionaries(st.sampled_from(SETTINGS), st.one_of(garbage, st.integers(0, 8), st.floats(0, 2)),
                                 max_size=3),
       stream=st.booleans())
def test_fuzz_generate_and_stream(cached, prompt, settings_, stream):
    settings_.setdefault("max_new_tokens", 3)

    def call():
        if stream:
            return [s.tokens for s in cached.stream(prompt, **settings_)]
        return cached.generate(prompt, **settings_).token_ids

    out = answers_or_refuses(call)
    if out is not None and not stream:
        assert all(0 <= t < 300 for row in out for t in row)


MANIFEST_FIELDS = ["inputs", "outputs", "axes", "opset", "model", "attention", "files", "graph", "kind", "tools",
                   "quantization", "parity", "format_version"]


@settings(max_examples=int(40 * SCALE), deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_manifest(tmp_path_factory, data):
    b = Path(shutil.copytree(GOLDEN / "plain", tmp_path_factory.mktemp("m") / "b"))
    m = json.loads((b / "manifest.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = [data.draw(st.sampled_from(MANIFEST_FIELDS))]
        target = m
        while isinstance(target.get(path[-1]) if isinstance(target, dict) else None, (dict, list)) and data.draw(st.booleans()):
            inner = target[path[-1]]
            key = data.draw(st.sampled_from(list(inner) if isinstance(inner, dict) else list(range(len(inner))))) \
                if inner else None
            if key is None:
                break
            target, path = inner, path + [key]
        value = data.draw(st.one_of(garbage.filter(lambda v: _jsonable(v)), st.just([]), st.just({})))
        target[path[-1]] = value
    (b / "manifest.json").write_text(json.dumps(m))
    model = answers_or_refuses(lambda: runtime.load(b))
    if model is not None:
        assert answers_or_refuses(lambda: model({"input_ids": np.ones((1, 3), dtype=np.int64)})) is not None


def _jsonable(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


CONFIG_FIELDS = [f for f in ModelConfig.__dataclass_fields__]


@settings(max_examples=int(200 * SCALE), deadline=None, derandomize=not RANDOM)
@given(fields=st.dictionaries(st.sampled_from(CONFIG_FIELDS), st.one_of(garbage, st.integers(-5, 10**13)), max_size=4))
def test_fuzz_config(fields):
    base = dict(vocab_size=300, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64)
    answers_or_refuses(lambda: ModelConfig.from_dict({**base, **fields}))


CLI_VALUES = st.one_of(st.text(max_size=8), st.sampled_from(["-1", "0", "1", "nan", "inf", "1e999", "99999999999999999999",
                                                             "\\", "\\x", "--5", "a\udcff", "", "-", "/nonexistent/x"]))
CLI_OPTIONS = {
    "run": ["--ids", "--text", "--file", "--input", "--threads", "--providers", "--json", "--public-key", "--truncate"],
    "generate": ["--ids", "--prompt", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--stop", "--seed",
                 "--repetition-penalty", "--json", "--threads", "--stream", "--truncate"],
}


@FUZZ
@given(data=st.data())
def test_fuzz_cli(data):
    verb = data.draw(st.sampled_from(["run", "generate"]))
    bundle = str(GOLDEN / data.draw(st.sampled_from(["plain", "cached", "missing"])))
    args = [verb, bundle]
    for _ in range(data.draw(st.integers(0, 4))):
        option = data.draw(st.sampled_from(CLI_OPTIONS[verb]))
        args += [option] if option in ("--stream", "--truncate") else [option, data.draw(CLI_VALUES)]
    if data.draw(st.booleans()):
        args.insert(data.draw(st.integers(0, len(args))), data.draw(CLI_VALUES))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, (args, result.stderr)
