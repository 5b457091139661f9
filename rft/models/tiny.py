"""Tiny random-weight VLM checkpoints for offline tests and smoke runs.

``build_tiny_vlm`` writes a checkpoint directory that ``AutoModelForImageTextToText`` and
``AutoProcessor`` load offline: a model of a family (:mod:`rft.families`, each family's ``tiny``) built
from a shrunken config with random weights, a byte-level BPE tokenizer trained on the spot on a
synthetic corpus (with the family's pre-tokenizer, so digits are single tokens), the family's special
tokens, chat template and real processor class.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModelForImageTextToText, GenerationConfig, PreTrainedConfig, ProcessorMixin

from rft.families import TINY_NAMES, family_of
from rft.families.base import TinySpec
from rft.models.vision_tokens import vision_token_ids  # noqa: F401  (re-exported)

FAMILIES = TINY_NAMES
"""The families a tiny model can be built of (each family module's ``tiny``, :mod:`rft.families`)."""

# Plain (non-special) added tokens: they survive ``decode(..., skip_special_tokens=True)``.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

SHAPES = ("circle", "square", "triangle", "star", "rectangle", "ellipse", "hexagon", "pentagon", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white", "gray", "pink", "brown", "cyan")


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


def _build_tokenizer(spec: TinySpec, vocab_words: list[str], bpe_vocab_size: int):
    """Train a byte-level BPE with the family's pre-tokenizer and wrap it as the family's tokenizer."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(spec.pretokenize_regex()), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_corpus(vocab_words), trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab = dict(trained["vocab"])
    for token in spec.special_tokens + TAG_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = spec.tokenizer(vocab, [tuple(m) for m in trained["merges"]])
    tokenizer.add_tokens(list(TAG_TOKENS))
    return tokenizer


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


def _build_config(spec: TinySpec, tokenizer, sizes: TinySizes) -> PreTrainedConfig:
    """A shrunken config of the family whose token ids match ``tokenizer``."""
    ids = dict(zip(spec.special_tokens, tokenizer.convert_tokens_to_ids(list(spec.special_tokens))))
    return spec.config(ids, len(tokenizer), sizes)


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
    ``rope_theta`` is the language model's RoPE base (1e6 by default). M-RoPE families (Qwen-VL)
    give an image token's row and column the lowest of its rotary frequencies, which at 1e6 barely
    turn across a few tokens; a small base (e.g. 10) lets a small model tell an image's rows and
    columns apart more easily, without the data a real VLM is trained on.
    The result is deterministic for a given ``seed``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    spec = family_of(family).tiny
    out = Path(out_dir)
    tokenizer = _build_tokenizer(spec, sorted(set(SHAPES + COLOURS).union(vocab_words or [])), bpe_vocab_size)
    processor: ProcessorMixin = spec.processor(tokenizer, max_image_tokens)
    sizes = TinySizes(hidden_size, num_layers, num_heads, intermediate_size, vision_hidden_size, vision_depth,
                      vision_num_heads, vision_intermediate_size, rope_theta)
    config = _build_config(spec, tokenizer, sizes)
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
