"""Reliability: exact resume after SIGKILL, checkpoint on SIGTERM, guarded reward plugins in training."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from safetensors.torch import load_file

from rft.recipe import validate
from rft.train.checkpoints import latest_checkpoint
from rft.train.reward_guard import RewardFailure
from rft.train.run import train

pytestmark = pytest.mark.slow

PLUGIN = textwrap.dedent('''
    import os, signal, time

    def length_reward(completions, *, trainer_state=None, **columns):
        """Shorter answers score higher; with RFT_TEST_KILL_AT=N the process kills itself at step N."""
        kill_at = os.environ.get("RFT_TEST_KILL_AT")
        if kill_at and trainer_state is not None and trainer_state.global_step >= int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("RFT_TEST_SLOW"):
            time.sleep(0.5)
        return [1.0 / (1 + len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]

    _singles = [0]

    def every_fifth_raises(completions, **columns):
        """Fails on whole batches, then on every fifth completion scored alone."""
        if len(completions) > 1:
            raise ValueError("batch failure")
        _singles[0] += 1
        if _singles[0] % 5 == 0:
            raise ValueError("odd answer")
        return [0.5]

    def always_raises(completions, **columns):
        raise RuntimeError("broken plugin")
''')


def recipe_dict(tmp_path, out, rewards, **grpo):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    return {
        "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
        "data": {"datasets": [{"name": "cls", "kind": "synthetic_shapes", "num_samples": 16}]},
        "rewards": [{"name": f"{plugin}:{r}"} for r in rewards],
        "reward_guard": {"min_samples": 4, "max_failure_rate": 0.5},
        "grpo": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "max_steps": 4,
                 "learning_rate": 1e-3, **grpo},
        "output": {"dir": str(out), "report_to": [], "save_steps": 2, "save_total_limit": 3},
    }


def rewards_by_step(trainer):
    return {h["step"]: h["reward"] for h in trainer.state.log_history if "reward" in h}


def run_cli(recipe_path, env_extra, *args):
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, "-m", "rft.cli", "train", str(recipe_path), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_resume_after_sigkill_is_exact(tmp_path):
    straight = train(validate(recipe_dict(tmp_path, tmp_path / "a", ["length_reward"])))
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path, tmp_path / "b", ["length_reward"])))
    proc = run_cli(path, {"RFT_TEST_KILL_AT": "3"})
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-2"
    assert (latest_checkpoint(tmp_path / "b") / "recipe.yaml").is_file()
    resumed = train(validate(recipe_dict(tmp_path, tmp_path / "b", ["length_reward"])), resume="latest")
    assert resumed.state.global_step == 4
    assert rewards_by_step(resumed) == pytest.approx(rewards_by_step(straight), abs=1e-6)
    # the KL term still measures the distance from where GRPO started, not from the checkpoint
    kl = [{h["step"]: h["kl"] for h in t.state.log_history if "kl" in h} for t in (straight, resumed)]
    assert kl[0][3] > 1e-4 and kl[1] == pytest.approx(kl[0], rel=1e-3)
    a = load_file(tmp_path / "a" / "final" / "model.safetensors")
    b = load_file(tmp_path / "b" / "final" / "model.safetensors")
    at_checkpoint = load_file(tmp_path / "b" / "checkpoint-2" / "model.safetensors")
    assert a.keys() == b.keys()
    moved = max((a[k] - at_checkpoint[k]).abs().max().item() for k in a)  # steps 3-4 really trained
    apart = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 2e-4 and apart < 1e-4 and apart < 0.1 * moved


def refused(path, capsys) -> str:
    """``rft train path`` in this process: it must stop at once with exit status 2; returns its message."""
    from rft.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    return err


def test_sigterm_saves_a_checkpoint_and_exits_75_without_final(tmp_path, capsys):
    """Preempted at step N of 50, the run saved a checkpoint, then exited 0 and wrote final/ as if it had
    finished. Also here, while it runs: a second run into its output.dir stops at once, naming it (the lock);
    and after it: a run without --resume is refused and changes nothing of it."""
    path = tmp_path / "r.yaml"
    out = tmp_path / "o"
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path, out, ["length_reward"], max_steps=50)))
    proc = run_cli(path, {"RFT_TEST_SLOW": "1"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob("checkpoint-*")):
        time.sleep(0.5)
    assert f"is in use by another rft train: process {proc.pid}" in refused(path, capsys)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 75, output[-3000:]  # EXIT_INTERRUPTED, for schedulers to requeue
    assert "received SIGTERM: saving a checkpoint" in output and "--resume latest" in output
    step = int(latest_checkpoint(out).name.split("-")[1])
    assert 2 < step < 50 or (step == 2 and "at step 2" in output)
    assert not (out / "final").exists() and not (out / "rft.lock").exists()
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "interrupted" and status["exit_status"] == 75 and status["step"] == step
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    message = refused(path, capsys)
    assert "holds an earlier run" in message and "--resume latest" in message
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_reward_raising_on_some_samples_lets_training_continue(tmp_path, caplog):
    """Training goes on past rewards that fail; a reward failing on every sample of a run shorter than
    reward_guard.min_samples ended with exit 0 and no word: the end of the run warns, with the counts."""
    data = recipe_dict(tmp_path, tmp_path / "o", ["length_reward", "every_fifth_raises", "always_raises"], max_steps=2)
    data["reward_guard"]["min_samples"] = 100
    with caplog.at_level("WARNING"):
        trainer = train(validate(data))
    assert trainer.state.global_step == 2
    failures = [json.loads(line) for line in (tmp_path / "o" / "failures.jsonl").read_text().splitlines()]
    assert any("odd answer" in f["error"] for f in failures)
    fifth = sum(f["reward"] == "every_fifth_raises" for f in failures)
    assert (f"rewards failed during the run: 'every_fifth_raises' on {fifth} of 8 samples, 'always_raises' on 8 of 8 "
            "samples" in caplog.text)


def test_reward_raising_on_every_sample_stops_with_a_clear_message(tmp_path):
    with pytest.raises(RewardFailure, match="reward 'always_raises' failed on 4 of 4 samples"):
        train(validate(recipe_dict(tmp_path, tmp_path / "o", ["always_raises"], max_steps=2)))


def test_nonfinite_loss_is_skipped_then_stops_with_a_checkpoint(tmp_path, monkeypatch):
    from rft.train.run import TrainingStopped
    from rft.train.trainer import RftGRPOTrainer

    original = RftGRPOTrainer.compute_loss

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        return loss * float("nan") if self.state.global_step >= 1 else loss  # steps 2, 3, ... are NaN

    monkeypatch.setattr(RftGRPOTrainer, "compute_loss", poisoned)
    data = recipe_dict(tmp_path, tmp_path / "o", ["length_reward"], max_steps=6)
    data["output"].update(max_nonfinite_steps=2, save_steps=None)
    with pytest.raises(TrainingStopped, match=r"steps \[2, 3, 4\] had a NaN") as err:
        train(validate(data))
    assert "checkpoint-4" in str(err.value)
    weights = load_file(tmp_path / "o" / "checkpoint-4" / "model.safetensors")
    assert all(bool(v.isfinite().all()) for v in weights.values())  # skipped steps never touched the weights


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), None])
def test_one_nonfinite_gradient_entry_skips_the_step(bad):
    import torch
    from transformers import TrainerControl, TrainerState

    from rft.train.checkpoints import SkipNonFiniteSteps

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model(torch.randn(5, 4)).sum().backward()
    if bad is not None:
        model[1].weight.grad[1, 2] = bad
    callback = SkipNonFiniteSteps(max_skips=3, print_fn=lambda *a, **k: None)
    callback.on_pre_optimizer_step(None, TrainerState(), TrainerControl(), model=model)
    grads = [p.grad for p in model.parameters()]
    if bad is None:
        assert callback.skipped == [] and all(g is not None for g in grads)
    else:
        assert callback.skipped == [1] and all(g is None for g in grads)


@pytest.mark.parametrize("fp16", [False, True])
def test_a_step_deepspeed_skipped_counts_as_non_finite(fp16):
    """Under ZeRO, DeepSpeed's step runs inside the backward pass and skips a non-finite step itself; the
    optimizer the Trainer holds says so. fp16's loss-scale overflows are routine and not counted."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from rft.train.checkpoints import SkipNonFiniteSteps

    callback = SkipNonFiniteSteps(max_skips=3, print_fn=lambda *a, **k: None)
    args = SimpleNamespace(fp16=fp16)
    callback.on_optimizer_step(args, TrainerState(), TrainerControl(), optimizer=SimpleNamespace(step_was_skipped=False))
    callback.on_optimizer_step(args, TrainerState(), TrainerControl(), optimizer=SimpleNamespace(step_was_skipped=True))
    assert callback.skipped == ([] if fp16 else [1])
