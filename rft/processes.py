"""Several processes (``torchrun`` / ``accelerate launch``): this process's state, work shared out
among the processes, and decisions they must take together (stop, save) from counts summed over them."""

from __future__ import annotations

import math
import os
from typing import Callable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def process_state(deepspeed: bool = False):
    """accelerate's ``PartialState`` of this process. Without CUDA, several processes talk over gloo
    (as ``TrainingArguments(use_cpu=True)`` expects) and each uses the device "cpu" (accelerate's
    "cpu:RANK" is what the Trainer hands ``torch.load`` as map_location when resuming, and it fails).
    ``deepspeed`` (the first call decides): without CUDA, DeepSpeed's CPU accelerator over gloo."""
    import torch
    from accelerate import PartialState

    from rft.compat.accelerate import state_exists

    if not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")
        if deepspeed and not state_exists():
            from rft.zero import cpu_deepspeed_state

            return cpu_deepspeed_state()
    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    """How many processes are in this run's process group (1 without one)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def leave_process_group() -> None:
    """At the end of a process among several: leave the group together (gloo's threads can otherwise
    outlive the interpreter: "terminate called without an active exception")."""
    import torch.distributed as dist

    if world_size() > 1:
        dist.barrier()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(items: list[T], rank: int, world: int) -> list[T]:
    """Process ``rank``'s consecutive share of ``items``, all shares of one length: the last are padded
    with copies of the first item, so that every process does the same number of batches (ZeRO-3's
    gathered forward passes need all of them). Shares in rank order, cut to ``len(items)``, are ``items``."""
    size = math.ceil(len(items) / world)
    mine = items[rank * size:(rank + 1) * size]
    return mine + items[:1] * (size - len(mine))


def shared_map(fn: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
    """``fn(items)``, with each process doing ``fn`` on its :func:`share` and every process getting all
    the results back, in order (one process: ``fn(items)``). Every process must call it (a collective)."""
    import torch.distributed as dist

    world = world_size()
    if world == 1:
        return fn(items)
    results = fn(share(items, dist.get_rank(), world))
    gathered: list[list[R]] = [[] for _ in range(world)]
    dist.all_gather_object(gathered, results)
    return [r for part in gathered for r in part][:len(items)]


def summed_over_processes(*counts: int) -> list[int]:
    """``counts`` summed over the processes (as they are with one process). Every process must call it
    at the same point (a collective): decisions to stop a run are taken on the totals, by all processes
    at the same step; taken by one process alone, it leaves and the others die on the lost peer with an
    unrelated error (or wait for it)."""
    import torch
    import torch.distributed as dist

    if world_size() == 1:
        return list(counts)
    total = torch.tensor(counts, dtype=torch.int64, device=process_state().device)
    dist.all_reduce(total)
    return [int(c) for c in total.tolist()]
