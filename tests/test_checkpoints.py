"""Checkpoints written whole or not at all (tested on transformers' real Trainer), and ``--resume latest``
skipping incomplete ones."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from transformers import Trainer, TrainingArguments

from rft.errors import RecipeError
from rft.train.checkpoints import (
    INCOMPLETE, AtomicCheckpoints, check_trainer_internals, checkpoint_problem, latest_checkpoint, resolve_resume,
)


class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, labels):
        return {"loss": ((self.linear(x).squeeze(-1) - labels) ** 2).mean()}


class AtomicTrainer(AtomicCheckpoints, Trainer):
    """transformers' Trainer with rft's checkpoint saving (RftGRPOTrainer mixes it into TRL's GRPOTrainer)."""


class ShardedTrainer(AtomicTrainer):
    """Writes a ``global_stepN`` folder into the checkpoint as DeepSpeed's engine does (from the Trainer's
    ``_save_optimizer_and_scheduler``, on every process)."""

    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)
        shard = f"{output_dir}/global_step{self.state.global_step}"
        import os

        os.makedirs(shard, exist_ok=True)
        torch.save({"rank": 0}, f"{shard}/zero_pp_rank_0_mp_rank_00_optim_states.pt")


def run(tmp_path, trainer_class=AtomicTrainer, max_steps=4, **args):
    data = [{"x": torch.randn(4), "labels": torch.randn(())} for _ in range(32)]
    config = TrainingArguments(output_dir=str(tmp_path), max_steps=max_steps, save_steps=1, save_total_limit=2,
                               per_device_train_batch_size=4, use_cpu=True, report_to=[], logging_steps=1,
                               disable_tqdm=True, **args)
    trainer = trainer_class(model=Regression(), args=config, train_dataset=data)
    trainer.train()
    return trainer


def test_the_trainer_internals_atomic_checkpoints_rely_on_are_there():
    check_trainer_internals()


def test_checkpoints_appear_whole_and_rotate(tmp_path):
    (tmp_path / "recipe.yaml").write_text("name: run\n")
    run(tmp_path, ShardedTrainer)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]  # save_total_limit
    for step in (3, 4):
        folder = tmp_path / f"checkpoint-{step}"
        names = {p.name for p in folder.iterdir()}
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                "recipe.yaml", f"global_step{step}"} <= names, names
        assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == step
        assert checkpoint_problem(folder) is None
    assert not list((tmp_path / INCOMPLETE).iterdir())  # every staged checkpoint was renamed into place


def test_a_run_killed_while_saving_leaves_no_checkpoint_behind(tmp_path, monkeypatch):
    """Killed while saving (here: the RNG state fails to write after the weights and optimizer did), the
    step's checkpoint is not there at all: only the staging folder, which latest ignores."""
    original = Trainer._save_rng_state

    def dies_at_step_3(self, output_dir):
        if self.state.global_step == 3:
            raise KeyboardInterrupt("killed while saving")
        original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    staged = tmp_path / INCOMPLETE / "checkpoint-3"
    assert (staged / "model.safetensors").is_file() and not (staged / "trainer_state.json").exists()
    assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    monkeypatch.setattr(Trainer, "_save_rng_state", original)
    trainer = run(tmp_path)  # the same steps saved again: the leftover staging folder is replaced
    assert trainer.state.global_step == 4 and latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert not staged.exists()


def test_latest_skips_incomplete_checkpoints_with_a_warning(tmp_path, caplog):
    """``--resume latest`` picked a half-written newest checkpoint (killed by a version that saved in place:
    an empty config.json, or optimizer.pt without trainer_state.json) and failed."""
    run(tmp_path, max_steps=2)
    empty_config = tmp_path / "checkpoint-3"
    empty_config.mkdir()
    for name in ("model.safetensors", "trainer_state.json"):
        (empty_config / name).write_bytes((tmp_path / "checkpoint-2" / name).read_bytes())
    (empty_config / "config.json").write_text("")
    no_state = tmp_path / "checkpoint-4"
    no_state.mkdir()
    (no_state / "optimizer.pt").write_bytes(b"partial")
    damaged = tmp_path / "checkpoint-5"
    damaged.mkdir()
    (damaged / "trainer_state.json").write_text("{}")
    (damaged / "model.safetensors").write_bytes(b"\x10\x00")
    with caplog.at_level(logging.WARNING):
        assert resolve_resume("latest", tmp_path) == str(tmp_path / "checkpoint-2")
    for name, why in (("checkpoint-5", "model.safetensors is damaged"), ("checkpoint-4", "no trainer_state.json"),
                      ("checkpoint-3", "config.json is empty")):
        assert f"skipping {tmp_path / name}: an incomplete checkpoint ({why}" in caplog.text
    with pytest.raises(RecipeError, match=r"--resume .*checkpoint-4: .*checkpoint-4 is not a complete checkpoint "
                                          r"\(no trainer_state.json\)"):
        resolve_resume(str(no_state), tmp_path)


DEEPSPEED_RUN = '''
import os, sys
import torch
from transformers import TrainingArguments
from test_checkpoints import AtomicTrainer, Regression

out = sys.argv[1]
zero2 = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto",
         "gradient_accumulation_steps": "auto", "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}
data = [{"x": torch.randn(4), "labels": torch.randn(())} for _ in range(32)]
for steps, resume in ((3, None), (4, os.path.join(out, "checkpoint-3"))):
    args = TrainingArguments(output_dir=out, max_steps=steps, save_steps=1, save_total_limit=2, use_cpu=True,
                             per_device_train_batch_size=4, report_to=[], deepspeed=zero2, disable_tqdm=True)
    trainer = AtomicTrainer(model=Regression(), args=args, train_dataset=data)
    trainer.train(resume_from_checkpoint=resume)
print("step", trainer.state.global_step)
'''


@pytest.mark.slow
def test_deepspeed_checkpoints_are_renamed_whole_and_resume(tmp_path):
    """Under DeepSpeed (ZeRO-2 on the CPU accelerator, one process) the engine's ``global_stepN`` shards and
    ``latest`` tag are written inside the staged checkpoint and move with it; the Trainer resumes from it."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("deepspeed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "run.py"
    script.write_text(DEEPSPEED_RUN)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
           "LOCAL_RANK": "0", "WORLD_SIZE": "1", "ACCELERATE_USE_DEEPSPEED": "true",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and "step 4" in done.stdout, (done.stdout + done.stderr)[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    for step in (3, 4):
        folder = out / f"checkpoint-{step}"
        assert (folder / "latest").read_text().strip() == f"global_step{step}"
        assert list((folder / f"global_step{step}").glob("*optim_states.pt")) and checkpoint_problem(folder) is None
    assert not list((out / INCOMPLETE).iterdir())
