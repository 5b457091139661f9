"""Rows already in the row contract (:mod:`rft.data.records`), one JSON object per line."""

from __future__ import annotations

from pathlib import Path

from rft.data.records import (
    LoadReport, OnBadImage, Row, check_policy, checked_image, finish, get_field, image_path, read_records, validate_row,
)
from rft.errors import DataError


def load_rows_jsonl(
    path: str | Path, *, image_root: str | Path | None = None, on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Rows as written, checked against the contract. Relative image paths resolve against
    ``image_root``, else the file's folder; ``image_size`` is read from the image when absent
    and must match it when present."""
    check_policy(on_bad_image)
    path = Path(path)
    base = Path(image_root) if image_root is not None else path.resolve().parent
    report, rows = LoadReport(str(path)), []
    for _, where, record in read_records(path):
        file = image_path(get_field(record, "image", str, where), base, where)
        size = checked_image(file, where, report, on_bad_image)
        if size is None:
            continue
        row = validate_row({"image_size": size, **record, "image": str(file)}, where)
        if list(row["image_size"]) != size:
            raise DataError(f"{where}: image_size {row['image_size']} but {file} is {size[0]}x{size[1]}")
        rows.append(row)
    return finish(rows, report)
