"""What vLLM must be told so that its rollouts match what the trainer computes.

TRL builds the colocated engine (``vllm.LLM``) from ``model.name_or_path`` with no dtype and no
processor options, and GRPOConfig has no field for them. Two consequences, both measured on the GPU
machine (docs/gpu.md): vLLM runs a float32 checkpoint in bfloat16 ("Downcasting torch.float32 to
torch.bfloat16"), so its log-probs differ from the float32 trainer's and TRL's importance-sampling
correction masks whole sequences; and the image processor uses the checkpoint's pixel budget, not
the recipe's. :func:`engine_options` lists what rft adds; :func:`colocated_engine_options` passes
it to the engine TRL builds; ``rft serve`` passes the same options on the server's command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rft.recipe.schema import ModelSection

# Families whose vLLM processors take Qwen2-VL's ``min_pixels`` / ``max_pixels`` keyword arguments.
PIXEL_KWARG_FAMILIES = ("qwen2_vl", "qwen2_5_vl")


def vllm_dtype(model: ModelSection, cuda: bool = True) -> str:
    """The dtype name the trainer holds the policy in (``auto`` resolved as the trainer does)."""
    if model.dtype != "auto":
        return model.dtype
    return "bfloat16" if cuda else "float32"


def engine_options(model: ModelSection, family: str, images_per_prompt: int = 1, cuda: bool = True) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments that make rollouts see the policy as the trainer does: its dtype,
    the recipe's pixel budget (Qwen2-VL/Qwen2.5-VL processors), and one image per prompt (which
    also keeps vLLM's memory profiling from reserving room for many images)."""
    options: dict[str, Any] = {"dtype": vllm_dtype(model, cuda), "limit_mm_per_prompt": {"image": images_per_prompt}}
    if family in PIXEL_KWARG_FAMILIES:
        options["mm_processor_kwargs"] = {"min_pixels": model.min_pixels, "max_pixels": model.max_pixels}
    return options


@contextmanager
def colocated_engine_options(options: dict[str, Any]) -> Iterator[None]:
    """While active, the ``vllm.LLM`` that TRL's colocate mode builds also gets ``options``
    (TRL's own arguments win where both name one)."""
    import trl.generation.vllm_generation as generation

    original = getattr(generation, "LLM", None)
    if original is None:  # vLLM not installed: TRL itself reports it when the engine is needed
        yield
        return

    def build_engine(*args: Any, **kwargs: Any):
        return original(*args, **{**options, **kwargs})

    generation.LLM = build_engine
    try:
        yield
    finally:
        generation.LLM = original
