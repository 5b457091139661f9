"""Synthetic shapes: determinism, tight boxes, balanced classes, true negatives, the on-disk format."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageColor

from rft.data.synthetic import load_rows, make_shapes, question
from rft.models.tiny import COLOURS, SHAPES


def _pixels(row: dict) -> np.ndarray:
    image = row["image"] if isinstance(row["image"], Image.Image) else Image.open(row["image"])
    return np.asarray(image.convert("RGB"))


def _foreground(row: dict, background: str = "white") -> np.ndarray:
    return (_pixels(row) != np.array(ImageColor.getrgb(background))).any(axis=-1)


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_writes_jsonl_and_pngs(tmp_path: Path) -> None:
    rows = make_shapes(tmp_path / "d", 6, task="classification", seed=3)
    assert load_rows(tmp_path / "d" / "train.jsonl") == rows
    for row in rows:
        assert set(row) == {"id", "dataset", "task", "image", "image_size", "solution", "query"}
        path = Path(row["image"])
        assert path.is_absolute() and path.suffix == ".png"
        with Image.open(path) as img:
            assert list(img.size) == row["image_size"] == [112, 112]
        assert row["solution"]["synonyms"] == [] and row["solution"]["label"] in row["query"]["classes"]
        json.dumps(row)
    assert len({r["id"] for r in rows}) == 6


@pytest.mark.parametrize("task", ["classification", "detection", "grounding"])
def test_deterministic_and_splits_differ(tmp_path: Path, task: str) -> None:
    ratio = 0.0 if task == "classification" else 0.3
    a = make_shapes(tmp_path / "a", 8, task=task, seed=1, negative_ratio=ratio)
    b = make_shapes(tmp_path / "b", 8, task=task, seed=1, negative_ratio=ratio)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "image"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    assert all(Path(x["image"]).read_bytes() == Path(y["image"]).read_bytes() for x, y in zip(a, b))
    memory = make_shapes(None, 8, task=task, seed=1, negative_ratio=ratio)
    assert strip(memory) == strip(a)
    assert all(np.array_equal(_pixels(m), _pixels(x)) for m, x in zip(memory, a))
    other_seed = make_shapes(None, 8, task=task, seed=2, negative_ratio=ratio)
    held_out = make_shapes(None, 8, task=task, seed=1, negative_ratio=ratio, split="val")
    for other in (other_seed, held_out):
        assert not any(np.array_equal(_pixels(m), _pixels(o)) for m in memory for o in other)
    assert held_out[0]["id"].endswith("-val-00000")


@pytest.mark.parametrize("size", [112, 56])
def test_classification_box_free_single_shape_and_balanced(size: int) -> None:
    shapes = ("circle", "square", "triangle")
    rows = make_shapes(None, 31, task="classification", seed=0, image_size=size, shapes=shapes)
    counts = Counter(r["solution"]["label"] for r in rows)
    assert set(counts) == set(shapes) and max(counts.values()) - min(counts.values()) <= 1
    for row in rows:
        assert row["query"] == {"classes": list(shapes)}
        colours = {tuple(c) for c in _pixels(row).reshape(-1, 3)}
        assert len(colours) == 2  # background and one shape colour, no antialiasing


def test_colour_shape_labels() -> None:
    rows = make_shapes(None, 12, seed=0, label="colour_shape", colours=["red", "blue"], shapes=["circle", "star"])
    for row in rows:
        colour, shape = row["solution"]["label"].split()
        assert colour in ("red", "blue") and shape in ("circle", "star")
        assert row["solution"]["label"] in row["query"]["classes"]
        assert (_pixels(row) == np.array(ImageColor.getrgb(colour))).all(axis=-1).any()


def test_colour_labels_balanced() -> None:
    colours = ["red", "green", "blue", "yellow"]
    rows = make_shapes(None, 22, seed=0, label="colour", colours=colours)
    counts = Counter(r["solution"]["label"] for r in rows)
    assert set(counts) == set(colours) and max(counts.values()) - min(counts.values()) <= 1
    for row in rows:
        assert row["query"] == {"classes": colours}
        assert (_pixels(row) == np.array(ImageColor.getrgb(row["solution"]["label"]))).all(axis=-1).any()
    assert question(rows[0]).startswith("What colour is this?")


@pytest.mark.parametrize("task", ["detection", "grounding"])
def test_boxes_tightly_contain_each_shape(task: str) -> None:
    rows = make_shapes(None, 40, task=task, seed=5, shapes=SHAPES, min_objects=1, max_objects=4, negative_ratio=0.2)
    for row in rows:
        fg = _foreground(row)
        w, h = row["image_size"]
        assert fg.shape == (h, w)
        boxes = row["solution"]["boxes"]
        assert len(boxes) == len(row["solution"]["labels"])
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            inside = np.zeros_like(fg)
            inside[y1:y2, x1:x2] = fg[y1:y2, x1:x2]
            assert _box_of(inside) == [x1, y1, x2, y2]  # the shape touches all four sides of its box
            # a 1-pixel ring around the box is background: nothing of this shape lies outside it
            ring = fg[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1].copy()
            ring[(y1 > 0):(y1 > 0) + y2 - y1, (x1 > 0):(x1 > 0) + x2 - x1] = False
            assert not ring.any()


def test_single_object_box_is_the_foreground_box() -> None:
    for task in ("detection", "grounding"):
        for row in make_shapes(None, 20, task=task, seed=7, min_objects=1, max_objects=1):
            assert row["solution"]["boxes"] == [_box_of(_foreground(row))]


def test_detection_rows() -> None:
    rows = make_shapes(None, 50, task="detection", seed=2, negative_ratio=0.4, shapes=("circle", "square", "star"))
    assert sum(not r["solution"]["boxes"] for r in rows) == 20
    for row in rows:
        boxes = row["solution"]["boxes"]
        assert row["solution"]["labels"] == [row["query"]["category"]] * len(boxes)
        assert _foreground(row).any()  # a negative still shows shapes, just not the asked-for one
        for i, a in enumerate(boxes):  # instances never overlap
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_negatives_absent_by_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spy on the drawing: a negative's image never contains the asked-for shape (or colour+shape)."""
    import rft.data.synthetic as synthetic

    drawn: list[list[tuple[str, str]]] = []
    real_render = synthetic._render

    def spy(size, background, objects):
        objects = list(objects)
        drawn.append([(shape, colour) for shape, colour, _ in objects])
        return real_render(size, background, objects)

    monkeypatch.setattr(synthetic, "_render", spy)
    det = synthetic.make_shapes(None, 60, task="detection", seed=4, negative_ratio=0.5, shapes=("circle", "star"))
    for row, objects in zip(det, drawn):
        present = [s for s, _ in objects]
        assert present.count(row["query"]["category"]) == len(row["solution"]["boxes"])
        assert 1 <= len(objects) <= 3
    assert sum(not r["solution"]["boxes"] for r in det) == 30

    drawn.clear()
    grd = synthetic.make_shapes(None, 60, task="grounding", seed=4, negative_ratio=0.5,
                                shapes=("circle", "star"), colours=("red", "blue"))
    for row, objects in zip(grd, drawn):
        target = tuple(reversed(row["query"]["phrase"].removeprefix("the ").split()))  # (shape, colour)
        assert objects.count(target) == len(row["solution"]["boxes"]) <= 1
        phrase = row["query"]["phrase"].removeprefix("the ")
        assert row["solution"]["labels"] == [phrase] * len(row["solution"]["boxes"])
    assert sum(not r["solution"]["boxes"] for r in grd) == 30


def test_distractors_hold_base_shapes_around_one_novel_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Novel query categories among base-category distractors: a positive holds exactly one shape of
    the queried category, a negative only base shapes; the default (no distractors) draws as before."""
    import rft.data.synthetic as synthetic

    drawn: list[list[str]] = []
    real_render = synthetic._render

    def spy(size, background, objects):
        objects = list(objects)
        drawn.append([shape for shape, _, _ in objects])
        return real_render(size, background, objects)

    monkeypatch.setattr(synthetic, "_render", spy)
    novel, base = ("triangle", "star"), ("circle", "square", "hexagon")
    rows = synthetic.make_shapes(None, 40, task="detection", seed=5, negative_ratio=0.25, shapes=novel, distractors=base)
    assert sum(not r["solution"]["boxes"] for r in rows) == 10
    for row, shapes in zip(rows, drawn):
        assert row["query"]["category"] in novel and 1 <= len(shapes) <= 3
        novel_drawn = [s for s in shapes if s in novel]
        assert novel_drawn == ([row["query"]["category"]] if row["solution"]["boxes"] else [])
        assert set(shapes) - set(novel) <= set(base)
    drawn.clear()
    default = synthetic.make_shapes(None, 6, task="detection", seed=5, negative_ratio=0.25, shapes=novel)
    same = synthetic.make_shapes(None, 6, task="detection", seed=5, negative_ratio=0.25, shapes=novel, distractors=novel)
    assert [r["solution"] for r in default] == [r["solution"] for r in same]
    assert all(np.array_equal(_pixels(a), _pixels(b)) for a, b in zip(default, same))
    with pytest.raises(ValueError, match="distractors"):
        make_shapes(None, 1, task="detection", distractors=("blob",))
    with pytest.raises(ValueError, match="distractors"):
        make_shapes(None, 1, distractors=("circle",))  # classification has none
    with pytest.raises(ValueError, match="two shapes"):
        make_shapes(None, 1, task="detection", shapes=("star",), distractors=("star",), negative_ratio=0.5)


def test_negative_ratio_exact_and_rewards_accept_rows() -> None:
    import rewards

    rows = make_shapes(None, 10, task="grounding", seed=0, negative_ratio=0.3)
    assert sum(not r["solution"]["boxes"] for r in rows) == 3
    fn = rewards.get("grounding_iou")
    completions = [
        f"<answer>{json.dumps(r['solution']['boxes'])}</answer>" if r["solution"]["boxes"] else "<answer>none</answer>"
        for r in rows
    ]
    columns = {"task": [r["task"] for r in rows], "solution": [json.dumps(r["solution"]) for r in rows],
               "image_size": [r["image_size"] for r in rows], "coord_format": ["pixels"] * len(rows)}
    assert fn(completions, **columns) == [1.0] * len(rows)
    cls = make_shapes(None, 4, seed=0)
    scores = rewards.get("classification_accuracy")(
        [f"<answer>{r['solution']['label']}</answer>" for r in cls], task=[r["task"] for r in cls],
        solution=[r["solution"] for r in cls])
    assert scores == [1.0] * 4


def test_all_shapes_and_colours_draw() -> None:
    rows = make_shapes(None, len(SHAPES) * 2, seed=0, shapes=SHAPES)
    assert {r["solution"]["label"] for r in rows} == set(SHAPES)
    assert all(_foreground(r).sum() > 50 for r in rows)
    make_shapes(None, 2, seed=0, colours=COLOURS, background="black")


def test_questions() -> None:
    for task in ("classification", "detection", "grounding"):
        assert question(make_shapes(None, 1, task=task, seed=0)[0])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_shapes(None, 1, task="segmentation")
    with pytest.raises(ValueError):
        make_shapes(None, 1, shapes=("blob",))
    with pytest.raises(ValueError):
        make_shapes(None, 1, negative_ratio=0.5)  # classification has no negatives
    with pytest.raises(ValueError):
        make_shapes(None, 1, colours=("white",))  # invisible on the white background
