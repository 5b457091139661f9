"""Grounding rows (a referring phrase and its box) from JSONL.

Each line: ``{"image": path, "phrase": str, "box": [x1, y1, x2, y2]}``, or ``"boxes": [[...], ...]``
when the phrase names several regions, or ``"box": null`` / ``"boxes": []`` for a negative (the
phrase names nothing in the image); optional ``"id"``. Boxes are in pixels of the original
image (no normalised formats: convert them before).
"""

from __future__ import annotations

from pathlib import Path

from rft.data.images import check_box
from rft.data.records import LoadReport, OnBadImage, Row, finish, get_field, records_with_images
from rft.errors import DataError


def load_grounding_jsonl(
    path: str | Path, *, name: str, image_root: str | Path | None = None, on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Grounding rows; relative image paths resolve against ``image_root``, else the file's folder.
    Ids are ``"{name}:{id}"``, else ``"{name}:{line number}"``."""
    report, rows = LoadReport(str(path)), []
    for row_id, where, record, file, size in records_with_images(path, name, image_root, on_bad_image, report):
        phrase = get_field(record, "phrase", str, where)
        if "boxes" in record:
            raw = get_field(record, "boxes", list, where, optional=True) or []
        elif "box" in record:
            raw = [] if record["box"] is None else [record["box"]]
        else:
            raise DataError(f"{where}: missing required field 'box' (or 'boxes'; null for a negative)")
        boxes = [check_box(box, size, where) for box in raw]
        rows.append({
            "id": row_id, "dataset": name, "task": "grounding", "image": file, "image_size": size,
            "solution": {"boxes": boxes, "labels": [phrase] * len(boxes)}, "query": {"phrase": phrase},
        })
    return finish(rows, report)
