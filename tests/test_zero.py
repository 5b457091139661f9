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

from rft.train.checkpoints import latest_checkpoint

pytestmark = pytest.mark.slow

SHAPES = {"kind": "synthetic_shapes", "task": "classification"}
PLUGIN = '''
import os
import threading
import time
from pathlib import Path

import psutil

def kill_the_run():
    """SIGKILL to ``rft train`` and every process under it at once, as when the machine goes."""
    top = next(p for p in psutil.Process().parents() if "rft.cli" in p.cmdline())
    for process in [top, *top.children(recursive=True)]:
        process.kill()

def kill_while_writing(staged):
    """Kill the run as soon as a file of DeepSpeed's shards appears in the staged checkpoint ``staged``."""
    while not any(p.is_file() for p in staged.glob("global_step*/*")):
        time.sleep(0.001)
    kill_the_run()

def length_reward(completions, *, trainer_state=None, **columns):
    """Shorter answers score higher. With RFT_TEST_KILL_AT=N, process 0 kills the whole run when step N+1
    scores its rollouts; with RFT_TEST_KILL_SAVING=DIR (a staged checkpoint folder), while that checkpoint
    is being written."""
    staged = os.environ.pop("RFT_TEST_KILL_SAVING", None)
    if staged and os.environ.get("RANK") == "0":
        threading.Thread(target=kill_while_writing, args=(Path(staged),), daemon=True).start()
    kill_at = os.environ.get("RFT_TEST_KILL_AT")
    if kill_at and trainer_state is not None and trainer_state.global_step >= int(kill_at) and os.environ.get("RANK") == "0":
        kill_the_run()
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
            done = rft("train", str(self.recipe_file(name, stage, out)), "--gpus", "2")
            assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
            self.done[name, stage] = out
        return self.done[name, stage]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
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
    assert latest_checkpoint(out).name == "checkpoint-2" and not (out / "final").exists()
    resumed = rft("train", str(path), "--gpus", "2", "--resume", "latest")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    straight, again = per_step(runs(name, 3)), per_step(out)
    assert sorted(again) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):  # reward and KL (steps 1-2 come from the checkpoint's trainer state)
        assert again[step][0::2] == pytest.approx(straight[step][0::2], rel=1e-4, abs=1e-7)
    assert straight[4][2] > 1e-4


def test_zero3_run_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(runs, tmp_path):
    """SIGKILL to every process while DeepSpeed writes checkpoint-4's shards: checkpoint-4 is not there (only
    its staging folder), ``--resume latest`` takes checkpoint-2 and the run repeats the straight one."""
    from rft.train.checkpoints import INCOMPLETE

    out = tmp_path / "run"
    path = runs.recipe_file("lora", 3, out)
    staged = out / INCOMPLETE / "checkpoint-4"
    killed = rft("train", str(path), "--gpus", "2", env={"RFT_TEST_KILL_SAVING": str(staged)})
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    assert staged.is_dir() and not (out / "checkpoint-4").exists() and not (out / "final").exists()
    assert latest_checkpoint(out).name == "checkpoint-2"
    resumed = rft("train", str(path), "--gpus", "2", "--resume", "latest")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    straight, again = per_step(runs("lora", 3)), per_step(out)
    assert sorted(again) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert again[step][0::2] == pytest.approx(straight[step][0::2], rel=1e-4, abs=1e-7)
    assert (out / "checkpoint-4").is_dir() and not staged.exists()


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of the model ``from_pretrained`` loads from ``folder``."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder).state_dict()


def export(recipe_path: Path, checkpoint: Path, out: Path) -> dict[str, torch.Tensor]:
    """``rft export`` of ``checkpoint``; the weights ``from_pretrained`` loads from the folder it writes."""
    from rft.cli import main

    with pytest.raises(SystemExit) as done:
        main(["export", str(recipe_path), "--model", str(checkpoint), "--out", str(out)])
    assert done.value.code == 0
    return weights(out)


def deepspeed_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The fp32 weights DeepSpeed's own tool consolidates from the checkpoint's ZeRO shards (``global_stepN``)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint))


def test_export_of_a_zero3_checkpoint_holds_the_sharded_weights(runs, tmp_path):
    """``rft export`` of a ZeRO-3 checkpoint loads with ``from_pretrained``, its weights equal tensor by tensor
    to DeepSpeed's consolidation of the shards the processes held at save time."""
    run = runs("full", 3)
    exported = export(run.parent / f"{run.name}.yaml", run / "checkpoint-4", tmp_path / "exported")
    shards = deepspeed_weights(run / "checkpoint-4")
    assert exported.keys() == shards.keys()
    assert all(torch.equal(exported[k], shards[k]) for k in shards)
    warmed = weights(run / "warmed_up")
    assert max((exported[k] - warmed[k]).abs().max().item() for k in warmed) > 1e-4  # GRPO's steps are in them


def test_export_of_a_zero3_lora_checkpoint_merges_the_sharded_adapter(runs, tmp_path):
    """A LoRA run under ZeRO-3 shards only the adapters and the projector trained next to them: the export is
    the base model with each adapter merged, W + alpha / r * B @ A, and the projector the shards hold."""
    run = runs("lora", 3)
    checkpoint = run / "checkpoint-4"
    exported = export(run.parent / f"{run.name}.yaml", checkpoint, tmp_path / "exported")
    scale = json.loads((checkpoint / "adapter_config.json").read_text())
    scale = scale["lora_alpha"] / scale["r"]
    expected = weights(run / "tiny_model")
    shards = deepspeed_weights(checkpoint)
    merged = 0
    for key, value in shards.items():
        name = key.removeprefix("base_model.model.")
        if ".lora_A.default." in name:
            module = name.split(".lora_A.")[0]
            b = shards[key.replace(".lora_A.", ".lora_B.")]
            expected[f"{module}.weight"] = expected[f"{module}.weight"] + scale * b @ value
            merged += 1
        elif ".modules_to_save.default." in name:
            expected[name.replace(".modules_to_save.default.", ".")] = value
    assert merged and any(".visual.blocks." in k and ".lora_A." in k for k in shards)  # the vision tower's adapters too
    assert exported.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(exported[key], expected[key], rtol=0, atol=1e-6)


def test_rft_eval_of_a_zero3_export_on_two_processes_reports_what_one_does(runs, tmp_path):
    run = runs("full", 3)
    recipe_path = run.parent / f"{run.name}.yaml"
    export(recipe_path, run / "checkpoint-4", tmp_path / "exported")
    results = []
    for gpus in ("1", "2"):
        out = tmp_path / f"eval{gpus}"
        done = rft("eval", str(recipe_path), "--model", str(tmp_path / "exported"), "--output-dir", str(out), "--gpus", gpus)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        report = json.loads((out / "report.json").read_text())
        report.pop("generation_seconds")
        predictions = [{k: v for k, v in json.loads(line).items() if k != "image"}
                       for line in (out / "predictions.jsonl").read_text().splitlines()]
        results.append((predictions, report))
    assert results[0] == results[1] and len(results[0][0]) == 3


def test_zero_helpers_against_deepspeed_itself(tmp_path):
    """On two processes: accelerate's DeepSpeed state on CPUs, the frozen-feature cache when processes
    disagree on a cache hit under ZeRO-3 (without the joint decision, process 1 waits forever in the
    tower's parameter gathers), and a non-finite step skipped by ZeRO-3 (tests/zero_worker.py)."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(Path(__file__).parent / "zero_worker.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert done.stdout.count("ok ") == 3, done.stdout
