"""Shared fixtures-on-the-fly for the data tests (no tests here): tiny images and record files."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def make_image(path: Path, size: tuple[int, int] = (64, 48), color=(200, 30, 30), mode: str = "RGB") -> Path:
    """A plain image file (format from the suffix); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 128).save(path)
    return path


def write_jsonl(path: Path, records: list) -> Path:
    """One line per record: dicts as JSON, strings as they are (to write broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def answer(items) -> str:
    """A think/answer completion whose answer is ``items`` as JSON."""
    return f"<think>looking</think><answer>{json.dumps(items)}</answer>"


def columns(trl_row: dict, n: int = 1) -> dict:
    """The reward columns of a TRL row, repeated for ``n`` completions."""
    keys = ("task", "solution", "image_size", "coord_format", "model_image_size")
    return {k: [trl_row[k]] * n for k in keys}
