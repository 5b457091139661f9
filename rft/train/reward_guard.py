"""Reward plugins run guarded: one odd answer must not kill an hours-long run.

An exception, a wrong-length result or a non-finite value from a reward is recorded in
``failures.jsonl`` (reward, sample id, completion, traceback); the samples it hit get the fallback
(``None`` by default: "does not apply"); the run stops with a clear error only when failures exceed
``max_rate`` of the samples seen (after ``min_samples``). A per-call time limit is available.
"""

from __future__ import annotations

import functools
import json
import math
import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from rft.errors import RftError
from rft.processes import summed_over_processes

RewardFn = Callable[..., list]


class RewardFailure(RftError):
    """A reward failed on too many samples."""


class RewardTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`RewardTimeout` after ``seconds`` (main thread only; elsewhere no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise RewardTimeout(f"reward call took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class FailureLog:
    """Counts samples and failures per reward and appends each failure to a JSONL file."""

    def __init__(self, path: str | Path, max_rate: float = 0.1, min_samples: int = 20):
        self.path, self.max_rate, self.min_samples = Path(path), max_rate, min_samples
        self.seen: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def record(self, name: str, sample_id: Any, completion: Any, error: str) -> None:
        self.failed[name] = self.failed.get(name, 0) + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"reward": name, "sample": sample_id, "completion": completion, "error": error},
                               default=str) + "\n")

    def count(self, name: str, n: int) -> None:
        self.seen[name] = self.seen.get(name, 0) + n
        seen, failed = summed_over_processes(self.seen[name], self.failed.get(name, 0))
        if seen >= self.min_samples and failed > self.max_rate * seen:
            raise RewardFailure(
                f"reward {name!r} failed on {failed} of {seen} samples (more than {self.max_rate:.0%}); "
                f"the failures, with completions and tracebacks, are in {self.path}"
            )


def _one(columns: dict[str, Any], i: int) -> dict[str, Any]:
    return {k: [v[i]] if isinstance(v, list) else v for k, v in columns.items()}


def guarded(fn: RewardFn, log: FailureLog, fallback: float | None = None, timeout: float | None = None) -> RewardFn:
    """``fn`` with failures isolated per sample, logged, and replaced by ``fallback``."""
    name = fn.__name__

    def call(completions: list, columns: dict[str, Any]) -> list:
        with time_limit(timeout):
            values = fn(completions, **columns)
        if not isinstance(values, (list, tuple)) or len(values) != len(completions):
            raise ValueError(f"returned {type(values).__name__} of length {len(values) if hasattr(values, '__len__') else '?'} "
                             f"for {len(completions)} completions")
        return list(values)

    @functools.wraps(fn)
    def safe(completions: list, **columns: Any) -> list:
        ids = columns.get("id") or [None] * len(completions)
        try:
            values = call(completions, columns)
        except Exception:  # find the samples at fault, one by one
            values = []
            for i, completion in enumerate(completions):
                try:
                    values += call([completion], _one(columns, i))
                except Exception as exc:
                    log.record(name, ids[i], completion, "".join(traceback.format_exception(exc)))
                    values.append(fallback)
        for i, value in enumerate(values):
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
                log.record(name, ids[i], completions[i], f"non-finite or non-numeric value {value!r}")
                values[i] = fallback
        log.count(name, len(completions))
        return values

    return safe
