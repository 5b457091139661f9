"""DeepSpeed ZeRO around rft: running it without GPUs, and what rft must do differently when the
parameters are sharded."""

from __future__ import annotations

import os
import warnings

DEEPSPEED_TESTED = ("0.17", "0.20")
"""DeepSpeed versions (from, below) whose internals :func:`cpu_deepspeed_state` relies on."""


def cpu_deepspeed_state():
    """accelerate's ``PartialState`` for DeepSpeed on DeepSpeed's CPU accelerator over gloo.

    accelerate sets DeepSpeed up only with ``cpu=False``, and then, finding no GPU backend, counts one
    process while DeepSpeed counts all of them; given the backend (gloo), it counts them all. DeepSpeed's
    shared-memory all-reduce for CPU inference is not built (a minute of C++ compiling per machine for
    an op training never calls)."""
    from accelerate import PartialState

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    skip_shm_comm_build()
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        state = PartialState(cpu=False, backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]
    # DeepSpeed calls torch's old collective names on every step
    warnings.filterwarnings("ignore", r"`torch\.distributed\.\w+` is deprecated", FutureWarning)
    return state


def skip_shm_comm_build() -> None:
    """Mark DeepSpeed's ``deepspeed_shm_comm`` op incompatible, so its CPU comm backend does not JIT-build it."""
    import deepspeed
    import deepspeed.ops
    from packaging.version import Version

    if not Version(DEEPSPEED_TESTED[0]) <= Version(deepspeed.__version__) < Version(DEEPSPEED_TESTED[1]):
        return  # another DeepSpeed: leave it alone (at worst it compiles the op once)
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
