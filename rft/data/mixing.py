"""The order in which training prompts are seen: weighted mixing, alternating schedules, replay.

rft lays out the whole training stream in advance as batches of unique prompts (one batch =
one TRL generation batch) and gives TRL that order with ``shuffle_dataset=False``. So a
schedule such as "8 batches of detection, then 1 of classification" holds exactly, and a
resumed run sees the same order from its step on.
"""

from __future__ import annotations

import random
from typing import Iterator, Sequence

from rft.recipe.schema import DataSection


def _cycle(rows: Sequence[dict], rng: random.Random) -> Iterator[dict]:
    """Rows in a fresh shuffled order each pass."""
    if not rows:
        raise ValueError("cannot draw from an empty dataset")
    while True:
        order = list(rows)
        rng.shuffle(order)
        yield from order


def batch_sources(data: DataSection, n_batches: int, rng: random.Random) -> list[str]:
    """The dataset each batch comes from (for a schedule) or ``"mix"`` (for weighted mixing)."""
    if data.schedule == "mix":
        return ["mix"] * n_batches
    pattern = [step.dataset for step in data.schedule for _ in range(step.batches)]
    return [pattern[i % len(pattern)] for i in range(n_batches)]


def order_rows(
    rows_by_dataset: dict[str, list[dict]], data: DataSection, prompts_per_batch: int, n_batches: int, seed: int
) -> list[dict]:
    """``n_batches * prompts_per_batch`` rows in training order.

    ``mix`` draws each prompt from a dataset chosen by ``weight``; a schedule fills whole batches
    from one dataset. With ``replay``, a ``ratio`` share of every batch comes from the replay set
    (rounded per batch so the long-run share is exact).
    """
    rng = random.Random(seed)
    replay = data.replay.dataset if data.replay else None
    streams = {name: _cycle(rows, random.Random(f"{seed}:{name}")) for name, rows in rows_by_dataset.items()}
    mixable = [d for d in data.datasets if d.name != replay]
    names, weights = [d.name for d in mixable], [d.weight for d in mixable]
    ordered: list[dict] = []
    replay_due = 0.0
    for source in batch_sources(data, n_batches, rng):
        n_replay = 0
        if replay:
            replay_due += data.replay.ratio * prompts_per_batch
            n_replay = min(int(replay_due), prompts_per_batch)
            replay_due -= n_replay
        batch = [next(streams[replay]) for _ in range(n_replay)]
        for _ in range(prompts_per_batch - n_replay):
            name = rng.choices(names, weights)[0] if source == "mix" else source
            batch.append(next(streams[name]))
        rng.shuffle(batch)
        ordered.extend(batch)
    return ordered
