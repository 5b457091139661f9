"""Supervised training on target answers: the one loop behind ``rft train``'s warm-up and ``rft sft``.

Teacher forcing on prompt + target (loss on the target's tokens only), AdamW, a transformers
learning-rate schedule (``constant``, ``cosine``, ``linear``, with linear warm-up), gradient
clipping, bf16 autocast on GPUs for float32 weights, batches drawn by a seeded ``random.Random``
(the same seed and rows give the same run), a progress line every ``log_every`` steps and, every
``eval_every`` steps, a held-out evaluation whose scores join the history.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from rft.data.build import trl_images
from rft.data.images import open_image
from rft.recipe.schema import SupervisedSection


CUBLAS_WORKSPACE = ":4096:8"
"""What cuBLAS needs to repeat its sums bit for bit (PyTorch's reproducibility notes)."""


def make_deterministic() -> None:
    """Ask PyTorch for deterministic kernels (warning, not failing, where an op has none).

    Call before CUDA is first used: cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it starts. On GPUs
    attention runs PyTorch's math kernel during training (:func:`deterministic_kernels`): the fused
    ones add their backward sums with atomics, in no fixed order.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def deterministic_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """On a GPU under :func:`make_deterministic`: scaled-dot-product attention by the math kernel."""
    if device.type != "cuda" or not torch.are_deterministic_algorithms_enabled():
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def batch_inputs(processor, rows: list[dict], targets: list[str]) -> dict[str, torch.Tensor]:
    """Processor inputs for prompt + target, with labels only on the target's tokens (and the end token)."""
    tokenizer = processor.tokenizer
    end = tokenizer.eos_token or ""
    prompts = [processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in rows]
    texts = [p + t + end for p, t in zip(prompts, targets)]
    images = [[open_image(path) for path in trl_images(r)] for r in rows]
    inputs = processor(text=texts, images=images, padding=True, padding_side="right", return_tensors="pt")
    labels = torch.full_like(inputs["input_ids"], -100)
    lengths = inputs["attention_mask"].sum(dim=1)
    for i, target in enumerate(targets):
        n = len(tokenizer(target + end, add_special_tokens=False)["input_ids"])
        stop = int(lengths[i])
        labels[i, stop - n: stop] = inputs["input_ids"][i, stop - n: stop]
    inputs["labels"] = labels
    return inputs


class _Batches(torch.utils.data.Dataset):
    """Processor inputs of pre-drawn batches (row indices), built by DataLoader workers ahead of the step."""

    def __init__(self, processor, rows: list[dict], targets: list[str], batches: list[list[int]]):
        self.processor, self.rows, self.targets, self.batches = processor, rows, targets, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        batch = self.batches[index]
        return dict(batch_inputs(self.processor, [self.rows[i] for i in batch], [self.targets[i] for i in batch]))


@dataclass
class SupervisedRun:
    """What a supervised run did: ``history`` holds one entry per logged step (``step``, ``loss``,
    ``learning_rate``, ``seconds``) and one per held-out evaluation (``step`` and its ``eval/*`` scores)."""

    steps: int
    train_seconds: float
    eval_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    stopped_by_time: bool = False


def _autocast(device: torch.device, model_dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast for float32 weights on a GPU (full precision on the CPU: CI's numbers)."""
    if device.type == "cuda" and model_dtype == torch.float32:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def supervised_train(
    model,
    processor,
    rows: list[dict],
    targets: list[str],
    settings: SupervisedSection,
    rng: random.Random,
    *,
    evaluate: Callable[[object], dict[str, float]] | None = None,
    eval_every: int | None = None,
    max_seconds: float | None = None,
    log_every: int = 10,
    num_workers: int = 0,
    name: str = "sft",
    print_fn=print,
) -> SupervisedRun:
    """Train ``model`` (already on its device) on ``targets`` for ``rows`` as ``settings`` says.

    Each step draws ``settings.batch_size`` distinct rows with ``rng`` (all steps' draws are made
    first; ``num_workers`` DataLoader processes then build the inputs ahead of the steps, which keeps
    a GPU busy while the CPU opens images and tokenizes; the draws, and so the run, are the same for
    any number of workers). ``evaluate(model)`` runs
    every ``eval_every`` steps (not after the last: the caller evaluates the final model) and its
    time is not counted in ``train_seconds``. With ``max_seconds`` the run stops after the first step
    past that much training time. The model is left in eval mode.
    """
    if len(rows) != len(targets) or not rows:
        raise ValueError(f"need one target per row and at least one row (got {len(rows)} rows, {len(targets)} targets)")
    from transformers import get_scheduler

    from rft.eval.heldout import format_scores

    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup = math.ceil(settings.warmup_ratio * settings.steps)
    scheduler = get_scheduler(settings.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=settings.steps)
    run = SupervisedRun(steps=0, train_seconds=0.0)
    order = list(range(len(rows)))
    batches = [rng.sample(order, min(settings.batch_size, len(order))) for _ in range(settings.steps)]
    loader = torch.utils.data.DataLoader(_Batches(processor, rows, targets, batches), batch_size=None, num_workers=num_workers,
                                         pin_memory=device.type == "cuda", prefetch_factor=4 if num_workers else None)
    model.train()
    start = time.monotonic()
    for step, inputs in enumerate(loader, start=1):
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        with deterministic_kernels(device):
            with _autocast(device, params[0].dtype):
                loss = model(**inputs).loss
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run.losses.append(float(loss.detach()))
        run.steps = step
        run.train_seconds = time.monotonic() - start - run.eval_seconds
        out_of_time = max_seconds is not None and run.train_seconds >= max_seconds
        last = step == settings.steps or out_of_time
        if step % log_every == 0 or step == 1 or last:
            run.history.append({"step": step, "loss": run.losses[-1], "learning_rate": lr, "seconds": run.train_seconds})
            print_fn(f"{name} {step:>5}/{settings.steps}  loss {run.losses[-1]:.4f}  lr {lr:.2e}  "
                     f"{run.train_seconds:.0f}s", flush=True)
        if out_of_time and step < settings.steps:
            run.stopped_by_time = True
            print_fn(f"{name}: stopped after {step} steps: training time reached max_seconds ({max_seconds:g} s)", flush=True)
            break
        if evaluate is not None and eval_every and step % eval_every == 0 and not last:
            eval_start = time.monotonic()
            scores = evaluate(model)
            model.train()
            run.eval_seconds += time.monotonic() - eval_start
            run.history.append({"step": step, "seconds": run.train_seconds, **scores})
            print_fn(f"{name} held-out at step {step}: {format_scores(scores)}", flush=True)
    model.eval()
    return run
