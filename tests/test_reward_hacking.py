"""Answers that try to game the rewards score low and never crash."""

import json

import pytest

import rewards
from reward_cases import call, det_answer, det_columns

GT = [[100, 100, 200, 200], [400, 300, 500, 400]]
COLS = det_columns(GT, "pixels", image_size=(640, 480))
BOX_REWARDS = ["detection_iou", "detection_confidence", "detection_map"]


def spam(n=60, conf=None):
    boxes = [[x, y, x + 100, y + 100] for x in range(0, 540, 60) for y in range(0, 380, 60)][:n]
    return det_answer(GT[:1] + boxes, "pixels", conf=conf)


@pytest.mark.parametrize("name", BOX_REWARDS)
def test_box_spam_scores_low(name):
    assert call(rewards.get(name), [spam()], **COLS)[0] < 0.2


def test_low_confidence_spam_does_not_pay_in_confidence_reward():
    assert call(rewards.get("detection_confidence"), [spam(conf=0.0)], **COLS)[0] < 0.05


@pytest.mark.parametrize("name", ["detection_iou", "detection_confidence", "detection_map", "grounding_iou"])
def test_one_giant_box_scores_low(name):
    giant = det_answer([[0, 0, 640, 480]], "pixels")
    task = "grounding" if name == "grounding_iou" else "detection"
    assert call(rewards.get(name), [giant], **{**COLS, "task": task})[0] < 0.1


@pytest.mark.parametrize("name", BOX_REWARDS)
def test_duplicates_of_one_correct_box_score_low(name):
    dupes = det_answer([GT[0]] * 10, "pixels")
    correct_one = det_answer([GT[0]], "pixels")
    dup_score, one_score = call(rewards.get(name), [dupes, correct_one], **COLS)
    assert dup_score <= 0.25 * one_score and dup_score < 0.15


def test_boxes_on_a_negative_score_zero_whatever_their_confidence():
    cols = det_columns([], "pixels")
    answer = det_answer([[0, 0, 10, 10]] * 5, "pixels", conf=0.0)
    for name in BOX_REWARDS + ["negative_sample"]:
        assert call(rewards.get(name), [answer], **cols) == [0.0], name


@pytest.mark.parametrize("answer", ["cat or dog", "cat, dog", "cat/dog", "cat and dog", "either cat or dog", "cat dog"])
def test_hedged_classification_scores_zero(answer):
    fn = rewards.get("classification_accuracy", classes=["cat", "dog"])
    assert call(fn, [f"<answer>{answer}</answer>"], task="classification", solution={"label": "cat"}) == [0.0]


@pytest.mark.parametrize("name", rewards.available())
@pytest.mark.parametrize("completion", ["", "<answer></answer>", "   ", "<think>everything</think>"])
def test_empty_answers_score_zero(name, completion):
    task = {"classification_accuracy": "classification", "tagging_f1": "tagging", "grounding_iou": "grounding"}.get(name, "detection")
    cols = {**COLS, "task": task, "solution": json.dumps({"boxes": GT, "label": "cat", "tags": ["cat"]})}
    assert call(rewards.get(name), [completion], **cols)[0] in (0.0, None)


def test_nan_confidences_score_low():
    nan_conf = '<answer>[{"Position": [100, 100, 200, 200], "Confidence": NaN}, {"Position": [400, 300, 500, 400], "Confidence": NaN}]</answer>'
    for name in BOX_REWARDS:
        assert call(rewards.get(name), [nan_conf], **COLS) == [0.0], name


def test_tag_spam_scores_low():
    cols = {"task": "tagging", "solution": {"tags": ["cat", "sofa"]}}
    words = ", ".join(["cat", "sofa"] + [f"thing{i}" for i in range(40)])
    assert call(rewards.get("tagging_f1"), [f"<answer>{words}</answer>"], **cols)[0] < 0.1
