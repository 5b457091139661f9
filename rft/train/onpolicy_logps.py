"""TRL's vLLM importance-sampling ratio, computed from the training forward's log-probs.

With vLLM, TRL 1.16 runs one extra no-grad forward pass per generation batch to get the trainer's
log-probs of the sampled completions (``old_per_token_logps``) and compares them with vLLM's, to
correct for the mismatch between the two engines (the importance-sampling ratio). When the batch is
on-policy (one generation per optimizer step: ``gradient_accumulation_steps`` a multiple of
``steps_per_generation x num_iterations``), the weights do not change between that pass and the
training forward, so those log-probs are the training forward's own, detached; TRL uses exactly
that (``per_token_logps.detach()``) as ``old_per_token_logps`` when it skips the pass. rft then skips
it and computes the ratio from the training forward instead (measured on a 3B VLM: the pass was
0.72 s of a 6.2 s step, docs/performance.md). Recipe switch: ``speed.reuse_training_logprobs``.
Losses and updates are TRL's; the ``sampling/*`` metrics are TRL's too without gradient
accumulation, and with it the average of their per-micro-batch values (TRL logs them once per
generation batch, before any micro-batch's forward has run).

:func:`vllm_importance_ratio` and :func:`ratio_metrics` are TRL's formulas (``_generate_and_score_completions``).
"""

from __future__ import annotations

import math

import torch
from trl.trainer.utils import nanmax, nanmin


def on_policy(gradient_accumulation_steps: int, steps_per_generation: int, num_iterations: int) -> bool:
    """Whether every completion is trained on by the weights that sampled it (TRL's own test)."""
    return gradient_accumulation_steps % (steps_per_generation * num_iterations) == 0


def vllm_importance_ratio(old: torch.Tensor, sampling: torch.Tensor, mask: torch.Tensor, mode: str,
                          clip_min: float | None, clip_max: float | None) -> torch.Tensor:
    """TRL's importance-sampling ratio between the trainer's (``old``) and vLLM's (``sampling``) per-token
    log-probs: ``(B, T)`` for ``token_*`` modes, ``(B, 1)`` for ``sequence_*``; ``*_truncate`` clamps it to
    ``[clip_min, clip_max]``, ``*_mask`` sets it to 0 outside. Tokens vLLM could not score (NaN) count as 1."""
    diff = torch.nan_to_num((old - sampling) * mask, nan=0.0)
    if mode in ("sequence_mask", "sequence_truncate"):
        diff = diff.sum(dim=-1, keepdim=True)
    ratio = torch.exp(diff)
    if mode in ("sequence_truncate", "token_truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    if mode in ("sequence_mask", "token_mask"):
        low = clip_min if clip_min is not None else -math.inf
        high = clip_max if clip_max is not None else math.inf
        return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)
    raise ValueError(f"unknown vllm_importance_sampling_mode {mode!r}: token_truncate, token_mask, sequence_truncate "
                     "or sequence_mask")


ACROSS_PROCESSES = {
    "sampling_logp_difference/mean": lambda t: t.mean(),
    "sampling_logp_difference/max": lambda t: t.max(),
    "importance_sampling_ratio/min": nanmin,
    "importance_sampling_ratio/mean": lambda t: t.nanmean(),
    "importance_sampling_ratio/max": nanmax,
}
"""How TRL reduces each of :func:`ratio_metrics`' values once gathered from every process."""


def ratio_metrics(old: torch.Tensor, sampling: torch.Tensor, mask: torch.Tensor, ratio: torch.Tensor,
                  sequence_level: bool) -> dict[str, torch.Tensor]:
    """The per-process values TRL logs under ``sampling/``: log-prob difference mean / max over scored
    tokens and the ratio's min / mean / max (gather them and reduce with :data:`ACROSS_PROCESSES`)."""
    delta = (old - sampling).abs()[mask.bool() & ~torch.isnan(sampling)]
    flat = ratio.flatten() if sequence_level else ratio[mask.bool()]
    zero = old.new_zeros(())

    def reduce(values: torch.Tensor, fn) -> torch.Tensor:
        return fn(values) if values.numel() else zero

    return {
        "sampling_logp_difference/mean": reduce(delta, torch.mean),
        "sampling_logp_difference/max": reduce(delta, torch.max),
        "importance_sampling_ratio/min": reduce(flat, torch.min),
        "importance_sampling_ratio/mean": reduce(flat, torch.mean),
        "importance_sampling_ratio/max": reduce(flat, torch.max),
    }
