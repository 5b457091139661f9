"""Rows already in the row contract (:mod:`rft.data.records`), one JSON object per line; a row with several
images gives ``images: [paths]`` instead of ``image`` (the boxes of its solution refer to the first)."""

from __future__ import annotations

from pathlib import Path

from rft.data.records import (
    LoadReport, OnBadImage, Row, check_policy, checked_image, finish, get_field, get_images, image_path, read_records,
    validate_row,
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
        if "images" in record:
            row = _several_images(record, base, where, report, on_bad_image)
            if row is not None:
                rows.append(row)
            continue
        file = image_path(get_field(record, "image", str, where), base, where)
        size = checked_image(file, where, report, on_bad_image)
        if size is None:
            continue
        row = validate_row({"image_size": size, **record, "image": str(file)}, where)
        if list(row["image_size"]) != size:
            raise DataError(f"{where}: image_size {row['image_size']} but {file} is {size[0]}x{size[1]}")
        rows.append(row)
    return finish(rows, report)


def _several_images(record: dict, base: Path, where: str, report: LoadReport, on_bad_image: OnBadImage) -> Row | None:
    """A row written with ``images: [paths]`` (its boxes refer to the first): ``image`` and the sizes are filled in
    from the files; None when an image is skipped."""
    if "image" in record or "image_size" in record or "image_sizes" in record:
        raise DataError(f"{where}: give 'images' (a list of paths; the boxes refer to the first) without 'image', "
                        "'image_size' or 'image_sizes' (read from the files)")
    paths = get_images(record, where)
    files = [str(image_path(p, base, where, f"images[{i}]")) for i, p in enumerate(paths)]
    sizes = [checked_image(f, where, report, on_bad_image) for f in files]
    if any(size is None for size in sizes):
        return None
    return validate_row({**record, "image": files[0], "image_size": sizes[0], "images": files, "image_sizes": sizes},
                        where)
