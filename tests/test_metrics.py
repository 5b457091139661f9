"""rft.eval.metrics: COCO mAP equals pycocotools run directly; per-sample metrics on hand-worked cases."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rewards.contract import from_image_pixels
from rft.errors import DataError
from rft.eval.metrics import (
    classification_metrics, detection_metrics, evaluate, grounding_metrics, load_predictions, negative_metrics,
    parse_failures, summary_table, tagging_metrics,
)
from rft.families import patch_grid_size as model_input_size

SIZES = {"a.jpg": (640, 480), "b.jpg": (1120, 1120), "c.jpg": (333, 517), "d.jpg": (800, 600)}
# (image, category) -> ground-truth boxes (original pixels) and predictions (box, confidence).
GT = {
    ("a.jpg", "cat"): [[10.0, 20.0, 200.0, 220.0], [300.0, 100.0, 420.0, 300.0]],
    ("a.jpg", "dog"): [],
    ("b.jpg", "dog"): [[100.0, 100.0, 600.0, 700.0]],
    ("b.jpg", "bird"): [[50.0, 60.0, 90.0, 110.0], [700.0, 800.0, 760.0, 870.0], [900.0, 10.0, 1000.0, 90.0]],
    ("c.jpg", "cat"): [[30.5, 40.25, 200.0, 300.0]],
    ("c.jpg", "bird"): [],
    ("d.jpg", "cat"): [],
    ("d.jpg", "dog"): [[0.0, 0.0, 400.0, 300.0], [410.0, 310.0, 790.0, 590.0]],
}
PRED = {
    ("a.jpg", "cat"): [([12.0, 22.0, 198.0, 215.0], 0.9), ([310.0, 90.0, 430.0, 280.0], 0.6),
                       ([500.0, 400.0, 600.0, 470.0], 0.7)],
    ("a.jpg", "dog"): [([100.0, 100.0, 200.0, 200.0], 0.85)],  # a false positive ranked first
    ("b.jpg", "dog"): [([120.0, 90.0, 610.0, 650.0], 0.8)],
    ("b.jpg", "bird"): [([52.0, 58.0, 91.0, 112.0], 0.95), ([690.0, 790.0, 750.0, 860.0], 0.3),
                        ([0.0, 0.0, 40.0, 40.0], 0.5)],
    ("c.jpg", "cat"): [([30.0, 40.0, 210.0, 290.0], 0.85), ([31.0, 41.0, 199.0, 301.0], 0.2)],
    ("c.jpg", "bird"): [],
    ("d.jpg", "cat"): [],
    ("d.jpg", "dog"): [([5.0, 3.0, 395.0, 310.0], None)],  # no confidence: 1.0
}


def _answer(preds, image_size, fmt="pixels", model_image_size=None):
    """A completion giving ``preds`` (original pixels, confidence) in the model's convention."""
    if not preds:
        return "<think>nothing there</think><answer>none</answer>"
    boxes = from_image_pixels(np.array([b for b, _ in preds]), fmt, image_size, model_image_size)
    items = [{"bbox_2d": b, "label": "x", **({} if c is None else {"confidence": c})}
             for b, (_, c) in zip(boxes.tolist(), preds)]
    return f"<think>looking</think><answer>{json.dumps(items)}</answer>"


def _sample(image, category, gt, preds, fmt="pixels", resized=False, **extra):
    size = SIZES.get(image, (64, 48))
    model_size = model_input_size(size) if resized else None
    return {
        "id": f"{image}:{category}", "dataset": "synthetic", "task": "detection", "image": image,
        "image_size": list(size), "coord_format": fmt, "model_image_size": model_size,
        "solution": json.dumps({"boxes": gt, "labels": [category] * len(gt)}),
        "query": {"category": category}, "completion": _answer(preds, size, fmt, model_size), **extra,
    }


def _samples(gt=GT, pred=PRED, **kwargs):
    return [_sample(image, cat, gt[image, cat], pred[image, cat], **kwargs) for image, cat in gt]


def _quiet_eval(gt_coco, dt_coco, cat_ids=None):
    evaluator = COCOeval(gt_coco, dt_coco, "bbox")
    if cat_ids is not None:
        evaluator.params.catIds = cat_ids
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _reference(gt, pred, keep=lambda boxes: True):
    """mAP, AP50, AP75 and per-category AP from pycocotools, built directly from the pairs."""
    pairs = [p for p in gt if keep(gt[p])]
    images = {image: 100 + k for k, image in enumerate(dict.fromkeys(i for i, _ in pairs))}
    cats = {cat: 7 + k for k, cat in enumerate(dict.fromkeys(c for _, c in pairs))}
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    boxes = [(i, c, b) for i, c in pairs for b in gt[i, c]]
    anns = [{"id": k + 1, "image_id": images[i], "category_id": cats[c], "bbox": xywh(b),
             "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0} for k, (i, c, b) in enumerate(boxes)]
    coco = COCO()
    coco.dataset = {"images": [{"id": v} for v in images.values()], "annotations": anns,
                    "categories": [{"id": v, "name": k} for k, v in cats.items()]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    dets = [{"image_id": images[i], "category_id": cats[c], "bbox": xywh(b), "score": 1.0 if s is None else s}
            for i, c in pairs for b, s in pred[i, c]]
    with_gt = {c for (_, c), boxes in gt.items() if boxes and (_, c) in pairs}
    if not dets:
        return (0.0, 0.0, 0.0), {c: 0.0 for c in with_gt}
    with contextlib.redirect_stdout(io.StringIO()):
        results = coco.loadRes(dets)
    stats = _quiet_eval(coco, results)
    per_cat = {c: _quiet_eval(coco, results, [cats[c]])[0] for c in with_gt}
    return tuple(stats[:3]), per_cat


def _assert_matches(report, expected):
    (m, ap50, ap75), per_cat = expected
    assert report["mAP"] == pytest.approx(m, abs=1e-9)
    assert report["AP50"] == pytest.approx(ap50, abs=1e-9)
    assert report["AP75"] == pytest.approx(ap75, abs=1e-9)
    assert report["per_category"].keys() == per_cat.keys()
    for cat, ap in per_cat.items():
        assert report["per_category"][cat] == pytest.approx(ap, abs=1e-9)


# --- detection: equal to pycocotools --------------------------------------------------------


def test_detection_equals_pycocotools():
    report = detection_metrics(_samples())
    _assert_matches(report, _reference(GT, PRED))
    assert 0 < report["mAP"] < 1 and set(report["per_category"]) == {"cat", "dog", "bird"}
    assert report["n_images"] == 4 and report["n_predictions"] == sum(map(len, PRED.values()))


def test_visual_rft_protocol_equals_pycocotools_without_negatives():
    report = detection_metrics(_samples(), protocol="visual_rft")
    _assert_matches(report, _reference(GT, PRED, keep=bool))
    assert report["mAP"] > detection_metrics(_samples())["mAP"]
    assert report["n_samples"] == sum(1 for boxes in GT.values() if boxes)


@st.composite
def _cases(draw):
    """Random small (image, category) pairs on 64x48 images with jittered or random predicted boxes."""
    box = st.builds(lambda x, y, w, h: [float(x), float(y), float(min(x + w, 64)), float(min(y + h, 48))],
                    st.integers(0, 60), st.integers(0, 44), st.integers(2, 30), st.integers(2, 30))
    score = st.sampled_from([0.1, 0.5, 0.5, 0.8, 1.0])  # ties too
    gt, pred = {}, {}
    for image in ("p.jpg", "q.jpg", "r.jpg")[: draw(st.integers(1, 3))]:
        for cat in draw(st.lists(st.sampled_from(["cat", "dog", "bird"]), min_size=1, max_size=3, unique=True)):
            boxes = draw(st.lists(box, max_size=3))
            jittered = st.builds(lambda b, d: [max(0.0, b[0] + d), b[1], min(64.0, b[2] + d), b[3]],
                                 st.sampled_from(boxes), st.integers(-3, 3)).filter(lambda b: b[2] > b[0])
            gt[image, cat] = boxes
            pred[image, cat] = draw(st.lists(st.tuples(jittered | box if boxes else box, score), max_size=4))
    return gt, pred


@settings(max_examples=25, deadline=None)
@given(_cases())
def test_detection_equals_pycocotools_property(case):
    gt, pred = case
    report = detection_metrics(_samples(gt, pred))
    if not any(gt.values()):
        assert math.isnan(report["mAP"]) and report["per_category"] == {}
    else:
        _assert_matches(report, _reference(gt, pred))


def test_predictions_map_back_exactly_from_every_convention():
    perfect = {k: [(b, 0.9) for b in boxes] for k, boxes in GT.items()}
    for preds in (PRED, perfect):
        pixels = detection_metrics(_samples(pred=preds))
        norm1000 = detection_metrics(_samples(pred=preds, fmt="norm1000"))
        resized = detection_metrics(_samples(pred=preds, resized=True))
        for other in (norm1000, resized):
            assert other["mAP"] == pytest.approx(pixels["mAP"], abs=1e-9)
            assert other["per_category"] == pytest.approx(pixels["per_category"], abs=1e-9)
    assert pixels["mAP"] == pytest.approx(1.0) and resized["AP75"] == pytest.approx(1.0)


def test_false_positive_on_negative_lowers_full_but_not_visual_rft():
    perfect = {k: [(b, 0.9) for b in boxes] for k, boxes in GT.items()}
    spam = {**perfect, ("d.jpg", "cat"): [([10.0, 10.0, 50.0, 50.0], 0.99)]}
    assert detection_metrics(_samples(pred=perfect))["mAP"] == pytest.approx(1.0)
    assert detection_metrics(_samples(pred=spam))["per_category"]["cat"] < 1.0
    assert detection_metrics(_samples(pred=spam), protocol="visual_rft")["mAP"] == pytest.approx(1.0)


def test_shared_image_and_explicit_image_id():
    samples = _samples()
    assert detection_metrics([{**s, "image_id": 1} for s in samples if s["image"] == "a.jpg"])["n_images"] == 1
    with pytest.raises(DataError, match="same category in the same image"):
        detection_metrics(samples + samples[:1])


def test_visual_prompt_samples_of_one_image_and_category_are_separate_queries():
    """Two visual-prompt rows of one image and category (different exemplars) are evaluated as two queries, each
    against its own ground truth; text-prompt rows of one image and category are still refused."""
    gt, miss = [10.0, 20.0, 200.0, 220.0], [400.0, 300.0, 500.0, 400.0]
    samples = []
    for k, preds in enumerate(([(gt, 0.9)], [(miss, 0.9)])):
        sample = _sample("a.jpg", "cat", [gt], preds, task="visual_prompt_detection", id=f"vp-{k}")
        sample["query"] = {"category": "cat", "exemplars": [gt], "exemplar": "coordinates"}
        samples.append(sample)
    report = detection_metrics(samples)
    assert report["n_images"] == 2 and report["n_samples"] == 2 and report["n_predictions"] == 2
    assert detection_metrics(samples[:1])["AP50"] == pytest.approx(1.0)  # the first query alone: found
    assert report["AP50"] == pytest.approx(0.5, abs=0.01)  # each query against its own truth: one of two found
    text = [{**s, "task": "detection", "query": {"category": "cat"}} for s in samples]
    with pytest.raises(DataError, match="same category in the same image"):
        detection_metrics(text)


def test_no_predictions_scores_zero():
    empty = detection_metrics(_samples(pred={k: [] for k in GT}))
    assert empty["mAP"] == 0.0 and empty["n_predictions"] == 0
    assert empty["per_category"] == {"cat": 0.0, "dog": 0.0, "bird": 0.0}
    silent = detection_metrics([{**s, "completion": ""} for s in _samples()])
    assert silent["mAP"] == 0.0
    assert math.isnan(detection_metrics([])["mAP"])


def test_category_falls_back_to_labels():
    samples = [{**s, "query": {}} for s in _samples() if GT[s["image"], s["query"]["category"]]]
    _assert_matches(detection_metrics(samples), _reference(GT, PRED, keep=bool))


# --- per-sample metrics ---------------------------------------------------------------------


def _box(task, gt, completion, image="g.jpg"):
    return {"id": f"{image}:{completion}", "task": task, "image": image, "image_size": [200, 200],
            "coord_format": "pixels", "solution": {"boxes": gt, "labels": ["thing"] * len(gt)},
            "completion": completion}


def test_negative_metrics_hand_worked():
    samples = [
        _box("detection", [], "<answer>none</answer>"),
        _box("grounding", [], "<answer>[]</answer>"),
        _box("detection", [], "<answer>[[1, 1, 50, 50]]</answer>"),
        _box("detection", [], "<answer>I am not sure</answer>"),
        _box("detection", [[0, 0, 10, 10]], "<answer>No objects.</answer>"),
        _box("grounding", [[0, 0, 10, 10]], "<answer>[0, 0, 10, 10]</answer>"),
    ]
    assert negative_metrics(samples) == {"negative_accuracy": 0.5, "false_positive_rate": 0.25,
                                         "false_negative_rate": 0.5, "n_negatives": 4, "n_positives": 2}


def test_grounding_metrics_hand_worked():
    gt = [[0, 0, 100, 100]]
    samples = [
        _box("grounding", gt, "<answer>[0, 0, 100, 50]</answer>"),  # IoU 0.5
        _box("grounding", gt, "<answer>[0, 0, 100, 40]</answer>"),  # IoU 0.4
        _box("grounding", gt, "<answer>[[0, 0, 100, 100], [150, 150, 190, 190]]</answer>"),  # first box counts
        _box("grounding", [], "<answer>none</answer>"),
        _box("grounding", [], "<answer>[0, 0, 10, 10]</answer>"),
    ]
    report = grounding_metrics(samples)
    assert report["acc@0.5"] == pytest.approx(3 / 5)
    assert report["mean_iou"] == pytest.approx((0.5 + 0.4 + 1.0) / 3)
    assert (report["n"], report["n_negatives"]) == (5, 2)


def test_classification_metrics_hand_worked():
    classes = ["daisy", "rose", "tulip"]

    def sample(answer, query=None):
        return {"id": answer, "task": "classification", "solution": {"label": "daisy", "synonyms": []},
                "query": query or {}, "completion": f"<think>hmm</think><answer>{answer}</answer>"}

    samples = [sample("Daisy"), sample("It is a daisy."), sample("daisy or rose"), sample("rose"), sample("")]
    assert classification_metrics(samples, classes) == {"accuracy": 0.4, "n": 5}
    assert classification_metrics(samples)["accuracy"] == 0.2  # without classes only the exact name counts
    assert classification_metrics([sample("It is a daisy.", {"classes": classes})])["accuracy"] == 1.0


def test_tagging_metrics_hand_worked():
    samples = [
        {"id": 1, "task": "tagging", "solution": {"tags": ["cat", "dog", "tree"]},
         "completion": "<answer>cat, Dog, car</answer>"},
        {"id": 2, "task": "tagging", "solution": {"tags": ["sky"]}, "completion": '<answer>["Sky"]</answer>'},
    ]
    report = tagging_metrics(samples)
    assert report["precision"] == report["recall"] == report["f1"] == pytest.approx(0.75)
    assert report["mean_f1"] == pytest.approx((2 / 3 + 1) / 2) and report["n"] == 2


def test_parse_failures_counted():
    samples = [
        _box("detection", [[0, 0, 10, 10]], ""),
        _box("detection", [[0, 0, 10, 10]], "<answer></answer>"),
        _box("detection", [[0, 0, 10, 10]], "<answer>a cat, top left</answer>"),
        _box("grounding", [[0, 0, 10, 10]], "<answer>[[5, 5, 1, 1], [0, 0, 10, 10], [300, 300, 400, 400]]</answer>"),
        {"id": "c", "task": "classification", "solution": {"label": "daisy"}, "completion": "<think>unfinished"},
    ]
    assert parse_failures(samples) == {"no_answer": 3, "unparsed": 1, "invalid_boxes": 2, "n": 5}


# --- reports and files ----------------------------------------------------------------------


def test_evaluate_groups_by_task_and_table_shows_numbers():
    tagging = {"id": "t", "task": "tagging", "solution": {"tags": ["sky"]}, "completion": "<answer>sky</answer>"}
    report = evaluate(_samples() + [tagging])
    assert set(report) == {"detection", "negatives", "tagging", "parse_failures", "n"}
    assert report["detection"]["mAP"] == pytest.approx(_reference(GT, PRED)[0][0], abs=1e-9)
    assert report["n"] == len(GT) + 1 and report["tagging"]["f1"] == 1.0
    table = summary_table(report)
    assert f"{report['detection']['mAP']:.4f}" in table and f"{report['detection']['per_category']['cat']:.4f}" in table
    assert "AP bird" in table and "negative_accuracy" in table
    assert "n/a" in summary_table(evaluate([_box("detection", [], "<answer>none</answer>")]))
    with pytest.raises(DataError, match="task must be one of"):
        evaluate([{"id": "x", "task": "captioning", "solution": {}, "completion": ""}])


def test_load_predictions(tmp_path):
    path = tmp_path / "predictions.jsonl"
    samples = _samples()
    path.write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    assert load_predictions(path) == samples
    path.write_text(json.dumps(samples[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"predictions\.jsonl line 2: not valid JSON"):
        load_predictions(path)
    path.write_text(json.dumps({**samples[0], "solution": "[1, 2]"}) + "\n")
    with pytest.raises(DataError, match="line 1: bad solution"):
        load_predictions(path)
