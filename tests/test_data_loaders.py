"""Classification (folder, JSONL, Hugging Face), grounding, tagging and row JSONL loaders, and
the messages of bad records."""

from __future__ import annotations

import datasets
import pytest
from PIL import Image

from rft.data.classification import load_classification_jsonl, load_hf_classification, load_image_folder
from rft.data.grounding import load_grounding_jsonl
from rft.data.rows import load_rows_jsonl
from rft.data.tagging import load_tagging_jsonl
from rft.errors import DataError
from test_data_helpers import make_image, write_jsonl


def test_image_folder(tmp_path):
    for label, n in (("daisy", 2), ("rose", 1)):
        for i in range(n):
            make_image(tmp_path / "flowers" / label / f"{i}.png", (40, 30))
    (tmp_path / "flowers" / "rose" / "notes.txt").write_text("not an image")
    rows, report = load_image_folder(tmp_path / "flowers", name="flowers", synonyms={"daisy": ["bellis"]})
    assert [r["id"] for r in rows] == ["flowers:daisy/0.png", "flowers:daisy/1.png", "flowers:rose/0.png"]
    assert rows[0]["solution"] == {"label": "daisy", "synonyms": ["bellis"]}
    assert rows[2]["solution"] == {"label": "rose", "synonyms": []}
    assert all(r["query"] == {"classes": ["daisy", "rose"]} and r["image_size"] == [40, 30] for r in rows)
    assert report.rows == 3 and rows[0]["image"] == str(tmp_path / "flowers" / "daisy" / "0.png")


def test_image_folder_with_a_corrupt_image(tmp_path):
    make_image(tmp_path / "flowers" / "daisy" / "0.png")
    (tmp_path / "flowers" / "rose").mkdir()
    (tmp_path / "flowers" / "rose" / "0.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"^class 'rose': .*flowers/rose/0.jpg: not a readable image"):
        load_image_folder(tmp_path / "flowers", name="flowers")
    rows, report = load_image_folder(tmp_path / "flowers", name="flowers", on_bad_image="skip")
    assert [r["id"] for r in rows] == ["flowers:daisy/0.png"] and rows[0]["query"]["classes"] == ["daisy", "rose"]
    assert str(report).startswith(f"{tmp_path / 'flowers'}: 1 rows (0 negatives), skipped 1 bad images (first: class 'rose'")


def test_image_folder_without_images(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images in class folders"):
        load_image_folder(tmp_path / "empty", name="x")


def test_classification_jsonl(tmp_path):
    make_image(tmp_path / "imgs" / "a.jpg")
    make_image(tmp_path / "elsewhere" / "b.jpg")
    path = write_jsonl(tmp_path / "data" / "cls.jsonl", [
        {"image": "../imgs/a.jpg", "label": "tabby cat", "synonyms": ["cat"]},
        "",
        {"image": str(tmp_path / "elsewhere" / "b.jpg"), "label": "dog", "id": "b"},
    ])
    rows, _ = load_classification_jsonl(path, name="pets")
    assert [r["id"] for r in rows] == ["pets:1", "pets:b"]
    assert rows[0]["image"] == str(tmp_path / "imgs" / "a.jpg")
    assert rows[0]["solution"] == {"label": "tabby cat", "synonyms": ["cat"]}
    assert rows[1]["query"] == {"classes": ["dog", "tabby cat"]}
    rooted = write_jsonl(tmp_path / "rooted.jsonl", [{"image": "a.jpg", "label": "cat"}])
    assert load_classification_jsonl(rooted, name="p", image_root=tmp_path / "imgs")[0][0]["image_size"] == [64, 48]


def test_classification_jsonl_labels_outside_categories_name_the_line(tmp_path):
    """A stray label joined every prompt's list of classes; with ``categories`` it fails, naming its line, and
    the prompts list exactly the categories (also those no row has)."""
    make_image(tmp_path / "a.jpg")
    path = write_jsonl(tmp_path / "cls.jsonl", [{"image": "a.jpg", "label": "cat"}, {"image": "a.jpg", "label": "dgo"}])
    with pytest.raises(DataError, match=r"cls.jsonl line 2: label 'dgo' is not one of the dataset's categories \['cat', 'dog'\]"):
        load_classification_jsonl(path, name="p", categories=["dog", "cat"])
    good = write_jsonl(tmp_path / "good.jsonl", [{"image": "a.jpg", "label": "cat"}])
    rows, _ = load_classification_jsonl(good, name="p", categories=["dog", "cat", "bird"])
    assert rows[0]["query"] == {"classes": ["bird", "cat", "dog"]}


def test_hf_classification_with_stored_images(tmp_path):
    features = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["rose", "daisy"])})
    images = [Image.new("RGB", (20 + i, 10), (i * 40, 0, 0)) for i in range(3)]
    datasets.Dataset.from_dict({"img": images, "y": [1, 0, 1]}, features=features).save_to_disk(tmp_path / "ds")
    kwargs = dict(name="hf", cache_dir=tmp_path / "cache", image_column="img", label_column="y", split="train")
    rows, _ = load_hf_classification(tmp_path / "ds", **kwargs)
    assert [r["solution"]["label"] for r in rows] == ["daisy", "rose", "daisy"]
    assert [r["image_size"] for r in rows] == [[20, 10], [21, 10], [22, 10]]
    assert rows[0]["query"] == {"classes": ["daisy", "rose"]} and rows[0]["id"] == "hf:train:0"
    assert all(r["image"].startswith(str(tmp_path / "cache")) for r in rows)
    cached = sorted((tmp_path / "cache").iterdir())
    assert len(cached) == 3
    again, _ = load_hf_classification(tmp_path / "ds", **kwargs)  # written once, reused
    assert [r["image"] for r in again] == [r["image"] for r in rows] and sorted((tmp_path / "cache").iterdir()) == cached
    with pytest.raises(DataError, match=r"ds: no column 'label'; columns: \['img', 'y'\]"):
        load_hf_classification(tmp_path / "ds", name="hf", cache_dir=tmp_path / "cache", image_column="img")


def test_hf_classification_with_path_column_and_splits(tmp_path):
    make_image(tmp_path / "a.png")
    data = datasets.Dataset.from_dict({"image": [str(tmp_path / "a.png")], "label": ["cat"]})
    datasets.DatasetDict({"train": data}).save_to_disk(tmp_path / "dd")
    rows, _ = load_hf_classification(tmp_path / "dd", name="hf", cache_dir=tmp_path / "c", split="train")
    assert rows[0]["image"] == str(tmp_path / "a.png") and rows[0]["solution"]["label"] == "cat"
    with pytest.raises(DataError, match=r"dd: no split 'test'; splits: \['train'\]"):
        load_hf_classification(tmp_path / "dd", name="hf", cache_dir=tmp_path / "c", split="test")


def test_grounding_jsonl(tmp_path):
    make_image(tmp_path / "a.png", (100, 50))
    path = write_jsonl(tmp_path / "g.jsonl", [
        {"image": "a.png", "phrase": "the red car", "box": [10, 5, 40, 45]},
        {"image": "a.png", "phrase": "the two dogs", "boxes": [[0, 0, 10, 10], [50, 0, 60, 10]]},
        {"image": "a.png", "phrase": "a unicorn", "box": None},
    ])
    rows, report = load_grounding_jsonl(path, name="refs")
    assert [r["solution"]["boxes"] for r in rows] == [
        [[10.0, 5.0, 40.0, 45.0]], [[0.0, 0.0, 10.0, 10.0], [50.0, 0.0, 60.0, 10.0]], []]
    assert rows[0]["query"] == {"phrase": "the red car"} and rows[0]["solution"]["labels"] == ["the red car"]
    assert rows[0]["task"] == "grounding" and report.negatives == 1 and rows[2]["id"] == "refs:3"


def test_tagging_jsonl(tmp_path):
    make_image(tmp_path / "a.png")
    rows, _ = load_tagging_jsonl(write_jsonl(tmp_path / "t.jsonl", [{"image": "a.png", "tags": ["dog", "grass"]}]),
                                 name="tags")
    assert rows == [{"id": "tags:1", "dataset": "tags", "task": "tagging", "image": str(tmp_path / "a.png"),
                     "image_size": [64, 48], "solution": {"tags": ["dog", "grass"]}, "query": {}}]


def test_rows_jsonl(tmp_path):
    make_image(tmp_path / "a.png")
    row = {"id": "r1", "dataset": "mine", "task": "detection", "image": "a.png",
           "solution": {"boxes": [[1, 2, 30, 40]], "labels": ["cat"]}, "query": {"category": "cat"}}
    rows, _ = load_rows_jsonl(write_jsonl(tmp_path / "rows.jsonl", [row]))
    assert rows == [{**row, "image": str(tmp_path / "a.png"), "image_size": [64, 48]}]
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{**row, "image_size": [64, 40]}])
    with pytest.raises(DataError, match=r"wrong.jsonl line 1: image_size \[64, 40\] but .*a.png is 64x48"):
        load_rows_jsonl(wrong)
    bad_task = write_jsonl(tmp_path / "task.jsonl", [{**row, "task": "captioning"}])
    with pytest.raises(DataError, match=r"task.jsonl line 1: task must be one of"):
        load_rows_jsonl(bad_task)


LOADERS = {
    "classification": (load_classification_jsonl, {"image": "a.png", "label": "cat"}),
    "grounding": (load_grounding_jsonl, {"image": "a.png", "phrase": "the cat", "box": [1, 1, 20, 20]}),
    "tagging": (load_tagging_jsonl, {"image": "a.png", "tags": ["cat"]}),
}


@pytest.mark.parametrize("kind", LOADERS)
def test_line_that_is_not_json_names_the_line(tmp_path, kind):
    load, good = LOADERS[kind]
    make_image(tmp_path / "a.png")
    path = write_jsonl(tmp_path / "d.jsonl", [good, good, '{"image": "a.png", "label": '])
    with pytest.raises(DataError, match=rf"^{tmp_path}/d.jsonl line 3: not valid JSON \(Expecting value at column 28\)"):
        load(path, name="x")
    path = write_jsonl(tmp_path / "e.jsonl", [good, "[1, 2]"])
    with pytest.raises(DataError, match=r"e.jsonl line 2: expected a JSON object, got list"):
        load(path, name="x")


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("field", ["image", "label", "phrase", "tags"])
def test_missing_required_field_names_field_and_line(tmp_path, kind, field):
    load, good = LOADERS[kind]
    if field not in good:
        return
    make_image(tmp_path / "a.png")
    path = write_jsonl(tmp_path / "d.jsonl", [good, {k: v for k, v in good.items() if k != field}])
    with pytest.raises(DataError, match=rf"d.jsonl line 2: missing required field '{field}'"):
        load(path, name="x")


@pytest.mark.parametrize("kind", LOADERS)
def test_missing_and_corrupt_images(tmp_path, kind):
    load, good = LOADERS[kind]
    make_image(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    path = write_jsonl(tmp_path / "d.jsonl", [good, {**good, "image": "gone.png"}, {**good, "image": "bad.png"}])
    with pytest.raises(DataError, match=rf"d.jsonl line 2: {tmp_path}/gone.png: image file not found"):
        load(path, name="x")
    rows, report = load(path, name="x", on_bad_image="skip")
    assert len(rows) == 1 and len(report.bad_images) == 2
    assert "line 3" in report.bad_images[1] and "bad.png: not a readable image" in report.bad_images[1]


def test_wrong_types_and_duplicate_ids(tmp_path):
    make_image(tmp_path / "a.png")
    cases = [
        ({"image": "a.png", "label": 3}, r"line 1: field 'label' must be str, got int 3"),
        ({"image": "a.png", "label": "cat", "synonyms": "kitty"}, r"line 1: field 'synonyms' must be list"),
        ({"image": "a.png", "label": "cat", "synonyms": [1]}, r"line 1: field 'synonyms' must be a list of strings"),
        ({"image": "", "label": "cat"}, r"line 1: field 'image' is empty"),
    ]
    for record, message in cases:
        with pytest.raises(DataError, match=message):
            load_classification_jsonl(write_jsonl(tmp_path / "d.jsonl", [record]), name="x")
    twice = write_jsonl(tmp_path / "twice.jsonl", [{"image": "a.png", "label": "cat", "id": "k"}] * 2)
    with pytest.raises(DataError, match="twice.jsonl: duplicate id 'x:k'"):
        load_classification_jsonl(twice, name="x")


@pytest.mark.parametrize("box, message", [
    ([50, 10, 20, 40], r"box \[50, 10, 20, 40\] is inverted \(x2 <= x1\)"),
    ([10, 10, 90, 40], r"box \[10, 10, 90, 40\] lies outside the 64x48 image"),
    ([10, 10, 20], r"box \[10, 10, 20\] is not 4 finite numbers"),
])
def test_bad_grounding_box_names_the_line(tmp_path, box, message):
    make_image(tmp_path / "a.png")
    good = {"image": "a.png", "phrase": "the cat", "box": [1, 1, 20, 20]}
    path = write_jsonl(tmp_path / "g.jsonl", [good, {**good, "box": box}])
    with pytest.raises(DataError, match=rf"g.jsonl line 2: {message}"):
        load_grounding_jsonl(path, name="x")
    with pytest.raises(DataError, match=r"line 1: missing required field 'box' \(or 'boxes'; null for a negative\)"):
        load_grounding_jsonl(write_jsonl(tmp_path / "nobox.jsonl", [{"image": "a.png", "phrase": "x"}]), name="x")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path}/absent.jsonl: file not found"):
        load_tagging_jsonl(tmp_path / "absent.jsonl", name="x")
