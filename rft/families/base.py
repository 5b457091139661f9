"""What rft knows of a model family, as one record (:class:`Family`) that each family module fills in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rewards.contract import COORD_FORMATS, MODEL_PARTS

DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 14 * 14 * 4 * 1280


def patch_grid_size(
    image_size: Sequence[int], factor: int = 28,
    min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """``[width, height]`` of an image of ``image_size`` resized so that both sides are multiples of
    ``factor`` (the processor's ``patch_size * merge_size``) and the area is within ``[min_pixels,
    max_pixels]``, keeping the aspect ratio as closely as that allows: transformers' own rule
    (``smart_resize``, which raises ``ValueError`` for aspect ratios over 200)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    width, height = image_size
    new_h, new_w = smart_resize(int(height), int(width), factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return new_w, new_h


def chatml_template(image: str, video: str) -> str:
    """A ChatML chat template (``<|im_start|>role ... <|im_end|>``, no default system prompt) that writes
    ``image`` for each image part and ``video`` for each video part (a tiny model's)."""
    return (
        "{% for message in messages %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        f"{{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}}{image}"
        f"{{% elif part['type'] == 'video' or 'video' in part %}}{video}"
        "{% elif 'text' in part %}{{ part['text'] }}"
        "{% endif %}"
        "{% endfor %}{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def byte_level_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], extra_special_tokens: Any,
                         chat_template: str) -> Any:
    """A Qwen2-style byte-level BPE tokenizer (``<|im_end|>`` ends a turn, ``<|endoftext|>`` pads) over a
    trained vocabulary, with ``extra_special_tokens`` (a list, or names -> tokens) and ``chat_template``."""
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         extra_special_tokens=extra_special_tokens, model_max_length=4096)
    tok.chat_template = chat_template
    return tok


def byte_level_pretokenize_regex() -> str:
    """The split pattern of Qwen2's byte-level BPE (digits one by one)."""
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    return PRETOKENIZE_REGEX


@dataclass(frozen=True)
class TinySpec:
    """How a family builds its tiny random-weight model (:mod:`rft.models.tiny`): the processor around a
    trained tokenizer, and the shrunken config whose token ids match it."""

    processor: Callable[[Any, int], Any]
    """``(tokenizer, max_image_tokens) -> processor``"""
    config: Callable[[dict[str, int], int, Any], Any]
    """``(special token ids, vocabulary size, rft.models.tiny.TinySizes) -> PreTrainedConfig``"""
    tokenizer: Callable[[dict[str, int], list[tuple[str, str]]], Any]
    """``(vocabulary, merges) -> tokenizer`` with the family's special tokens and chat template"""
    special_tokens: tuple[str, ...]
    pretokenize_regex: Callable[[], str]
    """the pre-tokenizer's split pattern (the BPE is trained on the spot with it)"""


@dataclass(frozen=True)
class Family:
    """Everything rft knows of one model family. The rest of rft asks :func:`rft.families.family_of`."""

    name: str
    """The family's ``config.model_type`` (and its name in recipes: ``model.tiny.family``)."""
    coord_format: str
    """The box convention its models answer in (one of ``rewards.contract.COORD_FORMATS``), as its model
    card and processor write boxes; a recipe's ``model.coord_format`` overrides it."""
    factor: int
    """The image side multiple of its processor (``patch_size * merge_size``), when the model's files do not say."""
    vision_tokens: tuple[str, ...]
    """Special tokens of its vision input, never to be sampled."""
    parts: dict[str, tuple[str, ...]]
    """Module names (one path component each) of its vision tower and projector; the rest is the language model."""
    model_types: tuple[str, ...] = ()
    """Other ``config.model_type`` values that answer like this family (a mixture-of-experts variant)."""
    name_pattern: str | None = None
    """A regular expression that finds the family in a model's name when no ``config.json`` is at hand."""
    vllm_pixel_kwargs: bool = False
    """Whether vLLM's processor for it takes ``min_pixels`` / ``max_pixels`` (``mm_processor_kwargs``)."""
    model_image_size: Callable[..., tuple[int, int]] = patch_grid_size
    """``(image_size, factor, min_pixels, max_pixels) -> [w, h]``: the size its processor resizes an image to."""
    vision_attention: tuple[str, ...] = ()
    """Qualified class names of its vision attention modules that :attr:`vision_attention_forward` replaces."""
    vision_attention_forward: Callable[..., Any] | None = None
    """A faster forward for those modules (:mod:`rft.models.vision_attention`), or None."""
    tiny: TinySpec | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.coord_format not in COORD_FORMATS:
            raise ValueError(f"family {self.name}: coord_format must be one of {COORD_FORMATS}")
        if set(self.parts) - set(MODEL_PARTS):
            raise ValueError(f"family {self.name}: parts must be among {MODEL_PARTS}")

    def recognises(self, model_type: str) -> bool:
        return model_type == self.name or model_type in self.model_types

    def named_in(self, name: str) -> bool:
        return self.name_pattern is not None and re.search(self.name_pattern, name, re.I) is not None

    def vllm_options(self, min_pixels: int, max_pixels: int) -> dict[str, Any]:
        """What ``vllm.LLM`` / ``vllm serve`` must be told of the recipe's pixel budget for this family."""
        if not self.vllm_pixel_kwargs:
            return {}
        return {"mm_processor_kwargs": {"min_pixels": min_pixels, "max_pixels": max_pixels}}
