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


def test_sys_exit_in_a_reward_is_a_failure_of_that_reward(tmp_path):
    """A reward calling sys.exit() killed the run with no message, record or checkpoint."""
    import sys

    def exits(completions, **columns):
        if len(completions) > 1 or completions[0] == "2":
            sys.exit(3)
        return [1.0]

    fn = guarded(exits, FailureLog(tmp_path / "f.jsonl", max_rate=1.0))
    assert fn(["1", "2", "3"], id=["a", "b", "c"]) == [1.0, None, 1.0]
    records = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [r["sample"] for r in records] == ["b"] and "SystemExit: 3" in records[0]["error"]


def test_keyboard_interrupt_in_a_reward_is_an_interruption(tmp_path):
    def interrupts(completions, **columns):
        raise KeyboardInterrupt

    log = FailureLog(tmp_path / "f.jsonl", max_rate=0.0, min_samples=1)
    asked = []
    assert guarded(interrupts, log, fallback=0.0, on_interrupt=lambda: asked.append(1))(["1", "2"]) == [0.0, 0.0]
    assert asked == [1] and not (tmp_path / "f.jsonl").exists()  # no failure: the run stops at the step's end
    with pytest.raises(KeyboardInterrupt):
        guarded(interrupts, log)(["1"])


def test_each_reward_gets_its_own_copy_of_completions_and_columns(tmp_path):
    """A reward rewriting completions or columns in place changed what the next rewards scored."""
    def vandal(completions, solution, **columns):
        completions[0][0]["content"] = "<answer>cat</answer>"
        completions.reverse()
        solution[1]["label"] = "dog"
        columns["task"].clear()
        return [0.0] * 2

    seen = []

    def honest(completions, solution, task, **columns):
        seen.append(([c[0]["content"] for c in completions], [s["label"] for s in solution], list(task)))
        return [1.0] * len(completions)

    completions = [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]]
    columns = {"solution": [{"label": "a"}, {"label": "b"}], "task": ["classification"] * 2, "id": ["s1", "s2"]}
    log = FailureLog(tmp_path / "f.jsonl", max_rate=1.0)
    assert guarded(vandal, log)(completions, **columns) == [0.0, 0.0]
    assert guarded(honest, log)(completions, **columns) == [1.0, 1.0]
    assert seen == [(["a", "b"], ["a", "b"], ["classification", "classification"])]


def test_clearing_completions_and_returning_the_wrong_length_is_that_rewards_failure(tmp_path):
    """``completions.clear(); return []`` got past the guard's length check to a TRL traceback."""
    def clears(completions, **columns):
        completions.clear()
        return []

    fn = guarded(clears, FailureLog(tmp_path / "f.jsonl", max_rate=1.0), fallback=0.25)
    assert fn(["1", "2", "3"], id=["a", "b", "c"]) == [0.25, 0.25, 0.25]
    records = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [r["completion"] for r in records] == ["1", "2", "3"]  # what was scored, not what the reward left
    assert "returned list of length 0 for 1 completions" in records[0]["error"]


def test_numpy_and_torch_scalars_are_numbers(tmp_path):
    import numpy as np
    import torch

    values = [np.float32(0.5), np.float64(0.25), np.int64(1), torch.tensor(0.75), np.array(0.125), True, None]

    def typed(completions, **columns):
        return values

    fn = guarded(typed, FailureLog(tmp_path / "f.jsonl", max_rate=0.0, min_samples=1))
    out = fn([str(i) for i in range(len(values))])
    assert out == [0.5, 0.25, 1.0, 0.75, 0.125, 1.0, None] and all(type(v) is float for v in out[:-1])
    assert guarded(lambda completions, **c: np.array([0.5, 1.0]), FailureLog(tmp_path / "g.jsonl"))(["a", "b"]) == [0.5, 1.0]
    assert not (tmp_path / "f.jsonl").exists()
    bad = guarded(lambda completions, **c: [torch.tensor(float("nan")), "0.5"], FailureLog(tmp_path / "h.jsonl", max_rate=1.0))
    assert bad(["a", "b"]) == [None, None]


def test_a_timed_out_batch_costs_one_time_limit_not_one_per_sample(tmp_path):
    """A timed-out batch was retried sample by sample, each with the full limit: about (batch size + 1) x
    timeout_s. It now fails for all its samples."""
    def slow(completions, **columns):
        time.sleep(0.4 * len(completions))
        return [1.0] * len(completions)

    fn = guarded(slow, FailureLog(tmp_path / "f.jsonl", max_rate=1.0), timeout=0.3)
    start = time.monotonic()
    assert fn([str(i) for i in range(6)]) == [None] * 6
    assert time.monotonic() - start < 0.8
    assert (tmp_path / "f.jsonl").read_text().count("longer than 0.3 s") == 6


def test_the_one_by_one_retry_after_an_exception_is_bounded_by_one_more_time_limit(tmp_path):
    def fails_then_slow(completions, **columns):
        if len(completions) > 1:
            raise ValueError("batch failure")
        time.sleep(0.2)
        return [1.0]

    fn = guarded(fails_then_slow, FailureLog(tmp_path / "f.jsonl", max_rate=1.0), timeout=0.5)
    start = time.monotonic()
    out = fn([str(i) for i in range(8)])
    assert time.monotonic() - start < 1.0
    assert out[:2] == [1.0, 1.0] and out[-1] is None  # scored until the one extra time limit ran out


def test_summary_counts_failures_per_reward(tmp_path):
    log = FailureLog(tmp_path / "f.jsonl", max_rate=1.0)
    guarded(every_fifth_raises, log)([str(i) for i in range(1, 11)])
    guarded(nan_on_odd, log)(["2", "4"])
    assert log.summary(["every_fifth_raises", "nan_on_odd"]) == (
        f"rewards failed during the run: 'every_fifth_raises' on 2 of 10 samples; those samples scored the fallback; "
        f"see {tmp_path / 'f.jsonl'}")
    assert log.summary(["nan_on_odd"]) is None
