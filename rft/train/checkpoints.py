"""Checkpoints: written whole or not at all, finding the one to resume from, and saving one when the
run is told to stop.

:class:`AtomicCheckpoints` reaches into the Trainer's private checkpoint saving (``Trainer._save_checkpoint``
/ ``_get_output_dir``), declared and checked in :mod:`rft.compat.transformers` (:func:`check_trainer_internals`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path

import torch
from transformers import TrainerCallback

from rft.compat.transformers import check_trainer_internals, rotate_checkpoints
from rft.errors import RecipeError
from rft.processes import summed_over_processes

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

INCOMPLETE = ".incomplete"
"""The folder of ``output.dir`` where a checkpoint is written before it is renamed into place."""

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
                "adapter_model.safetensors", "adapter_model.bin")


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete checkpoint (a run killed while saving, by a version of rft that did not
    save atomically, or a damaged copy), or None: its trainer state, JSON files, weights and safetensors headers."""
    from safetensors import safe_open

    path = Path(path)
    if not (path / "trainer_state.json").is_file():
        return "no trainer_state.json"
    for file in sorted(path.glob("*.json")):
        try:
            json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError):
            return f"{file.name} is {'empty' if file.stat().st_size == 0 else 'not valid JSON'}"
    if not any((path / name).exists() for name in WEIGHT_FILES) and not any(path.glob("global_step*")):
        return "no model weights"
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(file, "pt"):
                pass
        except Exception as exc:  # safetensors raises its own error types
            return f"{file.name} is damaged ({exc})"
    return None


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete ``checkpoint-N`` folder with the highest N, or None; incomplete ones are skipped with a warning."""
    found = sorted(((int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*")
                    if (m := _CHECKPOINT.match(p.name)) and p.is_dir()), reverse=True)
    for _, path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning("skipping %s: an incomplete checkpoint (%s; a run stopped while saving it, or a damaged copy)", path, problem)
    return None


def resolve_resume(resume: str | None, output_dir: str | Path) -> str | None:
    """``--resume``: None, ``latest`` (the newest complete checkpoint in the output dir) or a checkpoint folder."""
    if resume is None:
        return None
    path = latest_checkpoint(output_dir) if resume == "latest" else Path(resume)
    if path is None or not path.is_dir():
        where = f"no complete checkpoint-N folder in {output_dir}" if resume == "latest" else f"{resume} is not a folder"
        raise RecipeError(f"--resume {resume}: {where}")
    problem = checkpoint_problem(path)
    if problem:
        raise RecipeError(f"--resume {resume}: {path} is not a complete checkpoint ({problem})")
    return str(path)


def publish(staging: Path, final: Path) -> None:
    """Make the complete checkpoint ``staging`` visible as ``final`` with one rename (replacing an older one)."""
    if final.exists():  # an earlier run's checkpoint of the same step (resumed from before it): replace it
        old = staging.with_name(staging.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)
    os.utime(final)  # the Trainer rotates checkpoints by modification time


class AtomicCheckpoints:
    """Trainer mixin: a checkpoint (weights, optimizer, RNG states, trainer state, DeepSpeed's
    ``global_stepN`` shards, anything else the Trainer or a subclass writes into it) is written under
    ``output_dir/.incomplete/checkpoint-N`` and renamed to ``output_dir/checkpoint-N`` only when every
    process has finished writing: a run killed while saving leaves no ``checkpoint-N`` behind, only the
    staging folder (cleared by the next save of that step). ``save_total_limit`` rotation happens after
    the rename. The run's ``recipe.yaml`` goes into each checkpoint."""

    _staging_checkpoint = False

    def __init__(self, *args, **kwargs):
        check_trainer_internals()
        super().__init__(*args, **kwargs)

    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, INCOMPLETE) if self._staging_checkpoint else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        staging, final = run_dir / INCOMPLETE / name, run_dir / name
        if self.args.should_save and staging.exists():
            shutil.rmtree(staging)  # left by a run killed while saving this step
        self.accelerator.wait_for_everyone()
        self._staging_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_checkpoint = False
        self.accelerator.wait_for_everyone()  # every process's files (ZeRO shards, RNG states) are written
        if self.args.should_save:
            if (run_dir / "recipe.yaml").is_file():
                shutil.copyfile(run_dir / "recipe.yaml", staging / "recipe.yaml")
            publish(staging, final)
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staging.parent:
                self.state.best_model_checkpoint = str(run_dir / Path(best).name)
            rotate_checkpoints(str(run_dir), self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()


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
    """On SIGTERM or SIGINT (preemption, Ctrl-C), finish the current step, save a checkpoint and stop;
    ``stopped_by`` then says why (on every process, whichever got the signal), and the run ends with
    :data:`rft.errors.EXIT_INTERRUPTED` and no ``final/`` (:func:`rft.train.run.train`)."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.signals, self.received, self.previous = signals, None, {}
        self.stopped_by: str | None = None

    def _handle(self, signum, frame):
        self.received = signum

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop as if ``signum`` had arrived (a reward plugin that raised ``KeyboardInterrupt``)."""
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
            self.stopped_by = signal.Signals(self.received).name
            print(f"received {self.stopped_by}: saving a checkpoint at step {state.global_step} and stopping", flush=True)
        else:
            self.stopped_by = "a stop signal to another process"
            if state.is_world_process_zero:
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
