"""One attention call per segment length in windowed vision towers, instead of one per window.

Without flash-attention, transformers' Qwen-VL vision attention (each family's, :mod:`rft.families`) splits the
patch sequence at ``cu_seqlens`` (each window of Qwen2.5-VL's windowed layers, each image of the
full-attention layers) and runs SDPA once per piece: hundreds of small kernel launches per layer for
a batch of images (issue 7). Windows mostly share a length, so :func:`segment_attention` gathers the
segments of each length into one batch and runs one SDPA call per distinct length: the same
attention, a handful of calls. Recipe switch: ``speed.batched_vision_attention`` (on by default; only
the SDPA and eager paths are replaced, flash-attention keeps its own varlen kernel).
"""

from __future__ import annotations

import types
from collections import defaultdict

import torch
from torch import nn
from torch.nn import functional as F

from rft.families import FAMILIES


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                      scale: float) -> torch.Tensor:
    """Non-causal attention within each segment ``[cu_seqlens[i], cu_seqlens[i + 1])`` of ``q, k, v``
    (``[heads, tokens, head_dim]``), one SDPA call per distinct segment length. Returns ``[heads, tokens, head_dim]``."""
    starts = cu_seqlens[:-1].tolist()
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    by_length: dict[int, list[int]] = defaultdict(list)
    for start, length in zip(starts, lengths):
        if length:
            by_length[length].append(start)
    out = torch.zeros_like(q)
    for length, group in by_length.items():
        index = (torch.tensor(group, device=q.device)[:, None] + torch.arange(length, device=q.device)).reshape(-1)

        def batch(x: torch.Tensor) -> torch.Tensor:  # [H, n*L, d] -> [n, H, L, d]
            return x.index_select(1, index).unflatten(1, (len(group), length)).transpose(0, 1)

        attended = F.scaled_dot_product_attention(batch(q), batch(k), batch(v), scale=scale)
        out = out.index_copy(1, index, attended.transpose(0, 1).flatten(1, 2))
    return out


def batch_vision_attention(model: nn.Module) -> int:
    """Give every vision attention module of ``model`` that its family replaces
    (:attr:`Family.vision_attention <rft.families.base.Family.vision_attention>`) the family's batched
    forward; returns how many."""
    forwards = {name: f.vision_attention_forward for f in FAMILIES if f.vision_attention_forward
                for name in f.vision_attention}
    changed = 0
    for module in model.modules():
        cls = type(module)
        forward = forwards.get(f"{cls.__module__}.{cls.__qualname__}")
        if forward is not None and not getattr(module, "rft_batched", False):
            module.forward = types.MethodType(forward, module)
            module.rft_batched = True
            changed += 1
    return changed
