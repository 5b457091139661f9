"""Hugging Face datasets as a source: loading a split, and turning its images into files.

Rows carry image paths, so images stored inside a dataset (bytes in Arrow) are written once to a
cache folder, named by a hash of their bytes (re-running reuses them), in their own format.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterator

import datasets
from PIL import Image

from rft.data.images import write_atomic
from rft.errors import DataError

_BATCH = 256


def load_hf_dataset(source: str | Path, split: str | None = None) -> datasets.Dataset:
    """A split of a dataset saved with ``save_to_disk`` (a folder), else of ``load_dataset(source)``."""
    folder = Path(source)
    try:
        if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
            data = datasets.load_from_disk(str(folder))
        else:
            data = datasets.load_dataset(str(source), split=split)
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot load the dataset ({exc})") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DataError(f"{source}: no split {split!r}; splits: {sorted(data)}")
        data = data[split]
    return data


def check_columns(data: datasets.Dataset, columns: list[str], source: str | Path) -> None:
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise DataError(f"{source}: no column {missing[0]!r}; columns: {data.column_names}")


def image_files(data: datasets.Dataset, column: str, cache_dir: str | Path, source: str | Path) -> Iterator[str]:
    """The image file of each sample, in order: the path an image column or a string column points
    to, or the sample's image bytes written to ``cache_dir``."""
    feature = data.features[column]
    if isinstance(feature, datasets.Image):
        data = data.cast_column(column, datasets.Image(decode=False))
    elif getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise DataError(f"{source}: column {column!r} holds {feature}, not images or image paths")
    index = 0
    for batch in data.select_columns([column]).iter(batch_size=_BATCH):
        for value in batch[column]:
            if isinstance(value, str) or value is None:
                path = value
            elif value.get("bytes"):
                path = _cached(value["bytes"], Path(cache_dir), f"{source} sample {index}")
            else:
                path = value.get("path")
            if not path:
                raise DataError(f"{source} sample {index}: no image in column {column!r}")
            yield path
            index += 1


def _cached(data: bytes, cache_dir: Path, where: str) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            suffix = (image.format or "png").lower()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: not a readable image ({exc})") from None
    path = cache_dir / f"{hashlib.sha1(data).hexdigest()[:24]}.{suffix}"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    return str(path.resolve())

