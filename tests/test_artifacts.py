"""Output folders: refused before any work when they exist, or when writing them would destroy an input."""

import pytest

from edgeformer.runtime.artifacts import OutputExists, atomic_directory, check_output_dir


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExists, match="already exists; choose another --out or pass --overwrite"):
        check_output_dir(tmp_path / "out")
    check_output_dir(tmp_path / "out", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExists, match="is not a directory"):
        check_output_dir(tmp_path / "file", overwrite=True)


@pytest.mark.parametrize("out", ["src", "src/inner", "."])
def test_output_over_an_input_is_refused_even_with_overwrite(tmp_path, out):
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_text("weights")
    with pytest.raises(OutputExists, match="overlaps the input"):
        check_output_dir(tmp_path / out, overwrite=True, sources=(src,))
    assert (src / "model.safetensors").read_text() == "weights"


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out") as work:
            (work / "half.bin").write_bytes(b"1")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_export_and_quantize_refuse_to_write_over_their_input(encoder_ckpt, encoder_bundle):
    from edgeformer.export import export_bundle
    from edgeformer.quantize import quantize_bundle

    before = sorted(p.name for p in encoder_ckpt.iterdir())
    with pytest.raises(OutputExists, match="overlaps the input"):
        export_bundle(encoder_ckpt, encoder_ckpt, overwrite=True)
    assert sorted(p.name for p in encoder_ckpt.iterdir()) == before
    with pytest.raises(OutputExists, match="overlaps the input"):
        quantize_bundle(encoder_bundle.path, encoder_bundle.path, "int8-dynamic", overwrite=True)
    assert (encoder_bundle.path / "model.onnx").is_file()
