"""``rft train --gpus 2`` on a machine without GPUs: two CPU processes (torchrun, DDP over gloo) run
the multi-process path end to end: files shared between ranks, batches split across ranks, held-out
evaluation, checkpoints and the final model written once."""

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow

SHAPES = {"kind": "synthetic_shapes", "task": "classification"}
RECIPE = {
    "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
    "data": {"datasets": [{**SHAPES, "name": "cls", "num_samples": 16}]},
    "rewards": [{"name": "format"}, {"name": "classification_accuracy"}],
    "grpo": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "max_steps": 2},
    "eval": {"datasets": [{**SHAPES, "name": "heldout", "num_samples": 4, "split": "eval"}], "every_steps": 1,
             "max_new_tokens": 8},
}


def test_two_cpu_processes_train_evaluate_and_save(tmp_path):
    out = tmp_path / "run"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "output": {"dir": str(out), "report_to": [], "save_steps": 2}}))
    done = subprocess.run([sys.executable, "-m", "rft.cli", "train", str(path), "--gpus", "2"],
                          capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "torch.distributed.run --standalone --nproc_per_node 2" in log
    # 4 completions per process x 2 processes / 4 generations = 2 prompts per batch (1 on one process)
    assert log.count("batches of 2, 2 steps") == 2, log[-3000:]
    assert log.count("step    1/2") == 1  # one process group: only rank 0 reports (two would if each trained alone)
    metrics = json.loads((out / "metrics.json").read_text())
    steps = [h for h in metrics["log_history"] if "reward" in h]
    assert [h["step"] for h in steps] == [1, 2]
    assert "eval/classification_accuracy" in steps[1]  # step 1's held-out scores, reported with step 2's metrics
    assert "eval/classification_accuracy" in metrics["eval_before_grpo"] and "eval/format" in metrics["eval_after_grpo"]
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    assert (out / "final" / "model.safetensors").is_file()


def test_zero_stage_without_gpus_is_a_clear_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "distributed": {"zero_stage": 3}, "output": {"dir": str(tmp_path / "o")}}))
    done = subprocess.run([sys.executable, "-m", "rft.cli", "train", str(path), "--gpus", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "distributed.zero_stage 3 needs GPUs" in done.stderr
