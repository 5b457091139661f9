"""Recipe -> TRL ``GRPOConfig``: rft's VLM defaults, the ``grpo:`` pass-through, rollout and output."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from rft.recipe.schema import Recipe

ZERO_CONFIGS = Path(str(files("rft") / "zero_configs"))
"""DeepSpeed and accelerate configs, installed with the package (pyproject's package-data)."""

# Where TRL's defaults do not suit VLM fine-tuning. Anything here can be overridden in ``grpo:``.
RFT_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-6,
    "num_generations": 8,
    "per_device_train_batch_size": 8,
    "max_completion_length": 256,
    "beta": 0.04,
    "logging_steps": 1,
    "remove_unused_columns": False,  # rewards read task, solution, image_size, ... columns
    "shuffle_dataset": False,  # rft orders the data itself (mixing, schedules, replay)
    "log_completions": False,
}


def zero_config_path(zero_stage: int, offload: bool) -> Path:
    """The DeepSpeed JSON in ``rft/zero_configs/`` for a ZeRO stage."""
    name = f"zero{zero_stage}{'_offload' if offload else ''}.json"
    path = ZERO_CONFIGS / name
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config {path} not found (an rft installed without its package data)")
    return path


def device_defaults(dtype: torch.dtype, zero_stage: int = 0) -> dict[str, Any]:
    """Precision and device flags that follow the hardware and the model's dtype."""
    if not torch.cuda.is_available():
        cpu = {"bf16": False, "fp16": False, "gradient_checkpointing": False}
        if zero_stage:  # DeepSpeed's CPU accelerator: the process state rft set up (rft.zero)
            return {**cpu, "use_cpu": False, "accelerator_config": {"use_configured_state": True}}
        return {**cpu, "use_cpu": True}
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16, "gradient_checkpointing": True}


def generation_ban(backend: str, banned_ids: list[int], user_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``generation_kwargs`` that keep ``banned_ids`` out of sampled completions, merged with the user's.

    transformers: ``suppress_tokens`` (which replaces TRL's own image-token ban, so it lists them
    all); vLLM: a -100 ``logit_bias``, which SamplingParams applies before sampling.
    """
    kwargs = dict(user_kwargs or {})
    if backend == "vllm":
        bias = {int(k): float(v) for k, v in (kwargs.get("logit_bias") or {}).items()}
        kwargs["logit_bias"] = {**bias, **{i: -100.0 for i in banned_ids}}
    else:
        kwargs["suppress_tokens"] = sorted(set(kwargs.get("suppress_tokens") or []) | set(banned_ids))
    return kwargs


def grpo_kwargs(recipe: Recipe, dtype: torch.dtype, banned_ids: list[int], reward_weights: list[float],
                max_steps: int) -> dict[str, Any]:
    """Every ``GRPOConfig`` argument of a run, in order of precedence: rft defaults, device, ``grpo:``,
    then the fields other recipe sections own."""
    out, roll, dist = recipe.output, recipe.rollout, recipe.distributed
    kwargs = {**RFT_DEFAULTS, **device_defaults(dtype, dist.zero_stage), **recipe.grpo}
    kwargs["generation_kwargs"] = generation_ban(roll.backend, banned_ids, recipe.grpo.get("generation_kwargs"))
    kwargs.update(
        output_dir=out.dir, seed=recipe.seed, report_to=out.report_to, reward_weights=reward_weights,
        max_steps=max_steps, save_strategy="steps" if out.save_steps else "no",
        save_steps=out.save_steps or 500, save_total_limit=out.save_total_limit,
        use_vllm=roll.backend == "vllm",
    )
    if roll.backend == "vllm":
        kwargs.update(
            vllm_mode=roll.vllm_mode, vllm_gpu_memory_utilization=roll.gpu_memory_utilization,
            vllm_tensor_parallel_size=roll.tensor_parallel_size, vllm_enable_sleep_mode=roll.enable_sleep_mode,
            vllm_server_host=roll.server_host, vllm_server_port=roll.server_port,
            vllm_server_base_url=roll.server_base_url, vllm_max_model_length=roll.max_model_length,
        )
    if dist.zero_stage:
        kwargs["deepspeed"] = str(zero_config_path(dist.zero_stage, dist.offload))
    return kwargs


def grpo_config(recipe: Recipe, dtype: torch.dtype, banned_ids: list[int], reward_weights: list[float], max_steps: int):
    """The ``trl.GRPOConfig`` of a run (see :func:`grpo_kwargs`)."""
    from trl import GRPOConfig

    return GRPOConfig(**grpo_kwargs(recipe, dtype, banned_ids, reward_weights, max_steps))
