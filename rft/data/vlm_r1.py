"""VLM-R1's data, imported as is. Two record layouts, told apart per record:

- REC records (its ``rec_jsons_processed`` files, read by ``grpo_rec.py``)::

      {"image": "train2014/COCO_train2014_000000581857.jpg",
       "problem": "Please provide the bounding box coordinate of the region this sentence describes: ...",
       "normal_caption": "the lady with the blue shirt",
       "solution": [103.9, 299.9, 238.1, 477.4], "normalized_solution": [162, 624, 372, 994]}

  a grounding row for ``normal_caption`` (else the phrase the problem names). The box comes from
  ``solution`` (pixels of the original image; one box or a list of boxes), else ``bbox_list``
  (pixel boxes), else ``normalized_solution`` (0..1000 of the image).
- ``conversations`` JSONL (``grpo_jsonl.py``): ``{"id": 1, "image": path (or a list of one),
  "conversations": [{"from": "human", "value": "<image>question"}, {"from": "gpt", "value": answer}]}``
  with REC and open-vocabulary detection answers as ```` ```json [{"bbox_2d": [x1, y1, x2, y2],
  "label": ...}] ``` ```` in pixels of the original image and ``None`` for no object; read as
  :mod:`rft.data.messages` reads conversations (tasks from the answers, or the recipe's ``task``).

Image paths are relative to ``image_root`` (VLM-R1's ``--image_folders``), else the file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewards.contract import to_image_pixels
from rft.data.chat import one_image, referring_phrase
from rft.data.images import check_box
from rft.data.messages import load_conversation_file
from rft.data.records import LoadReport, OnBadImage, Row, checked_image, get_field, image_path, read_records
from rft.errors import DataError

REC_BOX_FIELDS = (("solution", "pixels"), ("bbox_list", "pixels"), ("normalized_solution", "norm1000"))
"""Where a REC record's box is, in order of preference, and the convention of each field."""


def load_vlm_r1(
    path: str | Path,
    *,
    name: str,
    image_root: str | Path | None = None,
    task: str | None = None,
    coords: str | None = None,
    category_pattern: str | None = None,
    on_bad_image: OnBadImage = "error",
) -> tuple[list[Row], LoadReport]:
    """Rows from a VLM-R1 JSON list or JSONL file (module docstring); ids ``"{name}:{id}"``, else
    ``"{name}:{number}"``. ``coords`` overrides the convention of conversation answers."""
    if task is not None and task != "grounding" and _has_rec_records(Path(path)):
        raise DataError(f"{path}: REC records are grounding rows (referring expressions), but the recipe says task {task!r}")
    return load_conversation_file(path, name, image_root, task, coords, category_pattern, on_bad_image, _rec_row,
                                  ("image", "images"))


def _has_rec_records(path: Path) -> bool:
    return any("conversations" not in r and "messages" not in r for _, _, r in read_records(path))


def _rec_row(number: int, where: str, record: dict, name: str, base: Path, on_bad_image: OnBadImage,
             report: LoadReport) -> Row | None:
    problem = get_field(record, "problem", str, where)
    field, value = one_image(record, where, fields=("image",))
    file = image_path(value, base, where, field)
    size = checked_image(file, where, report, on_bad_image)
    if size is None:
        return None
    phrase = get_field(record, "normal_caption", str, where, optional=True) or referring_phrase(problem)
    boxes, convention = _rec_boxes(record, size, where)
    report.count_coordinates(convention)
    key = get_field(record, "id", (str, int), where, optional=True)
    return {"id": f"{name}:{number if key is None else key}", "dataset": name, "task": "grounding", "image": str(file),
            "image_size": size, "solution": {"boxes": boxes, "labels": [phrase] * len(boxes)}, "query": {"phrase": phrase}}


def _rec_boxes(record: dict, size: list[int], where: str) -> tuple[list[list[float]], str]:
    """The record's boxes in pixels of the image, and the convention of the field they came from."""
    for field, convention in REC_BOX_FIELDS:
        value = record.get(field)
        if value is None:
            continue
        at = f"{where} field {field!r}"
        boxes = _box_list(value, at)
        pixels = to_image_pixels(boxes, convention, size).tolist() if boxes else []
        return [check_box(box, size, at) for box in pixels], convention
    raise DataError(f"{where}: missing required field 'solution' (a pixel box [x1, y1, x2, y2]; "
                    "or 'bbox_list', or 'normalized_solution' in 0..1000)")


def _box_list(value: Any, where: str) -> list[list[float]]:
    """``[x1, y1, x2, y2]`` or a list of them as a list of boxes."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if isinstance(value, list) and len(value) == 4 and all(number(v) for v in value):
        return [list(map(float, value))]
    if isinstance(value, list) and value and all(isinstance(b, list) and len(b) == 4 and all(number(v) for v in b) for b in value):
        return [list(map(float, b)) for b in value]
    raise DataError(f"{where}: expected a box [x1, y1, x2, y2] or a list of boxes, got {str(value)[:80]}")
