"""``rft train --gpus N``: the ``accelerate launch`` command for a recipe's parallelism."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from rft.recipe.schema import DistributedSection
from rft.train.config import ZERO_CONFIGS, zero_config_path


def accelerate_config(dist: DistributedSection) -> Path:
    """The accelerate config in ``zero_configs/`` for a ZeRO stage (DDP for stage 0)."""
    name = "accelerate_ddp.yaml" if dist.zero_stage == 0 else f"accelerate_zero{dist.zero_stage}{'_offload' if dist.offload else ''}.yaml"
    return ZERO_CONFIGS / name


def launch_command(recipe_path: str | Path, overrides: list[str], dist: DistributedSection, gpus: int,
                   resume: str | None = None) -> list[str]:
    """``accelerate launch ... -m rft.train RECIPE`` with the recipe's accelerate/DeepSpeed configs."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config(dist)),
           "--num_processes", str(gpus)]
    if dist.zero_stage:
        cmd += ["--deepspeed_config_file", str(zero_config_path(dist.zero_stage, dist.offload))]
    cmd += ["-m", "rft.train", str(recipe_path)]
    for assignment in overrides:
        cmd += ["--set", assignment]
    if resume:
        cmd += ["--resume", resume]
    return cmd


def launch(recipe_path: str | Path, overrides: list[str], dist: DistributedSection, gpus: int,
           resume: str | None = None) -> int:
    """Run the distributed training and return its exit code."""
    cmd = launch_command(recipe_path, overrides, dist, gpus, resume)
    print("launching:", shlex.join(cmd), flush=True)
    return subprocess.call(cmd)
