"""``grounding_iou``: overlap of the single box an answer gives for a referring phrase."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from rewards.inputs import box_cases
from rewards.matching import box_iou, generalized_box_iou
from rewards.parsing import NONE_PHRASES, BoxAnswer
from rewards.registry import register


def score_grounding(
    answer: BoxAnswer,
    gt_boxes: np.ndarray,
    metric: Literal["iou", "giou"] = "iou",
    multiple: Literal["zero", "first"] = "zero",
) -> float:
    """IoU (or GIoU rescaled to [0, 1]) of the answer's box with the first ground-truth box.

    An answer with several boxes hedges: it scores 0 (``multiple="zero"``) or only its first box
    counts (``"first"``). With no ground-truth box (a negative), "no object" scores 1.
    """
    if len(gt_boxes) == 0:
        return 1.0 if answer.parsed and answer.n_pred == 0 else 0.0
    if answer.n_pred == 0 or len(answer.boxes) == 0 or (answer.n_pred > 1 and multiple == "zero"):
        return 0.0
    pred, gt = answer.boxes[:1], gt_boxes[:1]
    if metric == "giou":
        return float((generalized_box_iou(pred, gt)[0, 0] + 1.0) / 2.0)
    return float(box_iou(pred, gt)[0, 0])


@register("grounding_iou")
def grounding_iou(
    completions: list,
    *,
    metric: Literal["iou", "giou"] = "iou",
    multiple: Literal["zero", "first"] = "zero",
    none_phrases: Sequence[str] = NONE_PHRASES,
    tasks: Sequence[str] = ("grounding",),
    **columns: Any,
) -> list[float | None]:
    """Grounding reward (see :func:`score_grounding`)."""
    if metric not in ("iou", "giou") or multiple not in ("zero", "first"):
        raise ValueError(f"grounding_iou: metric must be iou|giou and multiple zero|first, got {metric!r}, {multiple!r}")

    return [
        None if c is None else score_grounding(c.answer, c.gt_boxes, metric, multiple)
        for c in box_cases(completions, columns, tasks, none_phrases)
    ]
