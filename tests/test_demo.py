"""The demo recipe learns: GRPO raises the reward and held-out accuracy from chance (the whole demo,
a few minutes on 2 CPU cores)."""

import json

import pytest

from rft.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_learns(tmp_path):
    summary = run_demo(output_dir=str(tmp_path))
    assert summary["heldout_accuracy_before_grpo"] <= summary["chance"] + 0.1  # the warm-up taught format only
    assert summary["heldout_accuracy_after_grpo"] >= summary["chance"] + 0.15  # well above chance
    assert summary["reward_last_steps"] >= summary["reward_first_steps"] + 0.15  # a visible rise
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["demo_summary"] == summary
    assert (tmp_path / "reward_curve.png").stat().st_size > 20_000
