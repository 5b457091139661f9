"""Rewards for the dynamic-sampling tests (used by file path, so the registry stays as other tests expect)."""

import zlib


def _text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


def half_constant(completions, id, **columns):
    """0.5 for every completion of half the prompts (chosen by id), a value that varies with the text on the others."""
    return [0.5 if constant_prompt(i) else (zlib.crc32(_text(c).encode()) % 97) / 97 for c, i in zip(completions, id)]


def varying(completions, **columns):
    """Varies with the text (a group of different completions is never constant)."""
    return [(zlib.crc32(_text(c).encode()) % 97) / 97 for c in completions]


def constant_prompt(row_id: str) -> bool:
    """Whether :func:`half_constant` gives this prompt's completions all the same reward."""
    return bool(zlib.crc32(str(row_id).encode()) % 2)
