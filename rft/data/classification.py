"""Classification rows from an image folder, a JSONL file or a Hugging Face dataset.

Every row's ``query["classes"]`` is the sorted list of the source's class names; ``synonyms``
maps a class name to other names the answer may use (``rewards.classification``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import datasets

from rft.data.hf import check_columns, image_files, load_hf_dataset
from rft.data.records import (
    LoadReport, OnBadImage, Row, check_policy, checked_image, finish, get_field, get_strings, image_path, records_with_images,
)
from rft.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

Synonyms = Mapping[str, Sequence[str]]


def _row(row_id: str, name: str, path: str, size: list[int], label: str, synonyms: Sequence[str],
         classes: list[str]) -> Row:
    return {
        "id": row_id, "dataset": name, "task": "classification", "image": path, "image_size": size,
        "solution": {"label": label, "synonyms": list(synonyms)}, "query": {"classes": classes},
    }


def load_image_folder(
    root: str | Path, *, name: str, synonyms: Synonyms | None = None, on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Rows from ``root/<class>/**/<image>`` (extensions :data:`IMAGE_EXTENSIONS`); the folder name
    is the label. Ids are ``"{name}:{class}/{file}"``, relative to ``root``."""
    check_policy(on_bad_image)
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    items = [
        (folder.name, file)
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for file in sorted(folder.rglob("*"))
        if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file()
    ]
    if not items:
        raise DataError(f"{root}: no images in class folders (expected {root}/<class>/<image>.jpg)")
    classes = sorted({label for label, _ in items})
    report, rows = LoadReport(str(root)), []
    for label, file in items:
        size = checked_image(file, f"class {label!r}", report, on_bad_image)
        if size is not None:
            key = file.relative_to(root).as_posix()
            rows.append(_row(f"{name}:{key}", name, str(file), size, label, (synonyms or {}).get(label, []), classes))
    return finish(rows, report)


def load_classification_jsonl(
    path: str | Path, *, name: str, image_root: str | Path | None = None, on_bad_image: OnBadImage = "error",
    categories: Sequence[str] | None = None,
) -> tuple[list[Row], LoadReport]:
    """Rows from JSONL records ``{"image": path, "label": str, "synonyms": [str]}`` (``synonyms`` and
    ``id`` optional). Relative image paths resolve against ``image_root``, else the file's folder.
    Ids are ``"{name}:{id}"``, else ``"{name}:{line number}"``. The classes every prompt lists are
    ``categories`` when given (a label outside them is an error naming its line), else the labels seen."""
    report, items = LoadReport(str(path)), []
    allowed = set(categories) if categories is not None else None
    for row_id, where, record, file, size in records_with_images(path, name, image_root, on_bad_image, report):
        label = get_field(record, "label", str, where)
        if allowed is not None and label not in allowed:
            raise DataError(f"{where}: label {label!r} is not one of the dataset's categories {sorted(allowed)}")
        items.append((row_id, file, size, label, get_strings(record, "synonyms", where, optional=True)))
    classes = sorted(allowed) if allowed is not None else sorted({item[3] for item in items})
    return finish([_row(i, name, f, s, label, syn, classes) for i, f, s, label, syn in items], report)


def load_hf_classification(
    source: str | Path,
    *,
    name: str,
    cache_dir: str | Path,
    split: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    synonyms: Synonyms | None = None,
    on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Rows from a Hugging Face dataset: a ``save_to_disk`` folder or anything ``load_dataset`` reads.

    ``image_column`` holds images (stored images are written once to ``cache_dir``) or paths
    (relative ones resolve against ``source`` when it is a folder). ``ClassLabel`` labels map to
    their names, and ``classes`` is every name of the ``ClassLabel`` (else the labels seen).
    Ids are ``"{name}:{split}:{index}"``.
    """
    check_policy(on_bad_image)
    data = load_hf_dataset(source, split)
    check_columns(data, [image_column, label_column], source)
    feature = data.features[label_column]
    labels = [feature.int2str(v) if isinstance(feature, datasets.ClassLabel) else v for v in data[label_column]]
    for index, label in enumerate(labels):
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise DataError(f"{source} sample {index}: label {label!r} is not a class name or ClassLabel")
    labels = [str(label) for label in labels]
    classes = sorted(feature.names if isinstance(feature, datasets.ClassLabel) else set(labels))
    base = Path(source) if Path(source).is_dir() else Path.cwd()
    report, rows = LoadReport(str(source)), []
    for index, (file, label) in enumerate(zip(image_files(data, image_column, cache_dir, source), labels)):
        where = f"{source} sample {index}"
        file = image_path(file, base, where)
        size = checked_image(file, where, report, on_bad_image)
        if size is not None:
            rows.append(_row(f"{name}:{split}:{index}", name, str(file), size, label,
                             (synonyms or {}).get(label, []), classes))
    return finish(rows, report)
