"""Property tests: every reward on arbitrary text, permutation invariance, ground truth scores 1."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards
from reward_cases import call, det_answer, det_columns

TASK_OF = {"classification_accuracy": "classification", "tagging_f1": "tagging", "grounding_iou": "grounding"}

int_box = st.tuples(st.integers(0, 500), st.integers(0, 400), st.integers(5, 120), st.integers(5, 120)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


def columns_for(name, gt):
    cols = det_columns(gt, "norm1000", task=TASK_OF.get(name, "detection"))
    cols["solution"] = json.dumps({"boxes": gt, "labels": ["cat"] * len(gt), "label": "cat", "tags": ["cat", "dog"]})
    return cols


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200), st.lists(int_box, max_size=4))
def test_arbitrary_text_gives_finite_values_in_range(text, gt):
    for name in rewards.available():
        if name.startswith("test_") or name.startswith("ep_"):
            continue
        for completion in (text, f"<think>{text}</think><answer>{text}</answer>", f"<answer>[{text}"):
            value = call(rewards.get(name), [completion], **columns_for(name, gt))[0]
            assert value is None or (np.isfinite(value) and 0.0 <= value <= 1.0), (name, completion, value)


@settings(max_examples=80, deadline=None)
@given(st.lists(int_box, min_size=1, max_size=6), st.lists(int_box, min_size=0, max_size=8), st.randoms())
def test_permutation_invariance_of_predicted_boxes(gt, pred, rnd):
    """Matching rewards ignore answer order; AP ranks by confidence, so it does too when confidences
    differ (equal ones rank in answer order, as pycocotools: tests/test_ap.py)."""
    order = list(range(len(pred)))
    rnd.shuffle(order)
    cols = det_columns(gt, "pixels")
    for name in ["detection_iou", "detection_confidence"]:
        a, b = call(rewards.get(name), [det_answer(pred, "pixels"), det_answer([pred[i] for i in order], "pixels")], **cols)
        assert a == pytest.approx(b, abs=1e-12), name
    confidences = [0.05 + 0.9 * i / max(1, len(pred)) for i in range(len(pred))]
    ranked = "<answer>" + json.dumps([{"bbox_2d": b, "confidence": c} for b, c in zip(pred, confidences)]) + "</answer>"
    shuffled = "<answer>" + json.dumps([{"bbox_2d": pred[i], "confidence": confidences[i]} for i in order]) + "</answer>"
    a, b = call(rewards.get("detection_map"), [ranked, shuffled], **cols)
    assert a == pytest.approx(b, abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(st.lists(int_box, min_size=0, max_size=6), st.sampled_from(["norm1000", "norm1", "pixels"]),
       st.integers(100, 2000), st.integers(100, 2000))
def test_ground_truth_scores_one_in_every_convention(gt, fmt, w, h):
    gt = [[min(b[0], w - 2), min(b[1], h - 2), min(b[2], w), min(b[3], h)] for b in gt]
    gt = [b for b in gt if b[2] > b[0] and b[3] > b[1]]
    model_size = (max(28, w // 28 * 28), max(28, h // 28 * 28)) if fmt == "pixels" else None
    cols = det_columns(gt, fmt, image_size=(w, h), model_image_size=model_size)
    answer = det_answer(gt, fmt, image_size=(w, h), model_image_size=model_size, label="cat") if gt else "<think>x</think><answer>[]</answer>"
    for name in ["detection_iou", "detection_confidence", "detection_map", "format"]:
        assert call(rewards.get(name), [answer], **cols)[0] == pytest.approx(1.0), name
    if not gt:
        assert call(rewards.get("negative_sample"), [answer], **cols) == [1.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["rose", "daisy", "tulip", "sunflower", "iris"]), min_size=1, max_size=3, unique=True))
def test_classification_ground_truth_and_synonyms_score_one(names):
    sol = {"label": names[0], "synonyms": names[1:]}
    for n in names:
        assert call(rewards.get("classification_accuracy"), [f"<answer>{n.upper()}</answer>"],
                    task="classification", solution=sol) == [1.0]
