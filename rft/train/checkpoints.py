"""Checkpoints: finding the one to resume from, and saving one when the run is told to stop."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import torch
from transformers import TrainerCallback

from rft.errors import RecipeError
from rft.processes import summed_over_processes

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-N`` folder with the highest N, or None."""
    found = [(int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*") if (m := _CHECKPOINT.match(p.name))]
    return max(found)[1] if found else None


def resolve_resume(resume: str | None, output_dir: str | Path) -> str | None:
    """``--resume``: None, ``latest`` (the newest checkpoint in the output dir) or a checkpoint folder."""
    if resume is None:
        return None
    path = latest_checkpoint(output_dir) if resume == "latest" else Path(resume)
    if path is None or not path.is_dir():
        where = f"no checkpoint-N folder in {output_dir}" if resume == "latest" else f"{resume} is not a folder"
        raise RecipeError(f"--resume {resume}: {where}")
    return str(path)


def process_count_note(checkpoint: str | Path, processes: int) -> str | None:
    """A warning when a checkpoint is resumed on another number of processes than wrote it (the Trainer
    saves one RNG state per process), else None."""
    wrote = len(list(Path(checkpoint).glob("rng_state_*.pth"))) or 1
    if wrote == processes:
        return None
    return (f"resuming {checkpoint}, written by {wrote} process{'es' if wrote > 1 else ''}, on {processes}: from here on "
            "the batches are made and sampled differently than the interrupted run's would have been "
            "(prompts per batch and random states are per process); the run goes on, but does not repeat it")


class CheckpointOnSignal(TrainerCallback):
    """On SIGTERM or SIGINT (preemption, Ctrl-C), finish the current step, save a checkpoint and stop."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.signals, self.received, self.previous = signals, None, {}

    def _handle(self, signum, frame):
        self.received = signum

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in self.signals:
            self.previous[sig] = signal.signal(sig, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        # The signal reaches processes at different moments: all of them stop at the first step end at
        # which any has it, and save the same checkpoint together.
        (received_anywhere,) = summed_over_processes(int(self.received is not None))
        if not received_anywhere:
            return
        if self.received is not None:
            print(f"received {signal.Signals(self.received).name}: saving a checkpoint at step {state.global_step} "
                  "and stopping", flush=True)
        elif state.is_world_process_zero:
            print(f"another process received a stop signal: saving a checkpoint at step {state.global_step} "
                  "and stopping", flush=True)
        control.should_save = True
        control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class SkipNonFiniteSteps(TrainerCallback):
    """A step whose gradients hold NaN or inf is skipped (gradients dropped before the optimizer) and
    logged; after ``max_skips`` such steps the run saves a checkpoint and stops (``stopped`` is set).

    Under DeepSpeed ZeRO the gradients are DeepSpeed's and its step has run inside the backward pass:
    ZeRO itself skips a step whose gradient norm is not finite (all processes together), and such a step
    is counted here from the optimizer's ``step_was_skipped`` (except with fp16 loss scaling, whose
    overflow skips while the scale settles are routine)."""

    def __init__(self, max_skips: int, print_fn=print):
        self.max_skips, self.print = max_skips, print_fn
        self.skipped: list[int] = []
        self.stopped = False

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        params = [p for p in model.parameters() if p.grad is not None]
        # The norm of all gradients is finite exactly when every entry is: one fused pass and one
        # device sync (a check per tensor synchronised once per parameter, ~800 times a step on a 3B VLM).
        if not params or torch.isfinite(torch.nn.utils.get_total_norm([p.grad for p in params])):
            return
        for p in params:
            p.grad = None  # the optimizer leaves parameters without gradients untouched
        self._skip(state.global_step + 1)

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if not args.fp16 and getattr(optimizer, "step_was_skipped", False):  # DeepSpeed skipped it
            self._skip(state.global_step + 1)

    def _skip(self, step: int) -> None:
        self.skipped.append(step)
        self.print(f"step {step}: non-finite loss or gradient, step skipped "
                   f"({len(self.skipped)} of at most {self.max_skips})", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if len(self.skipped) > self.max_skips and not self.stopped:
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
