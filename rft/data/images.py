"""Image files: reading, sizing, resizing to the model's pixel budget, and checking boxes.

Pixels are the file's stored pixel grid: EXIF orientation is not applied, so ground-truth boxes
must be drawn on the image as stored (COCO's convention). Resized copies carry no EXIF data.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from rewards.coords import model_input_size
from rft.errors import DataError

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


def open_image(path: str | Path) -> Image.Image:
    """The decoded image in RGB; a missing, truncated or corrupt file is a :class:`DataError`."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def resize_to_budget(image: Image.Image, min_pixels: int, max_pixels: int, factor: int) -> Image.Image:
    """``image`` resized by Qwen's rule (:func:`rewards.coords.smart_resize`): both sides multiples
    of ``factor``, area within [min_pixels, max_pixels]; returned as is when already there.

    Bicubic, as the Qwen image processors resample.
    """
    size = model_input_size(image.size, factor, min_pixels, max_pixels)
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
