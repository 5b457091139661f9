"""Recipe ``data.datasets[i]`` -> rows (one loader per ``kind``) -> TRL rows for the model's family."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rft.data.records import LoadReport, Row
from rft.errors import DataError
from rft.recipe.schema import DatasetSpec, Recipe

if TYPE_CHECKING:
    from rft.models.load import LoadedModel

log = logging.getLogger(__name__)


def load_rows(spec: DatasetSpec, on_bad_image: str, cache_dir: Path) -> tuple[list[Row], LoadReport]:
    """The rows of one dataset entry of a recipe."""
    from rft.data import classification, coco, grounding, rows, tagging, visual_rft

    common = {"name": spec.name, "on_bad_image": on_bad_image}
    kind = spec.kind
    if kind == "coco":
        return coco.load_coco_detection(spec.path, spec.image_dir or Path(spec.path).parent, negative_ratio=spec.negative_ratio,
                                        categories=spec.categories, seed=spec.seed, **common)
    if kind == "image_folder":
        return classification.load_image_folder(spec.path, **common)
    if kind == "classification_jsonl":
        return classification.load_classification_jsonl(spec.path, image_root=spec.image_dir, **common)
    if kind == "hf_classification":
        return classification.load_hf_classification(spec.path, cache_dir=cache_dir / spec.name, split=spec.split,
                                                     image_column=spec.image_column, label_column=spec.label_column, **common)
    if kind == "grounding_jsonl":
        return grounding.load_grounding_jsonl(spec.path, image_root=spec.image_dir, **common)
    if kind == "tagging_jsonl":
        return tagging.load_tagging_jsonl(spec.path, image_root=spec.image_dir, **common)
    if kind == "visual_rft":
        return visual_rft.load_visual_rft(spec.path, image_root=spec.image_dir, cache_dir=cache_dir / spec.name, **common)
    if kind == "rows_jsonl":
        loaded, report = rows.load_rows_jsonl(spec.path, image_root=spec.image_dir, on_bad_image=on_bad_image)
        return [{**r, "dataset": spec.name} for r in loaded], report
    if kind == "synthetic_shapes":
        from rft.data.synthetic import make_shapes

        try:
            made = make_shapes(cache_dir / f"{spec.name}_{spec.split}", spec.num_samples, task=spec.task or "classification",
                               seed=spec.seed, split=spec.split, negative_ratio=spec.negative_ratio, dataset=spec.name,
                               **spec.options)
        except TypeError as exc:
            raise DataError(f"dataset {spec.name!r}: bad options {spec.options}: {exc}") from exc
        negatives = sum(r["task"] in ("detection", "grounding") and not r["solution"]["boxes"] for r in made)
        return made, LoadReport(source=f"synthetic shapes {spec.name}", rows=len(made), negatives=negatives)
    raise DataError(f"dataset {spec.name!r}: unknown kind {kind!r}")


def dataset_rows(spec: DatasetSpec, on_bad_image: str, cache_dir: Path) -> list[Row]:
    """Rows of a dataset entry, checked against its ``task`` and cut to its ``limit``."""
    rows, report = load_rows(spec, on_bad_image, cache_dir)
    log.info("%s", report)
    if spec.task is not None:
        wrong = [r["id"] for r in rows if r["task"] != spec.task]
        if wrong:
            raise DataError(f"dataset {spec.name!r} is declared task {spec.task!r} but rows such as {wrong[0]!r} "
                            f"are {rows[[r['id'] for r in rows].index(wrong[0])]['task']!r}")
    if not rows:
        raise DataError(f"dataset {spec.name!r} ({spec.kind} {spec.path}) has no rows")
    return rows[: spec.limit] if spec.limit else rows


def trl_rows_for(specs: list[DatasetSpec], recipe: Recipe, loaded: LoadedModel, work_dir: Path) -> dict[str, list[dict]]:
    """Per dataset name, TRL rows (prompt, resized image, reward columns) for the loaded model."""
    from rft.data.build import to_trl_rows

    model = recipe.model
    coord_format = None if model.coord_format == "auto" else model.coord_format
    out = {}
    for spec in specs:
        start = time.monotonic()
        rows = dataset_rows(spec, recipe.data.on_bad_image, work_dir / "cache")
        templates = {**recipe.data.templates, **({spec.task: spec.template} if spec.template and spec.task else {})}
        out[spec.name] = to_trl_rows(
            rows, family=loaded.family, min_pixels=model.min_pixels, max_pixels=model.max_pixels, factor=loaded.factor,
            resized_dir=work_dir / "resized", coord_format=coord_format, template_overrides=templates or None,
        )
        log.info("%s: %d prompts ready (images at the pixel budget in %s) in %.1f s", spec.name, len(out[spec.name]),
                 work_dir / "resized", time.monotonic() - start)
    return out


def training_rows(recipe: Recipe, loaded: LoadedModel, work_dir: Path) -> dict[str, list[dict]]:
    """TRL rows of every training dataset of a recipe."""
    return trl_rows_for(recipe.data.datasets, recipe, loaded, work_dir)
