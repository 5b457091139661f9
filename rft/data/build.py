"""Rows -> what TRL's ``GRPOTrainer`` consumes: a conversational prompt, the image, reward columns.

Each image is resized once to the model's pixel budget by its family's rule (:mod:`rft.families`) and
written to ``resized_dir`` (JPEG, quality 95, for JPEG sources, else PNG), named by the source path, its
modification time and size, and the target size, so later runs reuse it. Its sides are
multiples of ``factor`` within the budget, so the processor (and vLLM) given the same
``min_pixels``/``max_pixels`` does not resize it again: ``model_image_size`` is exactly the
size the model sees, which ``pixels`` answers refer to.

A TRL row::

    {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": str}]}],
     "image": "/abs/resized/file.jpg", "task": str, "solution": JSON str, "image_size": [w, h],
     "coord_format": str, "model_image_size": [w, h], "id": str, "dataset": str, "query": JSON str}

A row with several images (``images``, :class:`~rft.data.records.MultiImageRow`) has each resized to the
budget on its own and one image part per image in its prompt, in order, before the text; its TRL row adds
``"images": [paths]`` (``image`` stays the first, the one ``image_size``, ``model_image_size`` and the
boxes refer to), and :func:`to_dataset` makes them one ``images`` list column.

A ``visual_prompt_detection`` row whose exemplars are ``drawn`` gets its own copy of the resized image
with them outlined (:func:`rft.data.exemplars.marked_copy`); ``coordinates`` exemplars are written in the
prompt in the row's ``coord_format`` (``pixels``: of ``model_image_size``); ``crop`` exemplars become
further images after the row's own (:func:`rft.data.exemplars.crop_copies`).

``solution`` and ``query`` (what the prompt asks: the category, phrase or classes, which detection
metrics need to count boxes on negatives) are JSON strings so that one Arrow type holds every task. ``image`` is a path:
:func:`to_dataset` makes it an ``Image`` column, which TRL receives as a PIL image (its vLLM
path needs PIL images, not paths); a path keeps memory and open files flat for big datasets.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping

import datasets
import jinja2
from tqdm.auto import tqdm

from rewards.contract import dataset_features
from rft.data.exemplars import crop_copies, exemplar_mode, marked_copy
from rft.data.images import open_image, resize_to_budget, write_atomic
from rft.data.prompts import Template, load_template, render_prompt, row_coord_format
from rft.data.records import OnBadImage, Row, image_rows, row_images, validate_row
from rft.errors import DataError
from rft.families import family_of

log = logging.getLogger(__name__)

TRL_FEATURES = dataset_features()
"""Arrow types of a TRL row, the same for every task (:func:`rewards.contract.dataset_features`)."""
TRL_MULTI_IMAGE_FEATURES = dataset_features(several_images=True)
"""The same with an ``images`` list column, for datasets where a row has several images."""

_JPEG_SUFFIXES = (".jpg", ".jpeg")


PROGRESS_FROM = 500  # images: fewer are resized before a progress bar would be worth drawing


def to_trl_rows(
    rows: Iterable[Row],
    *,
    family: str,
    min_pixels: int,
    max_pixels: int,
    factor: int,
    resized_dir: str | Path,
    coord_format: str | None = None,
    template_overrides: Mapping[str, Template] | None = None,
    workers: int = 4,
    on_bad_image: OnBadImage = "error",
) -> list[dict[str, Any]]:
    """TRL rows (module docstring) for ``rows``, checked against the row contract.

    ``family`` picks the prompt's box convention (:func:`rft.data.prompts.coord_format_for`)
    unless ``coord_format`` is given; a row's own ``query["coord_format"]`` wins over both.
    ``factor`` is the processor's ``patch_size * merge_size`` (the family's, :mod:`rft.families`, unless
    the model's files say otherwise). ``template_overrides`` maps a task to a template (text or ``.jinja`` file).
    Images are resized by ``workers`` threads; this pass decodes every image, so an image that does
    not decode (a truncated file whose header reads) fails here, naming the row, or with
    ``on_bad_image="skip"`` its rows are left out with a warning.
    """
    checked = [validate_row(row, f"row {_name(row, i)}") for i, row in enumerate(rows)]
    resized_dir = Path(resized_dir)
    resized_dir.mkdir(parents=True, exist_ok=True)
    sources = image_rows(checked)  # each image once, named by its first row

    def resize(row: Row) -> tuple[str, list[int]] | DataError:
        try:
            return _resized(row, min_pixels, max_pixels, factor, resized_dir, family)
        except DataError as exc:
            if on_bad_image == "error":
                raise
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = tqdm(pool.map(resize, sources.values()), total=len(sources), desc="images to the pixel budget",
                    unit="img", disable=len(sources) < PROGRESS_FROM)
        resized = dict(zip(sources, done))
    bad = {key: exc for key, exc in resized.items() if isinstance(exc, DataError)}
    if bad:
        log.warning("skipped %d image(s) that do not decode, and their rows (data.on_bad_image: skip); first: %s",
                    len(bad), next(iter(bad.values())))
    templates: dict[str, jinja2.Template] = {}
    out = []
    for row in checked:
        keys = [(path, tuple(size)) for path, size in row_images(row)]
        if any(key in bad for key in keys):
            continue
        task = row["task"]
        if task not in templates:
            templates[task] = load_template(task, (template_overrides or {}).get(task))
        (image, model_size), *others = [resized[key] for key in keys]
        mode = exemplar_mode(row["query"]) if row["query"].get("exemplars") else None
        if mode == "drawn":
            image = marked_copy(image, row["query"], row["image_size"], model_size, resized_dir)
        elif mode == "crop":
            others += crop_copies(row["image"], row["query"], row["image_size"], min_pixels, max_pixels, factor, family,
                                  resized_dir)
        text = render_prompt(row, family, templates[task], coord_format, model_size)
        parts = [{"type": "image"}] * (1 + len(others)) + [{"type": "text", "text": text}]
        out.append({
            "prompt": [{"role": "user", "content": parts}],
            **({"images": [image, *(path for path, _ in others)]} if others else {}),
            "image": image,
            "task": task,
            "solution": json.dumps(row["solution"], ensure_ascii=False),
            "image_size": list(row["image_size"]),
            "coord_format": row_coord_format(row, family, coord_format),
            "model_image_size": model_size,
            "id": row["id"],
            "dataset": row["dataset"],
            "query": json.dumps(row["query"], ensure_ascii=False),
        })
    return out


def trl_images(trl_row: Mapping[str, Any]) -> list[Any]:
    """The images of a TRL row, in prompt order (``images``, else its one ``image``; none for a text-only row)."""
    if trl_row.get("images"):
        return list(trl_row["images"])
    return [] if trl_row.get("image") is None else [trl_row["image"]]


def images_per_row(trl_rows: Iterable[Mapping[str, Any]]) -> int:
    """The most images any TRL row has (1 for none): what vLLM's ``limit_mm_per_prompt`` must allow."""
    return max((len(trl_images(r)) for r in trl_rows), default=1) or 1


def prompt_images(row: Row) -> int:
    """How many images the prompt of a row (not yet a TRL row) shows: its own, and a ``crop`` exemplar's crops."""
    query = row["query"]
    crops = len(query["exemplars"]) if query.get("exemplars") and exemplar_mode(query) == "crop" else 0
    return len(row_images(row)) + crops


def to_dataset(trl_rows: Iterable[dict[str, Any]], cache_decoded_images: bool = True, decoded=None,
               several_images: bool | None = None) -> datasets.Dataset:
    """A ``datasets.Dataset`` of TRL rows with :data:`TRL_FEATURES` (``image`` decodes to PIL), each
    distinct image decoded once while it stays in a bounded cache (``decoded``, a
    :class:`~rft.data.image_cache.DecodedImages` that datasets of the same images can share; by default a new one).

    With ``several_images`` (None: when any row has more than one image) every row's images are one
    ``images`` list column instead (:data:`TRL_MULTI_IMAGE_FEATURES`), which TRL takes as the prompt's images."""
    rows = list(trl_rows)
    several = images_per_row(rows) > 1 if several_images is None else several_images
    column = "images" if several else "image"
    if several:
        rows = [{**{k: v for k, v in r.items() if k not in ("image", "images")}, "images": trl_images(r)} for r in rows]
    data = datasets.Dataset.from_list(rows, features=TRL_MULTI_IMAGE_FEATURES if several else TRL_FEATURES)
    if not cache_decoded_images:
        return data
    from rft.data.image_cache import DecodedImages

    undecoded = datasets.Image(decode=False)
    return data.cast_column(column, datasets.List(undecoded) if several else undecoded).with_transform(
        decoded or DecodedImages())


def check_modalities(rows_by_dataset: Mapping[str, list[dict[str, Any]]], zero_stage: int) -> None:
    """Refuse batches that mix image and text-only samples under ZeRO-3.

    ZeRO-3 gathers each layer's shards in a collective call when the layer runs; a rank whose
    micro-batch has no image skips the vision tower while the others wait in its gathers, and the
    run hangs without an error. (rft's loaders give every row an image; rows made elsewhere may not.)
    """
    if zero_stage != 3:
        return
    def imaged(row: dict) -> bool:
        return bool(row.get("image") or row.get("images"))

    with_images = sorted(n for n, rows in rows_by_dataset.items() if any(imaged(r) for r in rows))
    text_only = {n: next(r.get("id", i) for i, r in enumerate(rows) if not imaged(r))
                 for n, rows in rows_by_dataset.items() if any(not imaged(r) for r in rows)}
    if with_images and text_only:
        first = ", ".join(f"{n!r} (first: sample {sid})" for n, sid in sorted(text_only.items()))
        raise DataError(
            f"distributed.zero_stage 3 with batches that mix image and text-only samples hangs (a rank without an "
            f"image skips the vision tower while the others wait for it): datasets with images: {with_images}; "
            f"text-only samples in {first}. Use zero_stage 2, or give every sample an image."
        )


def _name(row: Any, index: int) -> str:
    return str(row.get("id", index)) if isinstance(row, dict) else str(index)


def _resized(row: Row, min_pixels: int, max_pixels: int, factor: int, resized_dir: Path,
             family: str) -> tuple[str, list[int]]:
    """The resized copy of a row's image (written unless already there) and its [width, height]."""
    source, where = Path(row["image"]), f"row {row['id']}"
    try:
        stat = source.stat()
        width, height = family_of(family).model_image_size(row["image_size"], factor, min_pixels, max_pixels)
    except FileNotFoundError:
        raise DataError(f"{where}: {source}: image file not found") from None
    except ValueError as exc:  # smart_resize refuses aspect ratios over 200
        raise DataError(f"{where}: {source}: {exc}") from None
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_mtime_ns}|{stat.st_size}".encode()).hexdigest()[:16]
    jpeg = source.suffix.lower() in _JPEG_SUFFIXES
    target = resized_dir / f"{source.stem}-{key}-{width}x{height}{'.jpg' if jpeg else '.png'}"
    if not target.is_file():
        try:
            image = open_image(source)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        if list(image.size) != list(row["image_size"]):
            raise DataError(f"{where}: image_size {list(row['image_size'])} but {source} is {image.size[0]}x{image.size[1]}")
        buffer = io.BytesIO()
        resize_to_budget(image, min_pixels, max_pixels, factor, family).save(
            buffer, **({"format": "JPEG", "quality": 95} if jpeg else {"format": "PNG"})
        )
        write_atomic(target, buffer.getvalue())
    return str(target.resolve()), [width, height]
