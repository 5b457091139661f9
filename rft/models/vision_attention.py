"""One attention call per segment length in Qwen-VL vision towers, instead of one per window.

Without flash-attention, transformers' Qwen2-VL / Qwen2.5-VL / Qwen3-VL vision attention splits the
patch sequence at ``cu_seqlens`` (each window of Qwen2.5-VL's windowed layers, each image of the
full-attention layers) and runs SDPA once per piece: hundreds of small kernel launches per layer for
a batch of images (issue 7). Windows mostly share a length, so :func:`segment_attention` gathers the
segments of each length into one batch and runs one SDPA call per distinct length: the same
attention, a handful of calls. Recipe switch: ``speed.batched_vision_attention`` (on by default; only
the SDPA and eager paths are replaced, flash-attention keeps its own varlen kernel).
"""

from __future__ import annotations

import sys
import types
from collections import defaultdict

import torch
from torch import nn
from torch.nn import functional as F

ATTENTION_CLASSES = ("VisionAttention", "Qwen2_5_VLVisionAttention", "Qwen3VLVisionAttention")


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


def _forward(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
             position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None, max_seqlen: int | None = None,
             **kwargs) -> torch.Tensor:
    """The vision attention's forward with :func:`segment_attention` in place of the per-piece loop."""
    if "flash" in str(getattr(self.config, "_attn_implementation", "")):
        return type(self).forward(self, hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
    seq_length = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = sys.modules[type(self).__module__].apply_rotary_pos_emb_vision(q, k, cos, sin)
    out = segment_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), cu_seqlens, self.scaling)
    return self.proj(out.transpose(0, 1).reshape(seq_length, -1))


def batch_vision_attention(model: nn.Module) -> int:
    """Give every Qwen-VL vision attention module of ``model`` the batched forward; returns how many."""
    changed = 0
    for module in model.modules():
        cls = type(module)
        if (cls.__name__ in ATTENTION_CLASSES and cls.__module__.startswith("transformers.models.qwen")
                and not getattr(module, "rft_batched", False)):
            module.forward = types.MethodType(_forward, module)
            module.rft_batched = True
            changed += 1
    return changed
