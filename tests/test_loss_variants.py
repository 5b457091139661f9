"""TRL's loss variants through recipes (``grpo:``), each run end to end on the CPU with a tiny VLM, with
rft's additions on: the vision-token ban (always), dynamic sampling (a reward constant on half the
prompts, so groups are dropped and refilled), and an off-policy second micro-step (``steps_per_generation``
2), where the importance ratio and clipping act. The vLLM-only additions (``speed.reuse_training_logprobs``,
the ratio from the training forward) are checked under these variants in tests/test_onpolicy_logps.py."""

import math
from pathlib import Path

import pytest

from rft.recipe import validate
from rft.train.run import train

pytestmark = pytest.mark.slow

REWARDS = Path(__file__).with_name("sampling_rewards.py")

VARIANTS = [  # the grpo: override of the README's table, and the metric TRL logs for it
    pytest.param({"loss_type": "grpo"}, "clip_ratio/region_mean", id="grpo"),
    pytest.param({"loss_type": "dr_grpo", "scale_rewards": "none"}, "clip_ratio/region_mean", id="dr_grpo"),
    pytest.param({"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True}, "clip_ratio/high_mean", id="dapo"),
    pytest.param({"loss_type": "bnpo"}, "clip_ratio/region_mean", id="bnpo"),
    pytest.param({"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4},
                 "clip_ratio/region_mean", id="gspo"),
    pytest.param({"top_entropy_quantile": 0.2}, "entropy", id="entropy_masking"),
    pytest.param({"mask_truncated_completions": True}, "completions/clipped_ratio", id="mask_truncated"),
    pytest.param({"scale_rewards": "batch"}, "reward_std", id="scale_rewards_batch"),
]


@pytest.mark.parametrize(("grpo", "metric"), VARIANTS)
def test_loss_variant_trains_with_rfts_additions(grpo, metric, tmp_path):
    recipe = validate({
        "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
        "data": {"datasets": [{"name": "a", "kind": "synthetic_shapes", "task": "classification", "num_samples": 16}]},
        "rewards": [{"name": f"{REWARDS}:half_constant"}],
        "grpo": {"per_device_train_batch_size": 8, "num_generations": 4, "steps_per_generation": 2, "max_completion_length": 8,
                 "max_steps": 2, "learning_rate": 1e-2, **grpo},
        "sampling": {"filter": "zero_std", "max_rounds": 10},
        "output": {"dir": str(tmp_path), "report_to": [], "log_completions_every": 0},
    })
    trainer = train(recipe)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert any(h.get(metric) is not None and math.isfinite(h[metric]) for h in logs), metric
    generated = [h for h in logs if "reward" in h]  # one generation batch serves both steps
    assert len(generated) == 1 and generated[0]["frac_reward_zero_std"] == 0.0
    assert generated[0]["dynamic_sampling/filtered"] > 0 and generated[0]["dynamic_sampling/unfilled"] == 0.0
