"""What the Qwen-VL families share: vision tokens, special tokens and chat template of a tiny model,
the tokenizer, the processor around it, and the batched vision attention's forward.

The families themselves are :mod:`rft.families.qwen2_vl`, :mod:`~rft.families.qwen2_5_vl` and
:mod:`~rft.families.qwen3_vl`.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from rft.families.base import (
    Family, TinySpec, byte_level_pretokenize_regex, byte_level_tokenizer, chatml_template,
)

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", *VISION_TOKENS,
)
PARTS = {"vision": ("visual",), "projector": ("merger", "deepstack_merger_list")}
"""The vision tower is ``visual``; its ``merger`` (and Qwen3-VL's ``deepstack_merger_list``) project into the language model."""

# Qwen2-VL's chat template without the default system prompt (as in Qwen3-VL).
CHAT_TEMPLATE = chatml_template("<|vision_start|><|image_pad|><|vision_end|>", "<|vision_start|><|video_pad|><|vision_end|>")


def tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Any:
    """A ``Qwen2Tokenizer`` over a trained byte-level BPE, with Qwen's special tokens and :data:`CHAT_TEMPLATE`."""
    special = [t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")]
    return byte_level_tokenizer(vocab, merges, special, CHAT_TEMPLATE)


def processor(processor_cls: str, video_cls: str, patch_size: int, mean_std: list[float] | None,
              tok: Any, max_image_tokens: int) -> Any:
    """The family's real processor (transformers' ``processor_cls`` and ``video_cls``), with pixel limits giving
    at most ``max_image_tokens`` per image (``mean_std`` None keeps the image processor's CLIP default)."""
    import transformers
    from transformers import Qwen2VLImageProcessor

    factor = patch_size * 2  # one merged token covers (patch_size * spatial_merge_size)^2 pixels
    size = {"shortest_edge": factor * factor, "longest_edge": max_image_tokens * factor * factor}
    common = {"patch_size": patch_size, "merge_size": 2, "temporal_patch_size": 2}
    if mean_std is not None:
        common |= {"image_mean": mean_std, "image_std": mean_std}
    return getattr(transformers, processor_cls)(
        image_processor=Qwen2VLImageProcessor(size=dict(size), **common),
        video_processor=getattr(transformers, video_cls)(size=dict(size), **common),
        tokenizer=tok,
        chat_template=CHAT_TEMPLATE,
    )


def text_config(ids: dict[str, int], vocab_size: int, sizes: Any, mrope_hw: int) -> tuple[dict, dict]:
    """The language model's config of a tiny model, and its M-RoPE settings (``mrope_hw``: the height and
    width sections' size)."""
    head_dim = sizes.hidden_size // sizes.num_heads
    rope = {"rope_type": "default", "rope_theta": sizes.rope_theta,
            "mrope_section": [head_dim // 2 - 2 * mrope_hw, mrope_hw, mrope_hw]}
    text = {
        "vocab_size": vocab_size,
        "hidden_size": sizes.hidden_size,
        "intermediate_size": sizes.intermediate_size or 2 * sizes.hidden_size,
        "num_hidden_layers": sizes.num_layers,
        "num_attention_heads": sizes.num_heads,
        "num_key_value_heads": max(1, sizes.num_heads // 2),
        "max_position_embeddings": 4096,
        "rope_parameters": rope,
        "pad_token_id": ids["<|endoftext|>"],
    }
    return text, rope


def config(model_type: str, ids: dict[str, int], text: dict, vision: dict) -> Any:
    from transformers import AutoConfig

    return AutoConfig.for_model(
        model_type, text_config=text, vision_config=vision,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def vision_attention_forward(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                             position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                             max_seqlen: int | None = None, **kwargs) -> torch.Tensor:
    """Qwen-VL vision attention's forward with :func:`rft.models.vision_attention.segment_attention` in place
    of its per-window loop (flash-attention keeps the library's own varlen kernel)."""
    from rft.compat.transformers import attention_implementation
    from rft.models.vision_attention import segment_attention

    if "flash" in attention_implementation(self.config):
        return type(self).forward(self, hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
    seq_length = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = sys.modules[type(self).__module__].apply_rotary_pos_emb_vision(q, k, cos, sin)
    out = segment_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), cu_seqlens, self.scaling)
    return self.proj(out.transpose(0, 1).reshape(seq_length, -1))


def family(*, name: str, coord_format: str, patch_size: int, attention: str, processor_cls: str, video_cls: str,
           config: Any, mean_std: list[float] | None = None, **more: Any) -> Family:
    """A Qwen-VL family's record: patches of ``patch_size`` merged 2x2, Qwen's vision tokens and parts,
    ``attention`` (the vision attention class) batched, a tiny model with ``processor_cls`` / ``video_cls``
    (transformers' class names) and ``config`` (``(ids, vocab size, sizes) -> config``)."""

    def tiny_processor(tok: Any, max_image_tokens: int) -> Any:
        return processor(processor_cls, video_cls, patch_size, mean_std, tok, max_image_tokens)

    return Family(
        name=name, coord_format=coord_format, factor=2 * patch_size, vision_tokens=VISION_TOKENS, parts=PARTS,
        vision_attention=(attention,), vision_attention_forward=vision_attention_forward,
        tiny=TinySpec(tiny_processor, config, tokenizer, SPECIAL_TOKENS, byte_level_pretokenize_regex), **more,
    )
