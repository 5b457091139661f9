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

from rewards.contract import REWARD_COLUMNS, TASKS, RewardColumns, to_image_pixels  # noqa: F401  (TASKS re-exported)
from rewards.matching import batched_box_iou
from rewards.parsing import NONE_PHRASES, BoxAnswer, extract_answer, read_boxes, well_formed


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


@dataclass(frozen=True, slots=True)
class Sample(RewardColumns):
    """One completion's ground truth and metadata (the :class:`~rewards.contract.RewardColumns`)."""

    def covered_by(self, tasks: Sequence[str]) -> bool:
        """Whether a reward for ``tasks`` applies (a sample without a task column always does)."""
        return self.task is None or self.task in tasks

    @property
    def gt_boxes(self) -> np.ndarray:
        return np.asarray(self.solution.get("boxes") or [], dtype=np.float64).reshape(-1, 4)

    @property
    def gt_labels(self) -> list[str | None]:
        labels = list(self.solution.get("labels") or [])
        return labels + [None] * (len(self.solution.get("boxes") or []) - len(labels))

    def pixel_transform(self) -> np.ndarray:
        """(8,) scale factors (answer -> original pixels) then clip limits, for (x1, y1, x2, y2)."""
        return _pixel_transform(self.coord_format, self.image_size, self.model_image_size)

    def predicted_boxes(self, text: str, none_phrases: Sequence[str] = NONE_PHRASES) -> BoxAnswer:
        """The boxes of ``text``'s answer, in original-image pixels, clipped to the image."""
        return read_box_answers([text], [self], none_phrases)[0]


@lru_cache(maxsize=4096)
def _pixel_transform(coord_format: str, image_size: tuple | None, model_image_size: tuple | None) -> np.ndarray:
    if image_size is None:
        if coord_format == "pixels" and model_image_size is None:
            return np.array([1.0] * 4 + [np.inf] * 4)  # the model saw the original image
        raise ValueError(f"the image_size column is needed to read {coord_format!r} boxes")
    scale = to_image_pixels(np.ones((1, 4)), coord_format, image_size, model_image_size)[0]
    return np.concatenate([scale, [image_size[0], image_size[1]] * 2])


def read_box_answers(texts: Sequence[str], samples: Sequence[Sample], none_phrases: Sequence[str] = NONE_PHRASES
                     ) -> list[BoxAnswer]:
    """The answers' boxes in original-image pixels, clipped; unusable boxes counted as invalid.

    All boxes of the batch are converted and checked in one vectorised pass.
    """
    raws = [read_boxes(extract_answer(t), tuple(none_phrases)) for t in texts]
    counts = np.array([len(r.boxes) for r in raws])
    if not counts.any():
        return raws
    coords = np.concatenate([r.boxes for r in raws])
    transform = np.repeat(np.array([s.pixel_transform() for s in samples]), counts, axis=0)
    with np.errstate(invalid="ignore", over="ignore"):
        pixels = np.minimum(np.maximum(coords * transform[:, :4], 0.0), transform[:, 4:])
    valid = well_formed(coords) & well_formed(pixels)
    ends = np.cumsum(counts)
    return [r.with_boxes(pixels[e - n: e], valid[e - n: e]) for r, n, e in zip(raws, counts, ends)]


@dataclass(frozen=True, slots=True)
class BoxCase:
    """One box-task completion ready to score: its sample, its answer in pixels, and their IoU."""

    sample: Sample
    answer: BoxAnswer
    gt_boxes: np.ndarray
    iou: np.ndarray


def box_cases(
    completions: Sequence[Any], columns: dict[str, Any], tasks: Sequence[str], none_phrases: Sequence[str]
) -> list[BoxCase | None]:
    """:class:`BoxCase` for each completion whose task is in ``tasks`` (None for the others)."""
    pairs = [(t, s) for t, s in iter_samples(completions, columns)]
    index = [i for i, (_, s) in enumerate(pairs) if s.covered_by(tasks)]
    samples = [pairs[i][1] for i in index]
    answers = read_box_answers([pairs[i][0] for i in index], samples, none_phrases)
    gt_by_solution: dict[int, np.ndarray] = {}
    gts = [gt_by_solution.setdefault(id(s.solution), s.gt_boxes) for s in samples]
    ious = batched_box_iou([a.boxes for a in answers], gts)
    cases: list[BoxCase | None] = [None] * len(pairs)
    for i, s, a, g, iou in zip(index, samples, answers, gts, ious):
        cases[i] = BoxCase(s, a, g, iou)
    return cases


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
    tasks, solutions, sizes, formats, model_sizes = (_column(columns, name, n) for name in REWARD_COLUMNS)
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
