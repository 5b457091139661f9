"""Vision special tokens that a policy must never sample.

A sampled ``<|image_pad|>`` makes TRL's training forward fail with "Image features and image
tokens do not match"; the others are garbage in an answer. Every backend bans them.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

QWEN_VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")

VISION_TOKENS_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "qwen2_vl": QWEN_VISION_TOKENS,
    "qwen2_5_vl": QWEN_VISION_TOKENS,
    "qwen3_vl": QWEN_VISION_TOKENS,
    "qwen3_vl_moe": QWEN_VISION_TOKENS,
}
"""Per model family (HF ``config.model_type``); other families fall back to the processor's own
``image_token`` / ``video_token`` / ``boi_token`` / ``eoi_token`` attributes, then to Qwen's."""


def vision_token_ids(tokenizer: PreTrainedTokenizerBase, family: str | None = None, processor: object = None) -> list[int]:
    """Token ids of the vision special tokens of ``family`` that exist in ``tokenizer``, sorted."""
    names = list(VISION_TOKENS_BY_FAMILY.get(family or "", ()))
    if not names and processor is not None:
        names = [getattr(processor, a) for a in ("image_token", "video_token", "boi_token", "eoi_token")
                 if isinstance(getattr(processor, a, None), str)]
    names = names or list(QWEN_VISION_TOKENS)
    vocab = tokenizer.get_vocab()
    return sorted({vocab[n] for n in names if n in vocab})


def placeholder_token_ids(processor: object) -> set[int]:
    """Ids of the tokens the processor repeats once per image / video feature (``<|image_pad|>``, ...)."""
    ids = {getattr(processor, a, None) for a in ("image_token_id", "video_token_id")}
    return {i for i in ids if isinstance(i, int)}
