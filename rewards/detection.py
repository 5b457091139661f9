"""Detection rewards: ``detection_iou``, ``detection_confidence``, ``detection_map``.

Each has a per-sample scoring function (``score_*``) on boxes already in original-image pixels,
used by the TRL-facing reward and reusable by evaluation. Negative samples (no ground-truth box)
score 1 when the answer gives no box and 0 when it gives any.

All three treat labels the same way (option ``label_aware``, on by default): a predicted box can
only match ground truth of the same label, compared after :func:`rewards.parsing.normalize_label`
(case, punctuation, plurals: ``Helmets`` is ``helmet``); a box or ground truth without a label
fits any label. ``label_aware=False`` ignores labels.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rewards.ap import COCO_IOU_THRESHOLDS, average_precision
from rewards.contract import DETECTION_TASKS
from rewards.inputs import box_cases
from rewards.matching import box_iou, label_mask, match_boxes
from rewards.parsing import NONE_PHRASES, BoxAnswer
from rewards.registry import register


def _negative_score(answer: BoxAnswer) -> float:
    """A negative sample: 1 for an explicit "no object" answer or an empty parsed box list."""
    return 1.0 if answer.parsed and answer.n_pred == 0 else 0.0


def score_detection_iou(
    answer: BoxAnswer, gt_boxes: np.ndarray, gt_labels: Sequence[str | None] | None = None, label_aware: bool = True,
    iou: np.ndarray | None = None,
) -> float:
    """Sum of optimally matched IoUs over max(#ground truth, #predicted), in [0, 1].

    Missed ground truth and extra (or invalid) predicted boxes both lower the score, so box spam,
    duplicates and a single giant box score low.
    """
    if len(gt_boxes) == 0:
        return _negative_score(answer)
    if answer.n_pred == 0:
        return 0.0
    labels = (answer.labels, gt_labels) if label_aware else (None, None)
    matches = match_boxes(answer.boxes, gt_boxes, *labels, iou=iou)
    return float(matches.iou.sum() / max(len(gt_boxes), answer.n_pred))


def score_detection_confidence(
    answer: BoxAnswer,
    gt_boxes: np.ndarray,
    gt_labels: Sequence[str | None] | None = None,
    iou_threshold: float = 0.5,
    default_confidence: float = 1.0,
    coverage: bool = True,
    label_aware: bool = True,
    iou: np.ndarray | None = None,
) -> float:
    """Visual-RFT's confidence reward: each predicted box earns its confidence if it matches a
    ground-truth box (IoU > ``iou_threshold``) and 1 - confidence otherwise, averaged.

    With ``coverage`` (default) the average is multiplied by matched / max(#gt, #predicted), so
    that spamming low-confidence boxes, or answering boxes on a negative sample, earns nothing.
    ``coverage=False`` is Visual-RFT's original (gameable) form.
    """
    if len(gt_boxes) == 0 and answer.n_pred == 0:
        return _negative_score(answer)
    if answer.n_pred == 0:
        return 0.0
    labels = (answer.labels, gt_labels) if label_aware else (None, None)
    matched = np.zeros(len(answer.boxes), dtype=bool)
    if len(gt_boxes):
        matched[match_boxes(answer.boxes, gt_boxes, *labels, min_iou=iou_threshold, iou=iou).pred] = True
    conf = np.array([default_confidence if s is None else s for s in answer.scores], dtype=np.float64)
    earned = np.where(matched, conf, 1.0 - conf).sum() / answer.n_pred  # invalid boxes earn 0
    if coverage:
        earned *= matched.sum() / max(len(gt_boxes), answer.n_pred)
    return float(earned)


def score_detection_map(
    answer: BoxAnswer,
    gt_boxes: np.ndarray,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    default_confidence: float = 1.0,
    count_penalty: bool = True,
    iou: np.ndarray | None = None,
    gt_labels: Sequence[str | None] | None = None,
    label_aware: bool = True,
) -> float:
    """COCO-style AP of the answer's boxes on this one image.

    Detections rank by confidence, equal confidences (and missing ones, taken as
    ``default_confidence``) in answer order, as pycocotools ranks them. Invalid boxes count as
    false positives at the default confidence, after the valid boxes of equal confidence. With
    ``label_aware`` a box only matches ground truth of its label (module docstring), so for one
    category this is pycocotools' AP of that category. AP ignores false positives ranked below
    every true one, so box spam would cost nothing; ``count_penalty`` (default) multiplies by
    min(1, #gt / #predicted). ``count_penalty=False`` is COCO's AP.
    """
    if len(gt_boxes) == 0:
        return _negative_score(answer)
    scores = np.array([default_confidence if s is None else s for s in answer.scores] + [default_confidence] * answer.n_invalid)
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(answer.boxes, gt_boxes) if iou is None else iou
    mask = label_mask(answer.labels, gt_labels) if label_aware else None
    if mask is not None:
        iou = np.where(mask, iou, -1.0)  # never a match, at any threshold
    ious = np.vstack([iou, np.full((answer.n_invalid, len(gt_boxes)), -1.0)])[order]
    ap = average_precision(ious, scores[order], iou_thresholds)
    return ap * min(1.0, len(gt_boxes) / answer.n_pred) if count_penalty and answer.n_pred else ap


def _thresholds(iou_thresholds: str | float | Sequence[float]) -> Sequence[float]:
    if iou_thresholds == "coco":
        return COCO_IOU_THRESHOLDS
    if isinstance(iou_thresholds, (int, float)):
        return [float(iou_thresholds)]
    return [float(t) for t in iou_thresholds]


@register("detection_iou")
def detection_iou(
    completions: list,
    *,
    label_aware: bool = True,
    none_phrases: Sequence[str] = NONE_PHRASES,
    tasks: Sequence[str] = DETECTION_TASKS,
    **columns: Any,
) -> list[float | None]:
    """Matched-IoU reward: sum of Hungarian-matched IoUs / max(#gt, #predicted)."""
    return [
        None if c is None else score_detection_iou(c.answer, c.gt_boxes, c.sample.gt_labels, label_aware, c.iou)
        for c in box_cases(completions, columns, tasks, none_phrases)
    ]


@register("detection_confidence")
def detection_confidence(
    completions: list,
    *,
    iou_threshold: float = 0.5,
    default_confidence: float = 1.0,
    coverage: bool = True,
    label_aware: bool = True,
    none_phrases: Sequence[str] = NONE_PHRASES,
    tasks: Sequence[str] = DETECTION_TASKS,
    **columns: Any,
) -> list[float | None]:
    """Visual-RFT confidence reward (see :func:`score_detection_confidence`)."""
    return [
        None if c is None else score_detection_confidence(
            c.answer, c.gt_boxes, c.sample.gt_labels, iou_threshold, default_confidence, coverage, label_aware, c.iou
        )
        for c in box_cases(completions, columns, tasks, none_phrases)
    ]


@register("detection_map")
def detection_map(
    completions: list,
    *,
    iou_thresholds: str | float | Sequence[float] = "coco",
    default_confidence: float = 1.0,
    count_penalty: bool = True,
    label_aware: bool = True,
    none_phrases: Sequence[str] = NONE_PHRASES,
    tasks: Sequence[str] = DETECTION_TASKS,
    **columns: Any,
) -> list[float | None]:
    """Per-sample COCO AP: AP@[.5:.95] by default, ``iou_thresholds=0.5`` for AP50 (see :func:`score_detection_map`)."""
    thresholds = _thresholds(iou_thresholds)
    return [
        None if c is None else score_detection_map(
            c.answer, c.gt_boxes, thresholds, default_confidence, count_penalty, c.iou, c.sample.gt_labels, label_aware
        )
        for c in box_cases(completions, columns, tasks, none_phrases)
    ]
