"""Conversation records of Qwen-VL fine-tuning tools (and VLM-R1's JSONL), imported as they are.

The ``messages`` + ``images`` layout of LLaMA-Factory's sharegpt format and ms-swift::

    {"messages": [{"role": "user", "content": "<image>Find every cat."},
                  {"role": "assistant", "content": "```json\\n[{\\"bbox_2d\\": [10, 20, 50, 60], \\"label\\": \\"cat\\"}]\\n```"}],
     "images": ["images/1.jpg"]}

(``conversations`` with ``from``/``value`` turns reads the same; see :mod:`rft.data.chat` for
turns, images and answer styles). A record with several ``images`` (or turns naming several) makes a row
with several images, shown in order before the question; its boxes refer to the first image. Box answers are in pixels of the original image unless
``coords`` says otherwise (``(x1,y1),(x2,y2)`` answers are Qwen2-VL's 0..1000).

Tasks come from the answers: box answers make grounding rows when every box answer of the file has
exactly one box (referring expressions), else detection rows ("None" / "No Objects" is a
negative, in a file with box answers or after a question that asks for boxes); the recipe's
``task`` decides instead when given. Other answers are classification labels. Grounding rows ask rft's grounding prompt for the box's label, else the phrase the
question names; detection rows use the question verbatim unless the record's ``category`` field
or ``category_pattern`` names the category (then rft's detection prompt asks for it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from rewards.contract import BOX_TASKS
from rft.data.chat import (
    Answer, asks_for_boxes, category_in, check_coords, compile_category_pattern, exchange, image_base, one_image, read_answer,
    record_images, referring_phrase,
)
from rft.data.records import (
    LoadReport, OnBadImage, Row, check_policy, checked_image, finish, get_field, image_path, read_records,
)
from rft.errors import DataError


@dataclass(frozen=True)
class ChatSample:
    """One readable record: its row id, where it is, its image and its question and answer."""

    key: str
    where: str
    record: dict
    image: str
    size: list[int]
    question: str
    answer: Answer
    more_images: tuple[tuple[str, list[int]], ...] = ()
    """The images after the first (path, size), for records with several; the answer's boxes refer to the first."""


def chat_sample(
    number: int, where: str, record: dict, name: str, base: Path, coords: str | None, on_bad_image: OnBadImage,
    report: LoadReport, image_fields: tuple[str, ...] = ("images", "image"), several_images: bool = False,
) -> Iterator[ChatSample]:
    """The :class:`ChatSample` of one record (none when an image of it is skipped); ids ``"{name}:{id}"``,
    else ``"{name}:{number}"``. With ``several_images`` a record may have more than one image."""
    turns = exchange(record, where)
    several = record_images(record, where, turns.images) if several_images else None
    if several is not None:
        field, values = several
    else:
        field, value = one_image(record, where, turns.images, image_fields)
        values = [value]
    files = [image_path(v, base, where, field) for v in values]
    sizes = [checked_image(f, where, report, on_bad_image) for f in files]
    if any(size is None for size in sizes):
        return
    key = get_field(record, "id", (str, int), where, optional=True)
    answer = read_answer(turns.answer, sizes[0], f"{where} assistant turn", coords=coords)
    yield ChatSample(f"{name}:{number if key is None else key}", where, record, str(files[0]), sizes[0], turns.question,
                     answer, tuple((str(f), s) for f, s in zip(files[1:], sizes[1:])))


def chat_rows(
    samples: list[ChatSample], name: str, task: str | None, coords: str | None, category_pattern: str | None,
    report: LoadReport,
) -> list[Row]:
    """Rows of chat samples (module docstring says how tasks and prompts are chosen)."""
    pattern = compile_category_pattern(category_pattern)
    if not any(s.answer.boxes for s in samples):  # no box in the file: "No" answers only the questions asking for boxes deny
        samples = [s if s.answer.boxes is None or asks_for_boxes(s.question) else replace(s, answer=Answer(s.answer.text))
                   for s in samples]
    boxed = [s for s in samples if s.answer.is_boxes]
    if task in BOX_TASKS:
        box_task = task
    else:
        box_task = "grounding" if boxed and all(len(s.answer.boxes or []) == 1 for s in boxed) else "detection"
    conventions = Counter(s.answer.coordinates for s in boxed if s.answer.coordinates)
    convention = coords or (conventions.most_common(1)[0][0] if conventions else None)
    rows = []
    for s in samples:
        row: Row = {"id": s.key, "dataset": name, "task": "classification", "image": s.image, "image_size": s.size,
                    "solution": {"label": s.answer.text, "synonyms": []}, "query": {"classes": None, "problem": s.question}}
        if s.answer.is_boxes:
            boxes = s.answer.boxes or []
            if boxes:
                report.count_coordinates(s.answer.coordinates or "pixels")
            if box_task == "grounding":
                labels = {label for label in s.answer.labels if label}
                phrase = labels.pop() if len(labels) == 1 else referring_phrase(s.question)
                row.update(task="grounding", solution={"boxes": boxes, "labels": [phrase] * len(boxes)},
                           query={"phrase": phrase})
            else:
                category = get_field(s.record, "category", str, s.where, optional=True) or category_in(s.question, pattern, s.where)
                labels = [label or category for label in s.answer.labels] if s.answer.labels else [category] * len(boxes)
                query = {"problem": s.question, **({"category": category} if category else {})}
                if not category and convention in ("norm1000", "norm1"):
                    query["coord_format"] = convention  # the question was written for that convention
                row.update(task="detection", solution={"boxes": boxes, "labels": labels if any(labels) else []},
                           query=query)
        if s.more_images:
            row.update(images=[s.image, *(p for p, _ in s.more_images)],
                       image_sizes=[s.size, *(size for _, size in s.more_images)])
        rows.append(row)
    return rows


def load_messages(
    path: str | Path,
    *,
    name: str,
    image_root: str | Path | None = None,
    task: str | None = None,
    coords: str | None = None,
    category_pattern: str | None = None,
    on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Rows from a JSON list or JSONL file of ``messages`` (or ``conversations``) + ``images``
    records (module docstring). Relative image paths resolve against ``image_root``, else the
    file's folder. A record with several images makes a row with several (its boxes refer to the first)."""
    return load_conversation_file(path, name, image_root, task, coords, category_pattern, on_bad_image,
                                  several_images=True)


OtherRecord = Callable[[int, str, dict, str, Path, OnBadImage, LoadReport], "Row | None"]
"""Reads a record that is not a conversation: ``(number, where, record, name, image base, on_bad_image, report)``."""


def load_conversation_file(
    path: str | Path, name: str, image_root: str | Path | None, task: str | None, coords: str | None,
    category_pattern: str | None, on_bad_image: OnBadImage, other: OtherRecord | None = None,
    image_fields: tuple[str, ...] = ("images", "image"), several_images: bool = False,
) -> tuple[list[Row], LoadReport]:
    """Rows of a file of conversation records (and of other records, read by ``other``, first); records may
    have several images with ``several_images``."""
    check_policy(on_bad_image)
    check_coords(coords)
    if task is not None and task not in (*BOX_TASKS, "classification"):
        raise DataError(f"{path}: conversation records make detection, grounding or classification rows, not {task!r}")
    path = Path(path)
    base = image_base(image_root, path)
    report, others, samples = LoadReport(str(path)), [], []
    for number, where, record in read_records(path):
        if other is None or "conversations" in record or "messages" in record:
            samples += chat_sample(number, where, record, name, base, coords, on_bad_image, report, image_fields,
                                   several_images)
        elif (row := other(number, where, record, name, base, on_bad_image, report)) is not None:
            others.append(row)
    chat_task = task if task in BOX_TASKS else None
    return finish(others + chat_rows(samples, name, chat_task, coords, category_pattern, report), report)
