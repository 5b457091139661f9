"""Qwen2.5-VL: boxes in pixels of the image *as its processor resized it* (its model card's ``bbox_2d``
JSON), 14-pixel patches merged 2x2 (factor 28), windowed vision attention with a few full-attention blocks."""

from __future__ import annotations

from typing import Any

from rft.families import qwen


def full_attention_blocks(depth: int) -> list[int]:
    """Qwen2.5-VL's vision blocks with full (not windowed) attention: every eighth and the last
    (the 3B model's 32 blocks: 7, 15, 23, 31; a depth-2 tower: block 1)."""
    return sorted({i for i in range(depth) if i % 8 == 7} | {depth - 1})


def _config(ids: dict[str, int], vocab_size: int, sizes: Any) -> Any:
    head_dim = sizes.hidden_size // sizes.num_heads
    text, _ = qwen.text_config(ids, vocab_size, sizes, mrope_hw=3 * head_dim // 16)  # [16, 24, 24] of 64
    text |= {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"]}
    vision = {
        "depth": sizes.vision_depth, "num_heads": sizes.vision_num_heads, "patch_size": 14,
        "spatial_merge_size": 2, "temporal_patch_size": 2,
        "hidden_size": sizes.vision_hidden_size,
        "intermediate_size": sizes.vision_intermediate_size or 2 * sizes.vision_hidden_size,
        "out_hidden_size": sizes.hidden_size,
        "window_size": 4 * 14 * 2,  # windows of 4x4 merged tokens
        "fullatt_block_indexes": full_attention_blocks(sizes.vision_depth),
    }
    return qwen.config("qwen2_5_vl", ids, text, vision)


FAMILY = qwen.family(
    name="qwen2_5_vl",
    coord_format="pixels",
    patch_size=14,
    attention="transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLVisionAttention",
    processor_cls="Qwen2_5_VLProcessor",
    video_cls="Qwen2VLVideoProcessor",
    config=_config,
    name_pattern=r"qwen2[-_.]5[-_.]?vl",
    vllm_pixel_kwargs=True,
)
