"""`rft data recipe.yaml`: every dataset of a recipe loaded and checked without a model, its figures
printed and written to summary.json, pictures of its boxes, a non-zero exit when a dataset fails."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import rewards
from rft.cli import main
from rft.data.build import to_trl_rows
from rft.data.sources import dataset_rows
from rft.families import patch_grid_size as model_input_size
from rft.models.geometry import model_geometry
from rft.recipe import load_recipe
from rft.recipe.schema import ModelSection
from test_data_helpers import make_image, write_jsonl

PROBLEM = ("Detect all objects belonging to the category '{0}' in the image, and provide the bounding boxes (between 0 and "
           "1000, integer) and confidence. If no object belonging to the category '{0}' in the image, return 'No Objects'.")
RECIPE = """
model: {{tiny: {{family: qwen2_5_vl}}, min_pixels: 3136, max_pixels: 200704}}
rewards: [{{name: format}}, {{name: detection_iou}}, {{name: grounding_iou}}]
data:
  datasets:
    - {{name: helmets, kind: visual_rft, path: vrft.json, options: {{category_pattern: "category '([^']+)'"}}}}
    - {{name: general, kind: synthetic_shapes, task: classification, num_samples: 4}}
  replay: {{dataset: general, ratio: 0.2}}
eval:
  datasets:
    - {{name: refs, kind: messages, path: {eval_path}}}
output: {{dir: out}}
"""


@pytest.fixture()
def recipe_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "a.jpg", (640, 480))
    make_image(tmp_path / "tall.png", (300, 900))
    (tmp_path / "vrft.json").write_text(json.dumps([
        {"image_path": "a.jpg", "problem": PROBLEM.format("helmet"),
         "solution": "<answer>[{'Position': [78, 125, 312, 625], 'Confidence': 1}, {'Position': [468, 208, 703, 729], 'Confidence': 1}]</answer>"},
        {"image_path": "tall.png", "problem": PROBLEM.format("zebra"), "solution": "<answer>No Objects</answer>"},
    ]))
    write_jsonl(tmp_path / "refs.jsonl", [
        {"messages": [{"role": "user", "content": "<image>Locate: the red car"},
                      {"role": "assistant", "content": '```json\n[{"bbox_2d": [10, 20, 200, 300], "label": "the red car"}]\n```'}],
         "images": ["a.jpg"]}])
    write_jsonl(tmp_path / "broken.jsonl", [
        {"messages": [{"role": "user", "content": "<image>Locate: the red car"}, {"role": "assistant", "content": "[10, 20, 5]"}],
         "images": ["a.jpg"]}])
    return tmp_path


def run(recipe_dir, eval_path="refs.jsonl", *args):
    (recipe_dir / "recipe.yaml").write_text(RECIPE.format(eval_path=eval_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "recipe.yaml", *args])
    summary = json.loads((recipe_dir / "out" / "data" / "summary.json").read_text())
    return exit_info.value.code, summary


def test_checks_every_dataset_without_a_model(recipe_dir, monkeypatch, capsys):
    import rft.models.load

    def no_model(*args, **kwargs):
        raise AssertionError("rft data loaded a model")

    monkeypatch.setattr(rft.models.load, "load_model", no_model)
    monkeypatch.setattr(rft.models.load.AutoProcessor, "from_pretrained", no_model)
    code, summary = run(recipe_dir)
    printed = capsys.readouterr().out
    assert code == 0 and summary["ok"] and summary["failed"] == []
    assert summary["model"] == {"family": "qwen2_5_vl", "factor": 28, "read_from": "model.tiny", "min_pixels": 3136,
                                "max_pixels": 200704, "coord_format": "pixels"}
    helmets, general, refs = summary["datasets"]
    assert [(d["name"], d["role"]) for d in summary["datasets"]] == [("helmets", "train"), ("general", "replay"), ("refs", "eval")]
    assert helmets["rows"] == 2 and helmets["tasks"] == {"detection": 2} and helmets["negatives"] == 1
    assert helmets["categories"] == {"helmet": 1, "zebra": 1}
    assert helmets["skipped"] == {"bad_images": [], "boxes_left_out": 0}
    assert helmets["images"]["distinct"] == 2 and helmets["images"]["min"] == [300, 480]
    # the size the model sees is the size training resizes each image to
    resized = {tuple(model_input_size(s, 28, 3136, 200704)) for s in ((640, 480), (300, 900))}
    assert {tuple(s) for s, _ in helmets["resized"]["most_common"]} == resized
    trl = to_trl_rows(dataset_rows(load_recipe("recipe.yaml").data.datasets[0], "error", recipe_dir / "c"),
                      family="qwen2_5_vl", min_pixels=3136, max_pixels=200704, factor=28, resized_dir=recipe_dir / "r")
    assert {tuple(t["model_image_size"]) for t in trl} == resized
    assert helmets["coordinates"] == {"source": {"norm1000": 1},
                                      "answers": {"pixels": "2 rows, pixels of the resized image the model sees"}}
    example = helmets["examples"]["detection"]
    assert "Find every helmet" in example["prompt"] and example["prompt"] == trl[0]["prompt"][0]["content"][1]["text"]
    cols = {k: [trl[0][k]] for k in ("task", "solution", "image_size", "coord_format", "model_image_size")}
    assert rewards.get("detection_iou")([example["answer"]], **cols) == [pytest.approx(1.0, abs=0.02)]
    assert general["tasks"] == {"classification": 4} and sum(general["categories"].values()) == 4
    assert refs["tasks"] == {"grounding": 1} and refs["categories"] == {"the red car": 1}
    assert refs["coordinates"]["source"] == {"pixels": 1}
    for dataset in (helmets, refs):
        assert dataset["pictures"] and all(Image.open(p).format == "PNG" for p in dataset["pictures"])
    assert [p.rsplit("/", 1)[1] for p in helmets["pictures"]] == ["000_helmets_1.png", "001_helmets_2.png"]  # and the negative
    assert "dataset 'helmets' (train, kind visual_rft, vrft.json): 2 rows" in printed
    assert "tasks: detection 2; negatives (no box): 1" in printed
    assert "the source wrote boxes in norm1000 (1 rows)" in printed and "checked 3 datasets: all usable" in printed


def test_a_failing_dataset_fails_the_check_and_the_others_are_still_checked(recipe_dir, capsys):
    code, summary = run(recipe_dir, "broken.jsonl")
    printed = capsys.readouterr().out
    assert code == 1 and not summary["ok"] and summary["failed"] == ["refs"]
    refs = summary["datasets"][2]
    assert refs["ok"] is False and "broken.jsonl line 1 assistant turn: expected a list of valid boxes" in refs["error"]
    assert summary["datasets"][0]["ok"] and summary["datasets"][0]["rows"] == 2
    assert "dataset 'refs' (eval, kind messages, broken.jsonl): FAILED" in printed and "1 failed: refs" in printed


def test_bad_images_fail_or_are_counted_as_skipped(recipe_dir):
    (recipe_dir / "tall.png").write_bytes((recipe_dir / "tall.png").read_bytes()[:200])  # a truncated PNG: its header reads
    code, summary = run(recipe_dir)
    assert code == 1 and "tall.png: not a readable image" in summary["datasets"][0]["error"]
    code, summary = run(recipe_dir, "refs.jsonl", "--set", "data.on_bad_image=skip")
    helmets = summary["datasets"][0]
    assert code == 0 and helmets["rows"] == 1 and len(helmets["skipped"]["bad_images"]) == 1


def test_model_geometry_from_files_or_name(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    (folder / "preprocessor_config.json").write_text(json.dumps({"patch_size": 16, "merge_size": 2}))
    geometry = model_geometry(ModelSection(path=str(folder)))
    assert (geometry.family, geometry.factor, geometry.coord_format) == ("qwen3_vl", 32, "norm1000")
    (folder / "preprocessor_config.json").unlink()
    assert model_geometry(ModelSection(path=str(folder))).factor == 32  # the family's default
    named = model_geometry(ModelSection(path="nobody-has/Qwen2.5-VL-3B-Instruct-never-cached"))
    assert (named.family, named.factor, named.coord_format) == ("qwen2_5_vl", 28, "pixels")
    assert "name" in named.source
