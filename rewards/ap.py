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


def _greedy_matches(ious: np.ndarray, threshold: float) -> np.ndarray:
    """Per detection (in score order), whether it matched a ground-truth box at ``threshold``."""
    n_det, n_gt = ious.shape
    gt_taken = np.zeros(n_gt, dtype=bool)
    det_hit = np.zeros(n_det, dtype=bool)
    for d in range(n_det):
        best, match = min(threshold, 1 - 1e-10), -1
        for g in range(n_gt):
            if gt_taken[g] or ious[d, g] < best:
                continue
            best, match = ious[d, g], g
        if match >= 0:
            gt_taken[match] = True
            det_hit[d] = True
    return det_hit


def _interpolated_ap(hits: np.ndarray, n_gt: int) -> float:
    tp = np.cumsum(hits, dtype=np.float64)
    fp = np.cumsum(~hits, dtype=np.float64)
    recall = tp / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # make it non-increasing
    idx = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


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
    ious = ious[order]
    return float(np.mean([_interpolated_ap(_greedy_matches(ious, t), n_gt) for t in iou_thresholds]))
