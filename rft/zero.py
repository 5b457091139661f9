"""DeepSpeed ZeRO around rft: running it without GPUs, and what rft must do differently when the
parameters are sharded."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from typing import Any

from rft.errors import RecipeError

DEEPSPEED_TESTED = ("0.17", "0.20")
"""DeepSpeed versions (from, below) whose internals this module relies on (:func:`skip_shm_comm_build`,
:func:`zero3_group_sizes`); with others those helpers stand aside."""


def require_deepspeed(zero_stage: int) -> None:
    """Stop with how to install DeepSpeed when a recipe asks for ZeRO and it is not installed."""
    if importlib.util.find_spec("deepspeed") is None:
        raise RecipeError(f"distributed.zero_stage {zero_stage} needs DeepSpeed, which is not installed: "
                          'pip install -e ".[deepspeed]" (or set distributed.zero_stage: 0 for DDP)')


def cpu_deepspeed_state():
    """accelerate's ``PartialState`` for DeepSpeed on DeepSpeed's CPU accelerator over gloo.

    accelerate sets DeepSpeed up only with ``cpu=False``, and then, finding no GPU backend, counts one
    process while DeepSpeed counts all of them; given the backend (gloo), it counts them all. DeepSpeed's
    shared-memory all-reduce for CPU inference is not built (a minute of C++ compiling per machine for
    an op training never calls)."""
    from accelerate import PartialState

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "LOCAL_RANK" not in os.environ:  # one process, not launched: a process group of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT") or str(free_port()))
    skip_shm_comm_build()
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        state = PartialState(cpu=False, backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]
    # DeepSpeed calls torch's old collective names on every step
    warnings.filterwarnings("ignore", r"`torch\.distributed\.\w+` is deprecated", FutureWarning)
    return state


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def skip_shm_comm_build() -> None:
    """Mark DeepSpeed's ``deepspeed_shm_comm`` op incompatible, so its CPU comm backend does not JIT-build it."""
    import deepspeed.ops

    if tested_deepspeed():  # another DeepSpeed is left alone (at worst it compiles the op once)
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def tested_deepspeed() -> bool:
    """Whether the installed DeepSpeed is one whose internals this module was tested against."""
    import deepspeed
    from packaging.version import Version

    return Version(DEEPSPEED_TESTED[0]) <= Version(deepspeed.__version__) < Version(DEEPSPEED_TESTED[1])


def zero3_sharded(module) -> bool:
    """Whether ``module``'s parameters are ZeRO-3 partitions (DeepSpeed gathers them for each forward, all
    processes together), as after ``deepspeed.initialize`` or ``deepspeed.zero.Init``."""
    param = next(module.parameters(), None)
    return param is not None and hasattr(param, "ds_id")


def zero3_group_sizes(optimizer) -> list[int] | None:
    """How many values of each parameter group this process's ZeRO-3 optimizer holds (DeepSpeed empties
    the groups' ``params`` between steps and keeps its partitions aside), or None for another optimizer."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper around DeepSpeed's
    flat, group_of = (getattr(inner, a, None) for a in ("fp32_partitioned_groups_flat", "sub_group_to_group_id"))
    if flat is None or group_of is None or not tested_deepspeed():
        return None
    sizes = [0] * len(inner.param_groups)
    for sub_group, partition in enumerate(flat):
        sizes[group_of[sub_group]] += partition.numel()
    return sizes


def gathered(model):
    """A context in which a ZeRO-3 ``model``'s parameters are whole on every process (a collective:
    all processes enter it); for any other model, nothing."""
    import contextlib

    if not zero3_sharded(model):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()))


def deepspeed_config(zero_stage: int, offload: bool, *, micro_batch: int, world_size: int, hidden_size: int,
                     dtype, max_grad_norm: float) -> dict[str, Any]:
    """The ``rft/zero_configs/`` JSON of a stage with its ``"auto"`` values filled in as transformers fills them
    for a Trainer, for a DeepSpeed engine rft runs itself (the supervised warm-up)."""
    import torch

    from rft.train.config import zero_config_path

    config = json.loads(zero_config_path(zero_stage, offload).read_text())
    values = {
        "train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": 1,
        "train_batch_size": micro_batch * world_size, "gradient_clipping": max_grad_norm,
        "reduce_bucket_size": hidden_size * hidden_size, "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }
    config["bf16"] = {"enabled": dtype == torch.bfloat16}
    config["fp16"] = {"enabled": dtype == torch.float16}
    config["zero_allow_untested_optimizer"] = True  # torch's AdamW, as the Trainer gives it

    def fill(node: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                fill(value)
            elif value == "auto":
                node[key] = values[key]

    fill(config)
    return config
