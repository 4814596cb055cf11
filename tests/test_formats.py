"""Format compatibility: the golden artifacts of every format version this project has written
(tests/golden, made by tests/golden/make_golden.py) still load, validate, run and compute what they
computed when written; unknown and newer versions are refused in one line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.modeling import checkpoint
from edgeformer.modeling.checkpoint import CheckpointError
from edgeformer.runtime.bundle import (CACHED_DECODER, FORMAT_VERSION, PLAIN, SEQ2SEQ, CacheRecord, Manifest,
                                       QuantizationRecord, read_manifest, write_manifest)
from edgeformer.runtime.errors import BundleError, InputError

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name.startswith("v"))
ATOL = {"plain": 1e-5, "int8": 1e-4}  # int8 measured exact (0.0) on the machine that made it


def recorded(version: str, name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / version / f"{name}.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["plain", "int8"])
def test_golden_bundle_runs_and_gives_the_recorded_outputs(version, name):
    model = runtime.load(GOLDEN / version / name)
    assert model.manifest.kind == PLAIN
    data = recorded(version, name)
    out = model({"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]})
    for key, value in out.items():
        np.testing.assert_allclose(value, data[f"out.{key}"], atol=ATOL[name], rtol=0)
    assert model.classify(["the quick brown fox"]).labels[0] in ("a", "b", "c")
    if name == "int8":
        q = model.manifest.quantization
        assert isinstance(q, QuantizationRecord) and q.recipe == "int8-dynamic" and q.measured["batch"] == 1
        assert model.manifest.parity.kind == "budget"


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_cached_decoder_generates_the_recorded_tokens(version):
    model = runtime.load(GOLDEN / version / "cached")
    assert model.manifest.kind == CACHED_DECODER and isinstance(model.manifest.cache, CacheRecord)
    data = recorded(version, "cached")
    got = model.generate([data["prompt_0"].tolist(), data["prompt_1"].tolist()], max_new_tokens=8)
    assert got.token_ids == data["token_ids"].tolist()
    step = {k[len("step."):]: v for k, v in data.items() if k.startswith("step.")}
    for key, value in model(step).items():
        np.testing.assert_allclose(value, data[f"out.{key}"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_seq2seq_encoder_and_generation(version):
    model = runtime.load(GOLDEN / version / "seq2seq")
    assert model.manifest.kind == SEQ2SEQ and [g.name for g in model.manifest.graphs] == ["model", "encoder"]
    data = recorded(version, "seq2seq")
    cross = model.graph("encoder")({"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]})
    for key, value in cross.items():
        np.testing.assert_allclose(value, data[f"encoder.{key}"], atol=1e-5, rtol=0)
    assert model.generate([[3, 4, 5, 6, 7, 8, 9], [200, 1]], max_new_tokens=8).token_ids == data["token_ids"].tolist()


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_checkpoint_loads_and_gives_the_recorded_outputs(version):
    torch = pytest.importorskip("torch")
    model = checkpoint.load(GOLDEN / version / "checkpoint")
    assert checkpoint.load_tokenizer(GOLDEN / version / "checkpoint") is not None
    data = recorded(version, "checkpoint")
    with torch.no_grad():
        out = model(torch.from_numpy(data["input_ids"]), torch.from_numpy(data["attention_mask"]))
    for key, value in out.items():
        np.testing.assert_allclose(value.numpy(), data[f"out.{key}"], atol=1e-5, rtol=0)


def test_a_golden_manifest_round_trips_and_is_rewritten_at_this_version(tmp_path):
    for name in ("plain", "cached", "seq2seq", "int8"):
        original = json.loads((GOLDEN / "v1" / name / "manifest.json").read_text())
        again = read_manifest(GOLDEN / "v1" / name).to_json()
        assert again.pop("kind") in (PLAIN, CACHED_DECODER, SEQ2SEQ)
        assert again == original, name  # every record keeps every field, typed or not
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
    (0, "has format_version 0; this edgeformer reads versions 1, 2"),
    ("2", "has format_version '2'"),
])
def test_unknown_bundle_versions_are_refused_in_one_line(tmp_path, version, message):
    bundle = _copy(GOLDEN / "v1" / "plain", tmp_path / "b", lambda d: d.update(format_version=version))
    with pytest.raises(BundleError, match=message) as err:
        runtime.load(bundle, verify=False)
    assert "\n" not in str(err.value)


def test_an_unknown_bundle_kind_is_refused(tmp_path):
    bundle = _copy(GOLDEN / "v1" / "plain", tmp_path / "b", lambda d: d.update(format_version=2, kind="diffusion"))
    with pytest.raises(BundleError, match="of kind 'diffusion'; this edgeformer knows: plain, cached-decoder, seq2seq"):
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
