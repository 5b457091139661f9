"""``classification_accuracy``: is the answer the class, and only the class?"""

from __future__ import annotations

import re
from typing import Any, Sequence

from rewards.inputs import Sample, score_each
from rewards.parsing import extract_answer, normalize_text
from rewards.registry import register


def class_names(solution: dict) -> set[str]:
    """The normalised label and synonyms of a classification ground truth."""
    names = [solution.get("label", ""), *(solution.get("synonyms") or [])]
    return {n for n in (normalize_text(x) for x in names if x is not None) if n}


def _mentions(answer: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", answer) is not None


def score_classification(answer: str | None, solution: dict, classes: Sequence[str] | None = None) -> float:
    """1 when the normalised answer is the label or a synonym, else 0.

    With ``classes`` (every class name of the task), a sentence that mentions exactly one class,
    the right one, also counts ("It is a daisy."); naming two or more ("daisy or rose") is a hedge
    and scores 0. Only the answer counts, never the reasoning; an empty answer scores 0.
    """
    if not answer:
        return 0.0
    said = normalize_text(answer)
    truth = class_names(solution)
    if said in truth:
        return 1.0
    if not classes or not said:
        return 0.0
    mentioned = {c for c in (normalize_text(c) for c in classes) if c and _mentions(said, c)}
    mentioned |= {t for t in truth if _mentions(said, t)}
    # a mentioned name that is part of a longer mentioned name ("rose" in "desert rose") is not a second class
    distinct = {m for m in mentioned if not any(m != o and _mentions(o, m) for o in mentioned)}
    return 1.0 if distinct and distinct <= truth and len(distinct) == 1 else 0.0


@register("classification_accuracy")
def classification_accuracy(
    completions: list,
    *,
    classes: Sequence[str] | None = None,
    require_tags: bool = False,
    tasks: Sequence[str] = ("classification",),
    **columns: Any,
) -> list[float | None]:
    """Classification reward (see :func:`score_classification`)."""

    def score(text: str, s: Sample) -> float:
        return score_classification(extract_answer(text, require_tags), s.solution, classes)

    return score_each(completions, columns, tasks, score)
