"""Qwen2-VL: boxes as integers 0..1000 of the image (its model card's ``(x1,y1),(x2,y2)`` grounding, asked
for in ``bbox_2d`` JSON by rft's prompts), 14-pixel patches merged 2x2 (factor 28)."""

from __future__ import annotations

from typing import Any

from rft.families import qwen


def _config(ids: dict[str, int], vocab_size: int, sizes: Any) -> Any:
    head_dim = sizes.hidden_size // sizes.num_heads
    text, _ = qwen.text_config(ids, vocab_size, sizes, mrope_hw=3 * head_dim // 16)  # [16, 24, 24] of 64
    text |= {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"]}
    hidden = sizes.vision_hidden_size
    intermediate = sizes.vision_intermediate_size or 2 * hidden
    if intermediate % hidden:
        raise ValueError(f"qwen2_vl: vision_intermediate_size ({intermediate}) must be a multiple of "
                         f"vision_hidden_size ({hidden}) (its config has an integer mlp_ratio)")
    vision = {"depth": sizes.vision_depth, "num_heads": sizes.vision_num_heads, "patch_size": 14,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "embed_dim": hidden,
              "mlp_ratio": intermediate // hidden, "hidden_size": sizes.hidden_size}
    return qwen.config("qwen2_vl", ids, text, vision)


FAMILY = qwen.family(
    name="qwen2_vl",
    coord_format="norm1000",
    patch_size=14,
    attention="transformers.models.qwen2_vl.modeling_qwen2_vl.VisionAttention",
    processor_cls="Qwen2VLProcessor",
    video_cls="Qwen2VLVideoProcessor",
    config=_config,
    name_pattern=r"qwen2[-_.]?vl",
    vllm_pixel_kwargs=True,
)
