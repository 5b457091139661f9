"""Recipe options that cannot be combined: each refusal names both fields and what to change.

:func:`combination_problems` runs when a recipe is validated (``world_size`` unknown) and again when
training starts (``world_size`` known), so what depends on the number of processes is refused before
any model or data loads.
"""

from __future__ import annotations

from typing import Any

from rft.recipe.schema import Recipe


def generation_layout(grpo: dict[str, Any], world_size: int | None) -> tuple[int, int, int] | None:
    """(per_device_train_batch_size, steps_per_generation, num_generations) as TRL will resolve them
    from ``grpo`` (rft's defaults filled in); None when it depends on a ``world_size`` not known yet."""
    from rft.train.config import RFT_DEFAULTS  # rft.train imports rft.recipe: imported here, not at the top

    grpo = {**RFT_DEFAULTS, **grpo}
    if grpo["per_device_train_batch_size"] is None or grpo["num_generations"] is None:
        return None  # left to TRL (a None it refuses, or its own default)
    per_device, generations = int(grpo["per_device_train_batch_size"]), int(grpo["num_generations"])
    if grpo.get("steps_per_generation"):
        return per_device, int(grpo["steps_per_generation"]), generations
    if grpo.get("generation_batch_size"):
        if world_size is None:
            return None
        return per_device, int(grpo["generation_batch_size"]) // (per_device * world_size), generations
    return per_device, int(grpo.get("gradient_accumulation_steps", 1)), generations


def combination_problems(recipe: Recipe, world_size: int | None = None) -> list[str]:
    """What in ``recipe`` cannot work together (empty when all is well)."""
    problems = []
    layout = generation_layout(recipe.grpo, world_size)
    if recipe.sampling.filter != "none" and layout is not None:
        per_device, steps, generations = layout
        if (per_device * steps) % generations:
            problems.append(
                f"sampling.filter {recipe.sampling.filter!r} with grpo.per_device_train_batch_size {per_device} x "
                f"steps_per_generation {steps} = {per_device * steps} completions per process and generation, not a "
                f"multiple of grpo.num_generations {generations}: dynamic sampling replaces whole groups on the process "
                f"that holds them, so each process must hold whole groups. Make per_device_train_batch_size (or "
                f"steps_per_generation) a multiple of num_generations, or set sampling.filter: none."
            )
    return problems
