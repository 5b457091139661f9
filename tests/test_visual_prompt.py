"""visual_prompt_detection: exemplar boxes in the prompt (as coordinates in the model's convention, or
drawn on the image), synthetic data, scoring by the detection rewards and metrics, bad rows refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rewards
from rewards.contract import DETECTION_TASKS, VISUAL_PROMPT_DETECTION
from rft.data.answers import reference_answer
from rft.data.build import to_trl_rows
from rft.data.exemplars import OUTLINE_COLOUR, draw_exemplars
from rft.data.records import validate_row
from rft.data.synthetic import make_shapes, question
from rft.errors import DataError
from rft.eval import metrics
from test_data_helpers import columns, make_image

BACKGROUND = (200, 30, 30)
EXEMPLAR = [100, 20, 200, 100]
BOXES = [[100, 20, 200, 100], [300, 50, 400, 150]]  # 0.77 x, 0.7 y at 308 x 140: whole pixels there too
FACTORS = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32}


def vp_row(image, exemplar: str | None = None, **query) -> dict:
    return {"id": "vp-1", "dataset": "vp", "task": VISUAL_PROMPT_DETECTION, "image": str(image), "image_size": [400, 200],
            "solution": {"boxes": BOXES, "labels": ["circle", "circle"]},
            "query": {"exemplars": [EXEMPLAR], "category": "circle", **({"exemplar": exemplar} if exemplar else {}),
                      **query}}


def trl_row(tmp_path, family: str, exemplar: str | None = None) -> dict:
    image = tmp_path / "scene.png"
    if not image.is_file():
        make_image(image, (400, 200), BACKGROUND)
    factor = FACTORS[family]
    (row,) = to_trl_rows([vp_row(image, exemplar)], family=family, min_pixels=3136, max_pixels=64 * factor * factor,
                         factor=factor, resized_dir=tmp_path / family)
    return row


def text(row: dict) -> str:
    return row["prompt"][0]["content"][1]["text"]


@pytest.mark.parametrize("family, size, written", [
    ("qwen2_vl", [308, 140], "[250, 100, 500, 500] (with coordinates normalized to integers from 0 to 1000)"),
    ("qwen2_5_vl", [308, 140], "[77, 14, 154, 70] (in pixel coordinates of the image)"),  # 100 * 308/400 = 77 ...
    ("qwen3_vl", [352, 160], "[250, 100, 500, 500] (with coordinates normalized to integers from 0 to 1000)"),
])
def test_exemplar_coordinates_are_written_in_the_models_convention(tmp_path, family, size, written):
    row = trl_row(tmp_path, family)
    assert row["model_image_size"] == size and row["task"] == VISUAL_PROMPT_DETECTION
    assert text(row).startswith(f"The object at {written} is an example of what to find.\n")
    assert "the example included" in text(row) and "circle" not in text(row)  # the prompt shows, it does not name
    with Image.open(row["image"]) as image:  # coordinates: the image is the plain resized one
        assert OUTLINE_COLOUR not in {c for _, c in image.convert("RGB").getcolors()}


def test_drawn_exemplar_outlines_the_box_on_the_image_the_model_sees(tmp_path):
    row = trl_row(tmp_path, "qwen2_5_vl", "drawn")
    assert text(row).startswith("The object outlined by a magenta box in the image is an example")
    with Image.open(row["image"]) as image:
        pixels = image.convert("RGB").load()
        assert image.size == (308, 140)
    # the exemplar at 308/400 x 140/200 is x 77..154, y 14..70: columns 77..153, rows 14..69 keep their pixels
    magenta = [(75, 40), (76, 40), (154, 40), (155, 40), (100, 12), (100, 13), (100, 70), (100, 71), (75, 12), (155, 71)]
    untouched = [(74, 40), (77, 40), (153, 40), (156, 40), (100, 11), (100, 14), (100, 69), (100, 72), (250, 120)]
    assert all(pixels[p] == OUTLINE_COLOUR for p in magenta)
    assert all(pixels[p] == BACKGROUND for p in untouched)
    stamp = Path(row["image"]).stat().st_mtime_ns
    again = trl_row(tmp_path, "qwen2_5_vl", "drawn")  # one marked copy per image and exemplars, reused
    assert again["image"] == row["image"] and Path(row["image"]).stat().st_mtime_ns == stamp


def test_draw_exemplars_keeps_the_objects_own_pixels():
    image = Image.new("RGB", (20, 20), "white")
    marked = np.asarray(draw_exemplars(image, [[5, 5, 10, 10]]))
    assert (marked[5:10, 5:10] == 255).all() and (marked[3:12, 3] == OUTLINE_COLOUR).all()
    assert (marked[2, 2] == 255).all() and np.asarray(image).min() == 255  # the original is left as it was


@pytest.mark.parametrize("family", sorted(FACTORS))
@pytest.mark.parametrize("exemplar", ["coordinates", "drawn"])
def test_detection_rewards_score_a_perfect_answer_1_and_an_empty_one_0(tmp_path, family, exemplar):
    row = trl_row(tmp_path, family, exemplar)
    perfect = reference_answer(row)
    assert '"label"' not in perfect  # the prompt did not name the object; the answer need not
    for name in ("detection_iou", "detection_map", "detection_confidence", "format"):
        assert rewards.get(name)([perfect], **columns(row)) == [1.0], name
    for name in ("detection_iou", "detection_map", "detection_confidence"):
        assert rewards.get(name)(["<answer>No Objects</answer>"], **columns(row)) == [0.0], name
        assert rewards.get(name)(["<answer>[]</answer>"], **columns(row)) == [0.0], name
    assert rewards.get("negative_sample")(["<answer>No Objects</answer>"], **columns(row)) == [0.0]
    only_exemplar = perfect.split("}, {")[0] + "}]</answer>"  # the exemplar alone: half the instances
    assert rewards.get("detection_iou")([only_exemplar], **columns(row)) == [pytest.approx(0.5)]


def test_metrics_report_visual_prompt_detection_apart(tmp_path):
    row = trl_row(tmp_path, "qwen2_vl")
    sample = {**row, "query": json.loads(row["query"]), "completion": reference_answer(row)}
    report = metrics.evaluate([sample, {**sample, "id": "empty", "image": "other.png", "completion": "No Objects"}])
    assert set(DETECTION_TASKS) == {"detection", VISUAL_PROMPT_DETECTION}
    section = report[VISUAL_PROMPT_DETECTION]
    # half the instances found at full confidence: COCO's 101-point interpolated AP is 51/101
    assert "detection" not in report and section["n_samples"] == 2 and set(section["per_category"]) == {"circle"}
    assert section["mAP"] == section["AP50"] == pytest.approx(51 / 101)


@pytest.mark.parametrize("change, message", [
    ({"exemplars": []}, "needs query exemplars, a non-empty list"),
    ({"exemplars": [[350, 20, 450, 100]]}, "vp-1 query exemplar 0: box [350, 20, 450, 100] lies outside the 400x200 image"),
    ({"exemplars": [[10, 150, 30, 190]]}, "query exemplar 0 [10, 150, 30, 190] is none of the solution's boxes"),
    ({"exemplar": "crayon"}, "query exemplar must be one of ['coordinates', 'drawn', 'crop'], got 'crayon'"),
])
def test_bad_exemplars_are_refused_naming_the_row(tmp_path, change, message):
    with pytest.raises(DataError, match="row vp-1") as info:
        validate_row(vp_row(tmp_path / "x.png", **change), "row vp-1")
    assert message in str(info.value)
    negative = {**vp_row(tmp_path / "x.png"), "solution": {"boxes": [], "labels": []}}
    with pytest.raises(DataError, match="its solution needs their boxes"):
        validate_row(negative, "row vp-1")


def test_synthetic_visual_prompt_rows_hold_every_instance_and_their_exemplars(tmp_path):
    rows = make_shapes(tmp_path, 24, task=VISUAL_PROMPT_DETECTION, min_objects=3, max_objects=5, exemplars=2, scale=(0.15, 0.25),
                       exemplar="drawn", seed=3)
    assert rows == make_shapes(tmp_path, 24, task=VISUAL_PROMPT_DETECTION, min_objects=3, max_objects=5, exemplars=2, scale=(0.15, 0.25),
                               exemplar="drawn", seed=3)
    for row in rows:
        validate_row(row, row["id"])  # exemplars inside the image and among the solution's boxes
        query, solution = row["query"], row["solution"]
        assert query["exemplar"] == "drawn" and len(query["exemplars"]) == 2
        assert all(box in solution["boxes"] for box in query["exemplars"])
        assert set(solution["labels"]) == {query["category"]} and len(solution["boxes"]) >= 2
        image = np.asarray(Image.open(row["image"]).convert("L"))
        outside = np.ones_like(image, dtype=bool)
        for x1, y1, x2, y2 in solution["boxes"]:
            outside[y1:y2, x1:x2] = False
        # at least one distractor (another shape) whenever there was room for one
        assert (image[outside] != 255).any() or len(solution["boxes"]) == 5
    first, second = rows[0]["query"]["exemplars"]
    assert question(rows[0]) == f"Find every shape like the ones at {first}, {second}, those included. " \
                                "Give boxes as [x1, y1, x2, y2]."
    with pytest.raises(ValueError, match="negative_ratio"):
        make_shapes(None, 4, task=VISUAL_PROMPT_DETECTION, negative_ratio=0.5)
    with pytest.raises(ValueError, match="exemplars must be from 1 to max_objects"):
        make_shapes(None, 4, task=VISUAL_PROMPT_DETECTION, exemplars=4, max_objects=3)
