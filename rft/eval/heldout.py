"""Held-out evaluation during training: greedy answers scored by the run's own rewards."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager

from transformers import TrainerCallback

from rft.eval.generate import generate_answers, mean_reward
from rft.processes import shared_map


def format_scores(scores: dict[str, float]) -> str:
    """``eval/classification_accuracy: 0.5`` -> ``classification_accuracy 0.500`` (one line)."""
    return "  ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in scores.items())


class HeldOut:
    """Scores a model on held-out TRL rows with each reward; returns ``{"eval/<reward>": mean}``."""

    def __init__(self, rows: list[dict], reward_funcs: list, processor, banned_ids: list[int],
                 max_new_tokens: int, batch_size: int):
        self.rows, self.reward_funcs, self.processor = rows, reward_funcs, processor
        self.banned_ids, self.max_new_tokens, self.batch_size = banned_ids, max_new_tokens, batch_size
        self.unwrap: Callable[[Any], ContextManager] = contextlib.nullcontext
        """Gives the model to generate with, e.g. with a ZeRO-3 model's parameters gathered for the
        whole generation (TRL's ``unwrap_model_for_generation``), not once per token."""

    def __call__(self, model) -> dict[str, float]:
        answers = self.answers(model)
        scores = {f"eval/{fn.__name__}": mean_reward(fn, self.rows, answers) for fn in self.reward_funcs}
        return {k: v for k, v in scores.items() if not math.isnan(v)}

    def answers(self, model) -> list[str]:
        """Greedy answers for all rows, shared out among the processes (:func:`rft.processes.shared_map`)."""
        with self.unwrap(model) as unwrapped:
            return shared_map(lambda rows: generate_answers(unwrapped, self.processor, rows, self.banned_ids,
                                                            self.max_new_tokens, self.batch_size), self.rows)


class HeldOutCallback(TrainerCallback):
    """Runs :class:`HeldOut` every ``every_steps`` steps (not at the last: the run ends with one).

    Scores go out through ``log_metric``, TRL's hook for extra scalars: TRL reports them with the
    next step's metrics to every logger (TensorBoard included). Every process answers its share of
    the rows (ZeRO-3's sharded forward passes need all of them) and scores all the answers.
    """

    def __init__(self, heldout: HeldOut, every_steps: int, log_metric, print_fn=print):
        self.heldout, self.every_steps, self.log_metric, self.print = heldout, every_steps, log_metric, print_fn

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_steps or state.global_step >= state.max_steps:
            return
        scores = self.heldout(model)
        for name, value in scores.items():
            self.log_metric(name, value)
        if state.is_world_process_zero:
            self.print(f"held-out at step {state.global_step}: {format_scores(scores)}", flush=True)
