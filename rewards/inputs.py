"""What a reward receives from TRL: completions and per-sample dataset columns.

TRL calls ``fn(prompts=..., completions=..., completion_ids=..., **columns)`` where every
dataset column is a list with one entry per completion. This module turns that into one
:class:`Sample` per completion so that each reward reads like a function of one sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from rewards.coords import clip_to_image, to_image_pixels
from rewards.parsing import NONE_PHRASES, BoxAnswer, extract_answer, parse_boxes

TASKS: tuple[str, ...] = ("detection", "grounding", "classification", "tagging")


def completion_text(completion: Any) -> str:
    """The text of a completion, plain or conversational (``[{"role": ..., "content": ...}]``)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(content if isinstance(content, str) else "")
        return "".join(parts)
    return ""


@lru_cache(maxsize=4096)
def _solution_from_json(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"solution must be a JSON object, got {type(value).__name__}: {text[:200]}")
    return value


def load_solution(solution: Any) -> dict:
    """The ground truth of a sample: a dict, or its JSON string (parsed once, then cached)."""
    if isinstance(solution, dict):
        return solution
    if isinstance(solution, str):
        return _solution_from_json(solution)
    raise ValueError(f"solution must be a dict or a JSON string, got {type(solution).__name__}")


@dataclass(frozen=True)
class Sample:
    """One completion's ground truth and metadata."""

    task: str | None
    solution: dict
    image_size: tuple[float, float] | None = None
    coord_format: str = "norm1000"
    model_image_size: tuple[float, float] | None = None

    def covered_by(self, tasks: Sequence[str]) -> bool:
        """Whether a reward for ``tasks`` applies (a sample without a task column always does)."""
        return self.task is None or self.task in tasks

    @property
    def gt_boxes(self) -> np.ndarray:
        return np.asarray(self.solution.get("boxes") or [], dtype=np.float64).reshape(-1, 4)

    @property
    def gt_labels(self) -> list[str | None]:
        labels = list(self.solution.get("labels") or [])
        return labels + [None] * (len(self.gt_boxes) - len(labels))

    def predicted_boxes(self, text: str, none_phrases: Sequence[str] = NONE_PHRASES) -> BoxAnswer:
        """The boxes of ``text``'s answer, in original-image pixels, clipped to the image."""
        answer = parse_boxes(extract_answer(text), tuple(none_phrases))
        if self.image_size is None:
            if self.coord_format == "pixels" and self.model_image_size is None:
                return answer  # the model saw the original image: its pixels are ours
            raise ValueError(f"the image_size column is needed to read {self.coord_format!r} boxes")
        pixels = to_image_pixels(answer.boxes, self.coord_format, self.image_size, self.model_image_size)
        clipped, keep = clip_to_image(pixels, self.image_size)
        return answer.with_boxes(clipped, keep)


def _column(columns: dict[str, Any], name: str, n: int) -> Sequence[Any]:
    value = columns.get(name)
    if value is None:
        return [None] * n
    if len(value) != n:
        raise ValueError(f"column {name!r} has {len(value)} entries for {n} completions")
    return value


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def iter_samples(completions: Sequence[Any], columns: dict[str, Any]) -> Iterator[tuple[str, Sample]]:
    """(completion text, :class:`Sample`) for each completion of a TRL reward call."""
    n = len(completions)
    tasks = _column(columns, "task", n)
    solutions = _column(columns, "solution", n)
    sizes = _column(columns, "image_size", n)
    formats = _column(columns, "coord_format", n)
    model_sizes = _column(columns, "model_image_size", n)
    for i, completion in enumerate(completions):
        sample = Sample(
            task=tasks[i],
            solution=load_solution(solutions[i]) if solutions[i] is not None else {},
            image_size=_pair(sizes[i]),
            coord_format=formats[i] or "norm1000",
            model_image_size=_pair(model_sizes[i]),
        )
        yield completion_text(completion), sample


def score_each(
    completions: Sequence[Any],
    columns: dict[str, Any],
    tasks: Sequence[str],
    score: Callable[[str, Sample], float],
) -> list[float | None]:
    """``score(text, sample)`` for each completion whose task is in ``tasks``, else ``None``."""
    return [score(text, s) if s.covered_by(tasks) else None for text, s in iter_samples(completions, columns)]
