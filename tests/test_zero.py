"""DeepSpeed ZeRO-2/3 on two CPU processes (DeepSpeed's CPU accelerator over gloo, as ``rft train --gpus 2``
runs it without GPUs): sharding changes no number of a GRPO run (full fine-tuning with a learning rate per
part and a supervised warm-up, frozen parts, LoRA with the vision tower), a ZeRO-3 run killed and resumed
repeats the uninterrupted one, and a ZeRO-3 checkpoint exports to the weights DeepSpeed's shards hold.

Each run is made once, when a test first needs it (:class:`Runs`), and compared by several tests.
Tolerances: rewards, losses and KLs of ZeRO runs equal the DDP run's to 1e-4 relative (measured: 1e-6;
the same sampled completions, summed in another order across the shards); weights to 1e-5."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

SHAPES = {"kind": "synthetic_shapes", "task": "classification"}
PLUGIN = '''
import os

import psutil

def length_reward(completions, *, trainer_state=None, **columns):
    """Shorter answers score higher. With RFT_TEST_KILL_AT=N, process 0 kills the whole run when step N+1
    scores its rollouts: ``rft train`` and every process under it at once (SIGKILL), as when the machine goes."""
    kill_at = os.environ.get("RFT_TEST_KILL_AT")
    if kill_at and trainer_state is not None and trainer_state.global_step >= int(kill_at) and os.environ.get("RANK") == "0":
        top = next(p for p in psutil.Process().parents() if "rft.cli" in p.cmdline())
        for process in [top, *top.children(recursive=True)]:
            process.kill()
    return [1.0 / (1 + len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]
'''
PIXELS = {"min_pixels": 3136, "max_pixels": 12544}
MODELS = {
    # full fine-tuning, a learning rate per part, a supervised warm-up, held-out answers shared out
    "full": {"tiny": {"family": "qwen2_vl"}, "freeze": {"vision": False}, "learning_rates": {"vision": 2e-3, "projector": 5e-4}},
    # vision tower and projector frozen: their image features cached across passes, decided by all processes
    "frozen": {"tiny": {"family": "qwen3_vl"}, "freeze": {"vision": True, "projector": True}, "learning_rates": {"language": 2e-3}},
    "lora": {"tiny": {"family": "qwen2_5_vl"}, "lora": {"enabled": True, "r": 4, "include_vision": True}},
}
LEARNING_RATE = 1e-3


def recipe(name: str, stage: int, out: Path, plugin: Path) -> dict:
    r = {
        "model": {**MODELS[name], **PIXELS},
        "data": {"datasets": [{**SHAPES, "name": "cls", "num_samples": 16}]},
        "rewards": [{"name": f"{plugin}:length_reward"}],
        "grpo": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "max_steps": 4,
                 "learning_rate": LEARNING_RATE},
        "distributed": {"zero_stage": stage},
        "output": {"dir": str(out), "report_to": [], "save_steps": 2, "save_total_limit": 3},
    }
    if name == "full":
        r["warmup"] = {"steps": 2, "batch_size": 3, "learning_rate": 1e-3}
        r["eval"] = {"datasets": [{**SHAPES, "name": "heldout", "num_samples": 3, "split": "eval"}], "every_steps": 2,
                     "max_new_tokens": 8, "batch_size": 1}
    return r


def rft(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``rft ARGS`` in a new process, its output captured."""
    return subprocess.run([sys.executable, "-m", "rft.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


class Runs:
    """Two-process GRPO runs, each made the first time a test asks for it."""

    def __init__(self, root: Path):
        self.root, self.done = root, {}
        self.plugin = root / "plugin.py"
        self.plugin.write_text(PLUGIN)

    def recipe_file(self, name: str, stage: int, out: Path) -> Path:
        path = out.parent / f"{out.name}.yaml"
        path.write_text(yaml.safe_dump(recipe(name, stage, out, self.plugin)))
        return path

    def __call__(self, name: str, stage: int) -> Path:
        if (name, stage) not in self.done:
            out = self.root / f"{name}_zero{stage}"
            if os.environ.get("DEVKEEP") and (out / "final").is_dir():
                self.done[name, stage] = out
                return out
            done = rft("train", str(self.recipe_file(name, stage, out)), "--gpus", "2")
            assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
            self.done[name, stage] = out
        return self.done[name, stage]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    if os.environ.get("DEVKEEP"):
        Path(os.environ["DEVKEEP"]).mkdir(exist_ok=True)
        return Runs(Path(os.environ["DEVKEEP"]))
    return Runs(tmp_path_factory.mktemp("zero"))


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def per_step(out: Path) -> dict[int, tuple[float, float, float]]:
    """Reward, loss and KL of every step of a run."""
    return {h["step"]: (h["reward"], h["loss"], h["kl"]) for h in metrics(out)["log_history"] if "reward" in h}


def lrs_by_part(groups: list[dict]) -> dict[str, float]:
    found = {}
    for g in groups:
        assert found.setdefault(g["part"], g["lr"]) == g["lr"]  # decayed and undecayed groups of a part agree
    return found


@pytest.mark.parametrize("name, stage", [("full", 2), ("full", 3), ("frozen", 3), ("lora", 3)])
def test_zero_run_repeats_the_ddp_run(runs, name, stage):
    """Same seed, same per-step rewards, losses and KLs as DDP; the sharded optimizer holds the recipe's
    learning rate per part, and each process holds about half the values DDP's does."""
    ddp, zero = runs(name, 0), runs(name, stage)
    a, b = per_step(ddp), per_step(zero)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    flat = [[x for step in sorted(run) for x in run[step]] for run in (a, b)]
    assert flat[1] == pytest.approx(flat[0], rel=1e-4, abs=1e-7)
    assert len({a[s][0] for s in a}) > 1 and a[4][2] > 1e-4  # rewards vary, the policy moved away from the reference
    groups = [metrics(run)["optimizer_groups"] for run in (ddp, zero)]
    wanted = {"vision": LEARNING_RATE, "projector": LEARNING_RATE, "language": LEARNING_RATE,
              **{k: v for k, v in MODELS[name].get("learning_rates", {}).items()}}
    for part, frozen in MODELS[name].get("freeze", {}).items():
        if frozen:
            del wanted[part]  # no optimizer group
    assert lrs_by_part(groups[0]) == lrs_by_part(groups[1]) == wanted
    held = [sum(g["values"] for g in gs) for gs in groups]
    assert 0.45 * held[0] <= held[1] <= 0.6 * held[0]  # process 0's shard of the optimizer's values
    if name == "full":  # the warm-up under DeepSpeed (each process on half of each batch) and held-out answers
        warmed = [load_file(run / "warmed_up" / "model.safetensors") for run in (ddp, zero)]
        assert warmed[0].keys() == warmed[1].keys()
        assert max((warmed[0][k] - warmed[1][k]).abs().max().item() for k in warmed[0]) < 1e-5
        for key in ("eval_before_grpo", "eval_after_grpo"):
            assert metrics(zero)[key] == pytest.approx(metrics(ddp)[key], rel=1e-6) and metrics(ddp)[key]


@pytest.mark.parametrize("name", ["full", "lora"])
def test_zero3_run_killed_and_resumed_repeats_the_straight_run(runs, tmp_path, name):
    """SIGKILL to every process during step 3 (after checkpoint-2), then ``--resume latest`` into the same
    output dir: the same rewards and KL as the uninterrupted ZeRO-3 run at every step."""
    out = tmp_path / "run"
    path = runs.recipe_file(name, 3, out)
    killed = rft("train", str(path), "--gpus", "2", env={"RFT_TEST_KILL_AT": "2"})
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"] and not (out / "final").exists()
    resumed = rft("train", str(path), "--gpus", "2", "--resume", "latest")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    straight, again = per_step(runs(name, 3)), per_step(out)
    assert sorted(again) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):  # reward and KL (steps 1-2 come from the checkpoint's trainer state)
        assert again[step][0::2] == pytest.approx(straight[step][0::2], rel=1e-4, abs=1e-7)
    assert straight[4][2] > 1e-4
