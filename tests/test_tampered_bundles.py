"""Bundles crafted by an attacker or broken by a careless copy: every one is refused in one
BundleError line before ONNX Runtime or the file system outside the bundle is touched."""

import json
import os
import shutil

import pytest

from edgeformer import runtime
from edgeformer.runtime import BundleError
from edgeformer.runtime.artifacts import sha256_file


def copy(bundle, dst):
    shutil.copytree(bundle.path, dst)
    return dst


def edit_manifest(b, change):
    m = json.loads((b / "manifest.json").read_text())
    change(m)
    (b / "manifest.json").write_text(json.dumps(m))


def refused(b, match):
    with pytest.raises(BundleError, match=match) as e:
        runtime.load(b)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.fixture
def bundle(tmp_path, encoder_bundle):
    return copy(encoder_bundle, tmp_path / "b")


def test_a_files_entry_that_climbs_out_is_refused(tmp_path, bundle):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for you")
    entry = {"sha256": sha256_file(secret), "bytes": secret.stat().st_size}
    edit_manifest(bundle, lambda m: m["files"].update({"../secret.txt": entry}))
    refused(bundle, r"names the file '../secret.txt', which leaves the folder")


def test_an_absolute_files_entry_is_refused(tmp_path, bundle):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for you")
    entry = {"sha256": sha256_file(secret), "bytes": secret.stat().st_size}
    edit_manifest(bundle, lambda m: m["files"].update({str(secret): entry}))
    refused(bundle, r"which leaves the folder")


def test_a_graph_symlinked_outside_the_bundle_is_refused(tmp_path, bundle):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle / "model.onnx", outside)
    os.symlink(outside, bundle / "model.onnx")  # same bytes, same hash: only the link gives it away
    refused(bundle, r"model.onnx is a link to .*elsewhere.onnx, outside")


def test_a_symlink_inside_the_bundle_is_followed(tmp_path, bundle):
    shutil.move(bundle / "model.onnx", bundle / "real.onnx")
    os.symlink("real.onnx", bundle / "model.onnx")
    runtime.load(bundle)


def test_a_manifest_symlinked_outside_is_refused(tmp_path, bundle):
    shutil.move(bundle / "manifest.json", tmp_path / "m.json")
    os.symlink(tmp_path / "m.json", bundle / "manifest.json")
    refused(bundle, r"manifest.json is a link to .*, outside")


MALFORMED = [
    (lambda m: m.update(axes=[]), r"axes is \[\]; expected an object"),
    (lambda m: m.update(model=None), r"model is None; expected a value"),
    (lambda m: m.update(files=None), r"files is None; expected a value"),
    (lambda m: m.update(files={"model.onnx": None}), r"files\['model.onnx'\] is a JSON null; expected an object"),
    (lambda m: m["inputs"][0].update(dtype="foo"), r"inputs\[0\].dtype is 'foo'; expected one of float32"),
    (lambda m: m["inputs"][0].update(max="x"), r"inputs\[0\].max is 'x'; expected a finite number"),
    (lambda m: m["inputs"][0].update(shape=None), r"inputs\[0\].shape is None"),
    (lambda m: m.update(inputs="input_ids"), r"inputs is 'input_ids'; expected a non-empty list"),
    (lambda m: m.update(outputs={}), r"outputs is \{\}; expected a non-empty list"),
    (lambda m: m.update(outputs=[]), r"outputs is \[\]; expected a non-empty list"),
    (lambda m: m.update(opset="23"), r"opset is '23'; expected an integer"),
    (lambda m: m["axes"]["seq"].update(max=-1), r"axes.seq.max is -1; expected an integer >= 1"),
    (lambda m: m["model"].update(config=[]), r"model.config is a JSON array; expected an object"),
    (lambda m: m.update(attention=None), r"attention is None"),
    (lambda m: m.update(surprise=1), r"unknown field 'surprise'"),
    (lambda m: m.update(graph=7), r"graph is 7; expected a string"),
    (lambda m: m["files"]["model.onnx"].update(sha256="zz"), r"sha256 is 'zz'; expected 64 lowercase hex"),
    (lambda m: m.update(quantization={}), r"quantization.recipe is None; expected a value"),
    (lambda m: m.update(parity={"passed": "yes"}), r"parity.passed is 'yes'; expected true or false"),
    (lambda m: m["model"].update(cache={"layers": 2}), r"model.cache.heads is None; expected a value"),
    (lambda m: m["model"].update(labels="abc"), r"model.labels is 'abc'; expected a list of strings"),
]


@pytest.mark.parametrize("change, message", MALFORMED)
def test_malformed_manifests_are_refused_naming_the_field(bundle, change, message):
    edit_manifest(bundle, change)
    text = refused(bundle, message)
    assert "__init__" not in text and "positional argument" not in text


def test_deeply_nested_json_is_refused_in_one_line(bundle):
    (bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(bundle, "nested too deeply")


LOOSENED = [
    (lambda m: m["inputs"][0].update(max=10**6), r"input_ids accepts values in \[0, 1000000\]; the model's table holds \[0, 299\]"),
    (lambda m: m["inputs"][0].update(min=-5), r"input_ids accepts values in \[-5, 299\]"),
    (lambda m: m["axes"]["seq"].update(max=10**6), r"axis seq allows up to 1000000 tokens; the model's context is 64"),
    (lambda m: m["axes"]["seq"].pop("max"), r"axis seq allows up to None tokens"),
    (lambda m: m["inputs"][1].update(dtype="int32"), r"attention_mask is int64 in the graph but int32 in the manifest"),
    (lambda m: m["inputs"][1].update(shape=["batch", "seq", "x"]), r"attention_mask has rank 2 in the graph but 3"),
    (lambda m: m["outputs"][0].update(shape=["batch", 7]), r"logits has shape \['batch', 3\] in the graph but \['batch', 7\]"),
    (lambda m: m.update(outputs=m["outputs"][:1]), r"has outputs \['logits', 'last_hidden_state'\] but the manifest declares \['logits'\]"),
]


@pytest.mark.parametrize("change, message", LOOSENED)
def test_bounds_the_graph_or_config_do_not_allow_are_refused(bundle, change, message):
    edit_manifest(bundle, change)
    refused(bundle, message)


def test_a_cache_whose_ids_leave_the_vocabulary_is_refused(tmp_path, cached_decoder):
    b = copy(cached_decoder[1], tmp_path / "c")
    edit_manifest(b, lambda m: m["model"]["cache"].update(pad_id=10**9))
    refused(b, r"model.cache.pad_id is 1000000000; expected a token id below vocab_size 300")
    edit_manifest(b, lambda m: m["model"]["cache"].update(pad_id=0, past=["nope"]))
    refused(b, r"model.cache.past names 'nope', which is not a graph input")


def test_load_of_something_that_is_not_a_path_is_refused():
    for bad in (None, 5, b"bundle", ["a"]):
        with pytest.raises(BundleError, match="expected a folder path"):
            runtime.load(bad)
