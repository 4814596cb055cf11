"""ViT training on the digits task, export with fused attention, classify_images and `run --image`, int8 under a budget."""

import json

import numpy as np
import onnx
import pytest
import torch

from edgeformer import runtime
from edgeformer.export.checks import op_counts
from edgeformer.modeling.training.vision import augment, digits, pixel_values
from edgeformer.runtime.errors import InputError

from .test_cli import assert_bad_input, cli


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """train (3 epochs of the tiny preset) -> export, through the CLI."""
    d = tmp_path_factory.mktemp("vit")
    cli("train", "--arch", "vit", "--task", "digits", "--epochs", "3", "--lr", "3e-3", "--out", d / "ckpt",
        "--json", d / "train.json")
    proc = cli("export", d / "ckpt", "--out", d / "bundle")
    assert "parity passed" in proc.stdout
    return d, json.loads((d / "train.json").read_text())["history"]


def test_digits_task_is_the_real_data_split_per_class():
    d = digits()
    assert d.train_images.shape == (1438, 1, 8, 8) and d.eval_images.shape == (359, 1, 8, 8)
    assert d.train_images.dtype == np.uint8 and d.train_images.max() == 255
    assert np.bincount(d.eval_labels).min() >= 35  # every digit held out, about 20% each


def test_augmentation_keeps_size_and_moves_pixels():
    x = pixel_values(torch.from_numpy(digits().train_images[:16]))
    g = torch.Generator().manual_seed(0)
    y = augment(x, g)
    assert y.shape == x.shape and y.min() >= -1.0 - 1e-5 and y.max() <= 1.0 + 1e-5
    assert (y - x).abs().mean() > 0.02  # it changes images
    assert torch.equal(augment(x, g, degrees=0, scale=0, shift=0), x)  # and is the identity at zero strength


def test_training_learns_digits(vit):
    _, history = vit
    assert len(history) == 3
    assert history[-1]["eval_accuracy"] > 0.5  # chance is 0.1; 40 epochs reach 0.97 (README)


def test_export_has_one_fused_attention_per_layer_and_passed_parity(vit):
    d, _ = vit
    counts = op_counts(onnx.load(str(d / "bundle" / "model.onnx")))
    manifest = runtime.load(d / "bundle").manifest
    assert counts["Attention"] == manifest.config["n_layers"] == 2
    assert manifest.parity.passed and manifest.parity.atol == 1e-4
    assert manifest.inputs[0].name == "pixel_values" and manifest.inputs[0].shape == ("batch", 1, 8, 8)


def test_classify_images_uint8_hwc_float_chw_and_resize(vit):
    d, _ = vit
    model = runtime.load(d / "bundle")
    data = digits()
    images = data.eval_images[:40]  # (N, 1, 8, 8) uint8
    chw = model.classify_images(images, layout="CHW")
    hwc = model.classify_images(images.transpose(0, 2, 3, 1), layout="HWC")
    gray = model.classify_images(list(images[:, 0]))  # 2-D images of a one-channel model
    floats = model.classify_images(images.astype(np.float32) / 255.0, layout="CHW")
    np.testing.assert_allclose(chw.probabilities, hwc.probabilities, atol=1e-6)
    np.testing.assert_allclose(chw.probabilities, gray.probabilities, atol=1e-6)
    np.testing.assert_allclose(chw.probabilities, floats.probabilities, atol=1e-5)
    logits = model({"pixel_values": pixel_values(torch.from_numpy(images)).numpy()})["logits"]
    assert chw.labels == [str(k) for k in logits.argmax(-1)]
    assert np.mean(np.array(chw.labels) == data.eval_labels[:40].astype(str)) > 0.5
    stacked = model.classify_images(images[:3, 0])  # (N, H, W): a stack of grayscale images for a 1-channel model
    np.testing.assert_allclose(stacked.probabilities, chw.probabilities[:3], atol=1e-6)
    assert len(model.classify_images(images[:1, 0]).labels) == 1  # (1, 8, 8) is one grayscale image, not CHW
    big = np.kron(images[:4, 0], np.ones((2, 2), dtype=np.uint8))  # 16x16, each pixel doubled
    assert len(model.classify_images(list(big), resize=True).labels) == 4


@pytest.mark.parametrize("images, kwargs, message", [
    (np.zeros((8, 8, 3), np.uint8), {}, "has 3 channels in HWC layout"),
    (np.zeros((16, 16), np.uint8), {}, "this model reads 8x8 images (pass resize=True"),
    (np.full((8, 8), 2.0, np.float32), {}, "expected float pixels in [0, 1]"),
    (np.full((8, 8), np.nan, np.float32), {}, "NaN or infinite"),
    (np.zeros((8, 8), np.int32), {}, "expected uint8 (0-255) or float"),
    (np.zeros((8, 8), np.uint8), {"layout": "WHC"}, "expected one of: HWC, CHW"),
    ([], {}, "no images given"),
])
def test_classify_images_refuses_bad_images_in_one_line(vit, images, kwargs, message):
    model = runtime.load(vit[0] / "bundle")
    with pytest.raises(InputError, match=None) as e:
        model.classify_images(images, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_run_image_file_and_bad_files(vit, tmp_path):
    from PIL import Image

    d, _ = vit
    data = digits()
    Image.fromarray(data.eval_images[0, 0]).save(tmp_path / "digit.png")
    Image.fromarray(np.repeat(data.eval_images[1, 0][..., None], 3, -1)).save(tmp_path / "rgb.png")  # converted to gray
    proc = cli("run", d / "bundle", "--image", tmp_path / "digit.png", "--image", tmp_path / "rgb.png", "--json", "-")
    out = json.loads(proc.stdout)
    model = runtime.load(d / "bundle")
    assert out["labels"] == model.classify_images([data.eval_images[0, 0], data.eval_images[1, 0]]).labels
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "big.png")
    assert_bad_input(cli("run", d / "bundle", "--image", tmp_path / "big.png", ok=False), "(pass resize=True, or --resize")
    assert cli("run", d / "bundle", "--image", tmp_path / "big.png", "--resize").returncode == 0
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert_bad_input(cli("run", d / "bundle", "--image", tmp_path / "bad.png", ok=False), "cannot read")
    assert_bad_input(cli("run", d / "bundle", "--image", tmp_path / "digit.png", "--ids", "1 2", ok=False),
                     "--image/--audio take no other inputs")


def test_int8_quantization_keeps_accuracy_within_budget(vit):
    d, _ = vit
    proc = cli("quantize", d / "bundle", "--out", d / "int8", "--recipe", "int8-dynamic", "--max-drop", "0.02",
               "--json", d / "q.json")
    result = json.loads((d / "q.json").read_text())
    fid = result["fidelity"]
    assert fid["metric"] == "accuracy" and fid["drop"] <= 0.02 and result["passed"], proc.stdout
    manifest = runtime.load(d / "int8").manifest
    assert manifest.quantization.recipe == "int8-dynamic" and manifest.parity.max_drop == 0.02
    proc = cli("parity", d / "int8", "--reference", d / "ckpt")
    assert "parity passed (quantized): accuracy" in proc.stdout


def test_distill_a_smaller_vit_and_bad_options(vit, tmp_path):
    d, _ = vit
    proc = cli("distill", "--teacher", d / "ckpt", "--student", "tiny", "--layers", "1", "--epochs", "1",
               "--steps-per-epoch", "5", "--out", tmp_path / "student", "--json", tmp_path / "d.json")
    result = json.loads((tmp_path / "d.json").read_text())["result"]
    assert result["metric"] == "accuracy" and 0.0 <= result["student_metric"] <= 1.0 and "retention" in proc.stdout
    words = " ".join(proc.stdout.split())  # the table's title wraps where the temporary paths are long
    assert "distillation report" in words and "images, same run" in words  # the report text students get
    record = json.loads((tmp_path / "student" / "distillation.json").read_text())
    assert record["teacher"]["parameters"] > json.loads((tmp_path / "student" / "training.json").read_text())["parameters"]
    assert_bad_input(cli("distill", "--teacher", d / "ckpt", "--student", "tiny", "--hidden-loss", "--out",
                         tmp_path / "s2", ok=False), "apply to text teachers only")
    (tmp_path / "t.txt").write_text("a\n")
    assert_bad_input(cli("train", "--arch", "vit", "--data", tmp_path / "t.txt", "--out", tmp_path / "x", ok=False),
                     "--arch vit trains on a built-in image task")


def test_train_defaults_are_the_tasks_and_flags_win(tmp_path):
    """`train --arch vit` without --lr trains at the task's 3e-3 (40 epochs unless --epochs says otherwise);
    an --lr equal to the generic default (1e-3) is the user's and is kept."""
    recorded = {}
    for name, flags in [("task", ["--epochs", "1"]), ("user", ["--epochs", "1", "--lr", "0.001", "--batch-size", "64"])]:
        cli("train", "--arch", "vit", "--task", "digits", *flags, "--out", tmp_path / name)
        recorded[name] = json.loads((tmp_path / name / "training.json").read_text())
    task, user = recorded["task"], recorded["user"]
    assert task["preset"] == "tiny" and (task["train_config"]["epochs"], task["train_config"]["lr"]) == (1, 3e-3)
    assert task["train_config"]["batch_size"] == 32
    assert (user["train_config"]["lr"], user["train_config"]["batch_size"]) == (1e-3, 64)
