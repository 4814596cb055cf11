"""Format compatibility: the golden artifacts of every format version this project has written
(tests/golden, made by tests/golden/make_golden.py and make_golden_v2.py to make_golden_v4.py) still load,
validate, run and compute what they computed when written, and their test vectors verify; unknown and
newer versions are refused in one line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.modeling import checkpoint
from edgeformer.modeling.checkpoint import CheckpointError
from edgeformer.runtime.bundle import (CACHED_DECODER, FORMAT_VERSION, PLAIN, SEQ2SEQ, STREAMING_SPEECH, CacheRecord, Manifest,
                                       QuantizationRecord, read_manifest, verify_files, write_manifest)
from edgeformer.runtime.errors import BundleError, InputError
from edgeformer.runtime.vector_cases import INT4_TOL
from edgeformer.runtime.vectors import VECTORS_FILE, verify_vectors

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name.startswith("v"))
# float32 and int8 (7-bit weights: its int8 sums are exact on every CPU) measured exact (0.0) on the machine
# that made them; int4 at accuracy level 4 quantizes activations per block, each CPU's kernel its own way:
# the cross-CPU tolerance its test vectors carry (runtime/vector_cases.py), times the largest output.
ATOL = {"plain": 1e-5, "int8": 1e-4, "int4": INT4_TOL}


def recorded(version: str, name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / version / f"{name}.npz", allow_pickle=False) as data:
        return dict(data)


def having(*names: str) -> list[str]:
    """The versions whose goldens include every one of `names`."""
    return [v for v in VERSIONS if all((GOLDEN / v / n).is_dir() for n in names)]


def assert_close(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    """|got - want| <= tol x max(1, |want|): an absolute tolerance for outputs up to 1, relative past that."""
    atol = tol * max(1.0, float(np.abs(want).max()) if want.size else 0.0)
    np.testing.assert_allclose(got, want, atol=atol, rtol=0, err_msg=what)


def assert_same_labels(labels: list[str], data: dict[str, np.ndarray], tol: float) -> None:
    """The recorded labels, wherever the recorded top probability led the next by more than the tolerance
    allows either to move (a near tie may go either way on another CPU)."""
    top2 = np.sort(data["probabilities"], axis=-1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * tol
    assert [g for g, c in zip(labels, clear) if c] == [w for w, c in zip(data["labels"].tolist(), clear) if c]


@pytest.mark.parametrize("version, name", [(v, n) for n in ("plain", "int8", "int4") for v in having(n)])
def test_golden_bundle_runs_and_gives_the_recorded_outputs(version, name):
    model = runtime.load(GOLDEN / version / name)
    assert model.manifest.kind == PLAIN
    data = recorded(version, name)
    out = model({"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]})
    for key, value in out.items():
        assert_close(value, data[f"out.{key}"], ATOL[name], key)
    assert model.classify(["the quick brown fox"]).labels[0] in ("a", "b", "c")
    if "texts" in data:
        got = model.classify(data["texts"].tolist())
        assert_close(got.probabilities, data["probabilities"], ATOL[name], "probabilities")
        assert_same_labels(got.labels, data, ATOL[name])
    if name != "plain":
        q = model.manifest.quantization
        recipe = {"int8": "int8-dynamic", "int4": "int4"}[name]
        assert isinstance(q, QuantizationRecord) and q.recipe == recipe and q.measured["batch"] == 1
        assert model.manifest.parity.kind == "budget"


@pytest.mark.parametrize("version", having("cached"))
def test_golden_cached_decoder_generates_the_recorded_tokens(version):
    model = runtime.load(GOLDEN / version / "cached")
    assert model.manifest.kind == CACHED_DECODER and isinstance(model.manifest.cache, CacheRecord)
    data = recorded(version, "cached")
    got = model.generate([data["prompt_0"].tolist(), data["prompt_1"].tolist()], max_new_tokens=8)
    assert got.token_ids == data["token_ids"].tolist()
    step = {k[len("step."):]: v for k, v in data.items() if k.startswith("step.")}
    for key, value in model(step).items():
        np.testing.assert_allclose(value, data[f"out.{key}"], atol=1e-5, rtol=0)
    keep = model.manifest.cache.logits_to_keep
    assert (keep is None) == (model.manifest.format_version < 3)  # format 3 added the input
    if keep is not None:  # the prompt asked for its last position only
        last = model({**step, keep: np.array([1], np.int64)})
        assert last["logits"].shape == (1, 1, model.manifest.config["vocab_size"])
        for key, value in last.items():
            np.testing.assert_allclose(value, data[f"keep_last.{key}"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_golden_cached_decoders_of_format_2_and_3_generate_the_same_tokens(version):
    """v2's and v3's cached decoders hold the same weights (v1's has others): the runtime reads the last
    row itself from the version 2 graph and asks the version 3 graph for it; both generate what v2 recorded."""
    assert runtime.load(GOLDEN / version / "cached").generate([[5, 17, 59, 3], [7, 60]], max_new_tokens=8).token_ids \
        == recorded("v2", "cached")["token_ids"].tolist()


@pytest.mark.parametrize("version", having("seq2seq"))
def test_golden_seq2seq_encoder_and_generation(version):
    model = runtime.load(GOLDEN / version / "seq2seq")
    assert model.manifest.kind == SEQ2SEQ and [g.name for g in model.manifest.graphs] == ["model", "encoder"]
    data = recorded(version, "seq2seq")
    cross = model.graph("encoder")({"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]})
    for key, value in cross.items():
        np.testing.assert_allclose(value, data[f"encoder.{key}"], atol=1e-5, rtol=0)
    sources = [[3, 4, 5, 6, 7, 8, 9], [200, 1]]  # v1 recorded its generation's sources in the test
    if "source_0" in data:
        sources = [data["source_0"].tolist(), data["source_1"].tolist()]
    assert model.generate(sources, max_new_tokens=8).token_ids == data["token_ids"].tolist()


@pytest.mark.parametrize("version", having("checkpoint"))
def test_golden_checkpoint_loads_and_gives_the_recorded_outputs(version):
    torch = pytest.importorskip("torch")
    model = checkpoint.load(GOLDEN / version / "checkpoint")
    assert checkpoint.load_tokenizer(GOLDEN / version / "checkpoint") is not None
    data = recorded(version, "checkpoint")
    with torch.no_grad():
        out = model(torch.from_numpy(data["input_ids"]), torch.from_numpy(data["attention_mask"]))
    for key, value in out.items():
        np.testing.assert_allclose(value.numpy(), data[f"out.{key}"], atol=1e-5, rtol=0)


# --------------------------------------------------------------- format 2: ViT, speech, deployments, vectors

# Each version's bundles and deployment folders by the kind their manifest records (None: format 1, no kind).
BUNDLES = {"plain": PLAIN, "int8": PLAIN, "int4": PLAIN, "cached": CACHED_DECODER, "seq2seq": SEQ2SEQ,
           "vit": PLAIN, "speech": PLAIN, "android": PLAIN, "web": PLAIN, "stream": STREAMING_SPEECH}
CHECKPOINTS = ("checkpoint", "vit-checkpoint", "speech-checkpoint")


def made(version: str) -> dict:
    path = GOLDEN / version / "made.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_golden(version: str, name: str) -> runtime.Model:
    """Load a golden folder, its hashes checked; a file its version left out (made.json: the web folder's
    WASM binary, an npm file of 15 MB) must be one the deployment copied from npm, and is not hashed."""
    folder = GOLDEN / version / name
    left_out = {rel.split("/", 1)[1] for rel in made(version).get("left_out", {}) if rel.split("/", 1)[0] == name}
    if not left_out:
        return runtime.load(folder)
    manifest = read_manifest(folder)
    shipped = manifest.deploy.extra["web"]["files"]
    assert all(rel in manifest.files and shipped[rel].startswith("npm ") for rel in left_out), left_out
    present = Manifest.from_json(manifest.to_json())
    present.files = {rel: meta for rel, meta in manifest.files.items() if rel not in left_out}
    verify_files(folder, present)  # every other file as the manifest hashed it
    return runtime.load(folder, verify=False)


def golden_bundles() -> list[tuple[str, str]]:
    return [(v, n) for v in VERSIONS for n in BUNDLES if (GOLDEN / v / n).is_dir()]


@pytest.mark.parametrize("version, name", golden_bundles())
def test_golden_bundle_loads_at_its_format_and_kind(version, name):
    model = load_golden(version, name)
    written = json.loads((GOLDEN / version / name / "manifest.json").read_text())
    if written["format_version"] == 1:
        assert "kind" not in written and model.manifest.kind in (PLAIN, CACHED_DECODER, SEQ2SEQ)
    else:
        assert written["kind"] == model.manifest.kind == BUNDLES[name]


@pytest.mark.parametrize("version, name", [(v, n) for v, n in golden_bundles()
                                           if (GOLDEN / v / n / VECTORS_FILE).is_file()])
def test_golden_vectors_verify(version, name):
    report = verify_vectors(load_golden(version, name))
    assert report.has_vectors and report.cases
    assert report.passed, report.rows()


@pytest.mark.parametrize("version", having("vit"))
def test_golden_image_classifier_gives_the_recorded_outputs(version):
    model = load_golden(version, "vit")
    assert model.manifest.model.task == "classification" and [s.name for s in model.manifest.inputs] == ["pixel_values"]
    data = recorded(version, "vit")
    got = model.classify_images(data["images"], layout="HWC")
    assert_close(got.probabilities, data["probabilities"], ATOL["plain"], "probabilities")
    assert_same_labels(got.labels, data, ATOL["plain"])
    for key, value in model({"pixel_values": data["pixel_values"]}).items():
        assert_close(value, data[f"out.{key}"], ATOL["plain"], key)


@pytest.mark.parametrize("version", having("stream"))
def test_golden_streaming_speech_streams_the_recorded_logits(version):
    from edgeformer.runtime.speech_stream import stream_logits

    model = load_golden(version, "stream")
    assert model.manifest.model.stream.chunk_frames == 2 and model.manifest.format_version >= 4
    data = recorded(version, "stream")
    assert_close(stream_logits(model, data["clip"], 700), data["logits"], ATOL["plain"], "logits")
    assert_close(stream_logits(model, data["clip"], 4321), data["logits"], ATOL["plain"], "logits in other pieces")
    assert model.transcribe([data["clip"]]) == [str(data["text"])]


def test_a_streaming_bundle_below_format_4_or_without_its_record_is_refused(tmp_path):
    older = _copy(GOLDEN / "v4" / "stream", tmp_path / "older", lambda d: d.update(format_version=3))
    with pytest.raises(BundleError, match="is a streaming-speech bundle at format_version 3; the kind came with version 4"):
        runtime.load(older, verify=False)
    bare = _copy(GOLDEN / "v4" / "stream", tmp_path / "bare", lambda d: d["model"].pop("stream"))
    with pytest.raises(BundleError, match="a streaming-speech bundle needs model.stream record"):
        runtime.load(bare, verify=False)
    wrong = _copy(GOLDEN / "v4" / "stream", tmp_path / "wrong", lambda d: d["model"]["stream"].update(state=["keys", "nope"]))
    with pytest.raises(BundleError, match=r"model.stream does not match the graph \(nope\)"):
        runtime.load(wrong, verify=False)


@pytest.mark.parametrize("version", having("speech"))
def test_golden_speech_model_gives_the_recorded_outputs(version):
    model = load_golden(version, "speech")
    assert model.manifest.model.task == "speech-recognition"
    data = recorded(version, "speech")
    waves, lengths = data["waveforms"], data["lengths"]
    for key, value in model({"waveforms": waves, "lengths": lengths}).items():
        assert_close(value, data[f"out.{key}"], ATOL["plain"], key)
    assert model.transcribe([w[:n] for w, n in zip(waves, lengths)]) == data["texts"].tolist()


@pytest.mark.parametrize("version, name", [(v, n) for v in VERSIONS for n in ("android", "web")
                                           if (GOLDEN / v / n).is_dir()])
def test_golden_deployment_runs_its_device_graph_and_gives_the_recorded_outputs(version, name):
    model = load_golden(version, name)
    deploy = model.manifest.deploy
    assert deploy.target == name and deploy.checks and all(c["passed"] for c in deploy.checks)
    assert model.manifest.graph == {"android": "model.ort", "web": "model.onnx"}[name]
    if name == "web":
        assert deploy.extra["web"]["checked"]  # run in headless Chromium before it was written
    data = recorded(version, name)
    for key, value in model({"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}).items():
        assert_close(value, data[f"out.{key}"], ATOL["plain"], key)


@pytest.mark.parametrize("version, name", [(v, n) for v in VERSIONS for n in CHECKPOINTS if (GOLDEN / v / n).is_dir()])
def test_golden_checkpoint_is_read_at_its_format(version, name):
    written = json.loads((GOLDEN / version / name / "config.json").read_text())
    cfg = checkpoint.read_config(GOLDEN / version / name)
    assert written.get("format_version", 1) in checkpoint.READS
    assert {k: v for k, v in cfg.to_dict().items() if k in written} == \
        {k: v for k, v in written.items() if k not in ("format", "format_version")}


@pytest.mark.parametrize("version, name", [(v, n) for v in VERSIONS for n in ("vit", "speech")
                                           if (GOLDEN / v / f"{n}-checkpoint").is_dir()])
def test_golden_image_and_speech_checkpoints_compute_what_they_computed(version, name):
    torch = pytest.importorskip("torch")
    model = checkpoint.load(GOLDEN / version / f"{name}-checkpoint").eval()
    data = recorded(version, name)
    with torch.no_grad():
        if name == "vit":
            out = model(pixel_values=torch.from_numpy(data["pixel_values"]))
        else:
            out = model(torch.from_numpy(data["waveforms"]), torch.from_numpy(data["lengths"]))
    for key, value in out.items():
        assert_close(value.numpy(), data[f"checkpoint.{key}"], ATOL["plain"], key)


@pytest.mark.parametrize("version, name", golden_bundles())
def test_every_golden_manifest_round_trips(version, name):
    original = json.loads((GOLDEN / version / name / "manifest.json").read_text())
    again = read_manifest(GOLDEN / version / name).to_json()
    if original["format_version"] == 1:
        assert again.pop("kind") in (PLAIN, CACHED_DECODER, SEQ2SEQ)
    assert again == original  # every record keeps every field, typed or not


def test_a_format_1_manifest_is_rewritten_at_this_version(tmp_path):
    assert Manifest.from_json(read_manifest(GOLDEN / "v1" / "seq2seq").to_json()).cache.encoder == "encoder.onnx"
    copy = shutil.copytree(GOLDEN / "v1" / "seq2seq", tmp_path / "s")
    write_manifest(copy, read_manifest(copy))  # a rewrite is this version's format, with the kind
    data = json.loads((copy / "manifest.json").read_text())
    assert (data["format_version"], data["kind"]) == (FORMAT_VERSION, SEQ2SEQ)
    assert runtime.load(copy).generate([[5, 6]], max_new_tokens=2).token_ids


def _copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    path = dst / ("manifest.json" if (dst / "manifest.json").is_file() else "config.json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize("version, message", [
    (FORMAT_VERSION + 1, f"was written by a newer edgeformer \\(format version {FORMAT_VERSION + 1}\\); "
                         f"this one reads up to {FORMAT_VERSION}"),
    (0, "has format_version 0; this edgeformer reads versions 1, 2, 3, 4"),
    ("2", "has format_version '2'"),
])
def test_unknown_bundle_versions_are_refused_in_one_line(tmp_path, version, message):
    bundle = _copy(GOLDEN / "v1" / "plain", tmp_path / "b", lambda d: d.update(format_version=version))
    with pytest.raises(BundleError, match=message) as err:
        runtime.load(bundle, verify=False)
    assert "\n" not in str(err.value)


def test_an_unknown_bundle_kind_is_refused(tmp_path):
    bundle = _copy(GOLDEN / "v1" / "plain", tmp_path / "b", lambda d: d.update(format_version=2, kind="diffusion"))
    with pytest.raises(BundleError, match="of kind 'diffusion'; this edgeformer knows: plain, cached-decoder, seq2seq, streaming-speech"):
        runtime.load(bundle, verify=False)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="edgeformer.checkpoint", format_version=checkpoint.FORMAT_VERSION + 1),
     f"was written by a newer edgeformer \\(format version {checkpoint.FORMAT_VERSION + 1}\\); "
     f"this one reads up to {checkpoint.FORMAT_VERSION}"),
    (lambda d: d.update(format="edgeformer.checkpoint", format_version=0), "has format_version 0; this edgeformer reads"),
    (lambda d: d.update(format="something.else", format_version=1), "has format 'something.else'"),
])
def test_unknown_checkpoint_versions_are_refused_in_one_line(tmp_path, edit, message):
    ckpt = _copy(GOLDEN / "v1" / "checkpoint", tmp_path / "c", edit)
    with pytest.raises(CheckpointError, match=message) as err:
        checkpoint.read_config(ckpt)
    assert "\n" not in str(err.value)


def test_a_newer_checkpoint_is_refused_with_the_version_not_its_fields(tmp_path):
    def newer(d):  # a field this edgeformer does not know, in a newer format
        d.update(format="edgeformer.checkpoint", format_version=checkpoint.FORMAT_VERSION + 1, rope_scaling=2.0)

    ckpt = _copy(GOLDEN / "v1" / "checkpoint", tmp_path / "c", newer)
    with pytest.raises(CheckpointError, match="newer edgeformer"):
        checkpoint.load(ckpt)


def test_checkpoints_are_written_with_their_format(tmp_path):
    model = checkpoint.load(GOLDEN / "v1" / "checkpoint")
    checkpoint.save(model, tmp_path / "c")
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (config["format"], config["format_version"]) == (checkpoint.FORMAT, checkpoint.FORMAT_VERSION)
    assert checkpoint.read_config(tmp_path / "c") == model.cfg


def test_seq2seq_encoder_inputs_are_validated():
    model = runtime.load(GOLDEN / "v1" / "seq2seq")
    encoder = model.graph("encoder")
    ids = np.array([[3, 4, 5]])
    with pytest.raises(InputError, match="input_ids has dtype float32; expected int64"):
        encoder({"input_ids": ids.astype(np.float32), "attention_mask": np.ones_like(ids)})
    with pytest.raises(InputError, match="input_ids has value 300"):
        encoder({"input_ids": np.array([[300]]), "attention_mask": np.ones((1, 1), np.int64)})
    with pytest.raises(InputError, match="unknown input 'position_ids'"):
        encoder({"input_ids": ids, "position_ids": ids})
