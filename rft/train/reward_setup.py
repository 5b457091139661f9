"""Recipe ``rewards:`` -> TRL reward functions and weights, routed per dataset and rescaled."""

from __future__ import annotations

import functools
from typing import Any, Callable

import rewards
from rft.errors import RecipeError
from rft.recipe.schema import Recipe, RewardSpec

RewardFn = Callable[..., list]


def only_for_datasets(fn: RewardFn, datasets: set[str]) -> RewardFn:
    """``fn`` on rows of ``datasets``; ``None`` (not applicable) on the others."""

    @functools.wraps(fn)
    def routed(completions: list, **columns: Any) -> list:
        names = list(columns.get("dataset") or [None] * len(completions))  # read before fn can change them
        values = fn(completions, **columns)
        return [v if d is None or d in datasets else None for v, d in zip(values, names)]

    return routed


def rescaled(fn: RewardFn, low: float, high: float) -> RewardFn:
    """``fn`` mapped from [low, high] to [0, 1] (clipped), so rewards of different ranges weigh alike."""

    @functools.wraps(fn)
    def scaled(completions: list, **columns: Any) -> list:
        return [None if v is None else min(1.0, max(0.0, (v - low) / (high - low))) for v in fn(completions, **columns)]

    return scaled


def reward_function(spec: RewardSpec, recipe: Recipe, route: bool = True) -> RewardFn:
    """One configured reward: registry lookup, options, dataset routing (``route``), range rescaling.

    Held-out data comes from other datasets, so evaluation uses ``route=False`` (tasks still route).
    """
    name = spec.logged_name
    fn = rewards.get(spec.name, name=name, **spec.kwargs)
    users = {d.name for d in recipe.data.datasets  # a dataset's list may name it as TRL logs it or as the recipe does
             if d.rewards is None or name in d.rewards or (spec.alias or spec.name) in d.rewards}
    if route and users != {d.name for d in recipe.data.datasets}:
        fn = only_for_datasets(fn, users)
    if spec.range is not None:
        fn = rescaled(fn, *spec.range)
    return fn


def build_rewards(recipe: Recipe, route: bool = True) -> tuple[list[RewardFn], list[float]]:
    """TRL ``reward_funcs`` and ``reward_weights`` of a recipe; a spec that does not resolve to a reward is a
    :class:`RecipeError` naming its ``rewards[i]`` entry."""
    functions = []
    for i, spec in enumerate(recipe.rewards):
        try:
            functions.append(reward_function(spec, recipe, route))
        except rewards.RewardSpecError as exc:
            raise RecipeError(f"rewards[{i}] ({spec.name}): {exc}") from None
    return functions, [s.weight for s in recipe.rewards]
