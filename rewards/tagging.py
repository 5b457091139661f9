"""``tagging_f1``: F1 between the predicted and the true tag sets (multi-label, RAM-style)."""

from __future__ import annotations

from typing import Any, Sequence

from rewards.inputs import Sample, score_each
from rewards.parsing import extract_answer, normalize_text, parse_list
from rewards.registry import register


def score_tagging(answer: str | None, true_tags: Sequence[str]) -> float:
    """F1 of the answer's tag set against ``true_tags`` (normalised); both empty scores 1."""
    predicted = set(parse_list(answer))
    truth = {t for t in (normalize_text(x) for x in true_tags) if t}
    if not predicted and not truth:
        return 1.0 if answer is not None else 0.0
    hits = len(predicted & truth)
    return 2.0 * hits / (len(predicted) + len(truth))


@register("tagging_f1")
def tagging_f1(
    completions: list,
    *,
    require_tags: bool = False,
    tasks: Sequence[str] = ("tagging",),
    **columns: Any,
) -> list[float | None]:
    """Tagging reward (see :func:`score_tagging`)."""

    def score(text: str, s: Sample) -> float:
        return score_tagging(extract_answer(text, require_tags), s.solution.get("tags") or [])

    return score_each(completions, columns, tasks, score)
