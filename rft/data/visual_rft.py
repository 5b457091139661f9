"""Visual-RFT's own data format, imported as is.

Records (a JSON list, JSONL, or a Hugging Face dataset) hold ``image`` (a path or an image),
``problem`` (the prompt text) and ``solution``: ``<answer>[{'Position': [x1, y1, x2, y2],
'Confidence': 1}, ...]</answer>`` with coordinates in 0..1000 of the image (detection;
``<answer>[]</answer>`` is a negative) or ``<answer>daisy</answer>`` (classification).

Detection rows get a ``category`` from the record's ``category`` field or ``category_pattern``
(a regex whose group ``category``, else group 1, finds it in the problem), and then the model's own
prompt template asks for it. Without one, ``query["problem"]`` is the prompt, used verbatim, and
``query["coord_format"] = "norm1000"`` because that is what the problem text asks for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from rewards.coords import to_image_pixels
from rewards.parsing import extract_answer, parse_boxes
from rft.data.hf import check_columns, image_files, load_hf_dataset
from rft.data.images import check_box
from rft.data.records import (
    LoadReport, OnBadImage, Row, check_policy, checked_image, finish, get_field, image_path, read_records,
)
from rft.errors import DataError, RecipeError

_COLUMNS = ["image", "problem", "solution"]


def load_visual_rft(
    source: str | Path,
    *,
    name: str,
    split: str | None = None,
    image_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    category_pattern: str | None = None,
    on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Detection and classification rows from Visual-RFT data.

    ``source`` is a ``.json``/``.jsonl`` file (relative image paths resolve against
    ``image_root``, else the file's folder; ids ``"{name}:{number}"``) or a Hugging Face
    dataset (see :func:`rft.data.hf.load_hf_dataset`; stored images are written to ``cache_dir``;
    ids ``"{name}:{split}:{index}"``).
    """
    check_policy(on_bad_image)
    pattern = _compile(category_pattern)
    report, rows = LoadReport(str(source)), []
    for key, where, record, base in _records(Path(source), name, split, image_root, cache_dir):
        problem = get_field(record, "problem", str, where)
        solution = get_field(record, "solution", str, where)
        file = image_path(get_field(record, "image", str, where), base, where)
        size = checked_image(file, where, report, on_bad_image)
        if size is None:
            continue
        answer = extract_answer(solution)
        if not answer:
            raise DataError(f"{where}: solution has no answer: {solution[:80]!r}")
        row: Row = {"id": key, "dataset": name, "task": "classification", "image": str(file), "image_size": size,
                    "solution": {"label": answer, "synonyms": []}, "query": {"classes": None, "problem": problem}}
        if answer.startswith("["):
            category = get_field(record, "category", str, where, optional=True) or _category(problem, pattern, where)
            boxes = _boxes(answer, size, where)
            row["task"] = "detection"
            row["solution"] = {"boxes": boxes, "labels": [category] * len(boxes) if category else []}
            row["query"] = {"problem": problem, **({"category": category} if category else {"coord_format": "norm1000"})}
        rows.append(row)
    return finish(rows, report)


def _records(
    source: Path, name: str, split: str | None, image_root: str | Path | None, cache_dir: str | Path | None,
) -> Iterator[tuple[str, str, dict, Path]]:
    """``(id, where, record, image base folder)`` for each record of a file or dataset."""
    if source.suffix.lower() in (".json", ".jsonl"):
        base = Path(image_root) if image_root is not None else source.resolve().parent
        for number, where, record in read_records(source):
            yield f"{name}:{number}", where, record, base
        return
    data = load_hf_dataset(source, split)
    check_columns(data, _COLUMNS, source)
    if cache_dir is None:
        raise ValueError(f"{source}: a Hugging Face dataset needs cache_dir to store its images")
    base = Path(image_root) if image_root is not None else source if source.is_dir() else Path.cwd()
    text_columns = [c for c in data.column_names if c in ("problem", "solution", "category")]
    texts = data.select_columns(text_columns)
    for index, file in enumerate(image_files(data, "image", cache_dir, source)):
        yield f"{name}:{split}:{index}", f"{source} sample {index}", {**texts[index], "image": file}, base


def _compile(category_pattern: str | None) -> re.Pattern | None:
    if category_pattern is None:
        return None
    try:
        pattern = re.compile(category_pattern)
    except re.error as exc:
        raise RecipeError(f"category_pattern {category_pattern!r}: {exc}") from None
    if not pattern.groups:
        raise RecipeError(f"category_pattern {category_pattern!r} needs a group that captures the category")
    return pattern


def _category(problem: str, pattern: re.Pattern | None, where: str) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(problem)
    if match is None:
        raise DataError(f"{where}: category_pattern {pattern.pattern!r} does not match the problem {problem[:80]!r}")
    return match.group("category" if "category" in pattern.groupindex else 1).strip()


def _boxes(answer: str, size: list[int], where: str) -> list[list[float]]:
    """The answer's 0..1000 boxes in pixels of the image."""
    parsed = parse_boxes(answer)
    if not parsed.strict or parsed.n_invalid:
        raise DataError(f"{where}: solution answer is not a list of valid boxes: {answer[:80]!r}")
    return [check_box(box, size, where) for box in to_image_pixels(parsed.boxes, "norm1000", size).tolist()]
