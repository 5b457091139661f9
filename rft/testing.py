"""Helpers for testing reward plugins with pytest.

    from rft.testing import check_reward

    def test_my_reward():
        scores = check_reward(my_reward, [
            {"completion": "<answer>cat</answer>", "solution": {"label": "cat"}, "task": "classification"},
        ])
        assert scores == [1.0]
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

MALFORMED_COMPLETIONS: tuple[Any, ...] = (
    "",
    "   ",
    "<answer></answer>",
    "<answer>",
    "</answer><answer>",
    "<think>never closed",
    "<think></think><answer>NaN</answer>",
    "<answer>[[nan, nan, nan, nan]]</answer>",
    "<answer>[[NaN, 1, 2, 3], [Infinity, 0, 5, 5]]</answer>",
    '<answer>[{"bbox_2d": [1e400, 0, 5, 5], "label": "x"}]</answer>',
    '<answer>[{"bbox_2d": [5, 5, 1, 1]}, {"bbox_2d": [3, 3, 3, 3]}]</answer>',
    '<answer>[{"Position": [1, 2, 3, 4], "Confidence": NaN}]</answer>',
    '<answer>[{"Position": "1,2,3,4", "Confidence": "high"}]</answer>',
    "<answer>[" + "[" * 5000 + "</answer>",
    "<answer>" + "[1, 2, 3, 4], " * 3000 + "</answer>",
    "<answer>" + "9" * 20000 + "</answer>",
    "\x00\ufffd<answer>\u202e</answer>",
    "<answer>A or B</answer>",
    "<answer>{'a': </answer>",
    [{"role": "assistant", "content": "<answer>none</answer>"}],
    [{"role": "assistant", "content": [{"type": "text", "text": "<answer>[]</answer>"}]}],
    [{"role": "assistant", "content": None}],
    [],
)
"""Completions a reward must survive: empty, truncated, non-finite, inverted, huge, hostile."""


def _check_values(name: str, values: Any, n: int, low: float, high: float, what: str) -> list[float | None]:
    if not isinstance(values, (list, tuple)):
        raise AssertionError(f"{name} returned {type(values).__name__} for {what}; expected a list")
    if len(values) != n:
        raise AssertionError(f"{name} returned {len(values)} values for {n} completions ({what})")
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AssertionError(f"{name} returned {value!r} (a {type(value).__name__}) for {what}, item {i}")
        if not math.isfinite(value) or not low <= value <= high:
            raise AssertionError(f"{name} returned {value!r} for {what}, item {i}: not finite in [{low}, {high}]")
    return list(values)


def _columns(samples: Sequence[dict]) -> dict[str, list]:
    keys = sorted({k for s in samples for k in s if k != "completion"})
    return {k: [s.get(k) for s in samples] for k in keys}


def check_reward(
    fn: Callable[..., list],
    samples: Sequence[dict],
    low: float = 0.0,
    high: float = 1.0,
    malformed: Sequence[Any] = MALFORMED_COMPLETIONS,
) -> list[float | None]:
    """Check the reward contract on ``samples`` and return the rewards of their completions.

    Each sample is a dict with a ``completion`` and the dataset columns the reward reads. The
    reward must return one value per completion, each ``None`` or a finite number in
    [``low``, ``high``]; and it must not raise on any of ``malformed`` completions paired with
    each sample's columns. Raises ``AssertionError`` naming the case that broke the contract.
    """
    name = getattr(fn, "__name__", repr(fn))
    if not samples:
        raise AssertionError("check_reward needs at least one sample")
    columns = _columns(samples)

    def run(batch: list, cols: dict[str, list], what: str) -> list[float | None]:
        try:
            values = fn(batch, **cols)
        except Exception as exc:
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc} on {what}") from exc
        return _check_values(name, values, len(batch), low, high, what)

    result = run([s["completion"] for s in samples], columns, "the given samples")
    for i in range(len(samples)):
        batch = list(malformed)
        run(batch, {k: [v[i]] * len(batch) for k, v in columns.items()}, f"malformed completions with sample {i}")
    return result
