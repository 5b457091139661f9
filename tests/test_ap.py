"""Per-image COCO AP (the ``detection_map`` reward) equals pycocotools' COCOeval."""

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import rewards
from rewards.ap import average_precision
from rewards.matching import box_iou


def xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def pycocotools_ap(gt, dets, scores, iou_threshold=None, size=(200, 200)):
    """AP of one image and category by pycocotools (area all, 100 detections); detections of equal
    score rank in the order given, as pycocotools ranks the results of one image."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "width": size[0], "height": size[1]}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": xywh(b), "area": xywh(b)[2] * xywh(b)[3], "iscrowd": 0}
            for i, b in enumerate(gt)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        if not dets:
            return 0.0
        res = coco.loadRes([{"image_id": 1, "category_id": 1, "bbox": xywh(b), "score": s} for b, s in zip(dets, scores)])
        ev = COCOeval(coco, res, "bbox")
        if iou_threshold is not None:
            ev.params.iouThrs = np.array([iou_threshold])
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, 0, 0, -1]
    return float(precision.mean())


int_box = st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 40), st.integers(1, 40)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(int_box, min_size=1, max_size=6),
    st.lists(st.tuples(int_box, st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9, 1.0])), max_size=8),
)
def test_ap_equals_pycocotools(gt, dets):
    boxes, scores = [d[0] for d in dets], [d[1] for d in dets]
    ious = box_iou(np.array(boxes).reshape(-1, 4), np.array(gt))
    assert average_precision(ious, scores) == pytest.approx(pycocotools_ap(gt, boxes, scores), abs=1e-12)
    assert average_precision(ious, scores, [0.5]) == pytest.approx(pycocotools_ap(gt, boxes, scores, 0.5), abs=1e-12)


def test_detection_map_reward_equals_pycocotools_through_norm1000():
    gt = [[10, 20, 60, 80], [100, 100, 150, 190], [5, 150, 40, 195]]
    dets = [[12, 22, 58, 79], [101, 90, 150, 190], [0, 0, 30, 30], [6, 150, 40, 190]]
    scores = [0.9, 0.8, 0.7, 0.6]
    size = (200, 200)
    answer = [{"Position": [v * 1000 / 200 for v in d], "Confidence": s} for d, s in zip(dets, scores)]
    reward = rewards.get("detection_map", count_penalty=False)
    value = reward(
        [f"<answer>{json.dumps(answer)}</answer>"],
        solution=[{"boxes": gt}], image_size=[size], coord_format=["norm1000"], task=["detection"],
    )[0]
    assert value == pytest.approx(pycocotools_ap(gt, dets, scores), abs=1e-9)
    ap50 = rewards.get("detection_map", iou_thresholds=0.5, count_penalty=False)(
        [f"<answer>{json.dumps(answer)}</answer>"],
        solution=[{"boxes": gt}], image_size=[size], coord_format=["norm1000"], task=["detection"],
    )[0]
    assert ap50 == pytest.approx(pycocotools_ap(gt, dets, scores, 0.5), abs=1e-9)


def test_count_penalty_scales_by_extra_boxes():
    boxes = [[10, 20, 60, 80], [100, 100, 150, 190], [0, 0, 5, 5], [0, 0, 6, 6]]
    answer = "<answer>" + json.dumps([{"Position": b, "Confidence": c} for b, c in zip(boxes, [0.9, 0.8, 0.2, 0.1])]) + "</answer>"
    cols = dict(solution=[{"boxes": [[10, 20, 60, 80], [100, 100, 150, 190]]}], image_size=[(200, 200)],
                coord_format=["pixels"], task=["detection"])
    assert rewards.get("detection_map", count_penalty=False)([answer], **cols) == [pytest.approx(1.0)]
    assert rewards.get("detection_map")([answer], **cols) == [pytest.approx(0.5)]


HELMETS = [[50, 60, 200, 300], [300, 100, 450, 350]]


def helmet_answer(x0):
    """Issue 15's case: the two true boxes first, then 8 small boxes far from them, no confidences."""
    boxes = HELMETS + [[x0 + 5 * i, 400, x0 + 5 * i + 4, 470] for i in range(8)]
    return boxes, "<answer>" + json.dumps([{"bbox_2d": b, "label": "helmet"} for b in boxes]) + "</answer>"


@pytest.mark.parametrize("x0", [0, 460])
def test_equal_confidences_rank_in_answer_order_as_pycocotools(x0):
    boxes, answer = helmet_answer(x0)
    cols = dict(task=["detection"], solution=[{"boxes": HELMETS, "labels": ["helmet", "helmet"]}], image_size=[[640, 480]],
                coord_format=["pixels"], model_image_size=[[640, 480]])
    coco = pycocotools_ap(HELMETS, boxes, [1.0] * len(boxes), size=(640, 480))
    assert coco == pytest.approx(1.0)
    assert rewards.get("detection_map", count_penalty=False)([answer], **cols) == [pytest.approx(coco, abs=1e-12)]
    assert rewards.get("detection_map")([answer], **cols) == [pytest.approx(0.2)]  # x 2 true / 10 answered


confidence = st.one_of(st.none(), st.sampled_from([0.3, 0.5, 0.9, 1.0]))


@settings(max_examples=150, deadline=None)
@given(st.lists(int_box, min_size=1, max_size=5), st.lists(st.tuples(int_box, confidence), max_size=8),
       st.sampled_from([None, 0.5]))
def test_detection_map_reward_equals_pycocotools_with_ties_and_missing_confidences(gt, dets, threshold):
    """The reward, answer order kept and no confidence read as 1.0, is pycocotools' AP of the same answer."""
    items = [{"bbox_2d": b, "label": "thing", **({} if c is None else {"confidence": c})} for b, c in dets]
    cols = dict(task=["detection"], solution=[{"boxes": gt, "labels": ["thing"] * len(gt)}], image_size=[[200, 200]],
                coord_format=["pixels"])
    options = {"count_penalty": False, **({} if threshold is None else {"iou_thresholds": threshold})}
    value = rewards.get("detection_map", **options)([f"<answer>{json.dumps(items)}</answer>"], **cols)[0]
    coco = pycocotools_ap(gt, [b for b, _ in dets], [1.0 if c is None else c for _, c in dets], threshold)
    assert value == pytest.approx(coco, abs=1e-12)
