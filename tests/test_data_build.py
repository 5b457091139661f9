"""TRL rows: images resized once within budget (and not again by the processor), prompts, one
Arrow schema across tasks, and ground-truth answers in the model's convention scoring 1.0."""

from __future__ import annotations

import json
import os

import datasets
import numpy as np
import pytest
from PIL import Image
from transformers import Qwen2VLImageProcessor

import rewards
from rewards.contract import from_image_pixels
from rft.data.build import to_dataset, to_trl_rows
from rft.errors import DataError
from rft.families import patch_grid_size as model_input_size
from test_data_helpers import answer, columns, make_image

DET_BOXES = [[64.0, 48.0, 320.0, 240.0], [400.0, 300.0, 600.0, 460.0]]
FAMILIES = {  # family: (coord format, factor = patch_size * merge_size, patch_size)
    "qwen2_5_vl": ("pixels", 28, 14),
    "qwen2_vl": ("norm1000", 28, 14),
    "qwen3_vl": ("norm1000", 32, 16),
}
MIN_PIXELS = 4 * 28 * 28


def budget(family):
    factor = FAMILIES[family][1]
    return dict(min_pixels=MIN_PIXELS, max_pixels=64 * factor * factor, factor=factor)


def make_rows(tmp_path):
    det = make_image(tmp_path / "street.jpg", (640, 480))
    small = make_image(tmp_path / "flower.png", (30, 20))
    wide = make_image(tmp_path / "wide.png", (500, 120))
    return [
        {"id": "c:1:car", "dataset": "c", "task": "detection", "image": str(det), "image_size": [640, 480],
         "solution": {"boxes": DET_BOXES, "labels": ["car", "car"]}, "query": {"category": "car"}},
        {"id": "c:1:cat", "dataset": "c", "task": "detection", "image": str(det), "image_size": [640, 480],
         "solution": {"boxes": [], "labels": []}, "query": {"category": "cat"}},
        {"id": "g:1", "dataset": "g", "task": "grounding", "image": str(wide), "image_size": [500, 120],
         "solution": {"boxes": [[10, 20, 200, 100]], "labels": ["the bus"]}, "query": {"phrase": "the bus"}},
        {"id": "f:1", "dataset": "f", "task": "classification", "image": str(small), "image_size": [30, 20],
         "solution": {"label": "daisy", "synonyms": ["bellis"]}, "query": {"classes": ["daisy", "rose"]}},
        {"id": "t:1", "dataset": "t", "task": "tagging", "image": str(wide), "image_size": [500, 120],
         "solution": {"tags": ["bus", "road"]}, "query": {}},
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """TRL rows of the mixed rows for each family (images resized once per family)."""
    tmp_path = tmp_path_factory.mktemp("build")
    rows = make_rows(tmp_path)
    return rows, {f: to_trl_rows(rows, family=f, resized_dir=tmp_path / f, **budget(f)) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_trl_rows(built, family):
    rows, trl_by_family = built
    fmt, factor, _ = FAMILIES[family]
    b = budget(family)
    for row, trl in zip(rows, trl_by_family[family]):
        assert list(trl) == ["prompt", "image", "task", "solution", "image_size", "coord_format",
                             "model_image_size", "id", "dataset", "query"]
        (message,) = trl["prompt"]
        assert message["role"] == "user" and message["content"][0] == {"type": "image"}
        assert message["content"][1]["type"] == "text" and "<answer>" in message["content"][1]["text"]
        assert (trl["task"], trl["id"], trl["dataset"]) == (row["task"], row["id"], row["dataset"])
        assert json.loads(trl["solution"]) == row["solution"] and trl["image_size"] == row["image_size"]
        assert json.loads(trl["query"]) == row["query"]  # detection metrics need the asked category
        assert trl["coord_format"] == fmt
        w, h = trl["model_image_size"]
        assert Image.open(trl["image"]).size == (w, h)
        assert (w, h) == model_input_size(row["image_size"], factor, b["min_pixels"], b["max_pixels"])
        assert w % factor == 0 and h % factor == 0 and b["min_pixels"] <= w * h <= b["max_pixels"]
    # each image is resized once: two rows share the street photo
    assert len(os.listdir(os.path.dirname(trl_by_family[family][0]["image"]))) == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_does_not_resize_again(built, family):
    _, trl_by_family = built
    _, factor, patch = FAMILIES[family]
    b = budget(family)
    processor = Qwen2VLImageProcessor(min_pixels=b["min_pixels"], max_pixels=b["max_pixels"], patch_size=patch,
                                      merge_size=factor // patch)
    images = [Image.open(t["image"]) for t in trl_by_family[family]]
    grids = processor(images=images, return_tensors="pt")["image_grid_thw"].tolist()
    assert [[g[2] * patch, g[1] * patch] for g in grids] == [t["model_image_size"] for t in trl_by_family[family]]


def test_mixed_tasks_make_one_dataset(built):
    _, trl_by_family = built
    trl = trl_by_family["qwen2_5_vl"]
    plain = datasets.Dataset.from_list(trl)
    assert plain.num_rows == 5 and plain.features["solution"] == datasets.Value("string")
    data = to_dataset(trl)
    assert isinstance(data.features["image"], datasets.Image)
    for i, trl_row in enumerate(trl):
        sample = data[i]
        assert isinstance(sample["image"], Image.Image) and list(sample["image"].size) == trl_row["model_image_size"]
        assert sample["prompt"][0]["content"][0]["type"] == "image"
        assert sample["prompt"][0]["content"][1]["text"] == trl_row["prompt"][0]["content"][1]["text"]
        assert sample["solution"] == trl_row["solution"] and sample["model_image_size"] == trl_row["model_image_size"]


@pytest.mark.parametrize("family", FAMILIES)
def test_ground_truth_in_the_model_convention_scores_one(built, family):
    rows, trl_by_family = built
    det, negative, grounding, cls, tags = trl_by_family[family]
    fmt = FAMILIES[family][0]

    def written(trl, boxes, label):
        converted = from_image_pixels(np.array(boxes), fmt, trl["image_size"], trl["model_image_size"])
        return answer([{"bbox_2d": b, "label": label} for b in converted.tolist()])

    assert det["coord_format"] == grounding["coord_format"] == fmt
    exact = written(det, DET_BOXES, "car")
    rounded = answer([{"bbox_2d": [round(v) for v in item["bbox_2d"]], "label": "car"}
                      for item in json.loads(exact.split("<answer>")[1].split("</answer>")[0])])
    assert rewards.get("detection_iou")([exact, rounded], **columns(det, 2)) == [pytest.approx(1.0), pytest.approx(1.0, abs=0.03)]
    assert rewards.get("detection_iou")(["<answer>No Objects</answer>"], **columns(negative)) == [1.0]
    assert rewards.get("grounding_iou")([written(grounding, rows[2]["solution"]["boxes"], "the bus")],
                                        **columns(grounding)) == [pytest.approx(1.0)]
    assert rewards.get("classification_accuracy")(["<answer>bellis</answer>"], **columns(cls)) == [1.0]
    assert rewards.get("tagging_f1")(['<answer>["road", "bus"]</answer>'], **columns(tags)) == [1.0]


def test_resized_images_are_cached(tmp_path):
    rows = make_rows(tmp_path)[:1]
    kwargs = dict(family="qwen2_5_vl", resized_dir=tmp_path / "r", **budget("qwen2_5_vl"))
    first = to_trl_rows(rows, **kwargs)[0]["image"]
    stamp = os.stat(first).st_mtime_ns
    assert to_trl_rows(rows, **kwargs)[0]["image"] == first and os.stat(first).st_mtime_ns == stamp
    make_image(tmp_path / "street.jpg", (640, 480), color=(0, 0, 255))  # the source changed: a new copy
    os.utime(tmp_path / "street.jpg", ns=(stamp + 10**9, stamp + 10**9))
    assert to_trl_rows(rows, **kwargs)[0]["image"] != first


def test_overrides(tmp_path):
    rows = make_rows(tmp_path)
    trl = to_trl_rows(rows, family="qwen2_5_vl", coord_format="norm1000", resized_dir=tmp_path / "r",
                      template_overrides={"tagging": "Tags? {{ coords }}"}, **budget("qwen2_5_vl"))
    assert trl[0]["coord_format"] == "norm1000" and "0 to 1000" in trl[0]["prompt"][0]["content"][1]["text"]
    assert trl[4]["prompt"][0]["content"][1]["text"] == "Tags? with coordinates normalized to integers from 0 to 1000"


def test_bad_rows_name_the_row(tmp_path):
    row = make_rows(tmp_path)[0]
    kwargs = dict(family="qwen2_vl", resized_dir=tmp_path / "r", **budget("qwen2_vl"))
    cases = [
        ({**row, "image_size": [640, 481]}, r"row c:1:car: image_size \[640, 481\] but .*street.jpg is 640x480"),
        ({**row, "image": str(tmp_path / "gone.jpg")}, rf"row c:1:car: {tmp_path}/gone.jpg: image file not found"),
        ({**row, "solution": {"boxes": [[50, 10, 20, 40]]}}, r"row c:1:car: box \[50, 10, 20, 40\] is inverted"),
        ({**row, "task": "vqa"}, r"row c:1:car: task must be one of"),
        ({**row, "query": {}}, r"row c:1:car query: missing required field 'category'"),
        ({k: v for k, v in row.items() if k != "solution"}, r"row c:1:car: missing required field 'solution'"),
    ]
    negative = make_rows(tmp_path)[1]
    cases.append(({**negative, "image_size": [4000, 10]}, r"row c:1:cat: .*street.jpg: absolute aspect ratio must be smaller than 200"))
    for bad, message in cases:
        with pytest.raises(DataError, match=message):
            to_trl_rows([bad], **kwargs)
    (tmp_path / "broken.png").write_bytes(make_image(tmp_path / "ok.png", (64, 48)).read_bytes()[:60])
    broken = {**make_rows(tmp_path)[3], "image": str(tmp_path / "broken.png"), "image_size": [64, 48]}
    with pytest.raises(DataError, match=r"row f:1: .*broken.png: not a readable image"):
        to_trl_rows([broken], **kwargs)


def test_on_bad_image_skip_decodes_every_image_once_in_the_resizing_pass(tmp_path, caplog):
    """A truncated PNG passes the loaders' header check; it failed later, in the middle of the run, even with
    ``on_bad_image: skip``. The resizing pass decodes every image: there it is skipped with its rows."""
    from rft.data.classification import load_classification_jsonl
    from test_data_helpers import write_jsonl

    full = make_image(tmp_path / "full.png", (200, 160), color=(10, 200, 90)).read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])
    make_image(tmp_path / "fine.png", (64, 48))
    records = write_jsonl(tmp_path / "d.jsonl", [{"image": "cut.png", "label": "a"}, {"image": "fine.png", "label": "b"},
                                                 {"image": "cut.png", "label": "a", "id": "again"}])
    rows, report = load_classification_jsonl(records, name="d", on_bad_image="skip")
    assert len(rows) == 3 and not report.bad_images  # the header of cut.png reads
    kwargs = dict(family="qwen2_vl", resized_dir=tmp_path / "r", **budget("qwen2_vl"))
    with caplog.at_level("WARNING"):
        kept = to_trl_rows(rows, on_bad_image="skip", **kwargs)
    assert [r["id"] for r in kept] == ["d:2"]
    assert "skipped 1 image(s) that do not decode" in caplog.text and "cut.png" in caplog.text
    with pytest.raises(DataError, match=r"row d:1: .*cut.png: not a readable image"):
        to_trl_rows(rows, **kwargs)
