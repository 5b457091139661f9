"""Verifiable rewards for GRPO on vision-language models, as registered plugins.

Every reward is a TRL reward function ``fn(completions, **columns) -> list[float | None]``.

    import rewards
    fn = rewards.get("detection_iou")                  # a built-in
    fn = rewards.get("my_rewards.py:count_reward")     # a function in a file
    rewards.available()                                # every registered name

Add your own with ``@rewards.register("name")`` or the entry-point group ``rft.rewards``.
"""

from rewards.registry import RewardSpecError, available, get, options, register, resolve

# Built-ins register themselves on import.
from rewards import answer_format, classification, detection, grounding, negative, tagging  # noqa: E402,F401

__all__ = ["RewardSpecError", "available", "get", "options", "register", "resolve"]
