"""Answer parsing: templates, every box style, truncation, "no object", hostile input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.parsing import extract_answer, normalize_label, normalize_text, parse_boxes, parse_list, says_none


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>a</think><answer>cat</answer>", "cat"),
        ("<think>\nmulti\nline\n</think>\n<answer>\n dog \n</answer>", "dog"),
        ("<answer>first</answer> then <answer>second</answer>", "second"),
        ("<think>the answer is cat</think>", ""),  # reasoning never counts
        ("<think>still thinking about cat", ""),  # unclosed think swallows the rest
        ("plain answer", "plain answer"),
        ("<think>x</think>bare", "bare"),
        ("<answer>[[1, 2, 3, 4], [5, 6", "[[1, 2, 3, 4], [5, 6"),  # cut by the length limit
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_require_tags():
    assert extract_answer("cat", require_tags=True) is None
    assert extract_answer("<answer>cat</answer>", require_tags=True) == "cat"
    assert extract_answer(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "answer",
    [
        '[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]',
        "[{'bbox_2d': [10, 20, 30, 40], 'label': 'cat'}]",
        '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]\n```',
        '{"bbox_2d": [10, 20, 30, 40], "label": "cat"}',
        "[[10, 20, 30, 40]]",
        "[10, 20, 30, 40]",
        "(10,20),(30,40)",
        "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|>",
        "[{'Position': [10, 20, 30, 40], 'Confidence': 0.9}]",
        "The cat is at [10, 20, 30, 40].",
    ],
)
def test_parse_box_styles(answer):
    parsed = parse_boxes(answer)
    assert parsed.parsed and parsed.n_invalid == 0
    np.testing.assert_allclose(parsed.boxes, [[10, 20, 30, 40]])


def test_parse_labels_and_confidence():
    parsed = parse_boxes("[{'Position': [1, 2, 3, 4], 'Confidence': 0.25, 'label': 'dog'}, {'bbox': [5, 6, 7, 8]}]")
    assert parsed.labels == ("dog", None)
    assert parsed.scores == (0.25, None)
    assert parsed.strict


def test_truncated_answer_recovers_complete_boxes():
    parsed = parse_boxes('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "label": "b"}, {"bbox_2d": [9, 1')
    np.testing.assert_allclose(parsed.boxes, [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert parsed.parsed and not parsed.strict
    bare = parse_boxes("[[1, 2, 3, 4], [5, 6, 7, 8], [9,")
    np.testing.assert_allclose(bare.boxes, [[1, 2, 3, 4], [5, 6, 7, 8]])


@pytest.mark.parametrize("answer", ["[]", "No Objects", "none", "None.", "no objects", " nothing ", "There is no such object."])
def test_none_answers(answer):
    parsed = parse_boxes(answer)
    assert parsed.says_none and parsed.parsed and parsed.n_pred == 0


def test_none_phrases_configurable():
    assert not parse_boxes("absent").says_none
    assert parse_boxes("absent", none_phrases=("absent",)).says_none
    assert says_none("NO OBJECTS!")
    assert not says_none("no objects, but maybe a cat at [1,2,3,4]")


@pytest.mark.parametrize(
    "answer, n_valid, n_invalid",
    [
        ("[[NaN, 1, 2, 3]]", 0, 1),
        ("[[Infinity, 1, 2, 3], [1, 2, 3, 4]]", 1, 1),
        ('[{"bbox_2d": [5, 5, 1, 1]}]', 0, 1),  # inverted
        ('[{"bbox_2d": [3, 3, 3, 9]}]', 0, 1),  # degenerate
        ('[{"bbox_2d": ["a", 1, 2, 3]}]', 0, 1),
        ('[{"bbox_2d": [1, 2, 3]}]', 0, 1),
        ('[{"bbox_2d": [true, 1, 2, 3]}]', 0, 1),
        ('[{"Position": [1, 2, 3, 4], "Confidence": NaN}]', 0, 1),
        ('[{"Position": [1, 2, 3, 4], "Confidence": 1.5}]', 0, 1),
        ('[{"Position": [1, 2, 3, 4], "Confidence": "high"}]', 0, 1),
        ('[{"bbox_2d": "1,2,3,4"}, "text", 5]', 0, 3),
    ],
)
def test_invalid_boxes_are_counted(answer, n_valid, n_invalid):
    parsed = parse_boxes(answer)
    assert (len(parsed.boxes), parsed.n_invalid) == (n_valid, n_invalid)
    assert np.isfinite(parsed.boxes).all()


def test_box_spam_is_capped():
    parsed = parse_boxes(str([[1, 2, 3, 4]] * 250), max_boxes=100)
    assert len(parsed.boxes) == 100 and parsed.n_invalid == 150


@pytest.mark.parametrize(
    "answer",
    ["[" * 100_000, "9" * 1_000_000, "{" * 50_000 + "}" * 10, "(1," * 100_000, "[1, 2, 3, " * 100_000, "\x00" * 1000],
)
def test_huge_and_hostile_inputs_do_not_raise(answer):
    parsed = parse_boxes(answer)
    assert len(parsed.boxes) <= 100


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_raises_on_arbitrary_text(text):
    parsed = parse_boxes(extract_answer(text))
    assert parsed.boxes.shape[1] == 4 and np.isfinite(parsed.boxes).all()
    assert (parsed.boxes[:, 2] > parsed.boxes[:, 0]).all() and (parsed.boxes[:, 3] > parsed.boxes[:, 1]).all()
    assert len(parsed.labels) == len(parsed.scores) == len(parsed.boxes)


box_strategy = st.tuples(
    st.floats(0, 500), st.floats(0, 500), st.floats(1, 500), st.floats(1, 500)
).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=200, deadline=None)
@given(st.lists(box_strategy, max_size=12), st.sampled_from(["qwen25", "visual_rft", "bare"]))
def test_parse_roundtrip(boxes, style):
    if style == "qwen25":
        text = str([{"bbox_2d": b, "label": "x"} for b in boxes])
    elif style == "visual_rft":
        text = str([{"Position": b, "Confidence": 1} for b in boxes])
    else:
        text = str(boxes)
    parsed = parse_boxes(text)
    if boxes:
        np.testing.assert_allclose(parsed.boxes, np.array(boxes).reshape(-1, 4))
    else:
        assert parsed.says_none
    assert parsed.n_invalid == 0 and parsed.strict


def test_normalize_text():
    assert normalize_text("  The Golden_Retriever! ") == "golden retriever"
    assert normalize_text("sun-flower") == "sun flower"
    assert not math.isnan(len(normalize_text("\x00")))


@pytest.mark.parametrize("label, normal", [
    ("helmet", "helmet"), ("Helmets", "helmet"), ("the Traffic_Lights", "traffic light"), ("berries", "berry"),
    ("boxes", "box"), ("benches", "bench"), ("glasses", "glass"), ("shoes", "shoe"), ("people", "person"),
    ("knives", "knife"), ("buses", "bus"), ("bus", "bus"), ("grass", "grass"), ("cactus", "cactus"),
    ("axis", "axis"), ("gas", "gas"), ("sports ball", "sports ball"), ("Hot-Dogs!", "hot dog"), ("", ""),
])
def test_normalize_label(label, normal):
    assert normalize_label(label) == normal
    assert normalize_label(normal) == normal  # idempotent: a singular label stays as it is


def test_parse_list():
    assert parse_list('["Cat", "dog"]') == ["cat", "dog"]
    assert parse_list("cat, dog; tree\nsky") == ["cat", "dog", "tree", "sky"]
    assert parse_list("") == [] and parse_list(None) == []
