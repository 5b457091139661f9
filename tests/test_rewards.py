"""Each built-in reward on hand-worked cases, in every coordinate convention."""

import json

import pytest

import rewards
from rft.families import patch_grid_size as model_input_size
from reward_cases import call, det_answer, det_columns

GT2 = [[64, 48, 320, 240], [400, 300, 600, 460]]
RESIZED = model_input_size((640, 480), factor=28, min_pixels=3136, max_pixels=200_704)  # (504, 364)
CONVENTIONS = [("norm1000", None), ("norm1", None), ("pixels", RESIZED), ("pixels", None)]


@pytest.mark.parametrize("fmt, model_size", CONVENTIONS)
@pytest.mark.parametrize("name", ["detection_iou", "detection_confidence", "detection_map", "format"])
def test_ground_truth_scores_one(name, fmt, model_size):
    cols = det_columns(GT2, fmt, model_image_size=model_size)
    completion = det_answer(GT2, fmt, model_image_size=model_size, label="cat")
    assert call(rewards.get(name), [completion], **cols) == [pytest.approx(1.0)]


def test_rounded_norm1000_answer_scores_near_one():
    cols = det_columns(GT2, "norm1000")
    completion = det_answer(GT2, "norm1000", rounding=True)
    assert call(rewards.get("detection_iou"), [completion], **cols)[0] > 0.98


def test_detection_iou_hand_worked():
    fn = rewards.get("detection_iou")
    cols = det_columns([[0, 0, 100, 100], [200, 200, 300, 300]], "pixels", image_size=(400, 400))
    half = det_answer([[0, 0, 100, 50]], "pixels", image_size=(400, 400))  # IoU 0.5 with the first, misses one
    both = det_answer([[0, 0, 100, 50], [200, 200, 300, 300]], "pixels", image_size=(400, 400))
    extra = det_answer([[0, 0, 100, 100], [200, 200, 300, 300], [350, 350, 390, 390]], "pixels", image_size=(400, 400))
    assert call(fn, [half, both, extra], **cols) == pytest.approx([0.25, 0.75, 2 / 3])


def test_detection_iou_is_label_aware():
    cols = det_columns([[0, 0, 100, 100]], "pixels", image_size=(400, 400), labels=["dog"])
    wrong = det_answer([[0, 0, 100, 100]], "pixels", image_size=(400, 400), label="cat")
    right = det_answer([[0, 0, 100, 100]], "pixels", image_size=(400, 400), label="Dog")
    assert call(rewards.get("detection_iou"), [wrong, right], **cols) == [0.0, 1.0]
    assert call(rewards.get("detection_iou", label_aware=False), [wrong], **cols) == [1.0]


DETECTION_REWARDS = ["detection_iou", "detection_confidence", "detection_map"]


def labelled(boxes, labels):
    return "<answer>" + json.dumps([{"bbox_2d": b, "label": lab} for b, lab in zip(boxes, labels)]) + "</answer>"


def test_detection_rewards_treat_labels_alike():
    """Issue 15: swapped labels scored 1.0 by detection_map and 0 by detection_iou; "helmets" for
    "helmet" scored 0 by two rewards and 1.0 by the third. One rule now, one option to turn it off."""
    boxes = [[50, 60, 200, 300], [300, 100, 450, 350]]
    two = det_columns(boxes, "pixels", labels=["helmet", "person"])
    swapped, right = labelled(boxes, ["person", "helmet"]), labelled(boxes, ["Helmet", "person"])
    one = det_columns(boxes, "pixels", labels=["helmet", "helmet"])
    plural, other = labelled(boxes, ["helmets", "helmets"]), labelled(boxes, ["hats", "hats"])
    for name in DETECTION_REWARDS:
        assert call(rewards.get(name), [swapped, right], **two) == [0.0, pytest.approx(1.0)], name
        assert call(rewards.get(name), [plural, other], **one) == [pytest.approx(1.0), 0.0], name
        assert call(rewards.get(name, label_aware=False), [swapped, other], **two) == [pytest.approx(1.0)] * 2, name
        assert call(rewards.get(name), [swapped], **two, label_aware=False) == [0.0], name  # a column is no option
    unlabelled = det_answer(boxes, "pixels")  # a box without a label fits any label
    assert [call(rewards.get(n), [unlabelled], **two)[0] for n in DETECTION_REWARDS] == [pytest.approx(1.0)] * 3


@pytest.mark.parametrize("column, reward, task", [
    ("metric", "grounding_iou", "grounding"),           # raised ValueError
    ("template", "format", "grounding"),               # raised TypeError
    ("classes", "classification_accuracy", "classification"),  # changed the score
    ("none_phrases", "negative_sample", "detection"),   # changed the score
])
def test_dataset_columns_never_bind_to_reward_options(column, reward, task):
    """Issue 15: a dataset column named like a reward option became that option."""
    completions = {
        "grounding": "<think>x</think><answer>[[0, 0, 100, 100]]</answer>",
        "classification": "<answer>It is a daisy.</answer>",
        "detection": "<answer>nope</answer>",
    }
    values = {"metric": "the red car", "template": None, "classes": ["daisy", "rose"], "none_phrases": ["nope"]}
    cols = {"grounding": det_columns([[0, 0, 100, 100]], "pixels", task="grounding"),
            "classification": {"task": "classification", "solution": {"label": "daisy"}},
            "detection": det_columns([], "pixels")}[task]
    fn = rewards.get(reward)
    plain = call(fn, [completions[task]], **cols)
    assert call(fn, [completions[task]], **cols, **{column: values[column]}) == plain
    if column in ("classes", "none_phrases"):  # the option itself still changes the score
        assert call(rewards.get(reward, **{column: values[column]}), [completions[task]], **cols) != plain


def test_detection_on_a_resized_qwen25_image():
    # Qwen2.5-VL answers in pixels of the 504x364 image it saw; the ground truth is in 640x480 pixels.
    cols = det_columns(GT2, "pixels", model_image_size=RESIZED)
    answer = '<answer>[{"bbox_2d": [50.4, 36.4, 252.0, 182.0], "label": "cat"}]</answer>'
    naive = '<answer>[{"bbox_2d": [64, 48, 320, 240], "label": "cat"}]</answer>'  # original pixels: wrong frame
    good, bad = call(rewards.get("detection_iou"), [answer, naive], **cols)
    assert good == pytest.approx(0.5)  # one of two boxes, exact
    assert bad < 0.5


def test_detection_confidence_hand_worked():
    cols = det_columns([[0, 0, 100, 100]], "pixels", image_size=(400, 400))
    fn = rewards.get("detection_confidence", coverage=False)
    confident_hit = '<answer>[{"Position": [0, 0, 100, 100], "Confidence": 0.8}]</answer>'
    confident_miss = '<answer>[{"Position": [200, 200, 300, 300], "Confidence": 0.8}]</answer>'
    assert call(fn, [confident_hit, confident_miss], **cols) == pytest.approx([0.8, 0.2])
    both = '<answer>[{"Position": [0, 0, 100, 100], "Confidence": 0.9}, {"Position": [200, 200, 300, 300], "Confidence": 0.3}]</answer>'
    assert call(fn, [both], **cols) == pytest.approx([(0.9 + 0.7) / 2])
    assert call(rewards.get("detection_confidence"), [both], **cols) == pytest.approx([(0.9 + 0.7) / 2 * 0.5])


@pytest.mark.parametrize("name", ["detection_iou", "detection_confidence", "detection_map", "negative_sample"])
def test_negative_samples(name):
    cols = det_columns([], "norm1000")
    fn = rewards.get(name)
    said_none = ["<think>no cat</think><answer>No Objects</answer>", "<answer>[]</answer>", "<answer>none</answer>"]
    gave_box = ['<answer>[{"bbox_2d": [1, 1, 500, 500], "label": "cat"}]</answer>', "<answer>[[1, 1, 50, 50]]</answer>"]
    other = ["<answer></answer>", "I don't know", ""]
    assert call(fn, said_none + gave_box + other, **cols) == [1.0] * 3 + [0.0] * 5


def test_negative_sample_on_positives():
    cols = det_columns(GT2, "norm1000")
    box = det_answer(GT2)
    wrong_none = "<answer>No Objects</answer>"
    assert call(rewards.get("negative_sample"), [box, wrong_none], **cols) == [None, 0.0]
    assert call(rewards.get("negative_sample", positive_reward=1.0), [box, wrong_none], **cols) == [1.0, 0.0]


def test_multi_object_scene_partial_credit():
    gt = [[10 * i, 10 * i, 10 * i + 30, 10 * i + 30] for i in range(0, 50, 5)]  # 10 objects
    cols = det_columns(gt, "norm1000")
    half = det_answer(gt[:5])
    score = call(rewards.get("detection_iou"), [half], **cols)[0]
    assert score == pytest.approx(0.5)
    assert call(rewards.get("detection_map"), [half], **cols)[0] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("fmt, model_size", CONVENTIONS)
def test_grounding(fmt, model_size):
    gt = [[100, 100, 300, 300]]
    cols = det_columns(gt, fmt, model_image_size=model_size, task="grounding")
    exact = det_answer(gt, fmt, model_image_size=model_size)
    shifted = det_answer([[200, 100, 400, 300]], fmt, model_image_size=model_size)  # IoU 1/3
    two = det_answer(gt + [[0, 0, 50, 50]], fmt, model_image_size=model_size)
    fn = rewards.get("grounding_iou")
    assert call(fn, [exact, shifted, two], **cols) == pytest.approx([1.0, 1 / 3, 0.0])
    assert call(rewards.get("grounding_iou", multiple="first"), [two], **cols) == pytest.approx([1.0])
    giou = call(rewards.get("grounding_iou", metric="giou"), [exact, shifted], **cols)
    assert giou == pytest.approx([1.0, (1 / 3 - (300 * 200 - 60000) / (300 * 200) + 1) / 2])


def test_grounding_qwen2vl_style():
    cols = det_columns([[64, 48, 320, 240]], "norm1000", task="grounding")
    answer = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,100),(500,500)<|box_end|>"
    assert call(rewards.get("grounding_iou"), [answer], **cols) == [pytest.approx(1.0)]


CLS = {"task": "classification", "solution": {"label": "Golden_Retriever", "synonyms": ["golden"]}}


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>fur</think><answer>golden retriever</answer>", 1.0),
        ("<answer>Golden Retriever.</answer>", 1.0),
        ("<answer>the golden-retriever</answer>", 1.0),
        ("<answer>Golden</answer>", 1.0),
        ("<answer>labrador</answer>", 0.0),
        ("<answer>golden retriever or labrador</answer>", 0.0),
        ("<answer></answer>", 0.0),
        ("", 0.0),
        ("<think>golden retriever</think><answer>dog</answer>", 0.0),
        ("<think>golden retriever</think>", 0.0),
    ],
)
def test_classification(completion, expected):
    assert call(rewards.get("classification_accuracy"), [completion], **CLS) == [expected]


def test_classification_with_class_list():
    fn = rewards.get("classification_accuracy", classes=["golden retriever", "labrador", "poodle"])
    cases = ["<answer>It is a golden retriever.</answer>", "<answer>Golden retriever or labrador</answer>",
             "<answer>It is a poodle.</answer>", "<answer>a dog</answer>"]
    assert call(fn, cases, **CLS) == [1.0, 0.0, 0.0, 0.0]


def test_classification_is_conversational_aware():
    conv = [[{"role": "assistant", "content": "<answer>golden retriever</answer>"}],
            [{"role": "assistant", "content": [{"type": "text", "text": "<answer>poodle</answer>"}]}]]
    assert call(rewards.get("classification_accuracy"), conv, **CLS) == [1.0, 0.0]


def test_tagging_f1():
    cols = {"task": "tagging", "solution": {"tags": ["cat", "sofa", "window"]}}
    cases = ['<answer>["cat", "sofa", "window"]</answer>', "<answer>cat, sofa</answer>",
             "<answer>cat, sofa, window, dog, tree, car</answer>", "<answer></answer>"]
    assert call(rewards.get("tagging_f1"), cases, **cols) == pytest.approx([1.0, 0.8, 2 / 3, 0.0])


@pytest.mark.parametrize(
    "completion, task, expected",
    [
        ("<think>a</think><answer>[[1, 2, 3, 4]]</answer>", "detection", 1.0),
        ("<think>a</think>\n<answer>No Objects</answer>", "detection", 1.0),
        ("<think>a</think><answer>[[1, 2, 3, 4], [5, 6,</answer>", "detection", 0.0),
        ("<think>a</think><answer>[[4, 4, 1, 1]]</answer>", "detection", 0.0),
        ("<answer>[[1, 2, 3, 4]]</answer>", "detection", 0.0),
        ("<think>a</think><answer>[[1, 2, 3, 4]]</answer> trailing", "detection", 0.0),
        ("<think>a</think><answer>x</answer><answer>y</answer>", "classification", 0.0),
        ("<think>a</think><answer>daisy</answer>", "classification", 1.0),
        ("<think>a</think><answer> </answer>", "classification", 0.0),
    ],
)
def test_format(completion, task, expected):
    cols = {"task": task, "solution": {"boxes": [[1, 2, 3, 4]]}, "image_size": [10, 10]}
    assert call(rewards.get("format"), [completion], **cols) == [expected]


def test_format_custom_template():
    fn = rewards.get("format", template=r"<answer>.*</answer>", check_answer=False)
    assert call(fn, ["<answer>x</answer>", "<think></think><answer>x</answer>"], task="classification") == [1.0, 0.0]


def test_rewards_return_none_for_other_tasks():
    cols = {"task": "classification", "solution": {"label": "cat"}}
    for name in ["detection_iou", "detection_confidence", "detection_map", "grounding_iou", "negative_sample", "tagging_f1"]:
        assert call(rewards.get(name), ["<answer>cat</answer>"], **cols) == [None], name


def test_mixed_task_batch_routes_rewards():
    completions = ["<answer>[[0, 0, 500, 500]]</answer>", "<answer>cat</answer>"]
    cols = {
        "task": ["detection", "classification"],
        "solution": [{"boxes": [[0, 0, 320, 240]]}, {"label": "cat"}],
        "image_size": [[640, 480], None],
        "coord_format": ["norm1000", None],
    }
    assert rewards.get("detection_iou")(completions, **cols) == [1.0, None]
    assert rewards.get("classification_accuracy")(completions, **cols) == [None, 1.0]


def test_trl_extra_kwargs_are_ignored():
    out = rewards.get("classification_accuracy")(
        ["<answer>cat</answer>"], prompts=["p"], completion_ids=[[1]], trainer_state=None,
        log_extra=None, log_metric=None, solution=[{"label": "cat"}], task=["classification"],
    )
    assert out == [1.0]


def test_missing_image_size_is_a_clear_error():
    with pytest.raises(ValueError, match="image_size"):
        rewards.get("detection_iou")(["<answer>[[1, 2, 3, 4]]</answer>"], solution=[{"boxes": [[1, 2, 3, 4]]}],
                                     coord_format=["norm1000"], task=["detection"])
