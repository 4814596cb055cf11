import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnxruntime as ort
import pytest

from edgeformer import runtime
from edgeformer.runtime import BundleError, EdgeformerError, InputError
from edgeformer.runtime.inputs import manifest_inputs
from edgeformer.runtime.model import session_options


def test_runtime_and_run_command_import_no_torch(encoder_bundle):
    code = (
        "import sys\n"
        "from edgeformer import runtime\n"
        "from edgeformer.cli.main import cli\n"
        f"m = runtime.load({str(encoder_bundle.path)!r})\n"
        "m(input_ids=[[1, 2, 3]])\n"
        f"cli(['run', {str(encoder_bundle.path)!r}, '--ids', '4 5 6'], standalone_mode=False)\n"
        "bad = [n for n in ('torch', 'onnx', 'onnxscript', 'safetensors') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "row 0:" in proc.stdout


def test_outputs_are_named_numpy_arrays(encoder_bundle):
    model = runtime.load(encoder_bundle.path)
    feeds = manifest_inputs(model.manifest, batch=3, seq=11)
    out = model(feeds)
    assert list(out) == ["logits", "last_hidden_state"]
    assert out["logits"].shape == (3, 3) and out["logits"].dtype == np.float32
    assert out["last_hidden_state"].shape == (3, 11, 32)


def test_missing_mask_means_no_padding_and_other_int_types_are_accepted(encoder_bundle):
    model = runtime.load(encoder_bundle.path)
    ids = np.array([[5, 6, 7, 8]])
    full = model(input_ids=ids, attention_mask=np.ones_like(ids))["logits"]
    np.testing.assert_array_equal(model(input_ids=ids)["logits"], full)
    np.testing.assert_array_equal(model(input_ids=ids.astype(np.int32), attention_mask=np.ones((1, 4), bool))["logits"], full)


@pytest.mark.parametrize("feeds, message", [
    (dict(input_ids=[[1, 2]], mask=[[1, 1]]), "unknown input 'mask'; this model takes: input_ids, attention_mask"),
    (dict(attention_mask=[[1, 1]]), "missing input 'input_ids'"),
    (dict(input_ids=[[1.0, 2.0]]), "input_ids has dtype float64; expected int64"),
    (dict(input_ids=[1, 2, 3]), r"input_ids has rank 1 \(shape \(3,\)\); expected rank 2 \(batch, seq\)"),
    (dict(input_ids=np.zeros((1, 65), int)), "input_ids has seq=65; this model accepts at most 64"),
    (dict(input_ids=np.zeros((1, 0), int)), "input_ids has seq=0; expected at least 1"),
    (dict(input_ids=[[1, 2, 300]]), r"input_ids has value 300 at \[0, 2\]; expected values in \[0, 2\d\d\]"),
    (dict(input_ids=[[1, -1]]), r"input_ids has value -1 at \[0, 1\]"),
    (dict(input_ids=[[1, 2]], attention_mask=[[1, 2]]), r"attention_mask has value 2 at \[0, 1\]; expected values in \[0, 1\]"),
    (dict(input_ids=[[1, 2, 3]], attention_mask=[[1, 1]]), "attention_mask has seq=2 but input_ids has seq=3; they must agree"),
])
def test_bad_inputs_get_one_clear_error(encoder_bundle, feeds, message):
    model = runtime.load(encoder_bundle.path)
    with pytest.raises(InputError, match=message) as err:
        model(feeds)
    assert "\n" not in str(err.value)


def copy_bundle(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_tampered_file_is_refused_by_name(tmp_path, encoder_bundle):
    b = copy_bundle(encoder_bundle.path, tmp_path / "b")
    original = (b / "model.onnx").read_bytes()
    data = bytearray(original)
    data[-10] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.onnx does not match the sha256 in the manifest"):
        runtime.load(b)
    (b / "model.onnx").write_bytes(original)
    runtime.load(b)
    (b / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer.json is listed in the manifest but missing"):
        runtime.load(b)


@pytest.mark.parametrize("edit, message", [
    (lambda m: "{not json", "is not valid JSON"),
    (lambda m: json.dumps({**m, "format": "other"}), "is not an edgeformer manifest"),
    (lambda m: json.dumps({**m, "format_version": 99}), r"was written by a newer edgeformer \(format version 99\); this one reads up to 4"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "inputs"}), r"inputs is None; expected a value \(the field is required\)"),
])
def test_corrupt_manifest_is_refused(tmp_path, encoder_bundle, edit, message):
    b = copy_bundle(encoder_bundle.path, tmp_path / "b")
    manifest = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(edit(manifest))
    with pytest.raises(BundleError, match=message):
        runtime.load(b)


def test_missing_bundle_and_missing_manifest(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        runtime.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="has no manifest.json"):
        runtime.load(tmp_path / "empty")


def test_unknown_provider_is_an_error(encoder_bundle):
    with pytest.raises(EdgeformerError, match="unknown execution provider 'tpu'"):
        runtime.load(encoder_bundle.path, providers=["tpu"])


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="tests the fallback on a CPU-only onnxruntime")
def test_unavailable_provider_falls_back_and_says_so(encoder_bundle):
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider is not available"):
        model = runtime.load(encoder_bundle.path, providers=["cuda"])
    assert model.providers == ["CPUExecutionProvider"]
    assert any("running on CPUExecutionProvider" in n for n in model.notes)
    assert model(input_ids=[[1, 2]])["logits"].shape == (1, 3)


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu and an NVIDIA GPU (this machine has neither)")
def test_cuda_provider_runs_with_parity(encoder_bundle):
    cpu = runtime.load(encoder_bundle.path)
    gpu = runtime.load(encoder_bundle.path, providers=["cuda"])
    assert gpu.providers[0] == "CUDAExecutionProvider"
    feeds = manifest_inputs(cpu.manifest, batch=2, seq=20)
    np.testing.assert_allclose(gpu(feeds)["logits"], cpu(feeds)["logits"], atol=1e-3)


def test_cpu_default_has_no_warning(encoder_bundle):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = runtime.load(encoder_bundle.path)
    assert model.providers == ["CPUExecutionProvider"] and model.notes == []


def test_spinning_switch_reaches_the_session():
    assert session_options(spin=False).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(spin=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert session_options(threads=1).intra_op_num_threads == 1


def test_bundles_that_generate_spin_unless_told_not_to(encoder_bundle, cached_decoder):
    def spinning(model) -> set[str]:
        return {g.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
                for g in model.graphs.values()}

    assert spinning(runtime.load(encoder_bundle.path)) == {"0"}
    assert spinning(runtime.load(cached_decoder[1].path)) == {"1"}  # decode steps: many tiny kernels
    assert spinning(runtime.load(cached_decoder[1].path, spin=False)) == {"0"}
    assert spinning(runtime.load(encoder_bundle.path, spin=True)) == {"1"}


def test_padded_inputs_match_unpadded(encoder_bundle):
    """Through the runtime alone: a padded row gives the same logits as the row by itself."""
    model = runtime.load(encoder_bundle.path)
    ids = np.array([[5, 9, 12, 40, 41, 42], [7, 8, 9, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    batch = model(input_ids=ids, attention_mask=mask)["logits"]
    alone = model(input_ids=ids[1:, :3])["logits"]
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-5)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_property_each_padded_row_equals_the_row_alone(decoder_bundle, data):
    """For any batch of right-padded rows, each row's logits at real positions equal the row run alone."""
    model = runtime.load(decoder_bundle.path)
    vocab = model.manifest.config["vocab_size"]
    lengths = data.draw(st.lists(st.integers(1, 64), min_size=1, max_size=4), label="lengths")
    rows = [data.draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n)) for n in lengths]
    T = max(lengths)
    ids = np.zeros((len(rows), T), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    batch = model(input_ids=ids, attention_mask=mask)["logits"]
    for i, r in enumerate(rows):
        alone = model(input_ids=np.array([r]))["logits"][0]
        np.testing.assert_allclose(batch[i, : len(r)], alone, atol=1e-4)
