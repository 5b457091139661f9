"""Visual-RFT's own data, imported as is.

Two record layouts, told apart per record:

- ``{"image": path, "problem": str, "solution": "<answer>...</answer>"}`` (``image_path`` instead
  of ``image`` in the JSON its ``dataset/build_dataset.ipynb`` reads): a JSON list, JSONL, or the
  Hugging Face ``DatasetDict`` that notebook saves (``image`` holding the images). The solution
  says the task: ``[{'Position': [x1, y1, x2, y2], 'Confidence': 1}, ...]`` in 0..1000 of the
  image is detection, ``No Objects`` (what its detection prompt asks for) or ``[]`` a detection
  negative when the problem asks for boxes, ``(x1,y1),(x2,y2)`` in 0..1000 grounding, and any
  other answer (``<answer>daisy</answer>``, tags optional) a classification label.
- its LISA grounding JSON (``lisa_evaluation/gen_sft.py``): ``{"id": ..., "conversations":
  [{"from": "user", "value": "<img>path</img>\\n ... instruction: X"}, {"from": "assistant",
  "value": "(x1,y1),(x2,y2)"}]}``, a grounding row for the phrase X with a 0..1000 box.

Detection rows get a ``category`` from the record's ``category`` field or ``category_pattern``
(a regex whose group ``category``, else group 1, finds it in the problem), and then the model's own
prompt template asks for it. Without one, ``query["problem"]`` is the prompt, used verbatim, and
``query["coord_format"] = "norm1000"`` because that is what the problem text asks for. Grounding
rows ask rft's grounding prompt for the phrase (the text after "instruction:" / "describes:").
``coords`` overrides the 0..1000 convention of the boxes (see :mod:`rft.data.chat`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from rft.data.chat import (
    Answer, asks_for_boxes, category_in, check_coords, compile_category_pattern, exchange, image_base, one_image,
    read_answer, referring_phrase,
)
from rft.data.hf import check_columns, image_files, load_hf_dataset
from rft.data.records import (
    LoadReport, OnBadImage, Row, check_policy, checked_image, finish, get_field, image_path, read_records,
)

_FILE_SUFFIXES = (".json", ".jsonl")


def load_visual_rft(
    source: str | Path,
    *,
    name: str,
    split: str | None = None,
    image_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    category_pattern: str | None = None,
    coords: str | None = None,
    on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Detection, grounding and classification rows from Visual-RFT data (module docstring).

    ``source`` is a ``.json``/``.jsonl`` file (relative image paths resolve against
    ``image_root``, else the file's folder; ids ``"{name}:{number}"``) or a Hugging Face
    dataset (see :func:`rft.data.hf.load_hf_dataset`; ``split`` picks the split, default
    ``train``; stored images are written to ``cache_dir``; ids ``"{name}:{split}:{index}"``).
    """
    check_policy(on_bad_image)
    check_coords(coords)
    pattern = compile_category_pattern(category_pattern)
    report, rows = LoadReport(str(source)), []
    for key, where, record, base in _records(Path(source), name, split, image_root, cache_dir):
        if "conversations" in record or "messages" in record:
            turns = exchange(record, where)
            problem, solution = turns.question, turns.answer
            field, value = one_image(record, where, turns.images, ("image", "image_path"))
            answer_where = f"{where} assistant turn"
        else:
            problem = get_field(record, "problem", str, where)
            solution = get_field(record, "solution", str, where)
            field, value = one_image(record, where, fields=("image", "image_path"))
            answer_where = f"{where} field 'solution'"
        file = image_path(value, base, where, field)
        size = checked_image(file, where, report, on_bad_image)
        if size is None:
            continue
        answer = read_answer(solution, size, answer_where, coords=coords, none_is_negative=asks_for_boxes(problem))
        row: Row = {"id": key, "dataset": name, "task": "classification", "image": str(file), "image_size": size,
                    "solution": {"label": answer.text, "synonyms": []}, "query": {"classes": None, "problem": problem}}
        if answer.is_boxes:
            row.update(_box_row(answer, problem, record, pattern, where))
            if answer.boxes:
                report.count_coordinates(answer.coordinates or "norm1000")
        rows.append(row)
    return finish(rows, report)


def _box_row(answer: Answer, problem: str, record: dict, pattern: re.Pattern | None, where: str) -> dict:
    """Task, solution and query of a box answer: grounding for one ``(x1,y1),(x2,y2)`` box, else detection."""
    boxes = answer.boxes or []
    if answer.style == "point_pairs":
        phrase = answer.labels[0] if answer.labels else referring_phrase(problem)
        return {"task": "grounding", "solution": {"boxes": boxes, "labels": [phrase] * len(boxes)},
                "query": {"phrase": phrase}}
    category = get_field(record, "category", str, where, optional=True) or category_in(problem, pattern, where)
    return {"task": "detection", "solution": {"boxes": boxes, "labels": [category] * len(boxes) if category else []},
            "query": {"problem": problem, **({"category": category} if category else {"coord_format": "norm1000"})}}


def _records(
    source: Path, name: str, split: str | None, image_root: str | Path | None, cache_dir: str | Path | None,
) -> Iterator[tuple[str, str, dict, Path]]:
    """``(id, where, record, image base folder)`` for each record of a file or dataset."""
    if source.suffix.lower() in _FILE_SUFFIXES:
        base = image_base(image_root, source)
        for number, where, record in read_records(source):
            yield f"{name}:{number}", where, record, base
        return
    split = split or "train"
    data = load_hf_dataset(source, split)
    image_column = "image" if "image" in data.column_names or "image_path" not in data.column_names else "image_path"
    check_columns(data, [image_column, "problem", "solution"], source)
    if cache_dir is None:
        raise ValueError(f"{source}: a Hugging Face dataset needs cache_dir to store its images")
    base = Path(image_root) if image_root is not None else source if source.is_dir() else Path.cwd()
    text_columns = [c for c in data.column_names if c in ("problem", "solution", "category")]
    texts = data.select_columns(text_columns)
    for index, file in enumerate(image_files(data, image_column, cache_dir, source)):
        yield f"{name}:{split}:{index}", f"{source} sample {index}", {**texts[index], "image": file}, base
