"""Reward plugins run guarded: one odd answer must not kill an hours-long run.

Each reward gets its own copy of the completions and columns, so a reward that changes them cannot
change what the next reward scores. An exception (``SystemExit`` included), a result of the wrong
length or a value that is not a finite number (Python, numpy or torch scalars are numbers) is recorded
in ``failures.jsonl`` (reward, sample id, completion, traceback) and the samples it hit get the
fallback (``None`` by default: "does not apply"). A batch that raised is scored again sample by sample
to find the samples at fault, within one more ``timeout`` in all; a batch that ran out of time fails
for all its samples. The run stops with a clear error only when failures exceed ``max_rate`` of the
samples seen (after ``min_samples``); at its end :meth:`FailureLog.summary` says how often each reward
failed. A ``KeyboardInterrupt`` raised in a reward is an interruption (``on_interrupt``), not a failure.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from rft.errors import RftError
from rft.processes import summed_over_processes

RewardFn = Callable[..., list]

FAILURES = (Exception, SystemExit)
"""What a reward may raise that counts as its failure (``sys.exit()`` in a plugin included)."""


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

    def summary(self, names: list[str]) -> str | None:
        """How often each of ``names`` failed, over all processes (a collective: every process calls it),
        or None when none did."""
        counts = summed_over_processes(*(self.failed.get(n, 0) for n in names), *(self.seen.get(n, 0) for n in names))
        failed = [(n, f, s) for n, f, s in zip(names, counts[:len(names)], counts[len(names):]) if f]
        if not failed:
            return None
        parts = ", ".join(f"{n!r} on {f} of {s} samples" for n, f, s in failed)
        return f"rewards failed during the run: {parts}; those samples scored the fallback; see {self.path}"


def _one(columns: dict[str, Any], i: int) -> dict[str, Any]:
    return {k: [v[i]] if isinstance(v, list) else v for k, v in columns.items()}


def private_copy(value: Any) -> Any:
    """``value`` copied as far as a reward could change it: lists, tuples, dicts and sets all the way down,
    images, arrays and tensors; strings and numbers are immutable, other objects (the trainer state, TRL's
    logging callables) are shared."""
    if isinstance(value, list):
        return [private_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(private_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: private_copy(v) for k, v in value.items()}
    if isinstance(value, (set, bytearray)):
        return type(value)(value)
    copy = getattr(value, "clone", None) or getattr(value, "copy", None)  # torch tensors; PIL images, numpy arrays
    return copy() if callable(copy) and type(value).__module__.split(".")[0] in ("torch", "PIL", "numpy") else value


def as_number(value: Any) -> float | None:
    """A reward value as a float (Python, numpy and torch scalars alike), ``None`` as is; raises
    ``ValueError`` for anything else or a non-finite number."""
    if value is None:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalars and 0-d arrays, 0-d torch tensors
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    raise ValueError(f"non-finite or non-numeric value {value!r}")


def _values(result: Any, n: int) -> list:
    """A reward's result as a list of ``n`` values (a list, tuple, 1-d array or tensor)."""
    if hasattr(result, "tolist") and getattr(result, "ndim", None) == 1:
        result = result.tolist()
    if not isinstance(result, (list, tuple)) or len(result) != n:
        length = len(result) if hasattr(result, "__len__") else "?"
        raise ValueError(f"returned {type(result).__name__} of length {length} for {n} completions")
    return list(result)


def guarded(fn: RewardFn, log: FailureLog, fallback: float | None = None, timeout: float | None = None,
            on_interrupt: Callable[[], None] | None = None) -> RewardFn:
    """``fn`` with failures isolated per sample, logged, and replaced by ``fallback`` (module docstring).
    ``on_interrupt`` is called when ``fn`` raises ``KeyboardInterrupt`` (else it propagates)."""
    name = fn.__name__

    def call(completions: list, columns: dict[str, Any]) -> list:
        return _values(fn(private_copy(completions), **private_copy(columns)), len(completions))

    @functools.wraps(fn)
    def safe(completions: list, **columns: Any) -> list:
        n = len(completions)
        shown = private_copy(completions)  # what the failure log shows, whatever fn does to its copy
        ids = list(columns.get("id") or [None] * n)
        failed: dict[int, str] = {}
        try:
            try:
                with time_limit(timeout):
                    values = call(completions, columns)
            except RewardTimeout as exc:
                values = [fallback] * n
                failed = {i: f"{exc} (a batch of {n} completions; not retried one by one)" for i in range(n)}
            except FAILURES:  # find the samples at fault, one by one, within one more time limit in all
                values, failed = retry_one_by_one(completions, columns)
        except KeyboardInterrupt:
            if on_interrupt is None:
                raise
            on_interrupt()
            return [fallback] * n
        for i, value in enumerate(values):
            if i in failed:
                continue
            try:
                values[i] = as_number(value)
            except ValueError as exc:
                failed[i] = str(exc)
        for i in sorted(failed):
            values[i] = fallback
            log.record(name, ids[i], shown[i], failed[i])
        log.count(name, n)
        return values

    def retry_one_by_one(completions: list, columns: dict[str, Any]) -> tuple[list, dict[int, str]]:
        n = len(completions)
        values, failed, current = [fallback] * n, {}, 0
        try:
            with time_limit(timeout):
                for current in range(n):
                    try:
                        values[current] = call([completions[current]], _one(columns, current))[0]
                    except RewardTimeout:
                        raise
                    except FAILURES as exc:
                        failed[current] = "".join(traceback.format_exception(exc))
        except RewardTimeout as exc:
            failed.update({i: f"{exc} (scoring the batch one by one, after it failed)" for i in range(current, n)
                           if i not in failed})
        return values, failed

    return safe
