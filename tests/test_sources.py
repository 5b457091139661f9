"""Every recipe in recipes/ validates; every dataset kind loads through the recipe dispatch."""

import functools
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from rft.data.records import LoadReport
from rft.data.sources import dataset_rows, load_rows
from rft.errors import DataError, RecipeError
from rft.recipe import load_recipe
from rft.recipe.schema import KIND_FIELDS, DatasetSpec
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


PROBES = {  # a value other than the default for every field a kind's loader reads
    "path": "/data/source", "image_dir": "/data/images", "split": "holdout", "negative_ratio": 0.25,
    "categories": ["zebra"], "seed": 7, "image_column": "img", "label_column": "y", "num_samples": 5,
}
OPTIONS = {"image_folder": {"synonyms": {"daisy": ["bellis"]}}, "hf_classification": {"synonyms": {"daisy": ["bellis"]}},
           "visual_rft": {"category_pattern": "'(.+)'", "coords": "norm1"}, "vlm_r1": {"coords": "norm1", "category_pattern": "(x)"},
           "messages": {"coords": "norm1", "category_pattern": "(x)"}, "synthetic_shapes": {"shapes": ["circle", "square"]}}
TASK_TAKEN = ("vlm_r1", "messages", "synthetic_shapes")  # kinds whose loader reads `task` (the others check rows against it)


@pytest.mark.parametrize("kind", sorted(KIND_FIELDS))
def test_every_field_of_an_entry_reaches_its_loader(kind, monkeypatch, tmp_path):
    """Issue 15: kind visual_rft dropped split and options. Each field a kind reads, each option and
    (where the loader takes it) the task arrive in the loader's call."""
    from rft.data import classification, coco, grounding, messages, rows, synthetic, tagging, visual_rft, vlm_r1

    loaders = {"coco": (coco, "load_coco_detection"), "image_folder": (classification, "load_image_folder"),
               "classification_jsonl": (classification, "load_classification_jsonl"),
               "hf_classification": (classification, "load_hf_classification"),
               "grounding_jsonl": (grounding, "load_grounding_jsonl"), "tagging_jsonl": (tagging, "load_tagging_jsonl"),
               "visual_rft": (visual_rft, "load_visual_rft"), "vlm_r1": (vlm_r1, "load_vlm_r1"),
               "messages": (messages, "load_messages"), "rows_jsonl": (rows, "load_rows_jsonl"),
               "synthetic_shapes": (synthetic, "make_shapes")}
    module, attr = loaders[kind]
    real, calls = getattr(module, attr), []

    @functools.wraps(real)  # inspect.signature sees the real loader's options
    def capture(*args, **kwargs):
        calls.append(kwargs)
        return [] if kind == "synthetic_shapes" else ([], LoadReport("probe"))

    monkeypatch.setattr(module, attr, capture)
    fields = {f: PROBES[f] for f in KIND_FIELDS[kind]}
    task = "detection" if kind in ("vlm_r1", "messages", "synthetic_shapes") else None
    entry = spec(name="probe", kind=kind, task=task, options=OPTIONS.get(kind, {}), **fields)
    load_rows(entry, "skip", tmp_path)
    (given,) = calls
    passed = list(given.values())
    for field, value in fields.items():
        assert value in passed or str(value) in map(str, passed), f"{kind}: {field} did not reach {attr}"
    assert all(given[k] == v for k, v in OPTIONS.get(kind, {}).items()), f"{kind}: options did not reach {attr}"
    assert given.get("on_bad_image", "skip") == "skip"
    if kind in TASK_TAKEN:
        assert given["task"] == "detection"


def test_fields_a_kind_does_not_read_are_refused(tmp_path):
    with pytest.raises(ValidationError, match=r"split does not apply to kind 'coco', whose loader reads path, image_dir"):
        spec(name="c", kind="coco", path="a.json", split="val")
    with pytest.raises(ValidationError, match=r"split applies to a Hugging Face dataset, not to the file v.json"):
        spec(name="v", kind="visual_rft", path="v.json", split="val")
    spec(name="c", kind="coco", path="a.json", split="train")  # a default written out (resolved recipes) changes nothing
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {tiny: {}}\nrewards: [{name: format}]\ndata:\n  datasets:\n"
                      "    - {name: g, kind: grounding_jsonl, path: g.jsonl, negative_ratio: 0.5}\n")
    with pytest.raises(RecipeError, match=r"data.datasets\[0\]: dataset 'g': negative_ratio does not apply to kind 'grounding_jsonl'"):
        load_recipe(recipe)


def test_unknown_loader_option_lists_the_options(tmp_path):
    with pytest.raises(RecipeError, match=r"'category_patern' is not an option of kind 'visual_rft'; its options: category_pattern, coords"):
        load_rows(spec(name="v", kind="visual_rft", path="v.json", options={"category_patern": "x"}), "error", tmp_path)
    with pytest.raises(RecipeError, match=r"'synonyms' is not an option of kind 'classification_jsonl'; its options: \(none\)"):
        load_rows(spec(name="c", kind="classification_jsonl", path="c.jsonl", options={"synonyms": {}}), "error", tmp_path)
