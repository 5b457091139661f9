"""Tagging rows (multi-label, RAM-style) from JSONL: ``{"image": path, "tags": [str, ...]}``, optional ``"id"``."""

from __future__ import annotations

from pathlib import Path

from rft.data.records import LoadReport, OnBadImage, Row, finish, get_strings, records_with_images


def load_tagging_jsonl(
    path: str | Path, *, name: str, image_root: str | Path | None = None, on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Tagging rows; relative image paths resolve against ``image_root``, else the file's folder.
    Ids are ``"{name}:{id}"``, else ``"{name}:{line number}"``."""
    report, rows = LoadReport(str(path)), []
    for row_id, where, record, file, size in records_with_images(path, name, image_root, on_bad_image, report):
        rows.append({
            "id": row_id, "dataset": name, "task": "tagging", "image": file, "image_size": size,
            "solution": {"tags": get_strings(record, "tags", where)}, "query": {},
        })
    return finish(rows, report)
