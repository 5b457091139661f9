"""Tiny random-weight Qwen-VL checkpoints for offline tests and smoke runs.

``build_tiny_vlm`` writes a checkpoint directory that ``AutoModelForImageTextToText`` and
``AutoProcessor`` load offline: a Qwen2-VL / Qwen2.5-VL / Qwen3-VL model built from a shrunken config
with random weights, a byte-level BPE tokenizer trained on the spot on a synthetic corpus (same
pre-tokenizer as Qwen, so digits are single tokens), the Qwen special tokens, a Qwen-style chat
template and the family's real processor class.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    GenerationConfig,
    PreTrainedConfig,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from rft.models.vision_tokens import QWEN_VISION_TOKENS, vision_token_ids  # noqa: F401  (re-exported)

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

VISION_TOKENS = QWEN_VISION_TOKENS
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    *VISION_TOKENS,
)
# Plain (non-special) added tokens: they survive ``decode(..., skip_special_tokens=True)``.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

SHAPES = ("circle", "square", "triangle", "star", "rectangle", "ellipse", "hexagon", "pentagon", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white", "gray", "pink", "brown", "cyan")

# Qwen2-VL's chat template without the default system prompt (as in Qwen3-VL).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# family -> (vision patch size, image mean/std; None keeps the image processor's CLIP default)
_FAMILY_SPECS: dict[str, tuple[int, list[float] | None]] = {
    "qwen2_vl": (14, None),
    "qwen2_5_vl": (14, None),
    "qwen3_vl": (16, [0.5, 0.5, 0.5]),
}
_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": Qwen2VLProcessor,
    "qwen2_5_vl": Qwen2_5_VLProcessor,
    "qwen3_vl": Qwen3VLProcessor,
}


def _corpus(vocab_words: list[str]) -> list[str]:
    """A small deterministic corpus covering the answer formats, digits, JSON punctuation and words."""
    rng = random.Random(0)
    lines = [str(n) for n in range(1001)]
    lines += ["no objects", "none", "What shape?", "What colour is the shape?", "Detect all objects."]
    lines += ["Answer with <think>...</think><answer>...</answer>."]
    for _ in range(400):
        colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
        box = sorted(rng.sample(range(1001), 2)) + sorted(rng.sample(range(1001), 2))
        box = [box[0], box[2], box[1], box[3]]
        lines.append(f"a {colour} {shape}")
        lines.append(f'[{{"bbox_2d": {box}, "label": "{shape}"}}]')
        lines.append(f'{{"label": "{colour} {shape}", "point_2d": [{box[0]}, {box[1]}]}}')
    for word in vocab_words:
        lines += [word, f"a {word}"] * 4
    return lines


def _build_tokenizer(vocab_words: list[str], bpe_vocab_size: int) -> Qwen2Tokenizer:
    """Train a byte-level BPE with Qwen's pre-tokenizer and wrap it as a ``Qwen2Tokenizer``."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_corpus(vocab_words), trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab = dict(trained["vocab"])
    for token in SPECIAL_TOKENS + TAG_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in trained["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
        model_max_length=4096,
    )
    tokenizer.add_tokens(list(TAG_TOKENS))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _build_processor(family: str, tokenizer: Qwen2Tokenizer, max_image_tokens: int) -> ProcessorMixin:
    """The family's real processor, with pixel limits giving at most ``max_image_tokens`` per image."""
    patch_size, mean_std = _FAMILY_SPECS[family]
    factor = patch_size * 2  # one merged token covers (patch_size * spatial_merge_size)^2 pixels
    size = {"shortest_edge": factor * factor, "longest_edge": max_image_tokens * factor * factor}
    common = {"patch_size": patch_size, "merge_size": 2, "temporal_patch_size": 2}
    if mean_std is not None:
        common |= {"image_mean": mean_std, "image_std": mean_std}
    video_cls = Qwen3VLVideoProcessor if family == "qwen3_vl" else Qwen2VLVideoProcessor
    return _PROCESSORS[family](
        image_processor=Qwen2VLImageProcessor(size=dict(size), **common),
        video_processor=video_cls(size=dict(size), **common),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


@dataclass(frozen=True)
class TinySizes:
    """The sizes of a tiny model (see :func:`build_tiny_vlm`; defaults: the smallest, used by tests and the demo)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int | None = None
    vision_hidden_size: int = 32
    vision_depth: int = 2
    vision_num_heads: int = 2
    vision_intermediate_size: int | None = None
    rope_theta: float = 1_000_000.0


def full_attention_blocks(depth: int) -> list[int]:
    """Qwen2.5-VL's vision blocks with full (not windowed) attention: every eighth and the last
    (the 3B model's 32 blocks: 7, 15, 23, 31; a depth-2 tower: block 1)."""
    return sorted({i for i in range(depth) if i % 8 == 7} | {depth - 1})


def _build_config(family: str, tokenizer: Qwen2Tokenizer, sizes: TinySizes) -> PreTrainedConfig:
    """A shrunken config of the family whose token ids match ``tokenizer``."""
    hidden_size, num_heads = sizes.hidden_size, sizes.num_heads
    patch_size, _ = _FAMILY_SPECS[family]
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))))
    head_dim = hidden_size // num_heads
    # M-RoPE (t, h, w) sections in the real models' proportions: Qwen2 [16, 24, 24], Qwen3 [24, 20, 20] of 64
    hw = head_dim // 8 if family == "qwen3_vl" else 3 * head_dim // 16
    rope = {"rope_type": "default", "rope_theta": sizes.rope_theta, "mrope_section": [head_dim // 2 - 2 * hw, hw, hw]}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": sizes.intermediate_size or 2 * hidden_size,
        "num_hidden_layers": sizes.num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": max(1, num_heads // 2),
        "max_position_embeddings": 4096,
        "rope_parameters": rope,
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_hidden = sizes.vision_hidden_size
    vision_intermediate = sizes.vision_intermediate_size or 2 * vision_hidden
    vision = {"depth": sizes.vision_depth, "num_heads": sizes.vision_num_heads, "patch_size": patch_size,
              "spatial_merge_size": 2, "temporal_patch_size": 2}
    if family == "qwen2_vl":
        text |= {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"]}
        if vision_intermediate % vision_hidden:
            raise ValueError(f"qwen2_vl: vision_intermediate_size ({vision_intermediate}) must be a multiple of "
                             f"vision_hidden_size ({vision_hidden}) (its config has an integer mlp_ratio)")
        vision |= {"embed_dim": vision_hidden, "mlp_ratio": vision_intermediate // vision_hidden, "hidden_size": hidden_size}
    elif family == "qwen2_5_vl":
        text |= {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"]}
        vision |= {
            "hidden_size": vision_hidden,
            "intermediate_size": vision_intermediate,
            "out_hidden_size": hidden_size,
            "window_size": 4 * patch_size * 2,  # windows of 4x4 merged tokens
            "fullatt_block_indexes": full_attention_blocks(sizes.vision_depth),
        }
    else:
        text |= {"head_dim": head_dim}
        rope["mrope_interleaved"] = True
        vision |= {
            "hidden_size": vision_hidden,
            "intermediate_size": vision_intermediate,
            "out_hidden_size": hidden_size,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        }
    return AutoConfig.for_model(
        family,
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_vlm(
    family: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    vocab_words: list[str] | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    vision_num_heads: int = 2,
    vision_intermediate_size: int | None = None,
    rope_theta: float = 1_000_000.0,
    max_image_tokens: int = 16,
    bpe_vocab_size: int = 512,
) -> Path:
    """Build and save a tiny random-weight VLM of ``family`` (one of ``FAMILIES``) into ``out_dir``.

    ``vocab_words`` are extra words the BPE should learn (any text is encodable anyway: the BPE is
    byte-level). ``max_image_tokens`` bounds the LLM tokens per image (a 112x112 image gives 16).
    ``hidden_size``, ``num_layers``, ``num_heads`` and ``intermediate_size`` size the language model,
    the ``vision_*`` arguments the vision tower (intermediate sizes default to twice the hidden size).
    ``rope_theta`` is the language model's RoPE base (Qwen's 1e6 by default). Qwen2-VL and Qwen2.5-VL
    give an image token's row and column the lowest of its rotary frequencies, which at 1e6 barely
    turn across a few tokens; a small base (e.g. 10) lets a small model tell an image's rows and
    columns apart without the data a real VLM is trained on (docs/learning.md, "CPU sizing").
    The result is deterministic for a given ``seed``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    out = Path(out_dir)
    tokenizer = _build_tokenizer(sorted(set(SHAPES + COLOURS).union(vocab_words or [])), bpe_vocab_size)
    processor = _build_processor(family, tokenizer, max_image_tokens)
    sizes = TinySizes(hidden_size, num_layers, num_heads, intermediate_size, vision_hidden_size, vision_depth,
                      vision_num_heads, vision_intermediate_size, rope_theta)
    config = _build_config(family, tokenizer, sizes)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m rft.models.tiny FAMILY OUT_DIR [--seed N] [--hidden-size H] [--num-layers L]``."""
    parser = argparse.ArgumentParser(prog="python -m rft.models.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=FAMILIES)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    args = parser.parse_args(argv)
    out = build_tiny_vlm(
        args.family, args.out_dir, seed=args.seed, hidden_size=args.hidden_size, num_layers=args.num_layers
    )
    print(out)


if __name__ == "__main__":
    main()
