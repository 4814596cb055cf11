"""Images into an image-classification bundle (a ViT), without PyTorch: `Model.classify_images`.

Images are uint8 (0-255) or floating point (0.0-1.0) arrays, laid out HWC (height, width,
channels: what image files decode to) or CHW (PyTorch's order), as the caller states; a
one-channel model also takes 2-D (H, W) images. Every image is checked (layout, channels, value
range, size) and refused in one line when it does not fit; images of another size are resized
(bilinear) only when the caller asks. Pixels become pixel_values = (pixels - 0.5) / 0.5, the ViT
image processor's normalisation that training uses too (modeling/training/vision.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .bundle import IMAGE
from .errors import EdgeformerError, InputError
from .postprocess import softmax

if TYPE_CHECKING:
    from .facade import BundleModel

PIXEL_MEAN, PIXEL_STD = 0.5, 0.5
LAYOUTS = ("HWC", "CHW")


@dataclass
class ImageClassification:
    labels: list[str]  # the most probable label of each image
    probabilities: np.ndarray  # (N, num_labels)
    label_names: list[str]


def image_geometry(model: "BundleModel") -> tuple[int, int]:
    """(side, channels) of the images the bundle reads; refuses a bundle that reads no images."""
    cfg = model.manifest.config
    if model.manifest.modality != IMAGE or model.manifest.model.task != "classification":
        raise EdgeformerError(f"bundle {model.bundle.path} is not an image classifier (its task: {model.manifest.model.task})")
    return int(cfg["image_size"]), int(cfg["num_channels"])


def as_image_list(images) -> list[np.ndarray]:
    """One image (2-D or 3-D array), a stacked batch (4-D array) or a sequence of images -> a list."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        if images.ndim in (2, 3):
            return [images]
        raise InputError(f"images have shape {images.shape}; expected one image (H, W[, C]) or a batch (N, ...)")
    out = [np.asarray(im) for im in images]
    if not out:
        raise InputError("no images given; expected at least one")
    return out


def to_chw(image: np.ndarray, i: int, layout: str, channels: int) -> np.ndarray:
    """One image -> float32 (C, H, W) in [0, 1], checking its rank, channels, dtype and values."""
    if image.ndim == 2 and channels == 1:
        image = image[None] if layout == "CHW" else image[..., None]
    if image.ndim != 3:
        raise InputError(f"image {i} has shape {image.shape}; expected {layout} with {channels} channel(s)")
    c = image.shape[0] if layout == "CHW" else image.shape[-1]
    if c != channels:
        other = image.shape[-1] if layout == "CHW" else image.shape[0]
        hint = f" (it looks {'HWC' if layout == 'CHW' else 'CHW'}: pass layout={'HWC' if layout == 'CHW' else 'CHW'!r})" \
            if other == channels else ""
        raise InputError(f"image {i} has {c} channels in {layout} layout (shape {image.shape}); "
                         f"this model reads {channels}-channel images{hint}")
    if image.dtype == np.uint8:
        pixels = image.astype(np.float32) / 255.0
    elif image.dtype.kind == "f":
        pixels = image.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise InputError(f"image {i} has NaN or infinite values; expected pixels in [0, 1]")
        if pixels.size and (pixels.min() < 0.0 or pixels.max() > 1.0):
            raise InputError(f"image {i} has float values from {pixels.min():.3g} to {pixels.max():.3g}; "
                             "expected float pixels in [0, 1] (or uint8 0-255)")
    else:
        raise InputError(f"image {i} has dtype {image.dtype}; expected uint8 (0-255) or float (0.0-1.0)")
    return pixels if layout == "CHW" else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) -> (C, size, size), bilinear with half-pixel centres (PIL's and torchvision's convention)."""
    _, H, W = image.shape

    def coords(n_in: int):
        x = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(x).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (x - lo).astype(np.float32)

    y0, y1, wy = coords(H)
    x0, x1, wx = coords(W)
    rows = image[:, y0] * (1 - wy)[None, :, None] + image[:, y1] * wy[None, :, None]  # (C, size, W)
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def image_pixel_values(model: "BundleModel", images, layout: str = "HWC", resize: bool = False) -> np.ndarray:
    """Images -> the (N, C, S, S) float32 pixel_values the bundle reads."""
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r}; expected one of: {', '.join(LAYOUTS)}")
    side, channels = image_geometry(model)
    out = []
    for i, image in enumerate(as_image_list(images)):
        chw = to_chw(image, i, layout, channels)
        if chw.shape[1:] != (side, side):
            if not resize:
                raise InputError(f"image {i} is {chw.shape[1]}x{chw.shape[2]} (HxW); this model reads {side}x{side} "
                                 "images (pass resize=True, or --resize, to resize it)")
            chw = resize_bilinear(chw, side)
        out.append((chw - PIXEL_MEAN) / PIXEL_STD)
    return np.stack(out).astype(np.float32)


def classify_images(model: "BundleModel", images, layout: str = "HWC", resize: bool = False,
                    batch_size: int = 64) -> ImageClassification:
    """Labels and probabilities for `images` (see the module docstring for what is accepted)."""
    pixels = image_pixel_values(model, images, layout, resize)
    logits = np.concatenate([model({"pixel_values": pixels[i : i + batch_size]})["logits"]
                             for i in range(0, len(pixels), batch_size)])
    p = softmax(logits.astype(np.float64))
    names = model.manifest.model.labels or [str(i) for i in range(p.shape[-1])]
    return ImageClassification([names[k] for k in p.argmax(-1)], p, list(names))


def read_image_file(path) -> np.ndarray:
    """A PNG (or any format Pillow reads) as a uint8 HWC array; needs the optional Pillow package."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EdgeformerError("reading image files needs Pillow: pip install 'edgeformer[images]'") from None
    try:
        with Image.open(path) as im:
            im.load()
            mode = "L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            return np.asarray(im.convert(mode))
    except FileNotFoundError:
        raise EdgeformerError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise EdgeformerError(f"cannot read {path} as an image: {e}") from None


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A decoded HWC file image with the model's channel count: RGB -> gray by ITU-R 601 luma, gray -> RGB repeated."""
    c = image.shape[-1] if image.ndim == 3 else 1
    if c == channels:
        return image
    if channels == 1 and c == 3:
        return np.round(image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    if channels == 3 and c == 1:
        return np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    raise InputError(f"the image has {c} channels; this model reads {channels}")


def files_to_images(paths: Sequence[str], channels: int) -> list[np.ndarray]:
    return [match_channels(read_image_file(p), channels) for p in paths]
