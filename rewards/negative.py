"""``negative_sample``: does the model say "no such object" exactly when there is none?"""

from __future__ import annotations

from typing import Any, Sequence

from rewards.contract import BOX_TASKS
from rewards.inputs import box_cases
from rewards.parsing import NONE_PHRASES, BoxAnswer
from rewards.registry import register


def score_negative_sample(answer: BoxAnswer, n_gt: int, positive_reward: float | None = None) -> float | None:
    """Binary: on a negative (``n_gt == 0``) 1 for a "no object" answer, 0 for any box or other
    answer; on a positive 0 for a wrong "no object", else ``positive_reward`` (None: not applicable)."""
    if n_gt == 0:
        return 1.0 if answer.says_none and answer.n_pred == 0 else 0.0
    return 0.0 if answer.says_none else positive_reward


@register("negative_sample")
def negative_sample(
    completions: list,
    *,
    positive_reward: float | None = None,
    none_phrases: Sequence[str] = NONE_PHRASES,
    tasks: Sequence[str] = BOX_TASKS,
    **columns: Any,
) -> list[float | None]:
    """Negative-sample reward; set ``positive_reward: 1.0`` to also reward answers on positives."""

    return [
        None if c is None else score_negative_sample(c.answer, len(c.gt_boxes), positive_reward)
        for c in box_cases(completions, columns, tasks, none_phrases)
    ]
