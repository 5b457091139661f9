"""Qwen3-VL (and its mixture-of-experts variant): boxes as integers 0..1000 of the image (its model card's
``bbox_2d`` JSON), 16-pixel patches merged 2x2 (factor 32), deepstack features from early vision layers.
vLLM's Qwen3-VL processor takes no ``min_pixels`` / ``max_pixels``."""

from __future__ import annotations

from typing import Any

from rft.families import qwen


def _config(ids: dict[str, int], vocab_size: int, sizes: Any) -> Any:
    head_dim = sizes.hidden_size // sizes.num_heads
    text, rope = qwen.text_config(ids, vocab_size, sizes, mrope_hw=head_dim // 8)  # [24, 20, 20] of 64
    text |= {"head_dim": head_dim}
    rope["mrope_interleaved"] = True
    vision = {
        "depth": sizes.vision_depth, "num_heads": sizes.vision_num_heads, "patch_size": 16,
        "spatial_merge_size": 2, "temporal_patch_size": 2,
        "hidden_size": sizes.vision_hidden_size,
        "intermediate_size": sizes.vision_intermediate_size or 2 * sizes.vision_hidden_size,
        "out_hidden_size": sizes.hidden_size,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }
    return qwen.config("qwen3_vl", ids, text, vision)


FAMILY = qwen.family(
    name="qwen3_vl",
    coord_format="norm1000",
    patch_size=16,
    attention="transformers.models.qwen3_vl.modeling_qwen3_vl.Qwen3VLVisionAttention",
    processor_cls="Qwen3VLProcessor",
    video_cls="Qwen3VLVideoProcessor",
    mean_std=[0.5, 0.5, 0.5],
    config=_config,
    model_types=("qwen3_vl_moe",),
    name_pattern=r"qwen3[-_.]?vl",
)
