"""Vision special tokens that a policy must never sample.

A sampled ``<|image_pad|>`` makes TRL's training forward fail with "Image features and image
tokens do not match"; the others are garbage in an answer. Every backend bans them.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from rft.families import FAMILIES, family_of


def vision_token_ids(tokenizer: PreTrainedTokenizerBase, family: str | None = None, processor: object = None) -> list[int]:
    """Token ids of the vision special tokens of ``family`` (HF ``config.model_type``, :mod:`rft.families`)
    that exist in ``tokenizer``, sorted. A model of no known family falls back to the processor's own
    ``image_token`` / ``video_token`` / ``boi_token`` / ``eoi_token`` attributes, then to every known
    family's vision tokens."""
    names = list(family_of(family).vision_tokens)
    if not names and processor is not None:
        names = [getattr(processor, a) for a in ("image_token", "video_token", "boi_token", "eoi_token")
                 if isinstance(getattr(processor, a, None), str)]
    names = names or [t for f in FAMILIES for t in f.vision_tokens]
    vocab = tokenizer.get_vocab()
    return sorted({vocab[n] for n in names if n in vocab})


def placeholder_token_ids(processor: object) -> set[int]:
    """Ids of the tokens the processor repeats once per image / video feature (``<|image_pad|>``, ...)."""
    ids = {getattr(processor, a, None) for a in ("image_token_id", "video_token_id")}
    return {i for i in ids if isinstance(i, int)}


BAN_BIAS = -100.0
"""What a banned token's logit gets: the ``logit_bias`` vLLM applies when sampling."""


def ban_in_logits(model, token_ids: list[int]):
    """Add :data:`BAN_BIAS` to the logits of ``token_ids`` in every forward pass of ``model``.

    vLLM samples with the bias and reports log-probs after it (``processed_logprobs``); with the same
    bias in the trainer's forward, the trainer's log-probs are those of the policy that was actually
    sampled, and TRL's importance-sampling ratio compares like with like (without it, every token's
    trainer log-prob is off by log(1 - p(banned)), which a random-weight model makes large). Returns
    the hook handle (``.remove()`` undoes it).
    """
    import torch

    ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
    on_device: dict[torch.device, torch.Tensor] = {}  # a copy per device: a host-to-device copy per forward would sync

    def add_bias(module, inputs, logits):
        if ids.numel() and isinstance(logits, torch.Tensor):
            index = on_device.get(logits.device)
            if index is None:
                index = on_device[logits.device] = ids.to(logits.device)
            logits[..., index] = logits[..., index] + BAN_BIAS
        return logits

    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings to ban vision tokens in")
    return head.register_forward_hook(add_bias)
