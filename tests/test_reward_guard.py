"""Guarded rewards: failures are logged and replaced, too many stop the run with a clear message."""

import json
import math
import time

import pytest

from rft.train.reward_guard import FailureLog, RewardFailure, guarded


def every_fifth_raises(completions, **columns):
    out = []
    for c in completions:
        if int(c) % 5 == 0:
            raise ValueError(f"cannot score {c}")
        out.append(1.0)
    return out


def nan_on_odd(completions, **columns):
    return [math.nan if int(c) % 2 else 0.5 for c in completions]


def test_failures_are_isolated_logged_and_replaced(tmp_path):
    log = FailureLog(tmp_path / "failures.jsonl", max_rate=0.5)
    fn = guarded(every_fifth_raises, log)
    completions = [str(i) for i in range(1, 11)]
    assert fn(completions, id=[f"s{i}" for i in range(1, 11)]) == [1.0] * 4 + [None] + [1.0] * 4 + [None]
    records = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert [r["sample"] for r in records] == ["s5", "s10"] and records[0]["completion"] == "5"
    assert records[0]["reward"] == "every_fifth_raises" and "cannot score 5" in records[0]["error"]
    assert fn.__name__ == "every_fifth_raises"


def test_non_finite_values_use_the_fallback(tmp_path):
    fn = guarded(nan_on_odd, FailureLog(tmp_path / "f.jsonl", max_rate=1.0), fallback=0.0)
    assert fn(["1", "2"]) == [0.0, 0.5]
    assert "non-finite" in (tmp_path / "f.jsonl").read_text()


def test_too_many_failures_stop_with_a_clear_message(tmp_path):
    def always(completions, **columns):
        raise RuntimeError("broken plugin")

    fn = guarded(always, FailureLog(tmp_path / "f.jsonl", max_rate=0.1, min_samples=4))
    with pytest.raises(RewardFailure, match=r"reward .always. failed on 4 of 4 samples .*/f.jsonl"):
        fn(["1", "2", "3", "4"])


def test_wrong_length_is_a_failure(tmp_path):
    def short(completions, **columns):
        return [1.0]

    fn = guarded(short, FailureLog(tmp_path / "f.jsonl", max_rate=1.0))
    assert fn(["1", "2"]) == [1.0, 1.0]  # retried one by one, each of length 1
    assert fn(["1"]) == [1.0]


def test_time_limit(tmp_path):
    def slow(completions, **columns):
        time.sleep(2)
        return [1.0] * len(completions)

    fn = guarded(slow, FailureLog(tmp_path / "f.jsonl", max_rate=1.0), timeout=0.2)
    start = time.monotonic()
    assert fn(["1"]) == [None]
    assert time.monotonic() - start < 1.5
    assert "longer than 0.2 s" in (tmp_path / "f.jsonl").read_text()
