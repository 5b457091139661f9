"""Recipe ``data.datasets[i]`` -> rows (one loader per ``kind``) -> TRL rows for the model's family."""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import jinja2

from rewards.contract import BOX_TASKS
from rft.data.records import LoadReport, Row
from rft.errors import DataError, RecipeError
from rft.recipe.schema import DatasetSpec, Recipe

if TYPE_CHECKING:
    from rft.models.load import LoadedModel

log = logging.getLogger(__name__)


def load_rows(spec: DatasetSpec, on_bad_image: str, cache_dir: Path) -> tuple[list[Row], LoadReport]:
    """The rows of one dataset entry of a recipe: every field the entry sets reaches its kind's
    loader (:data:`rft.recipe.schema.KIND_FIELDS`), and ``options`` its other keyword arguments."""
    from rft.data import classification, coco, grounding, messages, rows, tagging, visual_rft, vlm_r1

    common = {"name": spec.name, "on_bad_image": on_bad_image}
    files = {"path": spec.path, "image_root": spec.image_dir, **common}
    kind = spec.kind
    if kind == "synthetic_shapes":
        return _synthetic(spec, cache_dir)
    if kind == "rows_jsonl":
        loaded, report = _call(rows.load_rows_jsonl, spec, path=spec.path, image_root=spec.image_dir,
                               on_bad_image=on_bad_image)
        return [{**r, "dataset": spec.name} for r in loaded], report
    calls = {
        "coco": lambda: _call(coco.load_coco_detection, spec, annotation_file=spec.path,
                              image_dir=spec.image_dir or Path(spec.path).parent, negative_ratio=spec.negative_ratio,
                              categories=spec.categories, seed=spec.seed, **common),
        "image_folder": lambda: _call(classification.load_image_folder, spec, root=spec.path, **common),
        "classification_jsonl": lambda: _call(classification.load_classification_jsonl, spec,
                                              categories=spec.categories, **files),
        "hf_classification": lambda: _call(classification.load_hf_classification, spec, source=spec.path,
                                           cache_dir=cache_dir / spec.name, split=spec.split,
                                           image_column=spec.image_column, label_column=spec.label_column, **common),
        "grounding_jsonl": lambda: _call(grounding.load_grounding_jsonl, spec, **files),
        "tagging_jsonl": lambda: _call(tagging.load_tagging_jsonl, spec, **files),
        "visual_rft": lambda: _call(visual_rft.load_visual_rft, spec, source=spec.path, split=spec.split,
                                    image_root=spec.image_dir, cache_dir=cache_dir / spec.name, **common),
        "vlm_r1": lambda: _call(vlm_r1.load_vlm_r1, spec, task=spec.task, **files),
        "messages": lambda: _call(messages.load_messages, spec, task=spec.task, **files),
    }
    if kind not in calls:
        raise DataError(f"dataset {spec.name!r}: unknown kind {kind!r}")
    return calls[kind]()


def _call(load: Callable[..., Any], spec: DatasetSpec, **arguments: Any) -> Any:
    """``load(**arguments, **spec.options)``; an option the loader does not take is an error listing those it does."""
    taken = {n for n, p in inspect.signature(load).parameters.items() if p.kind is p.KEYWORD_ONLY} - set(arguments)
    unknown = sorted(set(spec.options) - taken)
    if unknown:
        raise RecipeError(f"dataset {spec.name!r}: {', '.join(map(repr, unknown))} is not an option of kind {spec.kind!r}; "
                          f"its options: {', '.join(sorted(taken)) or '(none)'}")
    return load(**arguments, **spec.options)


def _synthetic(spec: DatasetSpec, cache_dir: Path) -> tuple[list[Row], LoadReport]:
    from rft.data.synthetic import make_shapes

    try:
        made = _call(make_shapes, spec, out_dir=cache_dir / f"{spec.name}_{spec.split}", n=spec.num_samples,
                     task=spec.task or "classification", seed=spec.seed, split=spec.split,
                     negative_ratio=spec.negative_ratio, dataset=spec.name)
    except (TypeError, ValueError) as exc:
        raise DataError(f"dataset {spec.name!r}: bad options {spec.options}: {exc}") from exc
    report = LoadReport(source=f"synthetic shapes {spec.name}", rows=len(made))
    boxed = [r for r in made if r["task"] in BOX_TASKS]
    report.negatives = sum(1 for r in boxed if not r["solution"]["boxes"])
    if len(boxed) > report.negatives:
        report.coordinates["pixels"] = len(boxed) - report.negatives
    return made, report


def dataset_rows(spec: DatasetSpec, on_bad_image: str, cache_dir: Path) -> list[Row]:
    """Rows of a dataset entry, checked against its ``task`` and cut to its ``limit``."""
    return dataset_rows_and_report(spec, on_bad_image, cache_dir)[0]


def dataset_rows_and_report(spec: DatasetSpec, on_bad_image: str, cache_dir: Path) -> tuple[list[Row], LoadReport]:
    """:func:`dataset_rows` and the loader's report of what it read and left out."""
    rows, report = load_rows(spec, on_bad_image, cache_dir)
    log.info("%s", report)
    if spec.task is not None:
        wrong = [r["id"] for r in rows if r["task"] != spec.task]
        if wrong:
            raise DataError(f"dataset {spec.name!r} is declared task {spec.task!r} but rows such as {wrong[0]!r} "
                            f"are {rows[[r['id'] for r in rows].index(wrong[0])]['task']!r}")
    if not rows:
        raise DataError(f"dataset {spec.name!r} ({spec.kind} {spec.path}) has no rows")
    return (rows[: spec.limit] if spec.limit else rows), report


def trl_rows_for(specs: list[DatasetSpec], recipe: Recipe, loaded: LoadedModel, work_dir: Path) -> dict[str, list[dict]]:
    """Per dataset name, TRL rows (prompt, resized image, reward columns) for the loaded model."""
    from rft.data.build import to_trl_rows

    model = recipe.model
    coord_format = None if model.coord_format == "auto" else model.coord_format
    out = {}
    for spec in specs:
        start = time.monotonic()
        rows = dataset_rows(spec, recipe.data.on_bad_image, work_dir / "cache")
        templates = template_fields(recipe, spec)
        out[spec.name] = to_trl_rows(
            rows, family=loaded.family, min_pixels=model.min_pixels, max_pixels=model.max_pixels, factor=loaded.factor,
            resized_dir=work_dir / "resized", coord_format=coord_format, template_overrides=templates or None,
            on_bad_image=recipe.data.on_bad_image,
        )
        if not out[spec.name]:
            raise DataError(f"dataset {spec.name!r} ({spec.kind} {spec.path}): no rows left after skipping images "
                            "that do not decode")
        log.info("%s: %d prompts ready (images at the pixel budget in %s) in %.1f s", spec.name, len(out[spec.name]),
                 work_dir / "resized", time.monotonic() - start)
    return out


def template_fields(recipe: Recipe, spec: DatasetSpec) -> dict[str, jinja2.Template]:
    """A dataset's prompt templates per task (its own ``template``, else ``data.templates``), each named by
    the recipe field it comes from (for error messages)."""
    from rft.data.prompts import load_template

    named = {task: (text, f"data.templates.{task}") for task, text in recipe.data.templates.items()}
    if spec.template and spec.task:
        named[spec.task] = (spec.template, f"{dataset_field(recipe, spec)}.template")
    return {task: load_template(task, text, field) for task, (text, field) in named.items()}


def dataset_field(recipe: Recipe, spec: DatasetSpec) -> str:
    """The recipe path of a dataset entry: ``data.datasets[1]``, ``eval.datasets[0]``, ``eval.retention[0]``."""
    for section, specs in (("data.datasets", recipe.data.datasets), ("eval.datasets", recipe.eval.datasets),
                           ("eval.retention", recipe.eval.retention)):
        for i, other in enumerate(specs):
            if other is spec:
                return f"{section}[{i}]"
    return f"dataset {spec.name!r}"


def training_rows(recipe: Recipe, loaded: LoadedModel, work_dir: Path) -> dict[str, list[dict]]:
    """TRL rows of every training dataset of a recipe."""
    return trl_rows_for(recipe.data.datasets, recipe, loaded, work_dir)
