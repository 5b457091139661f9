"""InternVL (InternVL2.5 / InternVL3 as transformers' ``internvl``): boxes as integers 0..1000 of the image.

It grounds a phrase as ``<ref>phrase</ref><box>[[x1, y1, x2, y2]]</box>`` with coordinates normalised to
0..1000 of the image: OpenGVLab/InternVL's grounding evaluation (``internvl_chat/eval/refcoco/
evaluate_grounding.py``, prompt "Please provide the bounding box coordinate of the region this sentence
describes: <ref>{}</ref>") divides the answer's numbers by 1000 and multiplies them by the image's width
and height. rft's prompts ask for the same numbers in ``bbox_2d`` JSON, and its parser reads the bare
``[[x1, y1, x2, y2]]`` list of a ``<box>`` too. Its processor cuts an
image into square tiles (up to ``max_patches``, plus a thumbnail) of the vision tower's input size, each
tile giving ``(size / patch)^2 / 4`` ``<IMG_CONTEXT>`` tokens between ``<img>`` and ``</img>``; the
language model is Qwen2's (InternVL3), so its tokenizer is Qwen2's byte-level BPE.
"""

from __future__ import annotations

from typing import Any

from rft.families.base import (
    Family, TinySpec, byte_level_pretokenize_regex, byte_level_tokenizer, chatml_template,
)

VISION_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<video>")
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *VISION_TOKENS)
TILE, PATCH = 112, 14
"""A tiny model's tile side and patch side: (112 / 14)^2 / 4 = 16 tokens per tile (a Qwen-VL tiny model's
for a 112 x 112 image)."""

# InternVL3's chat template (ChatML) without its default system prompt: an image is one <IMG_CONTEXT>,
# which the processor expands to <img> + its tiles' tokens + </img>.
CHAT_TEMPLATE = chatml_template("<IMG_CONTEXT>\n", "<video>\n")


def _tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Any:
    """Qwen2's byte-level BPE (InternVL3's language model) with the image tokens its processor looks up by name."""
    tok = byte_level_tokenizer(vocab, merges, {"start_image_token": "<img>", "end_image_token": "</img>",
                                               "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
                               CHAT_TEMPLATE)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    return tok


def _processor(tok: Any, max_image_tokens: int) -> Any:
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    per_tile = (TILE // PATCH) ** 2 // 4
    tiles = max(1, max_image_tokens // per_tile - 1)  # tiles plus the thumbnail within max_image_tokens
    size = {"height": TILE, "width": TILE}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=tiles),
        video_processor=InternVLVideoProcessor(size=size),
        tokenizer=tok, image_seq_length=per_tile, chat_template=CHAT_TEMPLATE,
    )


def _config(ids: dict[str, int], vocab_size: int, sizes: Any) -> Any:
    from transformers import AutoConfig

    text = {
        "model_type": "qwen2", "vocab_size": vocab_size, "hidden_size": sizes.hidden_size,
        "intermediate_size": sizes.intermediate_size or 2 * sizes.hidden_size,
        "num_hidden_layers": sizes.num_layers, "num_attention_heads": sizes.num_heads,
        "num_key_value_heads": max(1, sizes.num_heads // 2), "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": sizes.rope_theta},
        "pad_token_id": ids["<|endoftext|>"], "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
    }
    vision = {
        "hidden_size": sizes.vision_hidden_size, "num_hidden_layers": sizes.vision_depth,
        "num_attention_heads": sizes.vision_num_heads,
        "intermediate_size": sizes.vision_intermediate_size or 2 * sizes.vision_hidden_size,
        "image_size": [TILE, TILE], "patch_size": [PATCH, PATCH],
    }
    return AutoConfig.for_model(
        "internvl", text_config=text, vision_config=vision, image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=(TILE // PATCH) ** 2 // 4, downsample_ratio=0.5, tie_word_embeddings=False,
    )


FAMILY = Family(
    name="internvl",
    coord_format="norm1000",
    factor=2 * PATCH,
    vision_tokens=VISION_TOKENS,
    parts={"vision": ("vision_tower",), "projector": ("multi_modal_projector",)},
    name_pattern=r"internvl",
    tiny=TinySpec(_processor, _config, _tokenizer, SPECIAL_TOKENS, byte_level_pretokenize_regex),
)
