"""Image files: reading, sizing, resizing to the model's pixel budget, and checking boxes.

Pixels are the file's stored pixel grid: EXIF orientation is not applied, so ground-truth boxes
must be drawn on the image as stored (COCO's convention, and what Qwen-VL's own image loading
does). Resized copies carry no EXIF data, so nothing downstream rotates them either.

Every mode becomes 8-bit RGB with the content it shows: 16-bit and 32-bit integer images are scaled
to 8 bits (not clipped), transparency is composited on white (as transformers' ``convert_to_rgb``
does), palette, grayscale and CMYK images are converted by Pillow.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from rft.errors import DataError
from rft.families import family_of

BOX_TOLERANCE = 0.01
"""How far (a fraction of the image side) a ground-truth box may stick out before it is an error;
within it, the box is clipped to the image."""

_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB showing what it shows (module docstring)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I"):  # "I;16", "I;16B", "I" (16-bit PNGs and TIFFs): scale, do not clip
        pixels = np.asarray(image).astype(np.float64)
        peak = pixels.max(initial=0)
        top = 65535.0 if image.mode.startswith("I;16") else 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else 2**32 - 1.0
        image = Image.fromarray(np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":  # floating point: fractions of white when in [0, 1], else 8-bit values
        pixels = np.asarray(image, dtype=np.float64)
        scale = 255.0 if pixels.size and np.nanmax(pixels) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.nan_to_num(pixels * scale), 0, 255).round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def open_image(path: str | Path) -> Image.Image:
    """The decoded image in 8-bit RGB (:func:`to_rgb`); a missing, truncated or corrupt file is a :class:`DataError`."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def resize_to_budget(image: Image.Image, min_pixels: int, max_pixels: int, factor: int,
                     family: str | None = None) -> Image.Image:
    """``image`` resized as the processor of ``family`` (a ``config.model_type``) resizes it
    (:attr:`Family.model_image_size <rft.families.base.Family.model_image_size>`; by default both sides
    multiples of ``factor``, area within [min_pixels, max_pixels]); returned as is when already there.

    Bicubic, as the Qwen-VL image processors resample.
    """
    size = family_of(family).model_image_size(image.size, factor, min_pixels, max_pixels)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def check_box(box: Any, size: Sequence[int], where: str) -> list[float]:
    """A ground-truth ``[x1, y1, x2, y2]`` in pixels of an image of ``size`` = (width, height),
    clipped to the image; raises :class:`DataError` naming ``where`` when it is not 4 finite
    numbers, is inverted or empty, or lies outside the image (beyond :data:`BOX_TOLERANCE`)."""
    numbers = isinstance(box, (list, tuple)) and len(box) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box
    )
    if not numbers:
        raise DataError(f"{where}: box {box!r} is not 4 finite numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1:
        raise DataError(f"{where}: box {list(box)} is inverted (x2 <= x1)")
    if y2 <= y1:
        raise DataError(f"{where}: box {list(box)} is inverted (y2 <= y1)")
    width, height = size
    tx, ty = BOX_TOLERANCE * width, BOX_TOLERANCE * height
    clipped = [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]
    inside = x1 >= -tx and y1 >= -ty and x2 <= width + tx and y2 <= height + ty
    if not inside or clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise DataError(f"{where}: box {list(box)} lies outside the {width}x{height} image")
    return clipped


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
