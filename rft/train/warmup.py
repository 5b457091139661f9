"""A short supervised warm-up before GRPO: teacher forcing on reference answers.

A model trained from scratch never writes ``<answer>…</answer>`` by chance, so GRPO would see
only zero rewards. A few supervised steps teach the format; ``format_only`` (default) shuffles the
targets among samples of the same task so the warm-up teaches nothing about the right answer.
The steps are :func:`rft.train.supervised.supervised_train`'s; under ZeRO-2/3 the same steps run
through DeepSpeed, each process on its share of every batch.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from pathlib import Path

import torch
from accelerate import PartialState

from rft.data.answers import reference_answer
from rft.processes import share, world_size
from rft.recipe.schema import DistributedSection, WarmupSection
from rft.train.supervised import batch_inputs, supervised_train
from rft.zero import gathered


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


def supervised_warmup(loaded, rows: list[dict], section: WarmupSection, seed: int, print_fn=print,
                      distributed: DistributedSection | None = None, save_to: Path | None = None) -> list[float]:
    """Train ``loaded.model`` for ``section.steps`` supervised steps on ``rows``, save it (and the processor)
    to ``save_to`` (the first process of each machine writes); returns the losses.

    With ``distributed.zero_stage`` 2/3 it trains under DeepSpeed with the recipe's ZeRO config, each
    process on its share of every batch, the loss a mean over the whole batch's answer tokens (the same
    steps as one process takes); the model is then left to that engine: load the saved weights anew."""
    rng = random.Random(seed)
    targets = warmup_targets(rows, section.format_only, rng)
    model = loaded.model.to(PartialState().device)  # the trainer would move it there next anyway
    if distributed is not None and distributed.zero_stage:
        losses = _zero_warmup(model, loaded.processor, rows, targets, section, rng, distributed, print_fn)
    else:
        run = supervised_train(model, loaded.processor, rows, targets, section, rng, name="warm-up", print_fn=print_fn)
        losses = run.losses
    if save_to is not None:
        state = PartialState()
        with gathered(model), state.local_main_process_first():  # ZeRO-3: every process gathers, one writes
            if state.is_local_main_process:
                model.save_pretrained(save_to)
                loaded.processor.save_pretrained(save_to)
    return losses


def _zero_warmup(model, processor, rows: list[dict], targets: list[str], section: WarmupSection, rng: random.Random,
                 distributed: DistributedSection, print_fn) -> list[float]:
    """The warm-up's steps under DeepSpeed (the batches drawn as :func:`supervised_train` draws them)."""
    from transformers import get_scheduler

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=section.learning_rate, weight_decay=section.weight_decay)
    world, rank = world_size(), PartialState().process_index
    engine = zero_engine(model, optimizer, distributed, math.ceil(min(section.batch_size, len(rows)) / world),
                         section.max_grad_norm)
    # the schedule sets the learning rates of the torch optimizer DeepSpeed's ZeRO optimizer steps with
    base = getattr(engine.optimizer, "optimizer", engine.optimizer)
    scheduler = get_scheduler(section.lr_scheduler, base, num_warmup_steps=math.ceil(section.warmup_ratio * section.steps),
                              num_training_steps=section.steps)
    losses, start = [], time.monotonic()
    order = list(range(len(rows)))
    for step in range(section.steps):
        batch = rng.sample(order, min(section.batch_size, len(order)))
        losses.append(sharded_step(engine, processor, rows, targets, batch, rank, world))
        scheduler.step()
        if step % 10 == 0 or step == section.steps - 1:
            print_fn(f"warm-up {step + 1:>4}/{section.steps}  loss {losses[-1]:.3f}  {time.monotonic() - start:.0f}s", flush=True)
    model.eval()
    engine.destroy()
    return losses


def zero_engine(model, optimizer, distributed: DistributedSection, micro_batch: int, max_grad_norm: float = 1.0):
    """A DeepSpeed engine for ``model`` with the recipe's ZeRO config (gradients clipped as without it)."""
    import deepspeed

    from rft.zero import deepspeed_config

    hidden = getattr(model.config.get_text_config(), "hidden_size", 1024)
    config = deepspeed_config(distributed.zero_stage, distributed.offload, micro_batch=micro_batch, world_size=world_size(),
                              hidden_size=hidden, dtype=model.dtype, max_grad_norm=max_grad_norm)
    if distributed.offload:  # DeepSpeed's CPU Adam for offloaded optimizer states, as accelerate gives the Trainer
        from accelerate.utils.deepspeed import map_pytorch_optim_to_deepspeed

        optimizer = map_pytorch_optim_to_deepspeed(optimizer)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def sharded_step(engine, processor, rows: list[dict], targets: list[str], batch: list[int], rank: int, world: int) -> float:
    """One step of the warm-up under DeepSpeed: this process trains on its share of ``batch`` (the last shares
    padded with a row whose answer is not scored, so every process runs the model), with its summed token
    loss divided by the batch's token count over all processes; DeepSpeed averages the gradients over the
    processes, so the step is the mean-loss step on the whole batch. Returns that mean loss."""
    import torch.distributed as dist

    mine = share(batch, rank, world)
    padding = len(mine) - len(batch[rank * len(mine):(rank + 1) * len(mine)])
    inputs = batch_inputs(processor, [rows[i] for i in mine], [targets[i] for i in mine])
    if padding:
        inputs["labels"][-padding:] = -100
    inputs = {k: v.to(engine.device) for k, v in inputs.items()}
    tokens = (inputs["labels"][:, 1:] != -100).sum().float()
    dist.all_reduce(tokens)
    loss = engine(**inputs, num_items_in_batch=tokens / world).loss
    engine.backward(loss)
    engine.step()
    total = loss.detach().clone()
    dist.all_reduce(total)
    return float(total) / world
