"""Property-based fuzzing of the runtime's entry points, the manifest and config readers, and the
CLI: every input either succeeds with a well-formed answer or raises the project's own error (the
CLI: exit 2, one stderr line, no traceback). Bounded (max_examples, derandomized) so the suite
stays within its time budget; benchmarks/soak.py and the README give the larger runs' figures."""

import json
import os
import shutil
import subprocess
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


# ------------------------------------------------------------------ media files, media arrays and signing inputs
# The only acceptable failure is one EdgeformerError line in edgeformer's words: no library's own text.
RAW_LIBRARY_TEXT = ("[ONNXRuntimeError]", "onnxruntime::", "Traceback", "cannot identify image file",
                    "image file is truncated", "DecompressionBomb", "cryptography.io", "Could not deserialize",
                    "list indices", "object is not", "buffer size", "wave.Error", "Symlink loop")
MEDIA_FUZZ = settings(max_examples=int(30 * SCALE), deadline=None, derandomize=not RANDOM,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def answers_or_refuses_in_our_words(call):
    """`answers_or_refuses`, and a refusal must not carry a library's raw text."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return call()
        except EdgeformerError as e:
            text = str(e)
            assert len(text.splitlines()) == 1 and not any(raw in text for raw in RAW_LIBRARY_TEXT), repr(e)
            return None


def _image_bytes(kind: str, seed: int, size: tuple[int, int], mode: str) -> bytes:
    import io

    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode if kind != "JPEG" or mode != "P" else "RGB").save(out, kind)
    return out.getvalue()


def _mutate(data: bytes, cuts: list[tuple[int, int]], truncate: int | None) -> bytes:
    """Bytes overwritten at (offset, value) pairs, then optionally cut short."""
    buf = bytearray(data)
    for offset, value in cuts:
        if buf:
            buf[offset % len(buf)] = value
    return bytes(buf[:truncate] if truncate is not None else buf)


image_files = st.builds(
    _mutate,
    st.builds(_image_bytes, st.sampled_from(["PNG", "JPEG", "GIF", "BMP"]), st.integers(0, 3),
              st.tuples(st.integers(1, 12), st.integers(1, 12)), st.sampled_from(["L", "RGB", "P", "1"])),
    st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=4),
    st.one_of(st.none(), st.integers(0, 300)),
)


@MEDIA_FUZZ
@given(data=image_files, header_size=st.one_of(st.none(), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))))
def test_fuzz_image_files(tmp_path_factory, data, header_size):
    import struct
    import zlib

    from edgeformer.runtime.images import files_to_images

    if header_size is not None and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 33:
        ihdr = data[12:16] + struct.pack(">II", *header_size) + data[24:29]  # the size a crafted header claims
        data = data[:8] + data[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]
    path = tmp_path_factory.mktemp("img") / "image.bin"
    path.write_bytes(data)
    for channels in (1, 3):
        images = answers_or_refuses_in_our_words(lambda: files_to_images([str(path)], channels))
        if images is not None:
            assert images[0].dtype == np.uint8 and images[0].ndim == (2 if channels == 1 else 3)


def _wav(tag, channels, rate, bits, block_align, payload, claimed, extra_chunk, truncate) -> bytes:
    import struct

    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * max(block_align, 1) % 2**32, block_align, bits)
    data_length = len(payload) if claimed is None else claimed
    body = b"WAVE" + extra_chunk + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_length)
    whole = b"RIFF" + struct.pack("<I", len(body) + len(payload)) + body + payload
    return whole[:truncate] if truncate is not None else whole


wav_files = st.builds(
    _wav,
    st.sampled_from([1, 3, 0xFFFE, 2, 7, 0]), st.sampled_from([0, 1, 2, 65]), st.sampled_from([0, 8000, 16000, 2**32 - 1]),
    st.sampled_from([0, 8, 12, 16, 24, 32, 64]), st.integers(0, 9), st.binary(max_size=64),
    st.one_of(st.none(), st.sampled_from([0, 1, 3, 63, 0xFFFFFFF0, 2**32 - 1])),
    st.sampled_from([b"", b"LIST\x04\x00\x00\x00abcd", b"junk\xff\xff\xff\x7f", b"odd \x01\x00\x00\x00x\x00"]),
    st.one_of(st.none(), st.integers(0, 80)),
)


@MEDIA_FUZZ
@given(data=wav_files)
def test_fuzz_wav_files(tmp_path_factory, data):
    from edgeformer.runtime.speech import check_waveform, read_wav

    path = tmp_path_factory.mktemp("wav") / "audio.wav"
    path.write_bytes(data)
    read = answers_or_refuses_in_our_words(lambda: read_wav(path))
    if read is not None:
        samples, rate = read
        assert samples.dtype == np.float32 and samples.ndim in (1, 2) and rate >= 1
        answers_or_refuses_in_our_words(lambda: check_waveform(samples, 0, 1, 10**6))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from .media_bundles import speech_bundle, vit_bundle

    root = tmp_path_factory.mktemp("media")
    return runtime.load(vit_bundle(root)), runtime.load(speech_bundle(root))


image_arrays = st.one_of(
    garbage,
    st.builds(cast_array, st.lists(st.integers(0, 20), min_size=0, max_size=5).map(tuple),
              st.sampled_from(["uint8", "float32", "float64", "int16", "bool"]),
              st.sampled_from([0, 1, 0.5, 255, 256, -1, np.nan, np.inf])),
    st.sampled_from([np.broadcast_to(np.uint8(0), (20000, 20000)), np.broadcast_to(np.float32(0.5), (3, 9000, 9000, 1))]),
)


@MEDIA_FUZZ
@given(images=st.one_of(image_arrays, st.lists(image_arrays, max_size=3)),
       layout=st.one_of(st.sampled_from(["HWC", "CHW"]), garbage), resize=st.booleans(),
       batch_size=st.one_of(st.just(64), garbage))
def test_fuzz_classify_images(media, images, layout, resize, batch_size):
    vit, _ = media
    result = answers_or_refuses_in_our_words(lambda: vit.classify_images(images, layout, resize, batch_size))
    if result is not None:
        assert np.allclose(result.probabilities.sum(-1), 1, atol=1e-5) and len(result.labels) == len(result.probabilities)


waveform_arrays = st.one_of(
    garbage,
    st.builds(cast_array, st.lists(st.integers(0, 3000), min_size=0, max_size=2).map(tuple),
              st.sampled_from(["float32", "float64", "float16", "int16", "complex64"]),
              st.sampled_from([0, 0.5, -1, 1.0000001, 1e30, -1e30, np.nan, np.inf])),
)


@MEDIA_FUZZ
@given(waveforms=st.one_of(waveform_arrays, st.lists(waveform_arrays, max_size=3)),
       sample_rate=st.one_of(st.just(16000), garbage), batch_size=st.one_of(st.just(16), garbage))
def test_fuzz_transcribe(media, waveforms, sample_rate, batch_size):
    _, asr = media
    texts = answers_or_refuses_in_our_words(lambda: asr.transcribe(waveforms, sample_rate, batch_size))
    if texts is not None:
        assert all(isinstance(t, str) for t in texts)


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory):
    pytest.importorskip("cryptography")
    from edgeformer.runtime.signing import keygen, sign_bundle

    root = tmp_path_factory.mktemp("signed")
    private, public = keygen(root / "key")
    bundle = Path(shutil.copytree(GOLDEN / "plain", root / "b"))
    sign_bundle(bundle, private)
    return bundle, public


PEM = "-----BEGIN PUBLIC KEY-----\n"
SIGNATURE_FIELDS = ["format", "format_version", "algorithm", "digest", "key", "signature", "extra"]


@MEDIA_FUZZ
@given(data=st.data())
def test_fuzz_signing_inputs(tmp_path_factory, signed_bundle, data):
    bundle, public = signed_bundle
    b = Path(shutil.copytree(bundle, tmp_path_factory.mktemp("s") / "b"))
    pem = public.read_text()
    key = data.draw(st.one_of(
        st.just(str(public)), st.just(pem), st.just(pem.encode()), garbage,
        st.text(max_size=40).map(lambda t: PEM + t), st.text(max_size=40),
        st.builds(lambda cuts, cut: _mutate(pem.encode(), cuts, cut),
                  st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3),
                  st.one_of(st.none(), st.integers(0, 120))),
    ))
    if data.draw(st.booleans()):
        record = json.loads((b / "signature.json").read_text())
        for _ in range(data.draw(st.integers(1, 2))):
            field = data.draw(st.sampled_from(SIGNATURE_FIELDS))
            record[field] = data.draw(garbage.filter(_jsonable))
        whole = data.draw(st.sampled_from(["record", "list", "null", "bytes"]))
        text = {"record": json.dumps(record), "list": json.dumps([record]), "null": "null",
                "bytes": None}[whole]
        (b / "signature.json").write_bytes(text.encode() if text is not None else data.draw(st.binary(max_size=40)))
    model = answers_or_refuses_in_our_words(lambda: runtime.load(b, public_key=key))
    if model is not None:
        assert model({"input_ids": np.ones((1, 3), dtype=np.int64)})["logits"].shape == (1, 3)


# ------------------------------------------------------------------ deploy options
# --fixed-shape text: axis names the golden bundles have and do not have, sizes at and past every bound
# (the manifest's, int64's, the machine's memory), non-ASCII digits, doubled axes, stray separators.
AXES = ["batch", "seq", "past", "total", "src", "Seq", "b atch", "", "9x", "é"]
# (a size the deploy checks can hold is run at that size: none here needs more than about 100 MB)
SIZES = ["1", "2", "32", "33", "0", "-1", "01", "1.0", "1e3", "٣", "١٢", "10000000000", "9223372036854775807",
         "99999999999999999999999", " 4 ", "", "nan", "0x10"]
fixed_shape_items = st.one_of(
    st.builds(lambda a, s: f"{a}={s}", st.sampled_from(AXES), st.one_of(st.sampled_from(SIZES), st.integers(-5, 10**6).map(str))),
    st.text(max_size=6), st.sampled_from(["=", "==", "batch==1", "batch=1=2", "batch", ","]),
)
fixed_shape_texts = st.one_of(st.lists(fixed_shape_items, min_size=0, max_size=4).map(",".join), st.text(max_size=24))


@settings(max_examples=int(200 * SCALE), deadline=None, derandomize=not RANDOM)
@given(text=fixed_shape_texts)
def test_fuzz_fixed_shape_text(text):
    from edgeformer.deploy.folder import parse_fixed_shape

    shape = answers_or_refuses_in_our_words(lambda: parse_fixed_shape(text))
    if shape is not None:
        assert shape and all(isinstance(v, int) and v >= 1 for v in shape.values())
        assert all(name.isascii() and name.isidentifier() for name in shape), shape
        assert len(shape) == len(text.split(","))  # every item is one axis, none taken twice


DEPLOY_TARGETS = ["android", "ios", "arm64", "tensorrt", "jetson", "triton", "web"]
DEPLOY_VALUES = st.one_of(CLI_VALUES, st.sampled_from(["fp32", "fp16", "int8", "cpu", "gpu", "auto", "2", "8", "seq=1:8:32",
                                                       "batch=1:1:1", "seq=0:1:2", "seq=3:2:1", "s=1:2", "é=1:1:1"]))
DEPLOY_OPTIONS = ["--precision", "--profile", "--name", "--triton-batch", "--max-batch", "--instances", "--device",
                  "--threads", "--seed", "--timing-cache", "--emulator-root", "--trt-attention", "--overwrite"]


def _deploy_args(data, root: Path) -> tuple[list[str], Path]:
    bundle = str(GOLDEN / data.draw(st.sampled_from(["plain", "cached", "int8", "seq2seq", "checkpoint", "missing"])))
    target = data.draw(st.one_of(st.sampled_from(DEPLOY_TARGETS), st.sampled_from(["", "Android", "wasm", "x" * 300])))
    out = root / data.draw(st.sampled_from(["out", "missing/out", "out\nline"]))
    args = ["deploy", bundle, "--target", target, "--out", str(out)]
    if data.draw(st.booleans()):
        args += ["--fixed-shape", data.draw(fixed_shape_texts)]
    for _ in range(data.draw(st.integers(0, 3))):
        option = data.draw(st.sampled_from(DEPLOY_OPTIONS))
        args += [option] if option in ("--trt-attention", "--overwrite") else [option, data.draw(DEPLOY_VALUES)]
    if data.draw(st.booleans()):
        args += ["--json", str(root / data.draw(st.sampled_from(["r.json", "missing/r.json", "out/r.json", "out"])))]
    # the arm64 check runs under emulation and the web check in Chromium: minutes, not a fuzz case
    return args + (["--no-check"] if target in ("arm64", "web") else []), out


@settings(max_examples=int(25 * SCALE), deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_deploy_cli(tmp_path_factory, data):
    """deploy's options through the CLI: exit 0 with a folder, or exit 2 in one line of our words and nothing written."""
    root = tmp_path_factory.mktemp("deploy")
    args, out = _deploy_args(data, root)
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and not any(raw in lines[0] for raw in RAW_LIBRARY_TEXT), (args, result.stderr)
        assert not out.exists(), (args, "a refused deployment left its folder")
    else:
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["deploy"]["target"] == args[args.index("--target") + 1], args


def test_deploy_json_onto_its_own_out_folder(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["deploy", str(GOLDEN / "plain"), "--target", "arm64", "--out", str(out), "--json", str(out)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert not out.exists(), "a refused deployment left its folder"


def test_deploy_triton_batch_past_memory(tmp_path):
    import resource
    import sys

    def cap_memory():  # address space capped: the unbounded check fails here instead of taking the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    proc = subprocess.run([sys.executable, "-m", "edgeformer.cli.main", "deploy", str(GOLDEN / "plain"), "--target", "triton",
                           "--out", str(tmp_path / "out"), "--triton-batch", "100000"],
                          capture_output=True, text=True, timeout=300, preexec_fn=cap_memory)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-600:]
    assert not (tmp_path / "out").exists()


# Values of each DeployOptions field's own type, at and past its bounds; fixed sizes the checks can hold
# (they run at that size) or far past any machine's memory.
fixed_sizes = st.one_of(st.integers(-2, 4096), st.sampled_from([2**31, 2**63 - 1, 2**63, 2**70, 10**10]))
axis_names = st.sampled_from(["batch", "seq", "past", "x", "", "é"])
typed_deploy_options = st.fixed_dictionaries({}, optional={
    "fixed_shape": st.one_of(st.none(), st.dictionaries(axis_names, fixed_sizes, max_size=3)),
    "check": st.sampled_from([None, False]),
    "precision": st.one_of(st.sampled_from(["fp32", "fp16", "int8"]), st.text(max_size=6)),
    "profile": st.one_of(st.none(), st.dictionaries(axis_names, st.tuples(st.integers(-1, 40), st.integers(-1, 40),
                                                                              st.integers(-1, 2**40)), max_size=2)),
    "trt_attention": st.booleans(),
    "timing_cache": st.one_of(st.none(), st.sampled_from(["/nonexistent/cache", "", "/proc/self/status"])),
    "name": st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["../x", "a/b", ".", "x" * 300])),
    "max_batch": st.one_of(st.none(), fixed_sizes),  # triton checks a batch of that many rows
    "instances": st.one_of(st.integers(-2, 64), st.sampled_from([2**31, 2**63, 2**64])),
    "device": st.one_of(st.sampled_from(["auto", "cpu", "gpu"]), st.text(max_size=5)),
    "threads": st.one_of(st.none(), st.integers(-2, 64), st.sampled_from([2**31, 2**64])),
    "seed": st.integers(-2**64, 2**64),
})
deploy_option_values = st.one_of(garbage, fixed_sizes, st.sampled_from(["fp16", "int8", "cpu", "gpu", "auto"]),
                                 st.dictionaries(axis_names, st.one_of(fixed_sizes, garbage,
                                                 st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))),
                                                 max_size=2))
DEPLOY_FIELDS = ["fixed_shape", "check", "emulator_root", "precision", "profile", "trt_attention", "timing_cache", "name",
                 "max_batch", "instances", "device", "threads", "seed"]


def _deploy_or_refuse(bundle: str, target, fields: dict, root: Path):
    from edgeformer.deploy import DeployOptions, deploy

    if target in ("arm64", "web"):
        fields["check"] = False  # emulation and Chromium: minutes, not a fuzz case
    out = root / "out"
    result = answers_or_refuses_in_our_words(lambda: deploy(GOLDEN / bundle, target, out, DeployOptions(**fields)))
    if result is None:
        assert not out.exists(), (target, fields)
    else:
        assert (out / "manifest.json").is_file() and result.target == target
    return result


@settings(max_examples=int(25 * SCALE), deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bundle=st.sampled_from(["plain", "cached", "int8", "seq2seq"]), target=st.sampled_from(DEPLOY_TARGETS),
       fields=typed_deploy_options)
def test_fuzz_deploy_library(tmp_path_factory, bundle, target, fields):
    """`edgeformer.deploy.deploy` from Python, each option of its own type: a folder, or one DeployError line."""
    if fields.get("seed", 0) < 0:
        fields["seed"] = -fields["seed"]  # a negative seed: see test_fuzz_deploy_library_any_value
    _deploy_or_refuse(bundle, target, fields, tmp_path_factory.mktemp("deploy"))


@settings(max_examples=int(25 * SCALE), deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.one_of(st.sampled_from(DEPLOY_TARGETS), garbage),
       fields=st.dictionaries(st.sampled_from(DEPLOY_FIELDS), deploy_option_values, max_size=3))
def test_fuzz_deploy_library_any_value(tmp_path_factory, target, fields):
    """Any value for any option, as a Python caller may pass by mistake; options outside the CLI's ranges refused."""
    result = _deploy_or_refuse("plain", target, fields, tmp_path_factory.mktemp("deploy"))
    if result is not None:
        for name in ("max_batch", "instances", "threads"):
            assert fields.get(name) is None or (isinstance(fields[name], int) and fields[name] >= 1), (target, fields)


# ------------------------------------------------------------------ the JS runtime (web/src), under Node
# Cases are drawn by hypothesis and run in ONE Node process (web/tools/parity.mjs), as loading onnxruntime-web
# per case would take seconds; a failure names the case and what edgeformer.js answered.
NODE = shutil.which("node")
WEB = Path(__file__).resolve().parent.parent / "web"
JS_ERRORS = ("EdgeformerError", "BundleError", "InputError")
JS_RAW_TEXT = RAW_LIBRARY_TEXT + ("Cannot read properties", "is not a function", "is not iterable", "undefined",
                                  "Maximum call stack", "ERROR_CODE", "ort-wasm", "RangeError", "Invalid array length")
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**60, 2**60), st.integers(-3, 400),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10)
js_options = st.one_of(st.just({}), json_values, st.dictionaries(
    st.sampled_from(["batchSize", "truncation", "normalize", "maxNewTokens", "temperature", "topK", "topP",
                     "repetitionPenalty", "stop", "seed", "onOverflow", "max_new_tokens", "colour"]),
    st.one_of(json_values, st.integers(0, 8), st.floats(0, 2), st.sampled_from(["error", "truncate"])), max_size=3))
js_tensor = st.builds(lambda dtype, shape, fill: {"dtype": dtype, "shape": shape, "data": [fill] * int(np.prod(shape))},
                      st.sampled_from(["int64", "int32", "float32", "bool", "uint8", "int8"]),
                      st.one_of(st.lists(st.integers(1, 3), min_size=2, max_size=2), st.lists(st.integers(0, 4), max_size=3)),
                      st.sampled_from([0, 1, 2, 299, 300, -1, 2**40]))
js_texts = st.one_of(st.text(max_size=200), st.lists(st.text(max_size=100), max_size=4), json_values)
js_prompts = st.one_of(st.lists(st.integers(0, 299), min_size=1, max_size=6), json_values,
                       st.lists(st.integers(-1, 300), min_size=1, max_size=6), st.text(max_size=20),
                       st.lists(st.lists(st.integers(-1, 300), max_size=5), max_size=3))
js_calls = st.one_of(
    # parity.mjs reads a null input as a tensor record itself, before edgeformer.js sees it
    st.builds(lambda inputs: {"bundle": "plain", "call": "run", "args": {"inputs": inputs}},
              st.one_of(st.fixed_dictionaries({"input_ids": js_tensor}, optional={"attention_mask": js_tensor}),
                        st.dictionaries(st.sampled_from(["input_ids", "attention_mask", "token_type_ids", "x"]),
                                        st.one_of(js_tensor, json_values.filter(lambda v: v is not None)), max_size=3))),
    st.builds(lambda call, texts, options: {"bundle": "plain", "call": call, "args": {"texts": texts, "options": options}},
              st.sampled_from(["embed", "classify"]), js_texts, js_options),
    st.builds(lambda call, prompt, options: {"bundle": "cached", "call": call, "args": {"prompt": prompt, "options": options}},
              st.sampled_from(["generate", "stream"]), js_prompts,
              st.one_of(js_options, st.fixed_dictionaries({"maxNewTokens": st.integers(0, 4)}, optional={
                  "temperature": st.floats(0, 2), "topK": st.integers(0, 400), "topP": st.floats(0, 1),
                  "seed": st.integers(0, 2**40), "stop": st.lists(st.integers(0, 299), max_size=2),
                  "repetitionPenalty": st.floats(0.5, 2), "onOverflow": st.sampled_from(["error", "truncate"])}))),
)


@pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)")
def test_fuzz_web_runtime(tmp_path):
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("web/node_modules is missing: `npm ci` in web/ installs onnxruntime-web")
    cases = []

    @settings(max_examples=int(100 * SCALE), deadline=None, derandomize=not RANDOM, database=None)
    @given(case=js_calls)
    def draw(case):
        cases.append(case)

    draw()
    results = run_parity_js(tmp_path, cases)
    print(f"web runtime: {len(cases)} cases, {sum('ok' in r for r in results)} answered")
    for case, result in zip(cases, results):
        assert_js_answer_or_refusal(case, result)


def run_parity_js(tmp_path: Path, cases: list[dict]) -> list[dict]:
    calls = [{**c, "bundle": str(GOLDEN / c["bundle"])} for c in cases]
    (tmp_path / "job.json").write_text(json.dumps({"calls": calls}))
    proc = subprocess.run([NODE, str(WEB / "tools" / "parity.mjs"), str(tmp_path / "job.json"), str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert len(results) == len(cases)
    return results


def assert_js_answer_or_refusal(case: dict, result: dict) -> None:
    if "error" in result:
        text = result["error"]
        assert result["type"] in JS_ERRORS, (case, result)
        assert len(text.splitlines()) == 1 and not any(raw in text for raw in JS_RAW_TEXT), (case, result)


@pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)")
def test_web_runtime_null_options(tmp_path):
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("web/node_modules is missing: `npm ci` in web/ installs onnxruntime-web")
    cases = [{"bundle": "plain", "call": call, "args": {"texts": ["a text"], "options": None}} for call in ("embed", "classify")]
    for case, result in zip(cases, run_parity_js(tmp_path, cases)):
        assert_js_answer_or_refusal(case, result)


@pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)")
def test_web_runtime_unknown_option_with_a_line_break(tmp_path):
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("web/node_modules is missing: `npm ci` in web/ installs onnxruntime-web")
    cases = [{"bundle": "plain", "call": "classify", "args": {"texts": ["a text"], "options": {"batch\nSize": 2}}},
             {"bundle": "cached", "call": "generate", "args": {"prompt": [[1, 2]], "options": {"top\u2028k": 1}}}]
    for case, result in zip(cases, run_parity_js(tmp_path, cases)):
        assert "error" in result, (case, result)
        assert_js_answer_or_refusal(case, result)
