"""Tagging rows (multi-label, RAM-style) from JSONL: ``{"image": path, "tags": [str, ...]}``, optional ``"id"``."""

from __future__ import annotations

from pathlib import Path

from rft.data.records import (
    LoadReport, OnBadImage, Row, check_policy, checked_image, finish, get_field, get_strings, image_path, read_records,
)


def load_tagging_jsonl(
    path: str | Path, *, name: str, image_root: str | Path | None = None, on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Tagging rows; relative image paths resolve against ``image_root``, else the file's folder.
    Ids are ``"{name}:{id}"``, else ``"{name}:{line number}"``."""
    check_policy(on_bad_image)
    path = Path(path)
    base = Path(image_root) if image_root is not None else path.resolve().parent
    report, rows = LoadReport(str(path)), []
    for number, where, record in read_records(path):
        tags = get_strings(record, "tags", where)
        file = image_path(get_field(record, "image", str, where), base, where)
        key = get_field(record, "id", (str, int), where, optional=True)
        size = checked_image(file, where, report, on_bad_image)
        if size is not None:
            rows.append({
                "id": f"{name}:{number if key is None else key}", "dataset": name, "task": "tagging",
                "image": str(file), "image_size": size, "solution": {"tags": tags}, "query": {},
            })
    return finish(rows, report)
