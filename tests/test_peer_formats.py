"""Other projects' datasets, written exactly in their own formats, load through a recipe entry into
the right task with boxes in pixels of the original image; their answers, written back in the
model's convention, score 1; unreadable rows name the file, line and field."""

from __future__ import annotations

import json

import datasets
import pytest
from PIL import Image

import rewards
from rft.data.answers import reference_answer
from rft.data.build import to_trl_rows
from rft.data.sources import dataset_rows
from rft.errors import DataError
from rft.recipe.schema import DatasetSpec
from test_data_helpers import make_image, write_jsonl

W, H = 640, 480
BUDGET = dict(min_pixels=28 * 28, max_pixels=28 * 28 * 64, factor=28)
REWARD_OF = {"detection": "detection_iou", "grounding": "grounding_iou", "classification": "classification_accuracy"}

# Visual-RFT: the detection prompt of its COCO / LVIS data, and its classification prompt.
VRFT_PROBLEM = ("Detect all objects belonging to the category '{}' in the image, and provide the bounding boxes (between 0 "
                "and 1000, integer) and confidence (between 0 and 1, with two decimal places). If no object belonging to "
                "the category '{}' in the image, return 'No Objects'. Output the thinking process in <think> </think> and "
                "final answer in <answer> </answer> tags.The output answer format should be as follows:\n<think> ... "
                "</think> <answer>[{{'Position': [x1, y1, x2, y2], 'Confidence': number}}, ...]</answer>\nPlease strictly "
                "follow the format.")
VRFT_CLS = ("This is an image containing a plant. Please identify the species of the plant based on the image.\nOutput the "
            "thinking process in <think> </think> and final answer in <answer> </answer> tags.")
PATTERN = r"category '(?P<category>[^']+)'"


def spec(**fields) -> DatasetSpec:
    return DatasetSpec(**fields)


def rows_of(tmp_path, **fields):
    return dataset_rows(spec(name="peer", **fields), "error", tmp_path / "cache")


def norm1000(box, size=(W, H)):
    """A pixel box written as Visual-RFT / Qwen2-VL write it: int(v / side * 1000)."""
    return [int(v / size[i % 2] * 1000) for i, v in enumerate(box)]


def pixels(box1000, size=(W, H)):
    return [v * size[i % 2] / 1000 for i, v in enumerate(box1000)]


def scores_one(rows, tmp_path, family="qwen2_5_vl"):
    """Each row's ground truth, written as the model would answer, scores 1 with its task's reward."""
    trl = to_trl_rows(rows, family=family, resized_dir=tmp_path / "resized", **BUDGET)
    for row in trl:
        cols = {k: [row[k]] for k in ("task", "solution", "image_size", "coord_format", "model_image_size")}
        assert rewards.get(REWARD_OF[row["task"]])([reference_answer(row)], **cols) == [pytest.approx(1.0, abs=0.05)], row["id"]
    return trl


# ---------------------------------------------------------------------------------------------
# Visual-RFT


def test_visual_rft_json_list_with_image_path(tmp_path):
    """The JSON its dataset/build_dataset.ipynb reads: image_path, problem, solution."""
    image = make_image(tmp_path / "coco" / "000000000139.jpg", (W, H))
    helmet = [50, 60, 200, 300]
    records = [
        {"image_path": str(image), "problem": VRFT_PROBLEM.format("helmet", "helmet"),
         "solution": f"<answer>[{{'Position': {norm1000(helmet)}, 'Confidence': 1}}]</answer>"},
        {"image_path": str(image), "problem": VRFT_PROBLEM.format("zebra", "zebra"), "solution": "<answer>No Objects</answer>"},
        {"image_path": str(image), "problem": VRFT_CLS, "solution": "<answer>passion flower</answer>"},
    ]
    (tmp_path / "vrft.json").write_text(json.dumps(records, indent=4))
    rows = rows_of(tmp_path, kind="visual_rft", path=str(tmp_path / "vrft.json"), options={"category_pattern": PATTERN})
    det, neg, cls = rows
    assert det["task"] == "detection" and det["solution"]["labels"] == ["helmet"]
    assert det["solution"]["boxes"][0] == pytest.approx(pixels(norm1000(helmet)))
    assert det["query"]["category"] == "helmet" and det["image"] == str(image)
    # issue 15: "No Objects", as its own prompt asks, was a classification row labelled "No Objects"
    assert neg["task"] == "detection" and neg["solution"] == {"boxes": [], "labels": []}
    assert neg["query"]["category"] == "zebra"
    assert cls["task"] == "classification" and cls["solution"]["label"] == "passion flower"
    scores_one(rows, tmp_path)


def test_visual_rft_no_objects_without_a_category_pattern(tmp_path):
    image = make_image(tmp_path / "a.jpg", (W, H))
    path = write_jsonl(tmp_path / "v.jsonl", [{"image": str(image), "problem": VRFT_PROBLEM.format("cat", "cat"),
                                              "solution": "<answer>No Objects</answer>"}])
    (row,) = rows_of(tmp_path, kind="visual_rft", path=str(path), task="detection")
    assert row["task"] == "detection" and row["solution"]["boxes"] == []
    assert row["query"] == {"problem": VRFT_PROBLEM.format("cat", "cat"), "coord_format": "norm1000"}
    trl = to_trl_rows([row], family="qwen2_5_vl", resized_dir=tmp_path / "r", **BUDGET)
    cols = {k: [trl[0][k]] for k in ("task", "solution", "image_size", "coord_format", "model_image_size")}
    assert rewards.get("negative_sample")(["<answer>No Objects</answer>"], **cols) == [1.0]


def test_visual_rft_hf_dataset_dict_through_a_recipe(tmp_path):
    """Issue 15: kind visual_rft dropped split ("no split None") and options (labels came out [])."""
    source = make_image(tmp_path / "src.png", (W, H))
    helmet = [50, 60, 200, 300]
    # As dataset/build_dataset.ipynb builds it: images opened and converted to RGBA, one 'train' split.
    data = {"image": [Image.open(source).convert("RGBA")] * 2,
            "problem": [VRFT_PROBLEM.format("helmet", "helmet"), VRFT_CLS],
            "solution": [f"<answer>[{{'Position': {norm1000(helmet)}, 'Confidence': 1}}]</answer>", "<answer>daisy</answer>"]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(data)}).save_to_disk(str(tmp_path / "share_data" / "vrft"))
    rows = rows_of(tmp_path, kind="visual_rft", path=str(tmp_path / "share_data" / "vrft"), split="train",
                   options={"category_pattern": PATTERN})
    assert [r["task"] for r in rows] == ["detection", "classification"] and rows[0]["id"] == "peer:train:0"
    assert rows[0]["solution"]["labels"] == ["helmet"]
    assert rows[0]["solution"]["boxes"][0] == pytest.approx(pixels(norm1000(helmet)))
    assert rows[0]["image_size"] == [W, H]
    with pytest.raises(DataError, match=r"no split 'test'; splits: \['train'\]"):
        rows_of(tmp_path, kind="visual_rft", path=str(tmp_path / "share_data" / "vrft"), split="test")
    scores_one(rows, tmp_path)


def lisa_record(index, image, instruction, box, size=(W, H)):
    """Exactly what Visual-RFT's lisa_evaluation/gen_sft.py writes."""
    w, h = size
    return {
        "id": f"lisa_{index}",
        "conversations": [
            {"from": "user",
             "value": f"<img>{image}</img>\n Output the bounding box in the image corresponding to the instruction: {instruction}"},
            {"from": "assistant",
             "value": f"({int(box[0] / w * 1000)},{int(box[1] / h * 1000)}),({int(box[2] / w * 1000)},{int(box[3] / h * 1000)})"},
        ],
    }


def test_visual_rft_lisa_grounding_json(tmp_path):
    image = make_image(tmp_path / "LISA" / "train" / "img1.jpg", (W, H))
    box = [120.5, 33.0, 300.0, 410.7]
    instruction = "what part of this vehicle would you hold to steer it?"
    (tmp_path / "lisa_train_sft.json").write_text(json.dumps([lisa_record(0, image, instruction, box)], indent=4))
    (row,) = rows_of(tmp_path, kind="visual_rft", path=str(tmp_path / "lisa_train_sft.json"))
    assert row["task"] == "grounding" and row["query"] == {"phrase": instruction}
    assert row["solution"]["boxes"][0] == pytest.approx(pixels(norm1000(box)))
    assert row["solution"]["boxes"][0] == pytest.approx(box, abs=1.0)  # within the 0..1000 rounding
    trl = scores_one([row], tmp_path, family="qwen2_vl")
    assert trl[0]["coord_format"] == "norm1000"


def test_visual_rft_point_pair_solution_is_grounding(tmp_path):
    """Issue 15: a (x1,y1),(x2,y2) solution was a classification label."""
    image = make_image(tmp_path / "a.jpg", (W, H))
    path = write_jsonl(tmp_path / "g.jsonl", [{
        "image": str(image), "problem": "Output the bounding box in the image corresponding to the instruction: the red car",
        "solution": "<answer>(100,200),(500,700)</answer>"}])
    (row,) = rows_of(tmp_path, kind="visual_rft", path=str(path))
    assert row["task"] == "grounding" and row["query"] == {"phrase": "the red car"}
    assert row["solution"] == {"boxes": [[64.0, 96.0, 320.0, 336.0]], "labels": ["the red car"]}


# ---------------------------------------------------------------------------------------------
# VLM-R1


def test_vlm_r1_rec_records(tmp_path):
    """Its rec_jsons_processed records: image relative to --image_folders, solution in pixels."""
    make_image(tmp_path / "coco" / "train2014" / "COCO_train2014_000000581857.jpg", (W, H))
    box = [103.93, 299.99, 238.15, 477.41]
    records = [
        {"image": "train2014/COCO_train2014_000000581857.jpg",
         "problem": "Please provide the bounding box coordinate of the region this sentence describes: the lady with the blue shirt.",
         "normal_caption": "the lady with the blue shirt", "solution": box, "normalized_solution": norm1000(box)},
        {"image": "train2014/COCO_train2014_000000581857.jpg",
         "problem": "Please provide the bounding box coordinate of the region this sentence describes: the man.",
         "normalized_solution": [10, 20, 300, 900]},
    ]
    records.append({"image": "train2014/COCO_train2014_000000581857.jpg", "problem": "Locate: the two dogs",
                    "normal_caption": "the two dogs", "bbox_list": [[1, 2, 30, 40], [50, 60, 70, 80]]})
    (tmp_path / "refcoco_train.json").write_text(json.dumps(records))
    rows = rows_of(tmp_path, kind="vlm_r1", path=str(tmp_path / "refcoco_train.json"), image_dir=str(tmp_path / "coco"))
    lady, man, dogs = rows
    assert dogs["task"] == "grounding" and dogs["solution"]["boxes"] == [[1.0, 2.0, 30.0, 40.0], [50.0, 60.0, 70.0, 80.0]]
    assert lady["task"] == "grounding" and lady["query"] == {"phrase": "the lady with the blue shirt"}
    assert lady["solution"]["boxes"] == [box] and lady["image_size"] == [W, H]
    assert man["query"] == {"phrase": "the man"} and man["solution"]["boxes"][0] == pytest.approx(pixels([10, 20, 300, 900]))
    scores_one([lady, man], tmp_path)
    with pytest.raises(DataError, match="REC records are grounding rows"):
        rows_of(tmp_path, kind="vlm_r1", path=str(tmp_path / "refcoco_train.json"), task="detection")


def vlm_r1_conversation(index, image, question, answer):
    return {"id": index, "image": image,
            "conversations": [{"from": "human", "value": f"<image>{question}"}, {"from": "gpt", "value": answer}]}


def bbox_json(items):
    return "```json\n" + json.dumps(items, indent=2) + "\n```"


def test_vlm_r1_conversations_rec(tmp_path):
    make_image(tmp_path / "images" / "a.jpg", (W, H))
    question = "Please provide the bounding box coordinate of the region this sentence describes: the red car."
    path = write_jsonl(tmp_path / "rec.jsonl", [
        vlm_r1_conversation(1, "a.jpg", question, bbox_json([{"bbox_2d": [10, 20, 50, 60], "label": "the red car"}])),
        vlm_r1_conversation(2, "a.jpg", question.replace("red", "blue"), bbox_json([{"bbox_2d": [100, 20, 150, 60]}])),
    ])
    rows = rows_of(tmp_path, kind="vlm_r1", path=str(path), image_dir=str(tmp_path / "images"))
    assert [r["task"] for r in rows] == ["grounding", "grounding"] and [r["id"] for r in rows] == ["peer:1", "peer:2"]
    assert rows[0]["query"] == {"phrase": "the red car"} and rows[0]["solution"]["boxes"] == [[10.0, 20.0, 50.0, 60.0]]
    assert rows[1]["query"] == {"phrase": "the blue car"}
    scores_one(rows, tmp_path)


def test_vlm_r1_conversations_open_vocabulary_detection(tmp_path):
    make_image(tmp_path / "a.jpg", (W, H))
    question = ("Please carefully check the image and detect the following objects: ['car', 'person']. Output each detected "
                "target's bbox coordinates in JSON format. If there are no such targets in the image, simply respond with None.")
    path = write_jsonl(tmp_path / "ovd.jsonl", [
        vlm_r1_conversation(1, "a.jpg", question, bbox_json([{"bbox_2d": [10, 20, 50, 60], "label": "car"},
                                                             {"bbox_2d": [300, 100, 400, 470], "label": "person"}])),
        vlm_r1_conversation(2, "a.jpg", question.replace("'car', 'person'", "'zebra'"), "None"),
    ])
    det, neg = rows_of(tmp_path, kind="vlm_r1", path=str(path))
    assert det["task"] == "detection" and det["solution"] == {
        "boxes": [[10.0, 20.0, 50.0, 60.0], [300.0, 100.0, 400.0, 470.0]], "labels": ["car", "person"]}
    assert det["query"] == {"problem": question}  # verbatim: the model answers in its family's convention
    assert neg["task"] == "detection" and neg["solution"]["boxes"] == []
    scores_one([det, neg], tmp_path)


# ---------------------------------------------------------------------------------------------
# messages + images (LLaMA-Factory sharegpt, ms-swift)


def test_messages_detection_and_grounding(tmp_path):
    make_image(tmp_path / "data" / "imgs" / "1.jpg", (W, H))
    detection = [
        {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "<image>Find every cat in the image."},
                      {"role": "assistant", "content": bbox_json([{"bbox_2d": [10, 20, 50, 60], "label": "cat"},
                                                                  {"bbox_2d": [200, 20, 250, 60], "label": "cats"}])}],
         "images": ["imgs/1.jpg"]},
        {"messages": [{"role": "user", "content": "<image>Find every dog in the image."},
                      {"role": "assistant", "content": "No Objects"}],
         "images": ["imgs/1.jpg"]},
    ]
    (tmp_path / "data" / "det.json").write_text(json.dumps(detection))
    det, neg = rows_of(tmp_path, kind="messages", path=str(tmp_path / "data" / "det.json"),
                       options={"category_pattern": r"Find every (\w+)"})
    assert det["task"] == "detection" and det["query"]["category"] == "cat"
    assert det["solution"] == {"boxes": [[10.0, 20.0, 50.0, 60.0], [200.0, 20.0, 250.0, 60.0]], "labels": ["cat", "cats"]}
    assert neg["solution"]["boxes"] == [] and neg["query"]["category"] == "dog"
    scores_one([det, neg], tmp_path)
    # Qwen2-VL grounding answers: (x1,y1),(x2,y2) in 0..1000, one box per referring expression.
    grounding = write_jsonl(tmp_path / "data" / "ref.jsonl", [
        {"messages": [{"role": "user", "content": "<image>Locate the red car."},
                      {"role": "assistant",
                       "content": "<|object_ref_start|>the red car<|object_ref_end|><|box_start|>(100,200),(500,700)<|box_end|>"}],
         "images": ["imgs/1.jpg"]},
        {"messages": [{"role": "user", "content": [{"type": "image", "image": "file://" + str(tmp_path / "data" / "imgs" / "1.jpg")},
                                                   {"type": "text", "text": "Locate: the blue car"}]},
                      {"role": "assistant", "content": "(0,0),(250,500)"}]},
    ])
    red, blue = rows_of(tmp_path, kind="messages", path=str(grounding))
    assert red["task"] == blue["task"] == "grounding"
    assert red["query"] == {"phrase": "the red car"} and red["solution"]["boxes"] == [[64.0, 96.0, 320.0, 336.0]]
    assert blue["query"] == {"phrase": "the blue car"} and blue["solution"]["boxes"] == [[0.0, 0.0, 160.0, 240.0]]
    scores_one([red, blue], tmp_path)


def test_messages_coords_option_and_declared_task(tmp_path):
    make_image(tmp_path / "a.jpg", (W, H))
    path = write_jsonl(tmp_path / "m.jsonl", [
        {"messages": [{"role": "user", "content": "<image>Find the cat."},
                      {"role": "assistant", "content": json.dumps([{"bbox_2d": [100, 100, 500, 500], "label": "cat"}])}],
         "images": ["a.jpg"]}])
    (row,) = rows_of(tmp_path, kind="messages", path=str(path), task="detection", options={"coords": "norm1000"})
    assert row["task"] == "detection" and row["solution"]["boxes"] == [[64.0, 48.0, 320.0, 240.0]]


# ---------------------------------------------------------------------------------------------
# Rows that cannot be read say where, which field, and what was expected


@pytest.mark.parametrize("kind, record, message", [
    ("visual_rft", {"problem": "p", "solution": "<answer>daisy</answer>"},
     r"v.jsonl line 2: missing required field 'image' \(or 'image_path', or <img>path</img> in the question\)"),
    ("visual_rft", {"image": "a.jpg", "problem": "Detect cats and give bounding boxes.", "solution": "<answer>[{'Position': [1, 2]}]</answer>"},
     r"v.jsonl line 2 field 'solution': expected a list of valid boxes"),
    ("vlm_r1", {"image": "a.jpg", "problem": "p", "solution": [10, 20, 5]},
     r"v.jsonl line 2 field 'solution': expected a box \[x1, y1, x2, y2\] or a list of boxes"),
    ("vlm_r1", {"image": "a.jpg", "problem": "p"}, r"v.jsonl line 2: missing required field 'solution'"),
    ("vlm_r1", {"image": "a.jpg", "problem": "p", "solution": [300, 20, 100, 60]},
     r"v.jsonl line 2 field 'solution': box \[300.0, 20.0, 100.0, 60.0\] is inverted"),
    ("vlm_r1", vlm_r1_conversation(2, ["a.jpg", "b.jpg"], "q", "None"),
     r"v.jsonl line 2: field 'image' must be one image path \(a string or a list of one\), got a list of 2"),
    ("messages", {"messages": [{"role": "user", "content": "<image>q"}], "images": ["a.jpg"]},
     r"v.jsonl line 2: field 'messages' must hold one user turn and one assistant turn .* got 1 user and 0 assistant"),
    ("messages", {"messages": [{"role": "robot", "content": "q"}], "images": ["a.jpg"]},
     r"v.jsonl line 2 field 'messages' turn 0: 'role' must be one of"),
    ("messages", {"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "```json\n[{\"bbox_2d\": [1, 2, 3]}]\n```"}],
                  "images": ["a.jpg"]},
     r"v.jsonl line 2 assistant turn: expected a list of valid boxes"),
    ("messages", {"conversation": []}, r"v.jsonl line 2: missing required field 'conversations' \(or 'messages'\)"),
])
def test_unreadable_rows_name_file_line_and_field(tmp_path, kind, record, message):
    make_image(tmp_path / "a.jpg", (W, H))
    good = {"visual_rft": {"image": "a.jpg", "problem": "p", "solution": "<answer>daisy</answer>"},
            "vlm_r1": {"image": "a.jpg", "problem": "p", "solution": [1, 2, 30, 40]},
            "messages": {"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "cat"}],
                         "images": ["a.jpg"]}}[kind]
    path = write_jsonl(tmp_path / "v.jsonl", [good, record])
    with pytest.raises(DataError, match=message):
        rows_of(tmp_path, kind=kind, path=str(path))


def test_vlm_r1_conversation_with_a_number_answer_is_a_class(tmp_path):
    """Its grpo_jsonl.py accepts non-string gpt values (counting): they are class labels here."""
    make_image(tmp_path / "a.jpg", (W, H))
    path = write_jsonl(tmp_path / "count.jsonl", [vlm_r1_conversation(7, "a.jpg", "How many cats are there?", 3)])
    (row,) = rows_of(tmp_path, kind="vlm_r1", path=str(path))
    assert row["task"] == "classification" and row["solution"]["label"] == "3" and row["id"] == "peer:7"
    assert row["query"] == {"classes": None, "problem": "How many cats are there?"}


def test_messages_no_is_a_class_in_a_file_without_boxes(tmp_path):
    """General question answering (replay data): "No" answers a question; it is not a missing object."""
    make_image(tmp_path / "a.jpg", (W, H))
    path = write_jsonl(tmp_path / "vqa.jsonl", [
        {"messages": [{"role": "user", "content": "<image>Is it raining?"}, {"role": "assistant", "content": "No"}],
         "images": ["a.jpg"]},
        {"messages": [{"role": "user", "content": "<image>Give the bounding box of the dog."},
                      {"role": "assistant", "content": "None"}], "images": ["a.jpg"]}])
    rain, dog = rows_of(tmp_path, kind="messages", path=str(path))
    assert rain["task"] == "classification" and rain["solution"]["label"] == "No"
    assert dog["task"] == "detection" and dog["solution"]["boxes"] == []
