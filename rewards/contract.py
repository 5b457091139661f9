"""The row contract: what a dataset row carries to the rewards and to evaluation, written once.

Both the data layer (:mod:`rft.data`) and the rewards read it from here, and it imports neither:

- :data:`TASKS` (and :data:`DETECTION_TASKS`, :data:`BOX_TASKS`, the tasks answered with boxes);
- the coordinate conventions a model answers in (:data:`COORD_FORMATS`, with the phrase a prompt uses
  for each) and the one conversion between them, :func:`convert_boxes` (as torchvision's ``box_convert``);
- the columns a reward reads, :class:`RewardColumns` (:data:`REWARD_COLUMNS`);
- the model parts a recipe freezes or gives learning rates (:data:`MODEL_PARTS`);
- the Arrow types of a TRL row (:func:`dataset_features`).

Ground truth is kept in pixels of the original image (:data:`IMAGE`). Models answer in one of
:data:`COORD_FORMATS`: ``norm1000`` (integers 0..1000 relative to the image), ``pixels`` (pixels of
the image *as the processor resized it*, whose size is ``model_image_size``) or ``norm1`` (floats
0..1). Which one a model family uses is the family's business (:mod:`rft.families`). IoU is
invariant under per-axis scaling, so scoring converts the answer to original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple, Sequence

import numpy as np

TASKS: tuple[str, ...] = ("detection", "visual_prompt_detection", "grounding", "classification", "tagging")
"""Every task a row can have; the lists below are its subsets (the one place that names tasks)."""
VISUAL_PROMPT_DETECTION = "visual_prompt_detection"
"""Detection asked by example: the prompt shows exemplar boxes of the object (drawn on the image or
written as coordinates), not its name; the answer is every instance, exemplars included."""
DETECTION_TASKS: tuple[str, ...] = ("detection", VISUAL_PROMPT_DETECTION)
"""The tasks the detection rewards and detection metrics (COCO mAP) score."""
BOX_TASKS: tuple[str, ...] = (*DETECTION_TASKS, "grounding")
"""The tasks whose answers and ground truth are boxes (a negative sample is one with no boxes)."""

MODEL_PARTS: tuple[str, ...] = ("vision", "projector", "language")
"""The parts of a VLM a recipe can freeze or give its own learning rate (``model.freeze``, ``model.learning_rates``)."""


class CoordConvention(NamedTuple):
    """A way of writing box coordinates in an answer, and how a prompt asks for it."""

    name: str
    phrase: str


COORD_CONVENTIONS: tuple[CoordConvention, ...] = (
    CoordConvention("norm1000", "with coordinates normalized to integers from 0 to 1000"),
    CoordConvention("pixels", "in pixel coordinates of the image"),
    CoordConvention("norm1", "with coordinates as fractions of the image width and height, from 0 to 1"),
)
COORD_FORMATS: tuple[str, ...] = tuple(c.name for c in COORD_CONVENTIONS)
COORD_PHRASES: dict[str, str] = {c.name: c.phrase for c in COORD_CONVENTIONS}
IMAGE = "image"
"""Not an answer convention: pixels of the original image, where ground truth lives (:func:`convert_boxes`)."""


def _to_image_scale(fmt: str, image_size: Sequence[float], model_image_size: Sequence[float] | None) -> np.ndarray:
    """Per-axis factors (sx, sy, sx, sy) that take ``fmt`` coordinates to original-image pixels."""
    width, height = float(image_size[0]), float(image_size[1])
    if fmt == "norm1000":
        sx, sy = width / 1000.0, height / 1000.0
    elif fmt == "norm1":
        sx, sy = width, height
    elif fmt == "pixels":
        mw, mh = model_image_size if model_image_size is not None else (width, height)
        sx, sy = width / float(mw), height / float(mh)
    elif fmt == IMAGE:
        sx = sy = 1.0
    else:
        raise ValueError(f"coord_format must be one of {COORD_FORMATS}, got {fmt!r}")
    return np.array([sx, sy, sx, sy])


def convert_boxes(
    boxes: Any, in_fmt: str, out_fmt: str, image_size: Sequence[float],
    model_image_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Boxes ``(N, 4)`` ``[x1, y1, x2, y2]`` from ``in_fmt`` to ``out_fmt`` (each one of :data:`COORD_FORMATS`
    or :data:`IMAGE`), for an image of ``image_size`` ``[w, h]`` that the model saw at ``model_image_size``
    (``pixels`` only; None: the original size). Unrounded float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes * _to_image_scale(in_fmt, image_size, model_image_size) / _to_image_scale(
        out_fmt, image_size, model_image_size)


def to_image_pixels(
    boxes: Any, coord_format: str, image_size: Sequence[float], model_image_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Answer boxes in ``coord_format`` -> pixels of the original image (:func:`convert_boxes`)."""
    return convert_boxes(boxes, coord_format, IMAGE, image_size, model_image_size)


def from_image_pixels(
    boxes: Any, coord_format: str, image_size: Sequence[float], model_image_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Original-image pixel boxes -> ``coord_format`` (:func:`convert_boxes`)."""
    return convert_boxes(boxes, IMAGE, coord_format, image_size, model_image_size)


@dataclass(frozen=True, slots=True)
class RewardColumns:
    """The dataset columns a reward reads for one sample (TRL passes each as a per-completion list)."""

    task: str | None
    """One of :data:`TASKS` (None: a reward applies whatever the task)."""
    solution: dict
    """Ground truth: ``{"boxes": [[x1, y1, x2, y2]], "labels": [...]}`` in original-image pixels,
    ``{"label", "synonyms"}`` or ``{"tags"}`` (a JSON string in a TRL row)."""
    image_size: tuple[float, float] | None = None
    """``[w, h]`` of the original image."""
    coord_format: str = "norm1000"
    """One of :data:`COORD_FORMATS`: how the prompt asked for boxes."""
    model_image_size: tuple[float, float] | None = None
    """``[w, h]`` of the image as the model saw it (what ``pixels`` answers refer to)."""


REWARD_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RewardColumns))


def dataset_features(several_images: bool = False):
    """The Arrow types (``datasets.Features``) of a TRL row, the same for every task: the prompt, the
    image, the :data:`REWARD_COLUMNS` (``solution`` as JSON text), and ``id``, ``dataset``, ``query``.
    With ``several_images`` the image column is ``images``, a list per row (what TRL takes for rows with
    several images; the boxes of ``solution`` refer to the first)."""
    import datasets

    string, size = datasets.Value("string"), datasets.List(datasets.Value("int64"))
    types = {"task": string, "solution": string, "image_size": size, "coord_format": string, "model_image_size": size}
    assert tuple(types) == REWARD_COLUMNS
    return datasets.Features({
        "prompt": datasets.List({"role": string, "content": datasets.List({"type": string, "text": string})}),
        **({"images": datasets.List(datasets.Image())} if several_images else {"image": datasets.Image()}),
        **types,
        "id": string,
        "dataset": string,
        "query": string,
    })
