"""``rft train --gpus 2`` on a machine without GPUs: two CPU processes (torchrun, DDP over gloo) run
the multi-process path end to end: files shared between ranks, batches split across ranks, held-out
evaluation, checkpoints and the final model written once."""

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow

SHAPES = {"kind": "synthetic_shapes"}
RECIPE = {
    "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
    "data": {
        "datasets": [
            {**SHAPES, "name": "det", "task": "detection", "num_samples": 12, "negative_ratio": 0.5,
             "rewards": ["format", "detection_iou", "negative_sample"]},
            {**SHAPES, "name": "cls", "task": "classification", "num_samples": 12, "rewards": ["format", "classification_accuracy"]},
        ],
        "schedule": [{"dataset": "det", "batches": 2}, {"dataset": "cls", "batches": 1}],
    },
    "rewards": [{"name": "format"}, {"name": "detection_iou"}, {"name": "negative_sample"}, {"name": "classification_accuracy"}],
    "grpo": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "max_steps": 3},
    "eval": {"datasets": [{**SHAPES, "name": "heldout", "task": "classification", "num_samples": 4, "split": "eval"}],
             "every_steps": 1, "max_new_tokens": 8},
}


def rft(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``rft ARGS`` in a new process, its output captured."""
    return subprocess.run([sys.executable, "-m", "rft.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_two_cpu_processes_train_evaluate_and_save(tmp_path):
    out = tmp_path / "run"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "output": {"dir": str(out), "report_to": [], "save_steps": 3}}))
    done = rft("train", str(path), "--gpus", "2")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "torch.distributed.run --standalone --nproc_per_node 2" in log
    # 4 completions per process x 2 processes / 4 generations = 2 prompts per batch (1 on one process)
    assert log.count("batches of 2, 3 steps") == 2, log[-3000:]
    assert log.count("step    1/3") == 1  # one process group: only rank 0 reports (two would if each trained alone)
    metrics = json.loads((out / "metrics.json").read_text())
    det, det2, cls = [h for h in metrics["log_history"] if "reward" in h]
    for logs in (det, det2):  # the schedule holds across ranks: 2 detection batches, then 1 classification batch
        assert logs["rewards/detection_iou/mean"] is not None and logs["rewards/classification_accuracy/mean"] is None
    assert cls["rewards/classification_accuracy/mean"] is not None and cls["rewards/detection_iou/mean"] is None
    assert "eval/classification_accuracy" in det2  # step 1's held-out scores, reported with step 2's metrics
    assert "eval/classification_accuracy" in metrics["eval_before_grpo"] and "eval/format" in metrics["eval_after_grpo"]
    assert (out / "checkpoint-3" / "model.safetensors").is_file()
    assert (out / "final" / "model.safetensors").is_file()


LENGTH_REWARD = '''
def length_reward(completions, **columns):
    """Shorter answers score higher (varies with every sample, so a changed rollout shows)."""
    return [1.0 / (1 + len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]
'''


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_two_process_resume_repeats_the_straight_run(tmp_path, lora):
    """Resuming a two-process run from its step-2 checkpoint gives steps 3-4 and final weights equal to
    the uninterrupted run's (per-rank RNG states, data order, optimizer restored), with or without LoRA."""
    import shutil

    from safetensors.torch import load_file

    plugin = tmp_path / "plugin.py"
    plugin.write_text(LENGTH_REWARD)
    model = {**RECIPE["model"], "lora": {"enabled": lora, "r": 4}}
    recipe = {"model": model, "data": {"datasets": [{**SHAPES, "name": "cls", "task": "classification", "num_samples": 16}]},
              "rewards": [{"name": f"{plugin}:length_reward"}],
              "grpo": {**RECIPE["grpo"], "max_steps": 4, "learning_rate": 1e-3}}

    def run(out, *args):
        path = tmp_path / f"{out.name}.yaml"
        path.write_text(yaml.safe_dump({**recipe, "output": {"dir": str(out), "report_to": [], "save_steps": 2, "save_total_limit": 3}}))
        done = rft("train", str(path), "--gpus", "2", *args)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        history = json.loads((out / "metrics.json").read_text())["log_history"]
        return {h["step"]: (h["reward"], h["kl"]) for h in history if "reward" in h}

    straight = run(tmp_path / "a")
    from rft.train.checkpoints import process_count_note

    assert process_count_note(tmp_path / "a" / "checkpoint-2", 2) is None
    assert "written by 2 processes, on 1" in process_count_note(tmp_path / "a" / "checkpoint-2", 1)
    b = tmp_path / "b"
    b.mkdir()
    for name in ("tiny_model", "data", "checkpoint-2"):
        shutil.copytree(tmp_path / "a" / name, b / name)
    resumed = run(b, "--resume", "latest")
    assert sorted(resumed) == [1, 2, 3, 4]  # steps 1-2 come from the checkpoint's trainer state
    flat = [[x for step in sorted(run) for x in run[step]] for run in (straight, resumed)]
    assert flat[1] == pytest.approx(flat[0], abs=1e-6)  # rewards, and the KL from where GRPO started
    assert any(straight[k][0] != straight[1][0] for k in (2, 3, 4)) and straight[3][1] > 1e-4
    weights = "adapter_model.safetensors" if lora else "model.safetensors"
    a_final, b_final = (load_file(d / "final" / weights) for d in (tmp_path / "a", b))
    at_checkpoint = load_file(tmp_path / "a" / "checkpoint-2" / weights)
    moved = max((a_final[k] - at_checkpoint[k]).abs().max().item() for k in a_final)
    apart = max((a_final[k] - b_final[k]).abs().max().item() for k in a_final)
    assert moved > 2e-4 and apart < 0.1 * moved


FAILS_ON_RANK_0 = '''
import os

def fails_on_rank_0(completions, **columns):
    """Raises on every sample of process 0 only (a bug that only some samples trigger)."""
    if os.environ.get("RANK") == "0":
        raise ValueError("bad sample")
    return [0.5] * len(completions)
'''


def test_a_reward_failing_on_one_process_stops_every_process(tmp_path):
    """The reward guard's stop decision counts all processes' samples: the process whose samples fail
    and the one whose don't stop together, each with the clear error (deciding alone, process 0 stopped
    on its own 4 of 4 and process 1 died on the lost peer with a gloo error)."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(FAILS_ON_RANK_0)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "model": RECIPE["model"], "data": {"datasets": [{**SHAPES, "name": "cls", "task": "classification", "num_samples": 16}]},
        "rewards": [{"name": f"{plugin}:fails_on_rank_0"}], "grpo": {**RECIPE["grpo"], "max_steps": 4},
        "reward_guard": {"min_samples": 4, "max_failure_rate": 0.4}, "output": {"dir": str(tmp_path / "o"), "report_to": []},
    }))
    done = rft("train", str(path), "--gpus", "2", timeout=180)
    log = done.stdout + done.stderr
    assert done.returncode != 0
    assert log.count("reward 'fails_on_rank_0' failed on 4 of 8 samples (more than 40%)") == 2, log[-3000:]
    assert len((tmp_path / "o" / "failures.jsonl").read_text().splitlines()) == 4


SLOW_REWARD = '''
import os, time
from pathlib import Path

def slow_reward(completions, **columns):
    """Writes this process's pid for the test, then takes its time (a step lasts about a second)."""
    Path(os.environ["RFT_TEST_PIDS"], os.environ["RANK"]).write_text(str(os.getpid()))
    time.sleep(0.5)
    return [1.0 / (1 + len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]
'''


def test_sigterm_to_one_process_stops_all_at_one_checkpoint(tmp_path):
    """Preemption reaches the processes at different moments (here: only process 1): all of them
    still save the same checkpoint and stop, instead of process 1 leaving alone mid-run."""
    import os
    import signal
    import time

    plugin, pids = tmp_path / "plugin.py", tmp_path / "pids"
    plugin.write_text(SLOW_REWARD)
    pids.mkdir()
    out = tmp_path / "o"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "model": RECIPE["model"], "data": {"datasets": [{**SHAPES, "name": "cls", "task": "classification", "num_samples": 16}]},
        "rewards": [{"name": f"{plugin}:slow_reward"}], "grpo": {**RECIPE["grpo"], "max_steps": 40},
        "output": {"dir": str(out), "report_to": []},
    }))
    proc = subprocess.Popen([sys.executable, "-m", "rft.cli", "train", str(path), "--gpus", "2"],
                            env={**os.environ, "RFT_TEST_PIDS": str(pids)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (pids / "1").is_file() and proc.poll() is None:
        time.sleep(0.2)  # process 1 is scoring its first rollouts
    time.sleep(1.5)
    os.kill(int((pids / "1").read_text()), signal.SIGTERM)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 75, log[-3000:]  # the run's own status through torchrun (which exits 1)
    assert "received SIGTERM: saving a checkpoint" in log
    assert not (out / "final").exists()
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "model.safetensors").is_file()
    step = int(checkpoints[0].name.split("-")[1])
    assert 1 <= step < 40 and json.loads((checkpoints[0] / "trainer_state.json").read_text())["global_step"] == step


ORDER_SENSITIVE = '''
def answer_and_row(completions, solution, **columns):
    """A number that depends on each answer together with its own row: answers out of order change it."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [(sum(map(ord, t)) * (1 + sum(map(ord, str(s))))) % 97 / 97 for t, s in zip(texts, solution)]
'''


def test_heldout_answers_are_shared_out_and_gathered_in_order(tmp_path):
    """Two processes each answer half of the held-out rows (5 rows: one share padded) and score them
    all: the same scores as one process answering every row."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(ORDER_SENSITIVE)
    recipe = {"model": RECIPE["model"], "data": {"datasets": [{**SHAPES, "name": "cls", "task": "classification", "num_samples": 8}]},
              "rewards": [{"name": f"{plugin}:answer_and_row"}], "grpo": {**RECIPE["grpo"], "max_steps": 1},
              "eval": {"datasets": [{**SHAPES, "name": "heldout", "task": "classification", "num_samples": 5, "split": "eval"}],
                       "max_new_tokens": 8, "batch_size": 1}}
    scores = []
    for gpus in ("1", "2"):
        out = tmp_path / f"gpus{gpus}"
        path = tmp_path / f"r{gpus}.yaml"
        path.write_text(yaml.safe_dump({**recipe, "output": {"dir": str(out), "report_to": []}}))
        done = rft("train", str(path), "--gpus", gpus)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        scores.append(json.loads((out / "metrics.json").read_text())["eval_before_grpo"])
    assert scores[0] == scores[1] and 0 < scores[0]["eval/answer_and_row"] < 1


def test_rft_eval_on_two_processes_writes_what_one_writes(tmp_path):
    """``rft eval --gpus 2``: each process answers half of the rows (7 rows: one share padded), the
    first writes predictions, report and pictures, the same as one process (greedy, batch size 1)."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        **RECIPE, "output": {"dir": str(tmp_path / "run"), "report_to": []},
        "eval": {"datasets": [{**SHAPES, "name": "det", "task": "detection", "num_samples": 7, "negative_ratio": 0.3,
                               "split": "eval"}], "max_new_tokens": 12, "batch_size": 1, "pictures": 2},
    }))
    results = []
    for gpus in ("1", "2"):
        out = tmp_path / f"eval{gpus}"
        done = rft("eval", str(path), "--output-dir", str(out), "--gpus", gpus)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        report = json.loads((out / "report.json").read_text())
        report.pop("generation_seconds")
        predictions = [{k: v for k, v in json.loads(line).items() if k != "image"}  # the image path names the folder
                       for line in (out / "predictions.jsonl").read_text().splitlines()]
        results.append((predictions, report, len(list((out / "pictures").glob("*.png")))))
    assert results[0] == results[1]
    assert len(results[0][0]) == 7 and len({p["completion"] for p in results[0][0]}) > 1 and results[0][2] == 2


def test_dynamic_sampling_on_two_processes_keeps_equal_batches(tmp_path):
    """Dynamic sampling with two processes: each refills its own dropped groups, both generate the same
    number of prompts per round, and every trained group has spread on both, the schedule holding (an
    unequal batch would fail TRL's gathers)."""
    from test_dynamic_sampling import check_filtered_run, schedule_recipe

    recipe = schedule_recipe(tmp_path / "run")
    recipe["grpo"] = {**recipe["grpo"], "per_device_train_batch_size": 4}  # one group per process
    recipe["output"] = {**recipe["output"], "report_to": []}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    done = rft("train", str(path), "--gpus", "2")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    steps = check_filtered_run(json.loads((tmp_path / "run" / "metrics.json").read_text())["log_history"])
    assert any(s["dynamic_sampling/prompts"] > 2 for s in steps)
