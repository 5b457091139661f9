"""Box overlap and optimal one-to-one matching.

IoU is a vectorised NumPy routine (equal to ``torchvision.ops.box_iou``, checked in tests;
NumPy is several times faster than torch for the 10x10 matrices a reward sees). Matching is
Hungarian (``scipy.optimize.linear_sum_assignment``) on IoU, label-aware when labels are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of (N, 4) x1, y1, x2, y2 boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _intersection_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clip(min=0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) of two sets of x1, y1, x2, y2 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter, union = _intersection_union(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def generalized_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise GIoU (N, M) in [-1, 1], as ``torchvision.ops.generalized_box_iou``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter, union = _intersection_union(a, b)
    lt = np.minimum(a[:, None, :2], b[None, :, :2])
    rb = np.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clip(min=0.0)
    hull = wh[..., 0] * wh[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
        return iou - np.where(hull > 0, (hull - union) / hull, 0.0)


def batched_box_iou(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``[box_iou(p, g) for p, g in zip(preds, gts)]`` in one vectorised pass over a padded batch."""
    if not preds:
        return []
    p_max, g_max = max(len(p) for p in preds), max(len(g) for g in gts)
    pad_p, pad_g = np.zeros((len(preds), p_max, 4)), np.zeros((len(gts), g_max, 4))
    for i, (p, g) in enumerate(zip(preds, gts)):
        pad_p[i, : len(p)] = p
        pad_g[i, : len(g)] = g
    lt = np.maximum(pad_p[:, :, None, :2], pad_g[:, None, :, :2])
    rb = np.minimum(pad_p[:, :, None, 2:], pad_g[:, None, :, 2:])
    wh = np.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    area_p = (pad_p[..., 2] - pad_p[..., 0]) * (pad_p[..., 3] - pad_p[..., 1])
    area_g = (pad_g[..., 2] - pad_g[..., 0]) * (pad_g[..., 3] - pad_g[..., 1])
    union = area_p[:, :, None] + area_g[:, None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return [iou[i, : len(p), : len(g)] for i, (p, g) in enumerate(zip(preds, gts))]


@dataclass(frozen=True, slots=True)
class Matches:
    """Matched pairs: ``pred[k]`` is matched to ``gt[k]`` with overlap ``iou[k]``."""

    pred: np.ndarray
    gt: np.ndarray
    iou: np.ndarray

    def __len__(self) -> int:
        return len(self.pred)


def label_mask(
    pred_labels: Sequence[str | None] | None, gt_labels: Sequence[str | None] | None
) -> np.ndarray | None:
    """(N, M) mask of label-compatible pairs, or None when labels rule nothing out.

    Labels compare after :func:`rewards.parsing.normalize_label` (case, punctuation, plurals);
    a missing label on either side fits any label.
    """
    if not pred_labels or not gt_labels or len(set(pred_labels).union(gt_labels) - {None}) <= 1:
        return None
    from rewards.parsing import normalize_label

    pred = ["" if p is None else normalize_label(p) for p in pred_labels]
    gt = ["" if g is None else normalize_label(g) for g in gt_labels]
    if len(set(pred).union(gt) - {""}) <= 1:  # one category (the common case): nothing to mask
        return None
    p, g = np.array(pred, dtype=object)[:, None], np.array(gt, dtype=object)[None, :]
    return (p == g) | (p == "") | (g == "")


def match_boxes(
    pred: np.ndarray,
    gt: np.ndarray,
    pred_labels: Sequence[str | None] | None = None,
    gt_labels: Sequence[str | None] | None = None,
    min_iou: float = 0.0,
    iou: np.ndarray | None = None,
) -> Matches:
    """Optimal one-to-one matching maximising total IoU; pairs with IoU <= ``min_iou`` are dropped.

    ``iou`` may pass ``box_iou(pred, gt)`` computed beforehand (e.g. by :func:`batched_box_iou`).
    """
    iou = box_iou(pred, gt) if iou is None else iou
    if iou.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Matches(empty, empty, np.zeros(0))
    mask = label_mask(pred_labels, gt_labels)
    if mask is not None:
        iou = np.where(mask, iou, 0.0)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    values = iou[rows, cols]
    keep = values > min_iou
    return Matches(rows[keep], cols[keep], values[keep])
