"""``format``: does the completion follow the answer template (and, for boxes, parse)?"""

from __future__ import annotations

import re
from typing import Any, Sequence

from rewards.contract import BOX_TASKS, TASKS
from rewards.inputs import Sample, score_each
from rewards.parsing import NONE_PHRASES, extract_answer, parse_boxes
from rewards.registry import register

TEMPLATES: dict[str, str] = {
    "think_answer": r"\s*<think>(?:(?!</?think>|</?answer>).)*</think>\s*<answer>(?:(?!</?answer>|</?think>).)*</answer>\s*",
    "answer": r"\s*<answer>(?:(?!</?answer>).)*</answer>\s*",
}
"""Named templates; any other string is used as a regular expression (full match, DOTALL)."""


def template_regex(template: str) -> re.Pattern[str]:
    """The compiled full-match pattern of a named template or a custom regular expression."""
    return re.compile(TEMPLATES.get(template, template), re.S)


def score_format(
    text: str, task: str | None, pattern: re.Pattern[str], check_answer: bool = True,
    none_phrases: Sequence[str] = NONE_PHRASES,
) -> float:
    """1 when ``text`` fully matches ``pattern`` and, with ``check_answer``, the answer is usable:
    a box list or "no object" answer that parses whole for box tasks, non-empty otherwise."""
    if pattern.fullmatch(text) is None:
        return 0.0
    if not check_answer:
        return 1.0
    answer = extract_answer(text)
    if task in BOX_TASKS:
        boxes = parse_boxes(answer, tuple(none_phrases))
        return 1.0 if boxes.strict and boxes.n_invalid == 0 else 0.0
    return 1.0 if answer else 0.0


@register("format")
def format_reward(
    completions: list,
    *,
    template: str = "think_answer",
    check_answer: bool = True,
    none_phrases: Sequence[str] = NONE_PHRASES,
    tasks: Sequence[str] = TASKS,
    **columns: Any,
) -> list[float | None]:
    """Format reward: ``template`` is ``think_answer``, ``answer`` or a regular expression."""
    pattern = template_regex(template)

    def score(text: str, s: Sample) -> float:
        return score_format(text, s.task, pattern, check_answer, none_phrases)

    return score_each(completions, columns, tasks, score)
