"""``rft train --gpus N``: the ``accelerate launch`` command for a recipe's parallelism (``torchrun`` on CPUs)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from rft.recipe.schema import DistributedSection
from rft.train.config import ZERO_CONFIGS, zero_config_path
from rft.zero import require_deepspeed


def accelerate_config(dist: DistributedSection) -> Path:
    """The accelerate config in ``rft/zero_configs/`` for a ZeRO stage (DDP for stage 0)."""
    name = "accelerate_ddp.yaml" if dist.zero_stage == 0 else f"accelerate_zero{dist.zero_stage}{'_offload' if dist.offload else ''}.yaml"
    return ZERO_CONFIGS / name


def launch_command(recipe_path: str | Path, overrides: list[str], dist: DistributedSection, gpus: int,
                   resume: str | None = None, cuda: bool | None = None, overwrite: bool = False) -> list[str]:
    """``accelerate launch ... -m rft.train RECIPE`` with the recipe's accelerate/DeepSpeed configs; on a
    machine without CUDA, ``torchrun`` with ``gpus`` CPU processes over gloo (the multi-process path,
    testable anywhere): DDP, or with ``zero_stage`` 2/3 DeepSpeed's CPU accelerator and the same
    ``rft/zero_configs/`` JSON (``rft.train`` sets its process state up, :mod:`rft.zero`)."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if dist.zero_stage:
        require_deepspeed(dist.zero_stage)
    args = [str(recipe_path), *set_args(overrides), *(["--resume", resume] if resume else []), *(["--overwrite"] if overwrite else [])]
    if not cuda:
        return torchrun_command("rft.train", args, gpus)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config(dist)),
           "--num_processes", str(gpus)]
    if dist.zero_stage:
        cmd += ["--deepspeed_config_file", str(zero_config_path(dist.zero_stage, dist.offload))]
    return cmd + ["-m", "rft.train", *args]


def torchrun_command(module: str, args: list[str], processes: int) -> list[str]:
    """``torchrun --standalone --nproc_per_node N -m MODULE ARGS``: N processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m", module, *args]


def set_args(overrides: list[str]) -> list[str]:
    return [a for assignment in overrides for a in ("--set", assignment)]


def launch(recipe_path: str | Path, overrides: list[str], dist: DistributedSection, gpus: int,
           resume: str | None = None, overwrite: bool = False) -> int:
    """Run the distributed training and return its exit code."""
    return run(launch_command(recipe_path, overrides, dist, gpus, resume, overwrite=overwrite))


def run(cmd: list[str]) -> int:
    print("launching:", shlex.join(cmd), flush=True)
    return subprocess.call(cmd)
