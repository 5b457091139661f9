"""The row contract every loader produces, and the record reading the loaders share.

A row is one training sample, the ground truth the rewards read (see :mod:`rewards.inputs`)::

    {"id": "coco:139:person", "dataset": "coco", "task": "detection",
     "image": "/abs/path/000000000139.jpg", "image_size": [640, 426],
     "solution": {"boxes": [[x1, y1, x2, y2], ...], "labels": ["person", ...]},
     "query": {"category": "person"}}

``solution`` per task: detection/visual_prompt_detection/grounding ``{"boxes": [...], "labels": [...]}`` in
pixels of the original image (no boxes: a negative, the asked-for object is absent); classification
``{"label": str, "synonyms": [str]}``; tagging ``{"tags": [str]}``. ``query`` holds what the
prompt needs: ``category`` (detection), ``exemplars`` and ``exemplar`` (visual_prompt_detection: example
boxes in image pixels and how the prompt shows them, :mod:`rft.data.exemplars`; its ``category`` is
optional and not shown), ``phrase`` (grounding), ``classes`` (classification, all class names or None),
nothing (tagging); Visual-RFT rows may carry ``problem`` (its prompt text, used verbatim) and
``coord_format`` (the convention that text asks for).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, TypedDict

from rewards.contract import BOX_TASKS, COORD_FORMATS, TASKS, VISUAL_PROMPT_DETECTION
from rft.data.exemplars import check_exemplars
from rft.data.images import check_box, image_size
from rft.errors import DataError

logger = logging.getLogger(__name__)

OnBadImage = Literal["error", "skip"]


class Row(TypedDict):
    id: str
    dataset: str
    task: str
    image: str
    image_size: list[int]
    solution: dict[str, Any]
    query: dict[str, Any]


class MultiImageRow(Row, total=False):
    """A row with several images: ``images`` (paths, in prompt order) and their ``image_sizes``; the first
    is ``image`` / ``image_size``, the one the boxes of ``solution`` refer to."""

    images: list[str]
    image_sizes: list[list[int]]


def row_images(row: Row) -> list[tuple[str, list[int]]]:
    """``(path, [w, h])`` of each image of a row, in prompt order; the first is the one its boxes refer to."""
    if row.get("images"):
        return list(zip(row["images"], row["image_sizes"]))
    return [(row["image"], row["image_size"])]


def image_rows(rows: Iterable[Row], by_size: bool = True) -> dict[tuple[str, tuple[int, ...]] | str, Row]:
    """Each image of ``rows`` once, as a row of its own (its ``image`` and ``image_size``; the rest of the first row
    that has it, which names it in errors), keyed by ``(path, size)`` or, without ``by_size``, by path."""
    out: dict = {}
    for row in rows:
        for path, size in row_images(row):
            out.setdefault((path, tuple(size)) if by_size else path, {**row, "image": path, "image_size": size})
    return out


@dataclass
class LoadReport:
    """What a loader read, and what it left out with ``on_bad_image="skip"``."""

    source: str
    rows: int = 0
    negatives: int = 0
    bad_images: list[str] = field(default_factory=list)
    """One ``"<where>: <path>: <reason>"`` per skipped image (missing or unreadable)."""
    skipped_boxes: int = 0
    """COCO boxes left out: crowd regions and boxes under one pixel wide or high."""
    bad_annotations: list[str] = field(default_factory=list)
    """One message per skipped COCO annotation (a category id that is not in the file's categories)."""
    coordinates: dict[str, int] = field(default_factory=dict)
    """How the source wrote the boxes of its rows with boxes, with a count of rows each way (for
    ``rft data``): e.g. ``{"norm1000": 40, "pixels": 2}``; rows no loader counted are ``"pixels"``."""

    def count_coordinates(self, convention: str) -> None:
        self.coordinates[convention] = self.coordinates.get(convention, 0) + 1

    def __str__(self) -> str:
        text = f"{self.source}: {self.rows} rows ({self.negatives} negatives)"
        if self.bad_images:
            text += f", skipped {len(self.bad_images)} bad images (first: {self.bad_images[0]})"
        if self.bad_annotations:
            text += f", skipped {len(self.bad_annotations)} bad annotations (first: {self.bad_annotations[0]})"
        return text + (f", left out {self.skipped_boxes} boxes" if self.skipped_boxes else "")


def read_records(path: str | Path) -> Iterator[tuple[int, str, dict]]:
    """``(number, where, record)`` for each object of a JSONL file, or of a JSON list (``.json``).

    ``where`` is ``"<file> line N"`` (JSONL) or ``"<file> record N"`` (JSON list), for messages.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() == ".json":
            yield from _json_list(path)
            return
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield number, f"{path} line {number}", _object(line.rstrip(), f"{path} line {number}")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _object(text: str, where: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _json_list(path: Path) -> Iterator[tuple[int, str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for number, record in enumerate(data, 1):
        where = f"{path} record {number}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        yield number, where, record


def get_field(record: dict, name: str, kind: type | tuple[type, ...], where: str, *, optional: bool = False) -> Any:
    """``record[name]`` checked to be a ``kind``; a missing or null field is an error unless ``optional``."""
    value = record.get(name)
    if value is None:
        if optional:
            return None
        raise DataError(f"{where}: missing required field {name!r}")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise DataError(f"{where}: field {name!r} must be {expected}, got {type(value).__name__} {_short(value)}")
    return value


def get_strings(record: dict, name: str, where: str, *, optional: bool = False) -> list[str]:
    """``record[name]`` checked to be a list of strings (``[]`` when optional and absent)."""
    value = get_field(record, name, list, where, optional=optional) or []
    if not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: field {name!r} must be a list of strings, got {_short(value)}")
    return value


def get_images(record: dict, where: str) -> list[str]:
    """``record["images"]``: a non-empty list of image paths (the first is the one a row's boxes refer to)."""
    images = get_strings(record, "images", where)
    if not images:
        raise DataError(f"{where}: field 'images' is an empty list; a row needs at least one image")
    if not all(v.strip() for v in images):
        raise DataError(f"{where}: field 'images' holds an empty path, got {_short(images)}")
    return images


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def image_path(value: str, base: Path, where: str, field_name: str = "image") -> Path:
    """An image reference made absolute: relative paths are resolved against ``base``."""
    if not value.strip():
        raise DataError(f"{where}: field {field_name!r} is empty")
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def check_policy(on_bad_image: str) -> None:
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")


def checked_image(path: str | Path, where: str, report: LoadReport, on_bad_image: OnBadImage) -> list[int] | None:
    """``[width, height]`` of a readable image; ``None`` (recorded in ``report``) for a bad one when skipping."""
    try:
        return list(image_size(path))
    except DataError as exc:
        if on_bad_image == "error":
            raise DataError(f"{where}: {exc}") from None
        report.bad_images.append(f"{where}: {exc}")
        return None


def finish(rows: list[Row], report: LoadReport) -> tuple[list[Row], LoadReport]:
    """Check ids are unique, complete the report (logging skipped images) and return both."""
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise DataError(f"{report.source}: duplicate id {row['id']!r}")
        seen.add(row["id"])
    report.rows = len(rows)
    report.negatives = sum(1 for r in rows if r["task"] in BOX_TASKS and not r["solution"]["boxes"])
    with_boxes = sum(1 for r in rows if r["task"] in BOX_TASKS and r["solution"]["boxes"])
    uncounted = with_boxes - sum(report.coordinates.values())
    if uncounted > 0:
        report.coordinates["pixels"] = report.coordinates.get("pixels", 0) + uncounted
    if report.bad_images or report.bad_annotations:
        logger.warning("%s", report)
    return rows, report


def validate_row(row: Any, where: str) -> Row:
    """Check ``row`` against the row contract (module docstring); boxes must lie in the image."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be a dict, got {type(row).__name__}")
    for name in ("id", "dataset", "task", "image"):
        get_field(row, name, str, where)
    task = row["task"]
    if task not in TASKS:
        raise DataError(f"{where}: task must be one of {list(TASKS)}, got {task!r}")
    size = _image_size(get_field(row, "image_size", (list, tuple), where), "image_size", where)
    if "images" in row:
        _check_images(row, where)
    solution = get_field(row, "solution", dict, where)
    query = get_field(row, "query", dict, where)
    if task in BOX_TASKS:
        boxes = get_field(solution, "boxes", list, f"{where} solution")
        labels = get_field(solution, "labels", list, f"{where} solution", optional=True) or []
        if labels and len(labels) != len(boxes):
            raise DataError(f"{where}: {len(labels)} labels for {len(boxes)} boxes")
        for box in boxes:
            check_box(box, size, where)
        if task == VISUAL_PROMPT_DETECTION:
            check_exemplars(query, solution, size, where)
            if query.get("exemplar") == "crop" and len(row.get("images") or []) > 1:
                raise DataError(f"{where}: exemplar 'crop' shows the exemplars as the images after the first, so the "
                                f"row must have one image of its own, not {len(row['images'])}")
            get_field(query, "category", str, f"{where} query", optional=True)
        else:
            needed = "phrase" if task == "grounding" else "problem" if "problem" in query else "category"
            get_field(query, needed, str, f"{where} query")
    elif task == "classification":
        get_field(solution, "label", str, f"{where} solution")
        get_strings(solution, "synonyms", f"{where} solution", optional=True)
    else:
        get_strings(solution, "tags", f"{where} solution")
    fmt = query.get("coord_format")
    if fmt is not None and fmt not in COORD_FORMATS:
        raise DataError(f"{where}: query coord_format must be one of {list(COORD_FORMATS)}, got {fmt!r}")
    return row


def _image_size(size: Any, name: str, where: str) -> list[int] | tuple[int, ...]:
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise DataError(f"{where}: {name} must be [width, height] in positive integers, got {_short(size)}")
    return size


def _check_images(row: dict, where: str) -> None:
    """A multi-image row's ``images`` and ``image_sizes`` (:class:`MultiImageRow`)."""
    images = get_images(row, where)
    sizes = get_field(row, "image_sizes", list, where)
    if len(sizes) != len(images):
        raise DataError(f"{where}: {len(images)} images but {len(sizes)} image_sizes")
    for i, size in enumerate(sizes):
        _image_size(size if isinstance(size, (list, tuple)) else [size], f"image_sizes[{i}]", where)
    if images[0] != row["image"] or list(sizes[0]) != list(row["image_size"]):
        raise DataError(f"{where}: image and image_size must be the first of images and image_sizes (the image the "
                        f"answer's boxes refer to), got {row['image']!r} and {images[0]!r}")


def records_with_images(
    path: str | Path, name: str, image_root: str | Path | None, on_bad_image: OnBadImage, report: LoadReport,
) -> Iterator[tuple[str, str, dict, str, list[int]]]:
    """``(row id, where, record, image file, image size)`` per JSONL record whose image is usable.

    Relative image paths resolve against ``image_root``, else the file's folder; ids are
    ``"{name}:{id}"``, else ``"{name}:{line number}"``; bad images raise or are skipped into ``report``.
    """
    check_policy(on_bad_image)
    path = Path(path)
    base = Path(image_root) if image_root is not None else path.resolve().parent
    for number, where, record in read_records(path):
        file = image_path(get_field(record, "image", str, where), base, where)
        key = get_field(record, "id", (str, int), where, optional=True)
        size = checked_image(file, where, report, on_bad_image)
        if size is not None:
            yield f"{name}:{number if key is None else key}", where, record, str(file), size
