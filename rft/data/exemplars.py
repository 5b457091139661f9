"""Exemplars of ``visual_prompt_detection`` rows: the example boxes a prompt shows instead of a name.

A visual-prompt row's ``query`` holds ``exemplars`` (boxes ``[x1, y1, x2, y2]`` in pixels of the
original image, each an instance of the object to find) and ``exemplar``, how the prompt shows them
(:data:`EXEMPLAR_MODES`):

- ``coordinates``: written in the prompt in the model's own box convention (``norm1000`` 0..1000,
  ``pixels`` of the image as the processor resized it, ``norm1``), as its answers are
  (:func:`exemplars_as_written`);
- ``drawn``: outlined on the image the model sees (:data:`OUTLINE_COLOUR`, :data:`OUTLINE_WIDTH`
  pixels of the resized image, just outside the box so the object's own pixels stay as they were;
  :func:`marked_copy`);
- ``crop``: each exemplar cut out of the original image and shown as a further image after the scene,
  resized to the pixel budget like any image (:func:`crop_copies`); the answer's boxes refer to the
  first image, the scene.

The answer is every instance of the object in the image, **the exemplars included** (as T-Rex2
detects the prompted instances too); :func:`check_exemplars` holds rows to that.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from rewards.contract import from_image_pixels
from rewards.matching import box_iou
from rft.data.images import check_box, open_image, resize_to_budget, write_atomic
from rft.errors import DataError
from rft.families import family_of

EXEMPLAR_MODES: tuple[str, ...] = ("coordinates", "drawn", "crop")
"""How a prompt shows its exemplars (the row's ``query["exemplar"]``)."""
DEFAULT_EXEMPLAR = "coordinates"
OUTLINE_COLOUR: tuple[int, int, int] = (255, 0, 255)
"""Magenta: a colour the synthetic shapes never have (``rft.models.tiny.COLOURS``); the prompt names it."""
OUTLINE_WIDTH = 2
"""Pixels of the image the model sees."""
MIN_EXEMPLAR_IOU = 0.5
"""An exemplar must overlap a ground-truth box at least this much (IoU): the answer includes it."""


def exemplar_mode(query: Mapping[str, Any]) -> str:
    """How the prompt shows a row's exemplars (:data:`DEFAULT_EXEMPLAR` when the row does not say)."""
    return query.get("exemplar") or DEFAULT_EXEMPLAR


def check_exemplars(query: Mapping[str, Any], solution: Mapping[str, Any], size: Sequence[int], where: str) -> None:
    """A visual-prompt row's exemplars: one or more boxes inside the image, a known ``exemplar`` mode,
    and each exemplar one of the ground-truth instances (IoU >= :data:`MIN_EXEMPLAR_IOU`)."""
    mode = query.get("exemplar")
    if mode is not None and mode not in EXEMPLAR_MODES:
        raise DataError(f"{where}: query exemplar must be one of {list(EXEMPLAR_MODES)}, got {mode!r}")
    boxes = query.get("exemplars")
    if not isinstance(boxes, list) or not boxes:
        raise DataError(f"{where}: a visual_prompt_detection row needs query exemplars, a non-empty list of "
                        f"[x1, y1, x2, y2] boxes in image pixels, got {boxes!r}")
    exemplars = np.array([check_box(box, size, f"{where} query exemplar {i}") for i, box in enumerate(boxes)])
    truth = solution.get("boxes") or []
    if not truth:
        raise DataError(f"{where}: a visual_prompt_detection row's exemplars are instances in the image, "
                        "so its solution needs their boxes (it has none)")
    overlap = box_iou(exemplars, np.asarray(truth, dtype=np.float64)).max(axis=1)
    for i, value in enumerate(overlap):
        if value < MIN_EXEMPLAR_IOU:
            raise DataError(f"{where}: query exemplar {i} {boxes[i]} is none of the solution's boxes (best IoU "
                            f"{value:.2f}); the answer is every instance, the exemplars included")


def written(values: Sequence[float], coord_format: str) -> list[float | int]:
    """Coordinates as a prompt or answer writes them: 3 decimals for ``norm1``, else integers."""
    return [round(v, 3) for v in values] if coord_format == "norm1" else [int(round(v)) for v in values]


def exemplars_as_written(
    query: Mapping[str, Any], image_size: Sequence[int], coord_format: str,
    model_image_size: Sequence[int] | None = None,
) -> list[list[float | int]]:
    """A row's exemplar boxes in ``coord_format`` (``pixels``: of ``model_image_size``, the size the model
    sees; None: the original size), as the prompt writes them; ``[]`` for a row without exemplars."""
    boxes = query.get("exemplars") or []
    if not boxes:
        return []
    converted = from_image_pixels(boxes, coord_format, image_size, model_image_size)
    return [written(box, coord_format) for box in converted.tolist()]


def draw_exemplars(image: Image.Image, boxes: Sequence[Sequence[float]]) -> Image.Image:
    """A copy of ``image`` with each box (pixels of ``image``, exclusive far end) outlined just outside it:
    :data:`OUTLINE_WIDTH` pixels of :data:`OUTLINE_COLOUR` around columns ``floor(x1)..ceil(x2)-1`` and rows
    ``floor(y1)..ceil(y2)-1``, which keep their pixels."""
    marked = image.convert("RGB")
    draw = ImageDraw.Draw(marked)
    w = OUTLINE_WIDTH
    for x1, y1, x2, y2 in boxes:
        draw.rectangle((math.floor(x1) - w, math.floor(y1) - w, math.ceil(x2) - 1 + w, math.ceil(y2) - 1 + w),
                       outline=OUTLINE_COLOUR, width=w)
    return marked


def marked_copy(resized: str | Path, query: Mapping[str, Any], image_size: Sequence[int],
                model_image_size: Sequence[int], out_dir: Path) -> str:
    """The resized image with the row's exemplars drawn (:func:`draw_exemplars`, boxes scaled to the
    resized image), written once as PNG next to it, named by the resized file and the boxes."""
    boxes = from_image_pixels(query["exemplars"], "pixels", image_size, model_image_size).tolist()
    key = hashlib.sha1(json.dumps([OUTLINE_COLOUR, OUTLINE_WIDTH, boxes]).encode()).hexdigest()[:12]
    target = out_dir / f"{Path(resized).stem}-exemplars-{key}.png"
    if not target.is_file():
        with Image.open(resized) as image:
            buffer = io.BytesIO()
            draw_exemplars(image, boxes).save(buffer, format="PNG")
        write_atomic(target, buffer.getvalue())
    return str(target.resolve())


def crop_copies(source: str | Path, query: Mapping[str, Any], image_size: Sequence[int], min_pixels: int,
                max_pixels: int, factor: int, family: str, out_dir: Path) -> list[tuple[str, list[int]]]:
    """Each exemplar cut out of the original image ``source`` (its pixels ``floor(x1)..ceil(x2)-1``), resized
    to the pixel budget by ``family``'s rule and written once as PNG: ``(path, [w, h] the model sees)`` each."""
    source = Path(source)
    stat = source.stat()
    stamp = f"{source.resolve()}|{stat.st_mtime_ns}|{stat.st_size}"
    out, image = [], None
    for box in query["exemplars"]:
        x1, y1, x2, y2 = math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3])
        size = list(family_of(family).model_image_size([x2 - x1, y2 - y1], factor, min_pixels, max_pixels))
        key = hashlib.sha1(f"{stamp}|{[x1, y1, x2, y2]}".encode()).hexdigest()[:16]
        target = out_dir / f"{source.stem}-crop-{key}-{size[0]}x{size[1]}.png"
        if not target.is_file():
            if image is None:
                image = open_image(source)
                if list(image.size) != list(image_size):
                    raise DataError(f"{source}: image_size {list(image_size)} but the image is {image.size[0]}x{image.size[1]}")
            buffer = io.BytesIO()
            crop = image.crop((x1, y1, x2, y2))
            resize_to_budget(crop, min_pixels, max_pixels, factor, family).save(buffer, format="PNG")
            write_atomic(target, buffer.getvalue())
        out.append((str(target.resolve()), size))
    return out
