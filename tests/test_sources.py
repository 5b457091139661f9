"""Every recipe in recipes/ validates; every dataset kind loads through the recipe dispatch."""

import json
from pathlib import Path

import pytest

from rft.data.sources import dataset_rows
from rft.errors import DataError
from rft.recipe import load_recipe
from rft.recipe.schema import DatasetSpec
from test_data_coco import write_coco
from test_data_helpers import make_image, write_jsonl

RECIPES = sorted(Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml"))


def test_required_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"demo", "visual_rft_coco_fewshot", "oneshot_flowers102", "open_vocab_detection_negatives",
            "multitask_detection_classification"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.rewards and recipe.data.datasets


def spec(**kw):
    return DatasetSpec(**kw)


def test_each_kind_loads(tmp_path):
    coco, images = write_coco(tmp_path / "coco")
    folder = tmp_path / "folder"
    for cls in ("daisy", "rose"):
        make_image(folder / cls / "a.png")
    img = make_image(tmp_path / "img.png", (100, 80))
    jsonl = write_jsonl(tmp_path / "cls.jsonl", [{"image": str(img), "label": "daisy"}])
    grounding = write_jsonl(tmp_path / "g.jsonl", [{"image": str(img), "phrase": "the cat", "box": [1, 2, 30, 40]},
                                                  {"image": str(img), "phrase": "the dog", "box": None}])
    tagging = write_jsonl(tmp_path / "t.jsonl", [{"image": str(img), "tags": ["cat", "sofa"]}])
    vrft = tmp_path / "vrft.json"
    vrft.write_text(json.dumps([
        {"image": str(img), "problem": "Detect all cats.", "solution": "<answer>[{'Position': [100, 100, 500, 500], 'Confidence': 1}]</answer>"},
        {"image": str(img), "problem": "What flower is it?", "solution": "<answer>daisy</answer>"},
    ]))
    cases = {
        "coco": spec(name="c", kind="coco", path=str(coco), image_dir=str(images), negative_ratio=1.0),
        "image_folder": spec(name="f", kind="image_folder", path=str(folder)),
        "classification_jsonl": spec(name="j", kind="classification_jsonl", path=str(jsonl)),
        "grounding_jsonl": spec(name="g", kind="grounding_jsonl", path=str(grounding)),
        "tagging_jsonl": spec(name="t", kind="tagging_jsonl", path=str(tagging)),
        "visual_rft": spec(name="v", kind="visual_rft", path=str(vrft)),
        "synthetic_shapes": spec(name="s", kind="synthetic_shapes", task="detection", num_samples=6, negative_ratio=0.5),
    }
    tasks = {}
    for kind, s in cases.items():
        rows = dataset_rows(s, "error", tmp_path / "cache")
        assert rows and all(r["dataset"] == s.name for r in rows), kind
        tasks[kind] = {r["task"] for r in rows}
        if kind in ("coco", "grounding_jsonl", "synthetic_shapes"):
            assert any(not r["solution"]["boxes"] for r in rows), f"{kind}: no negatives"
    assert tasks["visual_rft"] == {"detection", "classification"}
    assert tasks["grounding_jsonl"] == {"grounding"} and tasks["tagging_jsonl"] == {"tagging"}
    vrft_box = next(r for r in dataset_rows(cases["visual_rft"], "error", tmp_path / "cache") if r["task"] == "detection")
    assert vrft_box["solution"]["boxes"] == [[10.0, 8.0, 50.0, 40.0]]  # 0..1000 -> pixels of the 100x80 image


def test_declared_task_must_match(tmp_path):
    img = make_image(tmp_path / "img.png")
    jsonl = write_jsonl(tmp_path / "cls.jsonl", [{"image": str(img), "label": "daisy"}])
    with pytest.raises(DataError, match="declared task 'detection'"):
        dataset_rows(spec(name="j", kind="classification_jsonl", path=str(jsonl), task="detection"), "error", tmp_path)


def test_limit(tmp_path):
    rows = dataset_rows(spec(name="s", kind="synthetic_shapes", num_samples=8, limit=3), "error", tmp_path)
    assert len(rows) == 3
