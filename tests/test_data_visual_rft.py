"""Visual-RFT's format imported as is, and its answers scoring 1.0 against the imported rows."""

from __future__ import annotations

import json

import datasets
import pytest
from PIL import Image

import rewards
from rft.data.build import to_trl_rows
from rft.data.visual_rft import load_visual_rft
from rft.errors import DataError, RecipeError
from test_data_helpers import columns, make_image, write_jsonl

PROBLEM = ("Detect all objects belonging to the category 'dog' in the image, and provide the bounding boxes "
           "(between 0 and 1000, integer) and confidence (between 0 and 1, with two decimal places). If no object "
           "belonging to the category 'dog' in the image, return 'No Objects'. Output the thinking process in "
           "<think> </think> and final answer in <answer> </answer> tags. The output answer format should be as "
           "follows: <think> ... </think> <answer>[{'Position': [x1, y1, x2, y2], 'Confidence': number}, ...]</answer>")
DETECTION = "<answer>[{'Position': [100, 200, 400, 800], 'Confidence': 1}, {'Position': [500, 0, 1000, 500], 'Confidence': 1}]</answer>"
CLS_PROBLEM = "This is an image of a flower. Which species is it? Output the final answer in <answer> </answer> tags."
RECORDS = [
    {"image": "a.png", "problem": PROBLEM, "solution": DETECTION},
    {"image": "a.png", "problem": PROBLEM.replace("dog", "cat"), "solution": "<answer>[]</answer>"},
    {"image": "a.png", "problem": CLS_PROBLEM, "solution": "<answer>daisy</answer>"},
]
PATTERN = r"category '(?P<category>[^']+)'"
BUDGET = dict(min_pixels=28 * 28, max_pixels=28 * 28 * 16, factor=28)


def write(tmp_path, records=RECORDS, name="vrft.json"):
    make_image(tmp_path / "a.png", (200, 100))
    path = tmp_path / name
    if name.endswith(".jsonl"):
        return write_jsonl(path, records)
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("name", ["vrft.json", "vrft.jsonl"])
def test_rows(tmp_path, name):
    rows, report = load_visual_rft(write(tmp_path, name=name), name="vrft")
    det, neg, cls = rows
    assert [r["id"] for r in rows] == ["vrft:1", "vrft:2", "vrft:3"] and report.negatives == 1
    assert det["task"] == "detection" and det["image_size"] == [200, 100]
    assert det["solution"] == {"boxes": [[20.0, 20.0, 80.0, 80.0], [100.0, 0.0, 200.0, 50.0]], "labels": []}
    assert det["query"] == {"problem": PROBLEM, "coord_format": "norm1000"}
    assert neg["task"] == "detection" and neg["solution"]["boxes"] == []
    assert cls["task"] == "classification" and cls["solution"] == {"label": "daisy", "synonyms": []}
    assert cls["query"] == {"classes": None, "problem": CLS_PROBLEM}


def test_answer_written_from_the_ground_truth_scores_one(tmp_path):
    rows, _ = load_visual_rft(write(tmp_path), name="vrft")
    fn = rewards.get("detection_iou")
    for row in rows[:2]:
        cols = {"task": [row["task"]], "solution": [row["solution"]], "image_size": [row["image_size"]],
                "coord_format": [row["query"]["coord_format"]]}
        answer = next(r["solution"] for r in RECORDS if r["problem"] == row["query"]["problem"])
        assert fn([f"<think>...</think>{answer}"], **cols) == [pytest.approx(1.0)]
    # Through TRL rows, for a pixel-answering family: the verbatim problem keeps its 0..1000 convention.
    trl = to_trl_rows(rows, family="qwen2_5_vl", resized_dir=tmp_path / "resized", **BUDGET)
    assert [t["coord_format"] for t in trl[:2]] == ["norm1000", "norm1000"]
    assert trl[0]["prompt"][0]["content"][1]["text"] == PROBLEM
    assert trl[2]["prompt"][0]["content"][1]["text"] == CLS_PROBLEM
    assert fn([DETECTION, "<answer>[]</answer>"], **{k: v[:2] for k, v in columns_of(trl).items()}) == [1.0, 1.0]
    assert rewards.get("classification_accuracy")(["<answer>Daisy</answer>"], **columns(trl[2])) == [1.0]


def columns_of(trl_rows):
    return {k: [t[k] for t in trl_rows] for k in ("task", "solution", "image_size", "coord_format", "model_image_size")}


def test_category_from_the_problem(tmp_path):
    rows, _ = load_visual_rft(write(tmp_path), name="vrft", category_pattern=PATTERN)
    assert rows[0]["query"] == {"problem": PROBLEM, "category": "dog"}
    assert rows[0]["solution"]["labels"] == ["dog", "dog"] and rows[1]["query"]["category"] == "cat"
    trl = to_trl_rows(rows, family="qwen2_5_vl", resized_dir=tmp_path / "resized", **BUDGET)
    assert trl[0]["coord_format"] == "pixels" and "bbox_2d" in trl[0]["prompt"][0]["content"][1]["text"]
    with_field = [{**RECORDS[0], "category": "hound"}]
    rows, _ = load_visual_rft(write(tmp_path, with_field, "f.json"), name="v", category_pattern=PATTERN)
    assert rows[0]["query"]["category"] == "hound"  # the record's own field wins


def test_hugging_face_dataset(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "problem": datasets.Value("string"),
                                  "solution": datasets.Value("string")})
    data = {"image": [Image.new("RGB", (200, 100))] * 3, **{k: [r[k] for r in RECORDS] for k in ("problem", "solution")}}
    datasets.Dataset.from_dict(data, features=features).save_to_disk(tmp_path / "ds")
    rows, _ = load_visual_rft(tmp_path / "ds", name="vrft", split="train", cache_dir=tmp_path / "cache")
    assert [r["task"] for r in rows] == ["detection", "detection", "classification"]
    assert rows[0]["id"] == "vrft:train:0" and rows[0]["solution"]["boxes"][0] == [20.0, 20.0, 80.0, 80.0]
    assert len(list((tmp_path / "cache").iterdir())) == 1  # three samples, one image, written once


def test_untagged_solution_is_a_class_name(tmp_path):
    rows, _ = load_visual_rft(write(tmp_path, [{**RECORDS[2], "solution": "daisy"}]), name="v")
    assert rows[0]["solution"]["label"] == "daisy"


@pytest.mark.parametrize("solution, message", [
    ("<answer></answer>", r"record 1 field 'solution': the answer is empty"),
    ("<answer>[{'Position': [400, 200, 100, 800], 'Confidence': 1}]</answer>", r"record 1 field 'solution': expected a list of valid boxes"),
    ("<answer>[{'Position': [100, 200, 400, 1200]}]</answer>", r"record 1 field 'solution': box \[20.0, 20.0, 80.0, 120.0\] lies outside the 200x100 image"),
])
def test_bad_solutions(tmp_path, solution, message):
    with pytest.raises(DataError, match=message):
        load_visual_rft(write(tmp_path, [{**RECORDS[0], "solution": solution}]), name="v")


def test_bad_files_and_patterns(tmp_path):
    with pytest.raises(DataError, match=r"vrft.json: expected a JSON list of records, got dict"):
        load_visual_rft(write(tmp_path, {"a": 1}), name="v")
    with pytest.raises(DataError, match=r"vrft.json record 2: expected a JSON object, got int"):
        load_visual_rft(write(tmp_path, [RECORDS[0], 5]), name="v")
    with pytest.raises(DataError, match=r"vrft.json record 1: missing required field 'problem'"):
        load_visual_rft(write(tmp_path, [{"image": "a.png", "solution": DETECTION}]), name="v")
    with pytest.raises(DataError, match=r"record 1: category_pattern .* does not match the problem"):
        load_visual_rft(write(tmp_path), name="v", category_pattern=r"class <(\w+)>")
    with pytest.raises(RecipeError, match="needs a group"):
        load_visual_rft(write(tmp_path), name="v", category_pattern=r"category '\w+'")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image": "a.png",\n "problem": }]')
    with pytest.raises(DataError, match=r"bad.json line 2: not valid JSON"):
        load_visual_rft(bad, name="v")
