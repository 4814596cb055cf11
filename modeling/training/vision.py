"""ViT training: the augmentation of the built-in image task `digits` and the `edgeformer train --arch vit` job.

The images themselves (scikit-learn's 8x8 scans as uint8, a fixed 80/20 split per class) come from
edgeformer.tasks.images, which needs no PyTorch.

The model is the imported ViT's (modeling/models/transformer.py, `image_size` > 0): non-overlapping patches
linearly projected, a learned class token first, learned positions, pre-LayerNorm blocks and a
classifier on the class token. Pixels reach it as the ViT image processor gives them:
pixel_values = (pixels / 255 - 0.5) / 0.5 (runtime/images.py does the same without PyTorch).

Augmentation is what a scanned digit can undergo and stay the same digit: a small rotation
(+-5 degrees), scaling (+-5%) and a shift of up to half a pixel, drawn per image, bilinear. No
flips (a mirrored 2 is not a 2) and no colour changes (one channel). Measured on the tiny preset,
40 epochs, patch 4: 97.2% held-out accuracy with it, 96.9% without (30 epochs); twice as strong
(+-10 degrees, +-10%, one pixel) blurs 8x8 digits too much: 83.8% after 40 epochs (patch 2).
Patches of 4x4 (4 patches + the class token) beat 2x2 (16 + 1) on these tiny images: 97.2% against
90.5% with the same augmentation and 40 epochs.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F

from edgeformer.runtime.artifacts import check_output_dir
from edgeformer.tasks.defaults import task_defaults
from edgeformer.tasks.images import IMAGE_TASKS, ImageData, digits  # noqa: F401  (the data is torch-free)

from edgeformer.modeling.checkpoint import TRAINING_FILE, save
from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.training.data import DataError
from edgeformer.modeling.training.distributed import current as distributed_context
from edgeformer.modeling.training.loop import TrainConfig, TrainResult, fit
from edgeformer.modeling.models.transformer import Transformer

PIXEL_MEAN, PIXEL_STD = 0.5, 0.5  # the ViT image processor's defaults; runtime/images.py uses the same


def pixel_values(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> the float32 pixel_values the model reads."""
    return (images.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD


def augment(x: torch.Tensor, g: torch.Generator, degrees: float = 5.0, scale: float = 0.05, shift: float = 0.5) -> torch.Tensor:
    """A random rotation, scale and shift per image of float (B, C, H, W), bilinear, background = 0 pixels."""
    B, _, H, W = x.shape
    angle = (torch.rand(B, generator=g) * 2 - 1) * math.radians(degrees)
    s = 1.0 + (torch.rand(B, generator=g) * 2 - 1) * scale
    t = (torch.rand(B, 2, generator=g) * 2 - 1) * shift * 2 / torch.tensor([W, H])  # pixels -> [-1, 1] units
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = -PIXEL_MEAN / PIXEL_STD  # a black pixel after normalisation
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


class ImageClassificationTask:
    """Augmented batches of images; cross-entropy; held-out loss and accuracy."""

    def __init__(self, data: ImageData, tc: TrainConfig):
        self.data, self.tc = data, tc
        self.steps = math.ceil(len(data.train_labels) / tc.batch_size)

    def batches(self, g: torch.Generator):
        images = torch.from_numpy(self.data.train_images)
        labels = torch.from_numpy(self.data.train_labels)
        order = torch.randperm(len(labels), generator=g)
        for i in range(0, len(order), self.tc.batch_size):
            idx = order[i : i + self.tc.batch_size]
            yield augment(pixel_values(images[idx]), g), labels[idx]

    @staticmethod
    def loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(pixel_values=x)["logits"], y)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        model.eval()
        dev = next(model.parameters()).device
        x = pixel_values(torch.from_numpy(self.data.eval_images)).to(dev)
        y = torch.from_numpy(self.data.eval_labels).to(dev)
        logits = torch.cat([model(pixel_values=x[i : i + 256])["logits"] for i in range(0, len(y), 256)])
        return {"eval_loss": F.cross_entropy(logits, y).item(), "eval_accuracy": (logits.argmax(-1) == y).float().mean().item()}


def vit_config(preset: str, data: ImageData, patch_size: int = 4, **overrides: Any) -> ModelConfig:
    """A ViT for `data`'s images: the preset's width and depth, class-token pooling, learned positions."""
    _, C, H, W = data.train_images.shape
    if H != W:
        raise ConfigError(f"images of {H}x{W}; a ViT here reads square images")
    fields = dict(arch="encoder", vocab_size=1, image_size=H, patch_size=patch_size, num_channels=C, positional="learned",
                  max_len=(H // patch_size) ** 2 + 1, pooling="cls", num_labels=len(data.labels), labels=list(data.labels))
    return ModelConfig.from_preset(preset, **{**fields, **overrides})


def train_images(model: Transformer, data: ImageData, tc: TrainConfig, progress: bool = True) -> TrainResult:
    torch.manual_seed(tc.seed)
    task = ImageClassificationTask(data, tc)
    return fit(model, lambda runner, x, y: {"loss": task.loss(runner, x, y)}, task.batches, task.steps, tc,
               evaluate=lambda: task.evaluate(model), progress=progress)


def load_image_task(task: str | None, data_file) -> tuple[ImageData, str]:
    if data_file:
        raise DataError("--arch vit trains on a built-in image task (--task digits); --data is for text models")
    name = task or "digits"
    if name not in IMAGE_TASKS:
        raise DataError(f"unknown image task {name!r}; expected one of: {', '.join(IMAGE_TASKS)}")
    return IMAGE_TASKS[name](), name


def train_vit_checkpoint(out, preset: str = "tiny", task: str | None = None, data_file=None, tc: TrainConfig | None = None,
                         overrides: dict[str, Any] | None = None, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """`edgeformer train --arch vit`: a ViT on a built-in image task, written as a checkpoint (tc None: the task's recipe)."""
    tc = tc or TrainConfig(**task_defaults("vit", task, data_file).train_fields())
    check_output_dir(out, overwrite)
    data, name = load_image_task(task, data_file)
    cfg = vit_config(preset, data, **(overrides or {}))
    torch.manual_seed(tc.seed)
    model = Transformer(cfg)
    result = train_images(model, data, tc, progress)
    meta = {"task": name, "arch": "vit", "preset": preset, "train_config": asdict(tc), "history": result.history,
            "seconds": round(result.seconds, 1), "parameters": model.num_parameters()}
    if distributed_context().is_main:
        save(model.cpu(), out, records={TRAINING_FILE: meta}, overwrite=overwrite)
    distributed_context().barrier()
    return result
