"""What other projects' records hold, read one way: a question, an answer, an image, boxes.

Visual-RFT, VLM-R1 and the Qwen-VL fine-tuning tools (LLaMA-Factory, ms-swift) write a sample as a
conversation: ``conversations`` turns (``from``: ``human``/``user``, ``gpt``/``assistant``;
``value``) or ``messages`` turns (``role``, ``content``: text, or a list of ``{"type": "text"}`` /
``{"type": "image"}`` parts). The image is a field (``image``, ``image_path``, ``images``), an
``<img>path</img>`` tag in the question (Visual-RFT's LISA data) or an image part; ``<image>``
placeholders are dropped from the question.

Answers are read as each project writes them (:func:`read_answer`), each style in its own
coordinate convention unless the recipe says otherwise (``coords``):

- ``[{'Position': [x1, y1, x2, y2], 'Confidence': c}]`` (Visual-RFT): 0..1000 of the image;
- ``(x1,y1),(x2,y2)`` (Qwen2-VL, Visual-RFT's LISA): 0..1000 of the image;
- ``[{"bbox_2d": [...], "label": ...}]``, in a ```` ```json ```` fence or not, and bare
  ``[x1, y1, x2, y2]`` lists (Qwen2.5-VL, VLM-R1, LLaMA-Factory / ms-swift data): pixels of the
  original image;
- a "no object" answer (``No Objects``, ``None``, ``[]``): no box, a negative sample;
- anything else is not a box answer (a class name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.contract import COORD_FORMATS, to_image_pixels
from rewards.parsing import extract_answer, parse_boxes, says_none
from rft.data.images import check_box
from rft.data.records import get_field, get_images
from rft.errors import DataError, RecipeError

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
"""Turn speakers as the projects name them -> user / assistant / system."""

_NUM = r"[-+]?\d+(?:\.\d+)?"
_POINT_PAIR = (rf"(?:<\|object_ref_start\|>[^<]*<\|object_ref_end\|>)?\s*(?:<\|box_start\|>)?\s*"
               rf"\(\s*{_NUM}\s*,\s*{_NUM}\s*\)\s*,?\s*\(\s*{_NUM}\s*,\s*{_NUM}\s*\)\s*(?:<\|box_end\|>)?")
_POINT_PAIRS = re.compile(rf"\s*{_POINT_PAIR}(?:\s*[,;]?\s*{_POINT_PAIR})*\s*[.]?\s*")
_POSITION_KEY = re.compile(r"""["']position["']\s*:""", re.I)
_IMG_TAG = re.compile(r"<img>(.*?)</img>", re.S)
_PLACEHOLDER = re.compile(r"<image>|<\|vision_start\|>|<\|image_pad\|>|<\|vision_end\|>")
_LEAD_IN = re.compile(r"(?:instruction|describes|expression|phrase|locate|find)\s*:\s*(.+)$", re.S | re.I)
_OBJECT_REF = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>", re.S)
_ASKS_FOR_BOXES = re.compile(r"bounding box|bbox|\bposition\b|coordinate|no objects", re.I)


@dataclass(frozen=True)
class Exchange:
    """One question and its answer, and the images the turns name (in order)."""

    question: str
    answer: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """A read answer: ``boxes`` (pixels of the original image) and their ``labels`` for a box
    answer, with the convention they were written in; ``text`` alone for any other answer."""

    text: str
    boxes: list[list[float]] | None = None
    labels: tuple[str | None, ...] = ()
    coordinates: str | None = None
    style: str | None = None
    """``"point_pairs"`` (``(x1,y1),(x2,y2)``), ``"position"`` (Visual-RFT) or ``"list"`` (JSON / bare lists)."""

    @property
    def is_boxes(self) -> bool:
        return self.boxes is not None


def check_coords(coords: str | None) -> None:
    if coords is not None and coords not in COORD_FORMATS:
        raise RecipeError(f"options.coords must be one of {list(COORD_FORMATS)}, got {coords!r}")


def _text_and_images(content: Any, where: str) -> tuple[str, list[str]]:
    """A turn's text and the images of its content parts (``messages`` content may be a list)."""
    if isinstance(content, str):
        return content, []
    if isinstance(content, (int, float)) and not isinstance(content, bool):
        return str(content), []  # VLM-R1 answers may be numbers
    if not isinstance(content, list):
        raise DataError(f"{where}: expected text or a list of content parts, got {type(content).__name__}")
    texts, images = [], []
    for part in content:
        if not isinstance(part, dict):
            raise DataError(f"{where}: a content part must be an object, got {type(part).__name__}")
        if part.get("type") == "text" or "text" in part and part.get("type") is None:
            texts.append(str(part.get("text") or ""))
        elif part.get("type") == "image" or "image" in part:
            image = part.get("image") or part.get("image_url") or part.get("path")
            if isinstance(image, dict):
                image = image.get("url")
            if isinstance(image, str) and image:
                images.append(image.removeprefix("file://"))
    return "".join(texts), images


def exchange(record: dict, where: str) -> Exchange:
    """The one user question and assistant answer of a ``conversations`` or ``messages`` record
    (system turns aside); images named inside the turns come along."""
    if "messages" in record:
        name, role_key, text_key = "messages", "role", "content"
    elif "conversations" in record:
        name, role_key, text_key = "conversations", "from", "value"
    else:
        raise DataError(f"{where}: missing required field 'conversations' (or 'messages')")
    turns = get_field(record, name, list, where)
    user, assistant, images = [], [], []
    for number, turn in enumerate(turns):
        at = f"{where} field {name!r} turn {number}"
        if not isinstance(turn, dict):
            raise DataError(f"{at}: expected an object with {role_key!r} and {text_key!r}, got {type(turn).__name__}")
        role = ROLES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            raise DataError(f"{at}: {role_key!r} must be one of {sorted(ROLES)}, got {turn.get(role_key)!r}")
        text, found = _text_and_images(turn.get(text_key), f"{at} {text_key!r}")
        images += found
        if role == "user":
            user.append(text)
        elif role == "assistant":
            if not user:
                raise DataError(f"{at}: the assistant answers before any user turn")
            assistant.append(text)
    if len(user) != 1 or len(assistant) != 1:
        raise DataError(f"{where}: field {name!r} must hold one user turn and one assistant turn (system turns aside), "
                        f"got {len(user)} user and {len(assistant)} assistant turns")
    question = user[0]
    images += [m.strip() for m in _IMG_TAG.findall(question)]
    question = _PLACEHOLDER.sub("", _IMG_TAG.sub("", question)).strip()
    return Exchange(question, assistant[0], tuple(images))


def record_images(record: dict, where: str, found: tuple[str, ...] = ()) -> tuple[str, list[str]] | None:
    """``("images", paths)`` of a record with several images (an ``images`` list of two or more paths, or
    as many images named in its turns), else None (:func:`one_image` reads it)."""
    value = record.get("images")
    if isinstance(value, list):
        if len(value) != 1:
            return "images", get_images(record, where)
        return None
    if value is None and record.get("image") is None and len(found) > 1:
        return "conversations", list(found)
    return None


def one_image(record: dict, where: str, found: tuple[str, ...] = (), fields: tuple[str, ...] = ("image", "images")
              ) -> tuple[str, str]:
    """``(field, path)`` of the one image of a record: from the first of ``fields`` present (a
    string, or a list of one), else from ``found`` (images the turns named)."""
    for name in fields:
        if record.get(name) is None:
            continue
        value = record[name]
        paths = value if isinstance(value, list) else [value]
        if len(paths) != 1 or not isinstance(paths[0], str):
            raise DataError(f"{where}: field {name!r} must be one image path (a string or a list of one), "
                            f"got {_describe(value)}; rft samples have one image each")
        return name, paths[0]
    if len(found) == 1:
        return "conversations", found[0]
    if found:
        raise DataError(f"{where}: the turns name {len(found)} images; rft samples have one image each")
    raise DataError(f"{where}: missing required field {fields[0]!r} (or {', '.join(repr(f) for f in fields[1:])}, "
                    "or <img>path</img> in the question)")


def _describe(value: Any) -> str:
    return f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__


def asks_for_boxes(question: str) -> bool:
    """Whether a question asks for boxes (so that a "no object" answer is a negative, not a class)."""
    return _ASKS_FOR_BOXES.search(question) is not None


def answer_style(answer: str) -> str:
    """How a box answer is written: ``point_pairs``, ``position`` or ``list`` (see :class:`Answer`)."""
    if _POINT_PAIRS.fullmatch(answer):
        return "point_pairs"
    return "position" if _POSITION_KEY.search(answer) else "list"


STYLE_COORDINATES = {"point_pairs": "norm1000", "position": "norm1000", "list": "pixels"}
"""The convention each answer style is written in by the projects that use it (module docstring)."""


def read_answer(
    text: str, size: list[int], where: str, *, coords: str | None = None, none_is_negative: bool = True,
) -> Answer:
    """An answer (``<answer>`` tags optional) read as boxes in pixels of an image of ``size``.

    ``coords`` overrides the convention the answer's style implies (module docstring). A "no
    object" answer is a negative (no boxes) when ``none_is_negative``, else a class name. An
    answer that starts like a box list but does not parse whole is an error naming ``where``.
    """
    answer = (extract_answer(text) or "").strip()
    if not answer:
        raise DataError(f"{where}: the answer is empty")
    if says_none(answer):
        return Answer(answer, [], (), None) if none_is_negative else Answer(answer)
    pairs = _POINT_PAIRS.fullmatch(answer) is not None
    parsed = parse_boxes(answer)
    if parsed.says_none:  # an empty list
        return Answer(answer, [], (), None)
    if not parsed.parsed and not answer.startswith(("[", "{", "```")):
        return Answer(answer)  # a class name or other text
    if not parsed.parsed or not (parsed.strict or pairs) or parsed.n_invalid:
        raise DataError(f"{where}: expected a list of valid boxes ([{{\"bbox_2d\": [x1, y1, x2, y2]}}], "
                        f"[{{'Position': [x1, y1, x2, y2]}}] or (x1,y1),(x2,y2) with x2 > x1, y2 > y1), "
                        f"a 'no object' answer or a class name, got {answer[:80]!r}")
    style = answer_style(answer)
    convention = coords or STYLE_COORDINATES[style]
    boxes = to_image_pixels(parsed.boxes, convention, size, size).tolist()
    labels = parsed.labels if any(parsed.labels) else ()
    return Answer(answer, [check_box(box, size, where) for box in boxes], labels, convention, style)


def compile_category_pattern(category_pattern: str | None) -> re.Pattern | None:
    """``category_pattern`` compiled; it needs a group (``category``, else the first) that captures the category."""
    if category_pattern is None:
        return None
    try:
        pattern = re.compile(category_pattern)
    except re.error as exc:
        raise RecipeError(f"category_pattern {category_pattern!r}: {exc}") from None
    if not pattern.groups:
        raise RecipeError(f"category_pattern {category_pattern!r} needs a group that captures the category")
    return pattern


def category_in(problem: str, pattern: re.Pattern | None, where: str) -> str | None:
    """The category ``pattern`` finds in a question (None without a pattern; an error when it does not match)."""
    if pattern is None:
        return None
    match = pattern.search(problem)
    if match is None:
        raise DataError(f"{where}: category_pattern {pattern.pattern!r} does not match the problem {problem[:80]!r}")
    return match.group("category" if "category" in pattern.groupindex else 1).strip()


def referring_phrase(question: str) -> str:
    """The phrase a grounding question refers to: a Qwen2-VL ``<|object_ref_start|>`` span, the text
    after a lead-in ("...corresponding to the instruction: X", "...this sentence describes: X"), or
    the whole question."""
    ref = _OBJECT_REF.search(question)
    if ref:
        return ref.group(1).strip()
    lead = _LEAD_IN.search(question)
    phrase = (lead.group(1) if lead else question).strip()
    return phrase[:-1].rstrip() if phrase.endswith(".") else phrase


def image_base(image_root: str | Path | None, source: Path) -> Path:
    """Where relative image paths of a file resolve: ``image_root``, else the file's folder."""
    return Path(image_root) if image_root is not None else source.resolve().parent
