"""A short supervised warm-up before GRPO: teacher forcing on reference answers.

A model trained from scratch never writes ``<answer>…</answer>`` by chance, so GRPO would see
only zero rewards. A few supervised steps teach the format; ``format_only`` (default) shuffles the
targets among samples of the same task so the warm-up teaches nothing about the right answer.
"""

from __future__ import annotations

import random
from collections import defaultdict

from accelerate import PartialState

from rft.data.answers import reference_answer
from rft.recipe.schema import WarmupSection
from rft.train.supervised import supervised_train


def warmup_targets(rows: list[dict], format_only: bool, rng: random.Random) -> list[str]:
    """One target answer per row: its own reference answer, or (``format_only``) another row's of the same task."""
    answers = [reference_answer(r) for r in rows]
    if not format_only:
        return answers
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_task[r["task"]].append(i)
    shuffled = list(answers)
    for idx in by_task.values():
        donors = list(idx)
        rng.shuffle(donors)
        for i, j in zip(idx, donors):
            shuffled[i] = answers[j]
    return shuffled

def supervised_warmup(loaded, rows: list[dict], section: WarmupSection, seed: int, print_fn=print) -> list[float]:
    """Train ``loaded.model`` for ``section.steps`` supervised steps on ``rows``; returns the losses."""
    rng = random.Random(seed)
    targets = warmup_targets(rows, section.format_only, rng)
    model = loaded.model.to(PartialState().device)  # the trainer would move it there next anyway
    run = supervised_train(model, loaded.processor, rows, targets, section, rng, name="warm-up", print_fn=print_fn)
    return run.losses
