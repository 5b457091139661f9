"""Held-out evaluation during training: greedy answers scored by the run's own rewards and, for
detection and grounding rows, by :mod:`rft.eval.metrics` (COCO mAP, negatives, parse failures)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, ContextManager

from transformers import TrainerCallback

from rewards.contract import BOX_TASKS, VISUAL_PROMPT_DETECTION
from rft.eval import metrics
from rft.eval.generate import generate_answers, mean_reward, scored_samples
from rft.processes import shared_map


def format_scores(scores: dict[str, float]) -> str:
    """``eval/classification_accuracy: 0.5`` -> ``classification_accuracy 0.500`` (one line)."""
    return "  ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in scores.items())


def box_metric_scores(rows: list[dict], answers: list[str], protocol: metrics.Protocol = "full") -> dict[str, float]:
    """Scores of the detection and grounding rows' answers, as rft eval reports them:
    ``eval/mAP``, ``eval/AP50`` (pycocotools; text-prompt detection, and ``eval/visual_prompt_mAP``,
    ``eval/visual_prompt_AP50`` when there are visual-prompt rows), ``eval/negatives_correct``, ``eval/false_positive_rate``
    (on rows without a ground-truth box), ``eval/grounding_acc50`` and ``eval/parse_failures`` (share
    of answers with no answer block or one that did not parse). Empty without such rows."""
    samples = [s for s in scored_samples(rows, answers) if s["task"] in BOX_TASKS]
    if not samples:
        return {}
    report = metrics.evaluate(samples, protocol=protocol)
    failures = report["parse_failures"]
    scores = {
        "eval/mAP": report.get("detection", {}).get("mAP", math.nan),
        "eval/AP50": report.get("detection", {}).get("AP50", math.nan),
        "eval/negatives_correct": report["negatives"]["negative_accuracy"],
        "eval/false_positive_rate": report["negatives"]["false_positive_rate"],
        "eval/grounding_acc50": report.get("grounding", {}).get("acc@0.5", math.nan),
        "eval/parse_failures": (failures["no_answer"] + failures["unparsed"]) / failures["n"],
    }
    if VISUAL_PROMPT_DETECTION in report:
        scores["eval/visual_prompt_mAP"] = report[VISUAL_PROMPT_DETECTION]["mAP"]
        scores["eval/visual_prompt_AP50"] = report[VISUAL_PROMPT_DETECTION]["AP50"]
    return scores


class HeldOut:
    """Scores a model on held-out TRL rows with each reward (``{"eval/<reward>": mean}``) and, for
    detection and grounding rows, with :func:`box_metric_scores`."""

    def __init__(self, rows: list[dict], reward_funcs: list, processor, banned_ids: list[int],
                 max_new_tokens: int, batch_size: int, protocol: metrics.Protocol = "full"):
        self.rows, self.reward_funcs, self.processor = rows, reward_funcs, processor
        self.banned_ids, self.max_new_tokens, self.batch_size = banned_ids, max_new_tokens, batch_size
        self.unwrap: Callable[[Any], ContextManager] = contextlib.nullcontext
        """Gives the model to generate with, e.g. with a ZeRO-3 model's parameters gathered for the
        whole generation (TRL's ``unwrap_model_for_generation``), not once per token."""
        self.protocol = protocol

    def __call__(self, model) -> dict[str, float]:
        answers = self.answers(model)
        scores = {f"eval/{fn.__name__}": mean_reward(fn, self.rows, answers) for fn in self.reward_funcs}
        scores |= box_metric_scores(self.rows, answers, self.protocol)
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
        self.seconds = 0.0
        """Time spent evaluating (part of TRL's ``train_runtime``)."""
        self.history: list[dict] = []
        """``{"step", **scores}`` per evaluation, at the step it followed (TRL logs them with the next step)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_steps or state.global_step >= state.max_steps:
            return
        start = time.monotonic()
        scores = self.heldout(model)
        self.seconds += time.monotonic() - start
        self.history.append({"step": state.global_step, **scores})
        for name, value in scores.items():
            self.log_metric(name, value)
        if state.is_world_process_zero:
            self.print(f"held-out at step {state.global_step}: {format_scores(scores)}", flush=True)
