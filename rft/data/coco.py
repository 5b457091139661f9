"""COCO-format detection annotations (pycocotools) as detection rows.

One positive row per (image, category present) holding every box of that category, and
``negative_ratio`` negatives per positive: (image, category) pairs with no annotation of the
category at all, drawn uniformly (by ``seed``) from every such pair of the selected categories.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools.coco import COCO

from rft.data.images import check_box
from rft.data.records import LoadReport, OnBadImage, Row, check_policy, checked_image, finish
from rft.errors import DataError


def load_coco_detection(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    name: str,
    negative_ratio: float = 1.0,
    categories: Sequence[str] | None = None,
    seed: int = 0,
    on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Detection rows from a COCO annotation file; images are ``image_dir / file_name``.

    Ids are ``"{name}:{image_id}:{category}"``; rows come in image id, then category id order.
    Crowd regions and boxes under one pixel wide or high are left out (counted in the report's
    ``skipped_boxes``) but still make their category present, so it is never a negative there.
    ``categories`` restricts rows to those category names. ``on_bad_image="skip"`` leaves out
    (and reports) images that are missing or unreadable instead of raising, and annotations whose
    ``category_id`` is not in ``categories`` (counted in ``bad_annotations``; their image is never
    a negative, since what it shows there is unknown); else such an annotation is an error.
    Negatives are capped by the number of absent pairs.
    """
    check_policy(on_bad_image)
    if negative_ratio < 0:
        raise ValueError(f"negative_ratio must be >= 0, got {negative_ratio}")
    annotation_file = Path(annotation_file)
    coco = _read(annotation_file)
    names = {c["id"]: c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))}
    if not names:
        raise DataError(f"{annotation_file}: no categories")
    if categories is not None:
        unknown = [c for c in categories if c not in names.values()]
        if unknown:
            raise DataError(f"{annotation_file}: unknown categories {unknown}; valid: {sorted(names.values())}")
        names = {i: n for i, n in names.items() if n in set(categories)}
    column = {cat_id: j for j, cat_id in enumerate(names)}
    image_dir = Path(image_dir).resolve()
    report = LoadReport(str(annotation_file))

    images: list[tuple[int, str, list[int]]] = []  # (image id, path, size)
    for image_id in sorted(coco.getImgIds()):
        info, where = coco.imgs[image_id], f"{annotation_file} image {image_id}"
        path = image_dir / info["file_name"]
        size = checked_image(path, where, report, on_bad_image)
        if size is None:
            continue
        if "width" in info and "height" in info and [info["width"], info["height"]] != size:
            raise DataError(f"{where}: annotated as {info['width']}x{info['height']} but {path} is {size[0]}x{size[1]}")
        images.append((image_id, str(path), size))

    present = np.zeros((len(images), len(names)), dtype=bool)
    boxes: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    for i, (image_id, _, size) in enumerate(images):
        for ann in coco.imgToAnns.get(image_id, []):
            if ann["category_id"] not in coco.cats:
                where = f"{annotation_file} annotation {ann['id']} (image {image_id})"
                message = f"{where}: category_id {ann['category_id']!r} is not in categories (ids {sorted(coco.cats)})"
                if on_bad_image == "error":
                    raise DataError(message + "; fix the file, or skip such annotations with data.on_bad_image: skip")
                report.bad_annotations.append(message)
                present[i, :] = True  # an object of unknown category: the image is no negative for any category
                continue
            j = column.get(ann["category_id"])
            if j is None:
                continue
            present[i, j] = True
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd") or w < 1 or h < 1:
                report.skipped_boxes += 1
                continue
            where = f"{annotation_file} annotation {ann['id']} (image {image_id})"
            boxes[i, j].append(check_box([x, y, x + w, y + h], size, where))

    absent = np.flatnonzero(~present.ravel())
    count = min(len(absent), round(negative_ratio * len(boxes)))
    picks = np.random.default_rng(seed).choice(absent, size=count, replace=False)
    negatives = [divmod(int(k), len(names)) for k in picks]
    labels = list(names.values())
    rows: list[Row] = []
    for i, j in sorted([*boxes, *negatives]):
        image_id, path, size = images[i]
        found = boxes.get((i, j), [])
        rows.append({
            "id": f"{name}:{image_id}:{labels[j]}", "dataset": name, "task": "detection",
            "image": path, "image_size": size,
            "solution": {"boxes": found, "labels": [labels[j]] * len(found)},
            "query": {"category": labels[j]},
        })
    report.coordinates["pixels (COCO [x, y, width, height])"] = len(boxes)
    return finish(rows, report)


def _read(annotation_file: Path) -> COCO:
    """The file as pycocotools' ``COCO``, after checking every field rft and pycocotools read."""
    if not annotation_file.is_file():
        raise DataError(f"{annotation_file}: file not found")
    try:
        data = json.loads(annotation_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{annotation_file} line {exc.lineno}: not a COCO annotation file (not valid JSON: {exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{annotation_file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    check_structure(data, annotation_file)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


_FIELDS = {  # what each record of a COCO file needs: field -> (types, description)
    "images": {"id": ((int, str), "an id"), "file_name": ((str,), "a file name")},
    "annotations": {"id": ((int, str), "an id"), "image_id": ((int, str), "an image id"),
                    "category_id": ((int, str), "a category id"), "bbox": ((list,), "[x, y, width, height]")},
    "categories": {"id": ((int, str), "an id"), "name": ((str,), "a name")},
}


def check_structure(data: Any, file: Path) -> None:
    """A :class:`DataError` naming the record and field when ``data`` is not a COCO detection file:
    ``images``, ``annotations`` and ``categories`` lists whose records have the fields rft reads,
    and every ``bbox`` 4 finite numbers with a width and height that are not negative."""
    if not isinstance(data, dict):
        raise DataError(f"{file}: not a COCO annotation file (a JSON object with images, annotations and categories; "
                        f"got a {type(data).__name__})")
    for section, fields in _FIELDS.items():
        records = data.get(section)
        if not isinstance(records, list):
            got = "missing" if records is None else f"a {type(records).__name__}, not a list"
            raise DataError(f"{file}: '{section}' is {got} (a COCO annotation file has images, annotations and categories)")
        singular = section.removesuffix("s").replace("categorie", "category")
        for index, record in enumerate(records):
            name = record.get("id", f"#{index}") if isinstance(record, dict) else f"#{index}"
            where = f"{file} {singular} {name}"
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            for field, (types, what) in fields.items():
                value = record.get(field)
                if value is None:
                    raise DataError(f"{where}: missing '{field}' ({what})")
                if not isinstance(value, types) or isinstance(value, bool):
                    raise DataError(f"{where}: '{field}' must be {what}, got {value!r}")
            if section == "annotations":
                bbox = record["bbox"]
                if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                             for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
                    raise DataError(f"{where}: bbox {bbox!r} is not [x, y, width, height] in 4 finite numbers "
                                    "with width and height at least 0")
