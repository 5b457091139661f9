"""The GRPO throughput bench's bookkeeping (the GPU runs themselves are recorded in docs/performance.md)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("grpo_throughput", ROOT / "bench" / "grpo_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def timer_with_steps(step_starts, profile_step=None):
    timer = bench.PhaseTimer()
    timer.step_starts = step_starts
    timer.profile_step = profile_step
    n = len(step_starts)
    timer.totals = {"training_step": [9.0] * n, "generate_and_score": [4.0] * n, "generate_with_sync": [2.5] * n,
                    "weight_sync": [0.5] * n, "logprob_passes": [1.0] * n, "rewards": [0.1] * n}
    if profile_step:  # the profiled step is slow in every phase
        for values in timer.totals.values():
            values[profile_step - 1] *= 10
    timer.generated_tokens, timer.train_tokens = [100] * n, [300] * n
    timer.vision_per_step = [{"seconds": 0.2 * i, "images": 16 * i} for i in range(n)]
    return timer


def test_report_takes_medians_after_the_first_step_and_leaves_the_profiled_step_out():
    report = timer_with_steps([0.0, 20.0, 30.0, 40.5, 51.0, 61.0], profile_step=6).report()
    assert report["s_per_step"] == pytest.approx(10.25)  # steps 2-5: 10, 10.5, 10.5, 10 (step 6, profiled, has no interval)
    short = timer_with_steps([0.0, 20.0, 30.0, 40.0], profile_step=4)
    short.totals["rewards"] = [5.0, 0.1, 0.3, 50.0]  # step 1 (compiling) and step 4 (profiled) are left out
    assert short.report()["phases"]["rewards"] == pytest.approx(0.2)
    phases = report["phases"]
    assert phases["generation"] == pytest.approx(2.0) and phases["weight_sync"] == pytest.approx(0.5)
    assert phases["forward_backward"] == pytest.approx(5.0)  # training_step - generate_and_score
    assert phases["other_scoring"] == pytest.approx(4.0 - 2.5 - 1.0 - 0.1)
    assert report["vision_tower_images"] == 16 and report["vision_tower_s"] == pytest.approx(0.2)


def test_completion_log_cost_per_logged_step_and_at_the_default_interval():
    timer = timer_with_steps([0.0, 20.0, 30.0])
    timer.totals["completion_log"] = [0.5, 0.002, 0.004]  # the first (imports) is left out
    timer.totals["completion_log_background"] = [1.0, 0.03, 0.05, 0.04]
    logs = timer.report()["completion_log"]
    assert logs == {"logged_steps": 3, "training_thread_s": pytest.approx(0.003), "background_s": pytest.approx(0.04)}
    line = bench.completion_log_line({"s_per_step": 10.0, "completion_log": logs})
    assert line == ("completion log: 3.0 ms on the training thread + 40 ms in the background per logged step (3 logged); "
                    "every 50 steps: 0.0006% of a step on the training thread")
    assert bench.completion_log_line({"s_per_step": 10.0}) is None


def test_mfu_counts_training_and_generation_flops():
    result = {"s_per_step": 2.0, "train_tokens": 1000, "generated_tokens": 500}
    assert bench.mfu(result, params=10**9, peak_tflops=1.0) == pytest.approx((6e12 + 1e12) / 2e12)
    assert bench.mfu(result, params=10**9, peak_tflops=None) is None


def _report(mode, s_per_step, peak):
    phases = dict.fromkeys(bench.PHASES, s_per_step / 10)
    return {"params": 3_750_000_000, "bf16_peak_tflops": peak,
            "results": {mode: {"s_per_step": s_per_step, "generated_tokens": 16384, "train_tokens": 42304,
                               "peak_gpu_gib": 90.0, "phases": phases, "vision_tower_s": 0.3, "vision_tower_images": 16}}}


def test_merge_prints_one_table_with_the_speed_ratios_and_draws_the_phase_split(tmp_path):
    files = []
    for mode, seconds, peak in (("A", 40.0, 700.0), ("B", 30.0, 800.0), ("C", 6.0, 750.0)):
        files.append(tmp_path / f"{mode}.json")
        files[-1].write_text(json.dumps(_report(mode, seconds, peak)))
    png = tmp_path / "split.png"
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "grpo_throughput.py"), "--merge", *map(str, files),
                          "--plot", str(png)], capture_output=True, text=True, check=True).stdout
    assert "measured bf16 peak 800 TFLOP/s" in out  # the highest of the runs' measurements
    rows = [line for line in out.splitlines() if line[:1] in "ABC" and " | " in line]
    assert [r.split(" | ")[1] for r in rows] == ["40.00", "30.00", "6.00"]
    assert "(C) is 6.67x faster per step than (A)" in out and "(C) is 5.00x faster per step than (B)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
