"""The one coordinate-convention layer, shared by rewards, data loading and evaluation.

Ground truth is kept in pixels of the original image. Models answer in one of three conventions:

- ``norm1000``: integers 0..1000 relative to the image (Qwen2-VL, Qwen3-VL);
- ``pixels``: absolute pixels of the image *as the processor resized it* (Qwen2.5-VL), whose
  size is ``model_image_size`` (see :func:`model_input_size`);
- ``norm1``: floats 0..1 relative to the image.

IoU is invariant under per-axis scaling, so scoring converts the answer to original pixels.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

CoordFormat = Literal["norm1000", "pixels", "norm1"]
COORD_FORMATS: tuple[str, ...] = ("norm1000", "pixels", "norm1")

# Qwen processors' defaults: factor = patch_size * merge_size.
QWEN_FACTOR = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32}
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 14 * 14 * 4 * 1280


def smart_resize(
    height: int, width: int, factor: int = 28,
    min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen's resize rule, (height, width): multiples of ``factor`` within the pixel budget.

    This is transformers' own ``smart_resize`` (imported lazily to keep ``rewards`` light).
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    return hf_smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def model_input_size(
    image_size: Sequence[int], factor: int = 28,
    min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """``[width, height]`` of an image of ``image_size`` after the Qwen processor resized it."""
    width, height = image_size
    new_h, new_w = smart_resize(int(height), int(width), factor, min_pixels, max_pixels)
    return new_w, new_h


def _scale(
    coord_format: str, image_size: Sequence[float], model_image_size: Sequence[float] | None
) -> np.ndarray:
    """Per-axis factors that take answer coordinates to original-image pixels, as (sx, sy, sx, sy)."""
    width, height = float(image_size[0]), float(image_size[1])
    if coord_format == "norm1000":
        sx, sy = width / 1000.0, height / 1000.0
    elif coord_format == "norm1":
        sx, sy = width, height
    elif coord_format == "pixels":
        mw, mh = model_image_size if model_image_size is not None else (width, height)
        sx, sy = width / float(mw), height / float(mh)
    else:
        raise ValueError(f"coord_format must be one of {COORD_FORMATS}, got {coord_format!r}")
    return np.array([sx, sy, sx, sy])


def to_image_pixels(
    boxes: np.ndarray, coord_format: str, image_size: Sequence[float],
    model_image_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Answer boxes (N, 4) in ``coord_format`` -> pixels of the original image."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * _scale(coord_format, image_size, model_image_size)


def from_image_pixels(
    boxes: np.ndarray, coord_format: str, image_size: Sequence[float],
    model_image_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Original-image pixel boxes (N, 4) -> ``coord_format`` (unrounded)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / _scale(coord_format, image_size, model_image_size)
