"""Synthetic coloured shapes on plain backgrounds: a deterministic dataset for demos and tests.

``make_shapes`` draws ``n`` images with PIL and returns rft rows::

    {"id": "shapes-classification-train-00000", "dataset": "shapes-classification",
     "task": "classification", "image": "/abs/path/images/train-00000.png", "image_size": [112, 112],
     "solution": {"label": "circle", "synonyms": []},
     "query": {"classes": ["circle", "square", "triangle", "star"]}}

Tasks:

- ``classification``: one shape per image; the label is the shape name (``label="shape"``), its
  colour (``"colour"``) or "colour shape" (``"colour_shape"``); shapes are balanced exactly over
  ``shapes`` (and colours over ``colours`` with ``label="colour"``).
- ``detection``: ``min_objects``..``max_objects`` non-overlapping shapes; the query is a category
  (a shape name) and the solution holds the pixel boxes of every instance of it.
- ``visual_prompt_detection``: one shape in ``exemplars``..``max_objects`` instances (of any colours) among
  distractors of other shapes (``min_objects``..``max_objects`` shapes in all, at least one distractor when
  there is room); the query gives ``exemplars`` of the instances as boxes (how the prompt shows them:
  ``exemplar``, :mod:`rft.data.exemplars`) and the category, which the default prompt does not name;
  the solution holds every instance, the exemplars included. No negatives.
- ``grounding``: like detection, the query is a phrase ("the red circle") naming exactly one shape.

For detection and grounding, a ``negative_ratio`` share of the rows (exactly ``round(n * ratio)``)
asks for something that is not in the image; their solution has no boxes. The query is drawn from
``shapes``, the other objects from ``distractors`` (default: ``shapes``): base and novel categories
for few-shot experiments (docs/learning.md).

Boxes are ``[x1, y1, x2, y2]`` in pixels of the PNG, tight and exclusive at the far end (PIL's
``getbbox`` convention): the shape's pixels are exactly columns ``x1..x2-1`` and rows ``y1..y2-1``.
Shapes are drawn without antialiasing, so every pixel is the background or a shape colour.

The output depends only on the arguments: the same ``seed`` gives the same bytes, and each
``split`` uses its own random stream, so ``split="val"`` is a held-out set for the same seed.
With ``out_dir=None`` nothing is written and each row's ``image`` is the ``PIL.Image`` itself.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Iterable, Sequence

from PIL import Image, ImageColor, ImageDraw

from rewards.contract import DETECTION_TASKS
from rft.data.exemplars import DEFAULT_EXEMPLAR, EXEMPLAR_MODES
from rft.models.tiny import COLOURS, SHAPES

TASKS = ("classification", "detection", "visual_prompt_detection", "grounding")
LABELS = ("shape", "colour", "colour_shape")
DEFAULT_SHAPES = ("circle", "square", "triangle", "star")
BACKGROUND = "white"

# Fraction of the image side a classification shape spans, and a detection/grounding shape.
_CLS_SIZE = (0.4, 0.8)
_BOX_SIZE = (0.2, 0.4)
_MAX_TRIES = 200


def _regular(cx: float, cy: float, r: float, k: int, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(phase + 2 * math.pi * i / k), cy + r * math.sin(phase + 2 * math.pi * i / k))
            for i in range(k)]


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    outer, inner = _regular(cx, cy, r, 5), _regular(cx, cy, 0.45 * r, 5, -math.pi / 2 + math.pi / 5)
    return [p for pair in zip(outer, inner) for p in pair]


def _cross(x0: float, y0: float, w: float, h: float) -> list[tuple[float, float]]:
    a, b = x0 + w / 3, x0 + 2 * w / 3
    c, d = y0 + h / 3, y0 + 2 * h / 3
    x1, y1 = x0 + w, y0 + h
    return [(a, y0), (b, y0), (b, c), (x1, c), (x1, d), (b, d), (b, y1), (a, y1), (a, d), (x0, d), (x0, c), (a, c)]


def _aspect(shape: str, rng: random.Random) -> float:
    """Width / height of the shape's frame: elongated for rectangle and ellipse, else square."""
    if shape in ("rectangle", "ellipse"):
        ratio = rng.uniform(1.6, 2.2)
        return ratio if rng.random() < 0.5 else 1.0 / ratio
    if shape == "diamond":
        return rng.uniform(0.6, 0.8)
    return 1.0


def _draw(draw: ImageDraw.ImageDraw, shape: str, frame: tuple[float, float, float, float], fill: Any) -> None:
    """Draw ``shape`` inside ``frame`` = (x0, y0, w, h), without antialiasing."""
    x0, y0, w, h = frame
    cx, cy, r = x0 + w / 2, y0 + h / 2, min(w, h) / 2
    if shape in ("circle", "ellipse"):
        draw.ellipse((x0, y0, x0 + w, y0 + h), fill=fill)
    elif shape in ("square", "rectangle"):
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x0 + w, y0 + h), (x0, y0 + h)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x0 + w, cy), (cx, y0 + h), (x0, cy)], fill=fill)
    elif shape == "star":
        draw.polygon(_star(cx, cy, r), fill=fill)
    elif shape == "pentagon":
        draw.polygon(_regular(cx, cy, r, 5), fill=fill)
    elif shape == "hexagon":
        draw.polygon(_regular(cx, cy, r, 6, 0.0), fill=fill)
    elif shape == "cross":
        draw.polygon(_cross(x0, y0, w, h), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _tight_box(shape: str, frame: tuple[float, float, float, float], size: tuple[int, int]) -> list[int] | None:
    """The exact pixel box the shape covers when drawn in ``frame`` (None when it covers nothing)."""
    mask = Image.new("1", size, 0)
    _draw(ImageDraw.Draw(mask), shape, frame, 1)
    box = mask.getbbox()
    return list(box) if box else None


def _place(shape: str, rng: random.Random, size: int, frac: tuple[float, float],
           taken: Sequence[Sequence[int]] = (), gap: int = 2) -> tuple[tuple[float, float, float, float], list[int]]:
    """A random frame for ``shape`` whose tight box keeps ``gap`` pixels from every box in ``taken``."""
    for _ in range(_MAX_TRIES):
        side = rng.uniform(*frac) * size
        aspect = _aspect(shape, rng)
        w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
        x0 = rng.uniform(1, size - w - 2)
        y0 = rng.uniform(1, size - h - 2)
        frame = (x0, y0, w, h)
        box = _tight_box(shape, frame, (size, size))
        if box is None:
            continue
        if all(box[2] + gap <= t[0] or t[2] + gap <= box[0] or box[3] + gap <= t[1] or t[3] + gap <= box[1]
               for t in taken):
            return frame, box
    raise RuntimeError(f"could not place a {shape} in a {size}px image with {len(taken)} other shapes")


def _colours(colours: Sequence[str] | None, background: str) -> list[str]:
    pool = [c for c in (colours or COLOURS) if c != background]
    for c in pool + [background]:
        ImageColor.getrgb(c)  # fail early on a name PIL does not know
    if not pool:
        raise ValueError("no shape colour differs from the background")
    return pool


def _balanced(items: Sequence[Any], n: int, rng: random.Random) -> list[Any]:
    """``n`` items cycling through ``items`` (counts differ by at most one), in random order."""
    out = [items[i % len(items)] for i in range(n)]
    rng.shuffle(out)
    return out


def _render(size: int, background: str, objects: Iterable[tuple[str, str, tuple]]) -> Image.Image:
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    for shape, colour, frame in objects:
        _draw(draw, shape, frame, colour)
    return img


def _classification(rng: random.Random, label_shape: str, size: int, colours: list[str], background: str,
                    label: str, classes: list[str], scale: tuple[float, float]) -> tuple[Image.Image, dict, dict]:
    colour = rng.choice(colours)
    frame, _ = _place(label_shape, rng, size, scale)
    name = {"shape": label_shape, "colour": colour}.get(label, f"{colour} {label_shape}")
    return (_render(size, background, [(label_shape, colour, frame)]),
            {"label": name, "synonyms": []}, {"classes": classes})


_Object = tuple[str, str, tuple, list[int]]  # shape, colour, frame, tight box


def _scene(rng: random.Random, size: int, shapes: Sequence[str], colours: list[str], count: int,
           scale: tuple[float, float], exclude: tuple[str | None, str | None] = (None, None)) -> list[_Object]:
    """``count`` non-overlapping (shape, colour, frame, box); none is ``exclude`` (shape, colour or both)."""
    objects: list[_Object] = []
    ex_shape, ex_colour = exclude
    while len(objects) < count:
        shape, colour = rng.choice(shapes), rng.choice(colours)
        if ex_shape is not None and shape == ex_shape and (ex_colour is None or colour == ex_colour):
            continue
        frame, box = _place(shape, rng, size, scale, [o[3] for o in objects])
        objects.append((shape, colour, frame, box))
    return objects


def _detection(negative: bool, rng: random.Random, size: int, shapes: Sequence[str], colours: list[str],
               background: str, n_objects: int, scale: tuple[float, float],
               others: Sequence[str]) -> tuple[Image.Image, dict, dict]:
    category = rng.choice(shapes)
    if negative:
        objects = _scene(rng, size, others, colours, n_objects, scale, exclude=(category, None))
    else:
        objects = _scene(rng, size, others, colours, n_objects - 1, scale)
        frame, box = _place(category, rng, size, scale, [o[3] for o in objects])
        objects.insert(rng.randrange(len(objects) + 1), (category, rng.choice(colours), frame, box))
    hits = [o[3] for o in objects if o[0] == category]
    solution = {"boxes": hits, "labels": [category] * len(hits)}
    return _render(size, background, [o[:3] for o in objects]), solution, {"category": category}


def _visual_prompt(rng: random.Random, size: int, shapes: Sequence[str], colours: list[str], background: str,
                   n_objects: int, scale: tuple[float, float], others: Sequence[str], n_exemplars: int,
                   exemplar: str) -> tuple[Image.Image, dict, dict]:
    category = rng.choice(shapes)
    n_objects = max(n_objects, n_exemplars)
    instances = rng.randint(n_exemplars, max(n_exemplars, n_objects - 1))
    objects = _scene(rng, size, others, colours, n_objects - instances, scale, exclude=(category, None))
    for _ in range(instances):
        frame, box = _place(category, rng, size, scale, [o[3] for o in objects])
        objects.insert(rng.randrange(len(objects) + 1), (category, rng.choice(colours), frame, box))
    hits = [o[3] for o in objects if o[0] == category]
    solution = {"boxes": hits, "labels": [category] * len(hits)}
    query = {"category": category, "exemplars": rng.sample(hits, n_exemplars), "exemplar": exemplar}
    return _render(size, background, [o[:3] for o in objects]), solution, query


def _grounding(negative: bool, rng: random.Random, size: int, shapes: Sequence[str], colours: list[str],
               background: str, n_objects: int, scale: tuple[float, float],
               others: Sequence[str]) -> tuple[Image.Image, dict, dict]:
    shape, colour = rng.choice(shapes), rng.choice(colours)
    # distractors never repeat the target's colour and shape, so the phrase names at most one shape
    objects = _scene(rng, size, others, colours, n_objects if negative else n_objects - 1, scale,
                     exclude=(shape, colour))
    if not negative:
        frame, box = _place(shape, rng, size, scale, [o[3] for o in objects])
        objects.insert(rng.randrange(len(objects) + 1), (shape, colour, frame, box))
    hits = [o[3] for o in objects if o[0] == shape and o[1] == colour]
    solution = {"boxes": hits, "labels": [f"{colour} {shape}"] * len(hits)}
    return _render(size, background, [o[:3] for o in objects]), solution, {"phrase": f"the {colour} {shape}"}


def make_shapes(
    out_dir: str | Path | None,
    n: int,
    *,
    task: str = "classification",
    seed: int = 0,
    image_size: int = 112,
    split: str = "train",
    negative_ratio: float = 0.0,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    colours: Sequence[str] | None = None,
    background: str = BACKGROUND,
    label: str = "shape",
    min_objects: int = 1,
    max_objects: int = 3,
    scale: tuple[float, float] | None = None,
    distractors: Sequence[str] | None = None,
    dataset: str | None = None,
    exemplars: int = 1,
    exemplar: str = DEFAULT_EXEMPLAR,
) -> list[dict]:
    """``n`` rows of synthetic shapes for ``task``; written to ``out_dir`` unless it is None.

    Writes ``out_dir/{split}.jsonl`` and ``out_dir/images/{split}-NNNNN.png`` (rows point to the
    PNGs by absolute path). ``shapes`` are the classes / categories (from ``tiny.SHAPES``),
    ``colours`` the shape colours (default ``tiny.COLOURS`` minus the background), ``label``
    ``"shape"``, ``"colour"`` or ``"colour_shape"`` (classification). Detection and grounding draw
    ``min_objects``..``max_objects`` shapes per image. ``scale`` is the range of a shape's size as a
    fraction of the image side (default 0.4-0.8 for classification, 0.2-0.4 otherwise).
    ``distractors`` (detection, grounding) are the shapes the other objects of an image are drawn
    from (default: ``shapes``): with ``shapes`` novel categories and ``distractors`` base ones, a
    positive image holds one novel shape among base shapes and a negative only base shapes.
    ``exemplars`` (visual_prompt_detection) is how many instances the query gives as examples, and
    ``exemplar`` how the prompt shows them (``coordinates`` or ``drawn``, :data:`rft.data.exemplars.EXEMPLAR_MODES`).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    if not 0.0 <= negative_ratio <= 1.0 or (negative_ratio and task in ("classification", "visual_prompt_detection")):
        raise ValueError("negative_ratio must be in [0, 1], and 0 for classification and visual_prompt_detection")
    if exemplar not in EXEMPLAR_MODES:
        raise ValueError(f"exemplar must be one of {EXEMPLAR_MODES}, got {exemplar!r}")
    if not 1 <= exemplars <= max_objects:
        raise ValueError(f"exemplars must be from 1 to max_objects ({max_objects}), got {exemplars}")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {list(shapes)}")
    if scale is not None and not 0.0 < scale[0] <= scale[1] <= 0.95:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 0.95, got {scale}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError("need 1 <= min_objects <= max_objects")
    pool = _colours(colours, background)
    if task == "grounding" and len(shapes) * len(pool) < 2 and max_objects > 1:
        raise ValueError("grounding with distractors needs at least two (colour, shape) pairs")
    others = list(distractors) if distractors is not None else list(shapes)
    if distractors is not None:
        unknown = [s for s in others if s not in SHAPES]
        if unknown or not others or task == "classification":
            raise ValueError(f"distractors must be a non-empty subset of {SHAPES} (detection and grounding only), "
                             f"got {others}")
    if task in DETECTION_TASKS and (negative_ratio > 0 or max_objects > 1) and any(not set(others) - {c} for c in shapes):
        raise ValueError(f"{task} with negatives or distractors needs at least two shapes")

    dataset = dataset or f"shapes-{task}"
    rng = random.Random(f"rft-shapes:{seed}:{split}:{task}")  # str seeds are hashed with SHA-512: stable
    n_neg = round(n * negative_ratio)
    negatives = _balanced([True] * n_neg + [False] * (n - n_neg), n, rng) if task != "classification" else []
    if task == "classification":
        classes = {"shape": list(shapes), "colour": pool}.get(label) or [f"{c} {s}" for c in pool for s in shapes]
        labels = _balanced(list(shapes), n, rng)
        colour_of = _balanced(pool, n, rng) if label == "colour" else None

    images_dir = None
    if out_dir is not None:
        out = Path(out_dir).resolve()
        images_dir = out / "images"
        images_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        if task == "classification":
            colours_i = [colour_of[i]] if colour_of else pool
            img, solution, query = _classification(rng, labels[i], image_size, colours_i, background, label, classes,
                                                   scale or _CLS_SIZE)
        elif task == "visual_prompt_detection":
            img, solution, query = _visual_prompt(rng, image_size, shapes, pool, background,
                                                  rng.randint(min_objects, max_objects), scale or _BOX_SIZE, others,
                                                  exemplars, exemplar)
        else:
            count = rng.randint(min_objects, max_objects)
            maker = _detection if task == "detection" else _grounding
            img, solution, query = maker(negatives[i], rng, image_size, shapes, pool, background, count,
                                         scale or _BOX_SIZE, others)
        row_id = f"{dataset}-{split}-{i:05d}"
        if images_dir is not None:
            path = images_dir / f"{split}-{i:05d}.png"
            img.save(path, format="PNG")
            image: Any = str(path)
        else:
            image = img
        rows.append({
            "id": row_id,
            "dataset": dataset,
            "task": task,
            "image": image,
            "image_size": [image_size, image_size],
            "solution": solution,
            "query": query,
        })
    if out_dir is not None:
        with open(Path(out_dir).resolve() / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return rows


def load_rows(path: str | Path) -> list[dict]:
    """The rows of a JSONL file written by :func:`make_shapes`."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def question(row: dict) -> str:
    """A plain-English question for a row (what the demo asks; recipes may use their own templates)."""
    query = row["query"]
    if row["task"] == "classification":
        classes = query["classes"]
        kind = "shape" if set(classes) <= set(SHAPES) else "colour" if set(classes) <= set(COLOURS) else "object"
        return f"What {kind} is this? Choose from: {', '.join(classes)}."
    if row["task"] == "detection":
        return f"Find every {query['category']}. Give boxes as [x1, y1, x2, y2], or none."
    if row["task"] == "visual_prompt_detection":
        boxes = query["exemplars"]
        ones, those = ("ones", "those") if len(boxes) > 1 else ("one", "that one")
        return (f"Find every shape like the {ones} at {', '.join(map(str, boxes))}, {those} included. "
                "Give boxes as [x1, y1, x2, y2].")
    return f"Locate {query['phrase']}. Give its box as [x1, y1, x2, y2], or none."
