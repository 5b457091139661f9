"""Decisions that all training processes must take together (stop, save), from counts summed over them."""

from __future__ import annotations


def summed_over_processes(*counts: int) -> list[int]:
    """``counts`` summed over the training processes (as they are with one process). Every process
    must call it at the same point (a collective): decisions to stop a run are taken on the totals,
    by all processes at the same step; taken by one process alone, it leaves and the others die on
    the lost peer with an unrelated error (or wait for it)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(counts)
    from accelerate import PartialState

    total = torch.tensor(counts, dtype=torch.int64, device=PartialState().device)
    dist.all_reduce(total)
    return [int(c) for c in total.tolist()]
