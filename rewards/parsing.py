"""Answer parsing shared by every reward and by evaluation.

Parsing never raises: malformed, truncated, huge or hostile answers come back as a
:class:`BoxAnswer` whose ``parsed`` flag is false or whose ``n_invalid`` counts what was unusable.
"""

from __future__ import annotations

import ast
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

NONE_PHRASES: tuple[str, ...] = (
    "no objects",
    "no object",
    "none",
    "no",
    "nothing",
    "not found",
    "no such object",
    "there is no such object",
    "there are no such objects",
)
"""Answers (after :func:`normalize_text`) that say the asked-for object is absent."""

MAX_BOXES = 100
"""Boxes beyond this many in one answer are counted as invalid without being read."""

MAX_ANSWER_CHARS = 100_000
"""Longer answers are cut to this many characters before recovery (box spam is already invalid)."""

MAX_LITERAL_CHARS = 20_000
"""Longer answers skip ``ast.literal_eval`` (slow on hostile input) and go to regex recovery."""

BOX_KEYS = ("bbox_2d", "bbox", "box", "position", "box_2d", "bbox2d", "coordinates")
LABEL_KEYS = ("label", "category", "name", "class", "object")
SCORE_KEYS = ("confidence", "score", "conf", "probability")

_NUM = r"[-+]?+(?>\d++(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?+\d++)?+"  # atomic: no backtracking on long digit runs
_FENCE = re.compile(r"```(?:json|python|JSON)?\s*(.*?)\s*(?:```|$)", re.S)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S)
_DICT = re.compile(r"\{[^{}]*\}")
_BARE_BOX = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_POINT_PAIR = re.compile(
    rf"(?:<\|object_ref_start\|>(.*?)<\|object_ref_end\|>\s*)?(?:<\|box_start\|>)?"
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
)
_ARTICLES = re.compile(r"^(?:a|an|the)\s+")
_SEPARATORS = re.compile(r"[_\-/]+")
_PUNCT = re.compile(r"[^\w\s]")


@lru_cache(maxsize=65536)
def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PUNCT.sub("", _SEPARATORS.sub(" ", text))
    return _ARTICLES.sub("", " ".join(text.split()))


def normalize_text(text: str) -> str:
    """Lower-case, unify ``_``/``-``/``/`` with spaces, drop punctuation and leading articles."""
    text = str(text)
    return _normalize(text) if len(text) <= 256 else _normalize.__wrapped__(text)


IRREGULAR_PLURALS: dict[str, str] = {
    "people": "person", "persons": "person", "men": "man", "women": "woman", "children": "child",
    "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "buses": "bus",
    "knives": "knife", "leaves": "leaf", "wolves": "wolf", "shelves": "shelf", "halves": "half", "loaves": "loaf",
    "calves": "calf", "scarves": "scarf", "wives": "wife", "lives": "life", "thieves": "thief",
}
"""Plurals the suffix rules of :func:`normalize_label` would get wrong."""

_PLURAL_WORD = re.compile(r"[a-z]+")


def _singular(word: str) -> str:
    """English singular of one lower-case word by suffix rules (exact for regular plurals)."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if len(word) <= 3 or not _PLURAL_WORD.fullmatch(word):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"  # berries -> berry
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]  # glasses -> glass, benches -> bench, boxes -> box
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]  # helmets -> helmet, shoes -> shoe (but grass, cactus, axis stay)
    return word


def normalize_label(text: str) -> str:
    """The one normalisation of object labels that every detection reward compares.

    :func:`normalize_text` (case, ``_``/``-``/``/``, punctuation, whitespace, a leading article),
    then the last word made singular (``"Traffic_Lights"`` -> ``"traffic light"``, ``"helmets"``
    -> ``"helmet"``, ``"people"`` -> ``"person"``): a model that writes the plural of the asked
    category for several boxes names the same category. Suffix rules plus a table of irregular
    plurals; distinct words that fold together (``glass`` / ``glasses``) count as one label.
    """
    text = str(text)
    return _normalize_label(text) if len(text) <= 256 else _normalize_label.__wrapped__(text)


@lru_cache(maxsize=65536)
def _normalize_label(text: str) -> str:
    words = normalize_text(text).split()
    return " ".join(words[:-1] + [_singular(words[-1])]) if words else ""


def extract_answer(text: str, require_tags: bool = False) -> str | None:
    """The answer part of a completion, or ``None`` when there is none.

    The content of the last ``<answer>`` block wins; a block cut off by the length limit (no
    closing tag) counts. Without answer tags, the text outside ``<think>`` blocks is the answer
    unless ``require_tags``. Reasoning never counts: an unclosed ``<think>`` swallows the rest.
    """
    if not isinstance(text, str):
        return None
    if "<answer>" in text:
        answer = text.rsplit("<answer>", 1)[1]
        return answer.split("</answer>", 1)[0].strip()
    if require_tags:
        return None
    answer = _THINK_BLOCK.sub("", text).split("<think>", 1)[0]
    return answer.strip()


def strip_code_fence(answer: str) -> str:
    """Content of a Markdown code fence (```json ... ```), or the answer unchanged."""
    match = _FENCE.search(answer) if "```" in answer else None
    return match.group(1) if match else answer


def says_none(answer: str | None, none_phrases: tuple[str, ...] | list[str] = NONE_PHRASES) -> bool:
    """True when the whole answer is a "no such object" phrase."""
    if not answer or len(answer) > 200:
        return False
    return normalize_text(answer) in {normalize_text(p) for p in none_phrases}


@dataclass(frozen=True, slots=True)
class BoxAnswer:
    """Boxes read from one answer, in the coordinates the model wrote them in.

    ``boxes`` holds the valid boxes (N, 4) as x1, y1, x2, y2; ``n_invalid`` counts boxes that
    were written but unusable (non-numeric, non-finite, inverted, degenerate, bad confidence,
    over :data:`MAX_BOXES`). ``says_none`` is an explicit "no object" answer (a phrase or ``[]``).
    ``parsed`` is true when an answer was read at all; ``strict`` when it parsed as a whole
    (JSON / Python literal / none phrase) rather than being recovered piecewise.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    labels: tuple[str | None, ...] = ()
    scores: tuple[float | None, ...] = ()
    n_invalid: int = 0
    says_none: bool = False
    parsed: bool = False
    strict: bool = False

    @property
    def n_pred(self) -> int:
        """Every box the answer wrote, valid or not."""
        return len(self.boxes) + self.n_invalid

    def with_boxes(self, boxes: np.ndarray, keep: np.ndarray | None = None) -> BoxAnswer:
        """A copy with new box coordinates; rows where ``keep`` is false become invalid."""
        labels, scores, n_invalid = self.labels, self.scores, self.n_invalid
        if keep is not None and not keep.all():
            idx = np.flatnonzero(keep)
            labels, scores = tuple(labels[i] for i in idx), tuple(scores[i] for i in idx)
            boxes, n_invalid = boxes[keep], n_invalid + len(keep) - len(idx)
        return BoxAnswer(boxes.reshape(-1, 4), labels, scores, n_invalid, self.says_none, self.parsed, self.strict)


def well_formed(boxes: np.ndarray) -> np.ndarray:
    """Mask of (N, 4) boxes with finite coordinates, x2 > x1 and y2 > y1."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _coord(value: object) -> float:
    """A coordinate as a float; NaN when it is not a finite number (fast path for int/float)."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is int and -1e300 < value < 1e300:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    number = _number(value)
    return math.nan if number is None else number


def _box_coords(value: object) -> list[float] | None:
    """Four coordinates from [x1,y1,x2,y2] or [[x1,y1],[x2,y2]] (NaN where unusable), else None."""
    if isinstance(value, (list, tuple)):
        if len(value) == 4:
            return [_coord(v) for v in value]
        if len(value) == 2 and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
            return [_coord(v) for p in value for v in p]
    return None


def _lookup(item: dict, keys: tuple[str, ...]) -> tuple[bool, object]:
    for key in keys:
        if key in item:
            return True, item[key]
    lowered = {str(k).lower(): v for k, v in item.items()}
    for key in keys:
        if key in lowered:
            return True, lowered[key]
    return False, None


def _read_item(item: object) -> tuple[list[float], str | None, float | None] | None:
    """One box entry (dict or list) as (coordinates, label, score), or None when unusable.

    Coordinates are checked later, all boxes at once (finite, x2 > x1, y2 > y1)."""
    if not isinstance(item, dict):
        box = _box_coords(item)
        return (box, None, None) if box else None
    found, raw_box = _lookup(item, BOX_KEYS)
    box = _box_coords(raw_box) if found else None
    if box is None:
        return None
    found, raw_score = _lookup(item, SCORE_KEYS)
    score = _number(raw_score) if found else None
    if found and (score is None or not 0.0 <= score <= 1.0):
        return None
    found, raw_label = _lookup(item, LABEL_KEYS)
    label = str(raw_label) if found and raw_label is not None else None
    return box, label, score


def _key(item: dict, keys: tuple[str, ...]) -> object:
    return next((k for k in item if str(k).lower() in keys), None)


def _numbers(values: list) -> np.ndarray | None:
    """``values`` as a float array in one C call, or None if they are not all plain numbers.

    Booleans are ruled out before (``_read_uniform`` is only tried on text without true/false).
    """
    try:
        return np.array(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None


def _read_uniform(items: list) -> tuple[np.ndarray, list, list] | None:
    """All box entries at once when they share one layout (the common case), else None.

    Entries must all be dicts with the same keys or all bare boxes; rows with a bad confidence
    become NaN so that the caller's validity check drops them, exactly like the per-item path.
    """
    first = items[0]
    if isinstance(first, dict):
        keys = first.keys()
        if not all(type(it) is dict and it.keys() == keys for it in items):
            return None
        box_key, score_key, label_key = _key(first, BOX_KEYS), _key(first, SCORE_KEYS), _key(first, LABEL_KEYS)
        if box_key is None:
            return None
        boxes = [it[box_key] for it in items]
    elif all(isinstance(it, (list, tuple)) for it in items):
        boxes, score_key, label_key = items, None, None
    else:
        return None
    coords = _numbers(boxes)
    if coords is None or coords.shape[1:] not in ((4,), (2, 2)):
        return None
    coords = coords.reshape(-1, 4)
    scores: list = [None] * len(items)
    if score_key is not None:
        values = _numbers([it[score_key] for it in items])
        if values is None or values.ndim != 1:
            return None
        coords[~((values >= 0.0) & (values <= 1.0))] = np.nan  # NaN fails both comparisons
        scores = values.tolist()
    labels = [None] * len(items)
    if label_key is not None:
        labels = [None if it[label_key] is None else str(it[label_key]) for it in items]
    return coords, labels, scores


def _structured(answer: str) -> object:
    """The answer as a JSON value or Python literal, or None when it is neither."""
    try:
        return json.loads(answer)
    except (ValueError, RecursionError):
        pass
    if len(answer) > MAX_LITERAL_CHARS:
        return None
    try:
        return ast.literal_eval(answer)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _items_from_structure(value: object) -> list[object] | None:
    """The list of box entries a parsed answer holds, or None when it is not a box answer."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)):
        if len(value) == 4 and all(_number(v) is not None for v in value):
            return [value]  # a single bare box
        if len(value) == 2 and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
            if all(_number(v) is not None for p in value for v in p):
                return [value]  # a single box as two points
        return list(value)
    return None


def _items_recovered(answer: str) -> list[object]:
    """Complete box entries found piecewise, e.g. in an answer cut off by the length limit."""
    items: list[object] = []
    for chunk in _DICT.findall(answer):
        value = _structured(chunk)
        items.append(value if isinstance(value, dict) else None)
    if items:
        return items
    for m in _POINT_PAIR.finditer(answer):
        box = [m.group(i) for i in range(2, 6)]
        items.append({"bbox_2d": box, "label": m.group(1)} if m.group(1) else box)
    if items:
        return items
    return [list(m.groups()) for m in _BARE_BOX.finditer(answer)]


def read_boxes(
    answer: str | None,
    none_phrases: tuple[str, ...] | list[str] = NONE_PHRASES,
    max_boxes: int = MAX_BOXES,
) -> BoxAnswer:
    """Like :func:`parse_boxes` but without the final check of the coordinates: ``boxes`` may
    still hold NaN, inverted or degenerate rows (batch readers check many answers at once)."""
    if not isinstance(answer, str) or not answer.strip():
        return BoxAnswer()
    if says_none(answer, none_phrases):
        return BoxAnswer(says_none=True, parsed=True, strict=True)
    body = strip_code_fence(answer).strip()
    items = _items_from_structure(_structured(body))
    strict = items is not None
    if items is None:
        items = _items_recovered(body[:MAX_ANSWER_CHARS])
        if not items:
            return BoxAnswer()
    if strict and not items:
        return BoxAnswer(says_none=True, parsed=True, strict=True)
    n_invalid = max(0, len(items) - max_boxes)
    lowered = body.lower()
    has_booleans = "true" in lowered or "false" in lowered  # the fast path would read them as 1.0 / 0.0
    uniform = None if has_booleans else _read_uniform(items[:max_boxes])
    if uniform is not None:
        coords, labels, scores = uniform
    else:
        rows, labels, scores = [], [], []
        for item in items[:max_boxes]:
            read = _read_item(item)
            if read is None:
                n_invalid += 1
                continue
            rows.append(read[0])
            labels.append(read[1])
            scores.append(read[2])
        coords = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return BoxAnswer(coords, tuple(labels), tuple(scores), n_invalid, parsed=True, strict=strict)


def parse_boxes(
    answer: str | None,
    none_phrases: tuple[str, ...] | list[str] = NONE_PHRASES,
    max_boxes: int = MAX_BOXES,
) -> BoxAnswer:
    """Read the boxes of an answer (already cut out by :func:`extract_answer`).

    Accepts ``[{"bbox_2d": [...], "label": ...}]`` (Qwen2.5-VL), ``[{"Position": [...],
    "Confidence": c}]`` (Visual-RFT), bare ``[[x1, y1, x2, y2], ...]``, ``(x1,y1),(x2,y2)``
    (Qwen2-VL), as JSON or Python literals, optionally inside a code fence.
    """
    answer = read_boxes(answer, none_phrases, max_boxes)
    return answer.with_boxes(answer.boxes, well_formed(answer.boxes))


def parse_list(answer: str | None) -> list[str]:
    """A list of short strings (tags) from a JSON/Python list or a comma/semicolon/line list."""
    if not isinstance(answer, str) or not answer.strip():
        return []
    body = strip_code_fence(answer).strip()
    value = _structured(body) if body[:1] in "[(" else None
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    else:
        parts = re.split(r"[,;\n]", body)
    return [p for p in (normalize_text(p) for p in parts) if p]
