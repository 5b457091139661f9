"""``rft data recipe.yaml``: load and check every dataset of a recipe before training, without a model.

Each dataset (training, the replay one among them, ``eval.datasets``, ``eval.retention``) is read
by its loader, its rows checked against the row contract and every image decoded; the model's
resize rule (family and factor from its files, :mod:`rft.models.geometry`, and the recipe's pixel
budget) gives the size each image will have for the model. Per dataset it reports rows, tasks,
negatives, categories, what was skipped and why, image sizes before and after resizing, the
coordinate conventions (how the source wrote boxes, how the model is asked to answer), and one
rendered prompt with its reference answer per task; it draws the ground-truth boxes of a few images.
A dataset that cannot be read is reported with the loader's message (file, line, field) and makes
the check fail; the others are still checked.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from rewards.contract import BOX_TASKS, DETECTION_TASKS
from rft.data.answers import reference_answer
from rft.data.build import PROGRESS_FROM
from rft.data.images import open_image
from rft.data.prompts import load_template, render_prompt, row_coord_format
from rft.data.records import LoadReport, Row, image_rows, row_images, validate_row
from rft.data.sources import dataset_rows_and_report, template_fields
from rft.errors import DataError, RftError
from rft.families import family_of
from rft.models.geometry import Geometry, model_geometry
from rft.recipe.schema import DatasetSpec, Recipe

ANSWER_CONVENTIONS = {
    "pixels": "pixels of the resized image the model sees",
    "norm1000": "0..1000 of the image",
    "norm1": "0..1 of the image",
}
SHOWN_CATEGORIES = 12
"""Categories printed per dataset (all of them go to summary.json)."""


def recipe_datasets(recipe: Recipe) -> list[tuple[str, DatasetSpec]]:
    """``(role, entry)`` for every dataset of a recipe: ``train``, ``replay``, ``eval``, ``retention``."""
    replay = recipe.data.replay.dataset if recipe.data.replay else None
    return ([("replay" if s.name == replay else "train", s) for s in recipe.data.datasets]
            + [("eval", s) for s in recipe.eval.datasets] + [("retention", s) for s in recipe.eval.retention])


def check_recipe(recipe: Recipe, out: str | Path, pictures: int = 4, print_fn: Callable[[str], Any] = print) -> dict:
    """Check every dataset of ``recipe`` (module docstring); writes ``out/summary.json`` and
    ``out/pictures/<dataset>/``, prints a report, and returns the summary (``ok`` false when a
    dataset failed)."""
    out = Path(out)
    geometry = model_geometry(recipe.model)
    coord_format = None if recipe.model.coord_format == "auto" else recipe.model.coord_format
    model = {"family": geometry.family, "factor": geometry.factor, "read_from": geometry.source,
             "min_pixels": recipe.model.min_pixels, "max_pixels": recipe.model.max_pixels,
             "coord_format": coord_format or geometry.coord_format}
    print_fn(f"model: family {geometry.family} (from {geometry.source}), images resized to multiples of {geometry.factor} "
             f"within {recipe.model.min_pixels}..{recipe.model.max_pixels} pixels, boxes answered in {model['coord_format']}")
    results = []
    for role, spec in recipe_datasets(recipe):
        try:
            result = check_dataset(spec, recipe, geometry, out, pictures)
        except RftError as exc:
            result = {"ok": False, "error": str(exc)}
        result = {"name": spec.name, "role": role, "kind": spec.kind, "path": spec.path, **result}
        results.append(result)
        print_fn(describe(result))
    failed = [r["name"] for r in results if not r["ok"]]
    summary = {"ok": not failed, "failed": failed, "model": model, "datasets": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=str))
    print_fn(f"checked {len(results)} datasets: {'all usable' if not failed else f'{len(failed)} failed: ' + ', '.join(failed)}; "
             f"summary in {out / 'summary.json'}")
    return summary


def check_dataset(spec: DatasetSpec, recipe: Recipe, geometry: Geometry, out: Path, pictures: int) -> dict:
    """The figures of one dataset (see :func:`check_recipe`); raises :class:`~rft.errors.RftError` when it fails."""
    rows, report = dataset_rows_and_report(spec, recipe.data.on_bad_image, out / "cache")
    rows = [validate_row(row, f"row {row['id']}") for row in rows]
    bad = _undecodable(rows)
    if bad and recipe.data.on_bad_image == "error":
        raise DataError(next(iter(bad.values())))
    rows = [r for r in rows if not any(path in bad for path, _ in row_images(r))]
    model = recipe.model
    sizes = Counter(tuple(r["image_size"]) for r in rows)
    resized = {}
    for size in sizes:
        try:
            resized[size] = family_of(geometry.family).model_image_size(size, geometry.factor, model.min_pixels, model.max_pixels)
        except ValueError as exc:  # smart_resize refuses aspect ratios over 200
            example = next(r for r in rows if tuple(r["image_size"]) == size)
            raise DataError(f"row {example['id']}: {example['image']}: {exc}") from None
    coord_format = None if model.coord_format == "auto" else model.coord_format
    answers = Counter(row_coord_format(r, geometry.family, coord_format) for r in rows if r["task"] in BOX_TASKS)
    return {
        "ok": True,
        "rows": len(rows),
        "tasks": dict(Counter(r["task"] for r in rows)),
        "negatives": sum(1 for r in rows if r["task"] in BOX_TASKS and not r["solution"]["boxes"]),
        "categories": dict(_categories(rows).most_common()),
        "skipped": {"bad_images": report.bad_images + list(bad.values()), "boxes_left_out": report.skipped_boxes},
        "images": _sizes(sizes),
        "resized": _sizes(Counter({resized[s]: n for s, n in sizes.items()})),
        "coordinates": {"source": report.coordinates,
                        "answers": {f: f"{n} rows, {ANSWER_CONVENTIONS[f]}" for f, n in answers.items()}},
        "examples": _examples(rows, spec, recipe, geometry, coord_format, resized),
        "pictures": [str(p) for p in _pictures(rows, out / "pictures" / spec.name, pictures)],
    }


def _undecodable(rows: list[Row]) -> dict[str, str]:
    """Per image that does not decode, or whose size is not its row's: ``"row <id>: <image>: <reason>"`` (every
    image of a row with several)."""
    first = image_rows(rows, by_size=False)

    def check(row: Row) -> str | None:
        try:
            image = open_image(row["image"])
        except DataError as exc:
            return f"row {row['id']}: {exc}"
        if list(image.size) != list(row["image_size"]):
            return f"row {row['id']}: {row['image']}: image_size {row['image_size']} but the image is {image.size[0]}x{image.size[1]}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = tqdm(pool.map(check, first.values()), total=len(first), desc="decoding images", unit="img",
                    disable=len(first) < PROGRESS_FROM)
        return {image: message for image, message in zip(first, done) if message}


def _categories(rows: list[Row]) -> Counter:
    """Rows per category: detection (asked category, else labels), grounding (phrase), classification
    (label), tagging (tags)."""
    counts: Counter = Counter()
    for row in rows:
        solution, query = row["solution"], row["query"]
        if row["task"] in DETECTION_TASKS:
            names = {query["category"]} if query.get("category") else {str(x) for x in solution.get("labels") or []}
            counts.update(names or {"(not named)"})
        elif row["task"] == "grounding":
            counts[query["phrase"]] += 1
        elif row["task"] == "classification":
            counts[solution["label"]] += 1
        elif row["task"] == "tagging":
            counts.update(set(solution["tags"]))
    return counts


def _sizes(sizes: Counter) -> dict:
    widths, heights = [s[0] for s in sizes], [s[1] for s in sizes]
    return {"distinct": len(sizes), "min": [min(widths), min(heights)], "max": [max(widths), max(heights)],
            "most_common": [[list(s), n] for s, n in sizes.most_common(3)]}


def _examples(rows: list[Row], spec: DatasetSpec, recipe: Recipe, geometry: Geometry, coord_format: str | None,
              resized: dict) -> dict[str, dict]:
    """Per task, the first row's rendered prompt and its reference answer in the model's convention."""
    templates = template_fields(recipe, spec)
    examples = {}
    for row in rows:
        task = row["task"]
        if task in examples:
            continue
        fmt = row_coord_format(row, geometry.family, coord_format)
        model_size = list(resized[tuple(row["image_size"])])
        trl_like = {"task": task, "solution": row["solution"], "image_size": row["image_size"], "coord_format": fmt,
                    "model_image_size": model_size}
        examples[task] = {"id": row["id"], "image": row["image"], "model_image_size": model_size,
                          "prompt": render_prompt(row, geometry.family, load_template(task, templates.get(task)), coord_format,
                                                  model_size),
                          "answer": reference_answer(trl_like)}
    return examples


def _pictures(rows: list[Row], folder: Path, n: int) -> list[Path]:
    """Ground-truth boxes drawn on the first ``n`` rows with boxes (one negative among them if there is one)."""
    from rft.eval.pictures import draw_boxes, picture_name

    boxed = [r for r in rows if r["task"] in BOX_TASKS and r["solution"]["boxes"]]
    negative = next((r for r in rows if r["task"] in BOX_TASKS and not r["solution"]["boxes"]), None)
    chosen = boxed[: n - 1] + [negative] if negative is not None and n > 1 else boxed[:n]
    paths = []
    for i, row in enumerate(chosen):
        what = row["query"].get("category") or row["query"].get("phrase") or ", ".join(map(str, row["solution"]["labels"]))
        title = f"{row['id']}: {what or 'no label'}" + ("" if row["solution"]["boxes"] else " (negative: no box)")
        scale = 2 if max(row["image_size"]) < 512 else 1
        paths.append(draw_boxes(row["image"], row["solution"]["boxes"], [], title, folder / picture_name(i, row["id"]), scale,
                                others=[path for path, _ in row_images(row)[1:]]))
    return paths


def _counts(counts: dict, limit: int | None = None) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if limit is not None and len(items) > limit else "")


def _size_range(figures: dict) -> str:
    (w0, h0), (w1, h1) = figures["min"], figures["max"]
    (common, n), *_ = figures["most_common"]
    spread = f"{w0}x{h0}" if figures["distinct"] == 1 else f"{figures['distinct']} sizes, {w0}..{w1} x {h0}..{h1}"
    return f"{spread} (most common {common[0]}x{common[1]}: {n} images)"


def describe(result: dict) -> str:
    """The printed report of one dataset."""
    head = f"dataset {result['name']!r} ({result['role']}, kind {result['kind']}, {result['path'] or 'generated'})"
    if not result["ok"]:
        return f"{head}: FAILED\n  {result['error']}"
    skipped = result["skipped"]
    lines = [
        f"{head}: {result['rows']} rows",
        f"  tasks: {_counts(result['tasks'])}; negatives (no box): {result['negatives']}",
        f"  categories{' / phrases' if 'grounding' in result['tasks'] else ''} ({len(result['categories'])}): "
        f"{_counts(result['categories'], SHOWN_CATEGORIES) or '-'}",
        f"  skipped: {len(skipped['bad_images'])} bad images, {skipped['boxes_left_out']} boxes left out"
        + (f" (first: {skipped['bad_images'][0]})" if skipped["bad_images"] else ""),
        f"  images: {_size_range(result['images'])}; the model sees {_size_range(result['resized'])}",
    ]
    coords = result["coordinates"]
    if coords["source"] or coords["answers"]:
        source = ", ".join(f"{k} ({v} rows)" for k, v in coords["source"].items()) or "-"
        asked = ", ".join(f"{k} ({v})" for k, v in coords["answers"].items()) or "-"
        lines.append(f"  coordinates: the source wrote boxes in {source}; the model is asked for {asked}")
    for task, example in result["examples"].items():
        prompt = example["prompt"].replace("\n", "\n            ")
        lines += [f"  {task} example {example['id']} ({example['image']}, seen at "
                  f"{example['model_image_size'][0]}x{example['model_image_size'][1]}):",
                  f"    prompt: {prompt}", f"    answer: {example['answer']}"]
    if result["pictures"]:
        lines.append(f"  pictures of ground-truth boxes: {Path(result['pictures'][0]).parent} ({len(result['pictures'])})")
    return "\n".join(lines)
