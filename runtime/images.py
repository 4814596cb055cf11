"""Images into an image-classification bundle (a ViT), without PyTorch: `Model.classify_images`.

Images are uint8 (0-255) or floating point (0.0-1.0) arrays, laid out HWC (height, width,
channels: what image files decode to) or CHW (PyTorch's order), as the caller states. They come
as one array (one image, or a stacked batch with the images on the first axis) or a list or
tuple of arrays; generators and other one-shot iterators are refused, as for texts. A one-channel
model also takes 2-D (H, W) images and (N, H, W) stacks of them (scikit-learn's digits): a 3-D
array is such a stack when the axis its layout names as channels is not 1 and either its images
are the model's size or that axis is no colour image's (3 or 4); else it is one image. Every image is checked
(layout, channels, value range, size, pixel count) and refused in one line when it does not fit;
images of another size are resized (bilinear) only when the caller asks. No image of more than
MAX_IMAGE_PIXELS is decoded or resized: an image file's header is read first, and an array's
shape is checked before any copy. Pixels become pixel_values = (pixels - 0.5) / 0.5, the ViT
image processor's normalisation that training uses too (modeling/training/vision.py).
"""

from __future__ import annotations

import warnings
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


def as_image_list(images, layout: str = "HWC", channels: int = 0, side: int = 0) -> list[np.ndarray]:
    """One image (2-D or 3-D array), a stacked batch (4-D array, or 3-D (N, H, W) for a one-channel
    model: see `is_gray_stack`) or a list or tuple of images -> a list of arrays; anything else is
    refused in one line."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4 or is_gray_stack(images, layout, channels, side):
            if len(images) == 0:
                raise InputError(f"images have shape {images.shape}: no images given; expected at least one")
            return list(images)
        if images.ndim in (2, 3):
            return [images]
        raise InputError(f"images have shape {images.shape}; expected one image (H, W[, C]) or a batch (N, ...)")
    if not isinstance(images, (list, tuple)):
        one_shot = " (read once: pass a list)" if hasattr(images, "__next__") else ""
        raise InputError(f"images of type {type(images).__name__}{one_shot}; expected an image array, a stacked batch, "
                         "or a list of image arrays")
    if not images:
        raise InputError("no images given; expected at least one")
    out = []
    for i, image in enumerate(images):
        try:
            arr = np.asarray(image)
        except (ValueError, TypeError, OverflowError):  # ragged nested lists, objects numpy cannot hold
            raise InputError(f"image {i} has rows of different lengths or values numpy cannot hold; expected an "
                             "array of pixels") from None
        if arr.dtype.kind in "OSUV" or arr.ndim == 0:
            raise InputError(f"image {i} is of type {type(image).__name__}; expected an array of pixels (uint8 0-255 or "
                             "float 0.0-1.0)")
        out.append(arr)
    return out


def is_gray_stack(images: np.ndarray, layout: str, channels: int, side: int) -> bool:
    """Whether a 3-D array for a one-channel model is (N, H, W) grayscale images rather than one image:
    its channel axis (by `layout`) is not 1, and its last two axes are the model's image size, or
    (for images to be resized) the channel axis is no colour image's (3 or 4)."""
    if images.ndim != 3 or channels != 1:
        return False
    channel_axis = images.shape[0 if layout == "CHW" else -1]
    return channel_axis != 1 and (images.shape[1:] == (side, side) or channel_axis not in (3, 4))


def check_image(image: np.ndarray, i: int, layout: str, channels: int) -> np.ndarray:
    """One image -> a (C, H, W) view of it, its rank, channels, dtype, pixel count and values checked
    (nothing is copied, so a huge image is refused before it costs memory)."""
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
    chw = image if layout == "CHW" else image.transpose(2, 0, 1)
    check_pixel_count(chw.shape[1], chw.shape[2], f"image {i}")
    if image.dtype.kind == "f":
        if not np.isfinite(chw).all():
            raise InputError(f"image {i} has NaN or infinite values; expected pixels in [0, 1]")
        lo, hi = (float(chw.min()), float(chw.max())) if chw.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"image {i} has float values from {lo:.3g} to {hi:.3g}; "
                             "expected float pixels in [0, 1] (or uint8 0-255)")
    elif image.dtype != np.uint8:
        raise InputError(f"image {i} has dtype {image.dtype}; expected uint8 (0-255) or float (0.0-1.0)")
    return chw


def check_pixel_count(height: int, width: int, what: str) -> None:
    """Refuse an image of more than MAX_IMAGE_PIXELS before it is decoded, converted or resized."""
    if height * width > MAX_IMAGE_PIXELS:
        raise InputError(f"{what} is {height}x{width} (HxW), {height * width:,} pixels; edgeformer reads images of at "
                         f"most {MAX_IMAGE_PIXELS:,} pixels (downscale it first)")
    if height < 1 or width < 1:
        raise InputError(f"{what} is {height}x{width} (HxW): it has no pixels")


def to_unit(chw: np.ndarray) -> np.ndarray:
    """Checked (C, H, W) pixels -> float32 in [0, 1]."""
    return chw.astype(np.float32) / np.float32(255.0) if chw.dtype == np.uint8 else chw.astype(np.float32)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) uint8 or [0, 1] float -> float32 (C, size, size) in [0, 1], bilinear with half-pixel centres
    (PIL's and torchvision's convention)."""
    _, H, W = image.shape

    def coords(n_in: int):
        x = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(x).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (x - lo).astype(np.float32)

    y0, y1, wy = coords(H)
    x0, x1, wx = coords(W)
    # the rows and columns it reads are gathered before any arithmetic: a large image costs (C, size, W), not a copy
    rows = to_unit(image[:, y0]) * (1 - wy)[None, :, None] + to_unit(image[:, y1]) * wy[None, :, None]  # (C, size, W)
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def image_pixel_values(model: "BundleModel", images, layout: str = "HWC", resize: bool = False) -> np.ndarray:
    """Images -> the (N, C, S, S) float32 pixel_values the bundle reads."""
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r}; expected one of: {', '.join(LAYOUTS)}")
    side, channels = image_geometry(model)
    checked = []
    for i, image in enumerate(as_image_list(images, layout, channels, side)):
        chw = check_image(image, i, layout, channels)
        if chw.shape[1:] != (side, side) and not resize:
            raise InputError(f"image {i} is {chw.shape[1]}x{chw.shape[2]} (HxW); this model reads {side}x{side} "
                             "images (pass resize=True, or --resize, to resize it)")
        checked.append(chw)  # every image checked before any is converted
    out = [to_unit(chw) if chw.shape[1:] == (side, side) else resize_bilinear(chw, side) for chw in checked]
    return ((np.stack(out) - PIXEL_MEAN) / PIXEL_STD).astype(np.float32)


def classify_images(model: "BundleModel", images, layout: str = "HWC", resize: bool = False,
                    batch_size: int = 64) -> ImageClassification:
    """Labels and probabilities for `images` (see the module docstring for what is accepted)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; expected a positive integer")
    pixels = image_pixel_values(model, images, layout, resize)
    logits = np.concatenate([model({"pixel_values": pixels[i : i + batch_size]})["logits"]
                             for i in range(0, len(pixels), batch_size)])
    p = softmax(logits.astype(np.float64))
    names = model.manifest.model.labels or [str(i) for i in range(p.shape[-1])]
    return ImageClassification([names[k] for k in p.argmax(-1)], p, list(names))


def read_image_file(path) -> np.ndarray:
    """A PNG, JPEG, GIF (first frame) or any format Pillow reads, as a uint8 array (H, W) or (H, W, 3);
    needs the optional Pillow package. The header's size is checked against MAX_IMAGE_PIXELS before
    the pixels are decoded; a file Pillow cannot decode is refused in one line of our words."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EdgeformerError("reading image files needs Pillow: pip install 'edgeformer[images]'") from None
    name = shown_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: the size is judged below
            im = Image.open(path)
        with im:
            check_pixel_count(im.size[1], im.size[0], f"image file {name}")
            im.load()
            mode = "L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            image = np.asarray(im.convert(mode))
    except EdgeformerError:
        raise
    except FileNotFoundError:
        raise EdgeformerError(f"image file {name} does not exist") from None
    except IsADirectoryError:
        raise EdgeformerError(f"image file {name} is a directory; expected an image file") from None
    except UnidentifiedImageError:
        raise EdgeformerError(f"cannot read {name} as an image: not a format Pillow reads (PNG, JPEG, GIF, BMP, "
                              "TIFF, WebP, ...)") from None
    except Image.DecompressionBombError:  # past Pillow's own bound, which is above ours: checked for safety
        raise EdgeformerError(f"image file {name} has more than {MAX_IMAGE_PIXELS:,} pixels; edgeformer reads images "
                              "of at most that many (downscale it first)") from None
    except MemoryError:
        raise EdgeformerError(f"image file {name} does not fit in memory when decoded") from None
    except OSError as e:
        reason = "it is truncated or corrupt" if not e.strerror else e.strerror.lower()
        raise EdgeformerError(f"cannot read {name} as an image: {reason}") from None
    except Exception:  # the decoders of a dozen formats raise what they raise on crafted bytes
        raise EdgeformerError(f"cannot read {name} as an image: it is corrupt (the decoder refused its data)") from None
    return image


def shown_path(path) -> str:
    """A path as it goes into a one-line message: as is when printable, else quoted with escapes."""
    text = str(path)
    return text if text.isprintable() and text else repr(text)


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


MAX_IMAGE_PIXELS = 1 << 27  # 134 million pixels (about 11,600 x 11,600): a 108-megapixel photo fits
