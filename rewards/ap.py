"""COCO-style average precision for the detections of one image (used by ``detection_map``).

It follows ``pycocotools.cocoeval.COCOeval`` step by step for a single image and category with
area range "all" and 100 detections: detections sorted by score (stable), greedy matching to the
unmatched ground truth of highest IoU at each threshold, 101-point interpolated precision.
Tests check it equals pycocotools on random cases.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100


def _greedy_matches(ious: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(T, D) whether each detection (in score order) matched at each threshold.

    As COCOeval: a detection takes the unmatched ground truth of highest IoU >= the threshold
    (the last one on ties); all thresholds advance together.
    """
    n_det, n_gt = ious.shape
    floor = np.minimum(thresholds, 1 - 1e-10)[:, None]
    taken = np.zeros((len(thresholds), n_gt), dtype=bool)
    hits = np.zeros((len(thresholds), n_det), dtype=bool)
    rows = np.arange(len(thresholds))
    for d in range(n_det):
        candidates = np.where(~taken & (ious[d] >= floor), ious[d], -1.0)
        best = n_gt - 1 - np.argmax(candidates[:, ::-1], axis=1)  # last index among equal maxima
        hit = candidates[rows, best] >= 0
        taken[rows[hit], best[hit]] = True
        hits[:, d] = hit
    return hits


def _interpolated_ap(hits: np.ndarray, n_gt: int) -> np.ndarray:
    """(T,) 101-point interpolated AP from (T, D) hits in score order."""
    tp = np.cumsum(hits, axis=1, dtype=np.float64)
    fp = np.cumsum(~hits, axis=1, dtype=np.float64)
    recall = tp / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # make it non-increasing
    out = np.zeros(len(hits))
    for t in range(len(hits)):
        idx = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        inside = idx < hits.shape[1]
        out[t] = precision[t, idx[inside]].sum() / len(RECALL_THRESHOLDS)
    return out


def average_precision(
    ious: np.ndarray,
    scores: Sequence[float],
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
) -> float:
    """Mean over ``iou_thresholds`` of the 101-point AP of detections with IoU matrix (D, G).

    With no ground truth the image is a negative sample: 1.0 when there are no detections,
    else 0.0 (COCO would leave such an image out; a reward must not).
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2 or len(ious) != len(scores):
        raise ValueError(f"ious must be (detections, ground truth) with one row per score, got {ious.shape}")
    n_det, n_gt = ious.shape
    if n_gt == 0:
        return 1.0 if n_det == 0 else 0.0
    if n_det == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")[:MAX_DETECTIONS]
    hits = _greedy_matches(ious[order], np.asarray(iou_thresholds, dtype=np.float64))
    return float(_interpolated_ap(hits, n_gt).mean())
