"""The demo-with-dynamic-sampling comparison's bookkeeping (its runs are recorded in docs/demo.md)."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("demo_sampling", ROOT / "bench" / "demo_sampling.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def write_run(folder: Path, rewards, unfiltered=None):
    folder.mkdir()
    history = []
    for step, reward in enumerate(rewards, 1):
        h = {"step": step, "reward": reward}
        if unfiltered is not None:
            h.update({"dynamic_sampling/unfiltered_reward": unfiltered[step - 1], "dynamic_sampling/filtered": 0.5,
                      "dynamic_sampling/rounds": 2.0, "dynamic_sampling/prompts": 12.0})
        history.append(h)
    history.append({"step": len(rewards), "train_runtime": 9.0})
    (folder / "metrics.json").write_text(json.dumps({"log_history": history, "eval_before_grpo": {}, "eval_after_grpo": {}}))
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"grpo": {"per_device_train_batch_size": 64, "num_generations": 8}}))
    return folder


def test_steps_to_the_plain_runs_final_reward_on_unfiltered_rewards(tmp_path):
    plain = write_run(tmp_path / "plain", [0.0, 0.2, 0.4, 0.6, 0.8, 0.8])
    # the filtered run's logged reward is the kept batch's; the policy's is the unfiltered one
    filtered = write_run(tmp_path / "filtered", [0.5] * 6, unfiltered=[0.0, 0.6, 0.8, 0.8, 0.9, 0.9])
    target = bench.summary(plain, None, window=2)["final_reward"]
    assert target == pytest.approx(0.8)
    a, b = bench.summary(plain, target, 2), bench.summary(filtered, target, 2)
    assert a["steps_to_target"] == 6 and b["steps_to_target"] == 4  # trailing 2-step means reach 0.8 at steps 6 and 4
    assert a["prompts_generated"] == 6 * 8 and b["prompts_generated"] == 6 * 12 and b["filtered_mean"] == 0.5
    assert b["final_reward"] == pytest.approx(0.9) and a["train_runtime_s"] == 9.0
