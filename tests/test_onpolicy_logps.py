"""``speed.reuse_training_logprobs``: vLLM's importance-sampling ratio from the training forward gives
TRL's numbers without TRL's extra log-prob pass. vLLM does not run on the CPU, so a stand-in engine
returns fixed completions and log-probs, the way TRL's colocate engine hands them over."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rft.recipe import validate
from rft.train.onpolicy_logps import on_policy, ratio_metrics, vllm_importance_ratio
from rft.train.run import train
from rft.train.trainer import RftGRPOTrainer


def test_on_policy_is_trls_test():
    assert on_policy(1, 1, 1) and on_policy(4, 4, 1) and on_policy(4, 2, 1)
    assert not on_policy(1, 1, 2) and not on_policy(2, 4, 1)


def test_ratio_per_mode_on_known_values():
    old = torch.tensor([[-1.0, -2.0, -3.0]])
    sampling = torch.tensor([[-1.5, -1.0, float("nan")]])
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    token = [math.exp(0.5), math.exp(-1.0), 1.0]  # NaN (unscored by vLLM) counts as no correction
    assert vllm_importance_ratio(old, sampling, mask, "token_truncate", None, 1.5).tolist()[0] == pytest.approx([1.5, token[1], 1.0])
    assert vllm_importance_ratio(old, sampling, mask, "token_mask", 0.5, 1.5).tolist()[0] == pytest.approx([0.0, 0.0, 1.0])
    assert vllm_importance_ratio(old, sampling, mask, "sequence_truncate", None, 3.0).item() == pytest.approx(math.exp(-0.5))
    assert vllm_importance_ratio(old, sampling, mask, "sequence_mask", 0.7, 3.0).tolist() == [[0.0]]
    masked = vllm_importance_ratio(old, sampling, torch.tensor([[1.0, 0.0, 0.0]]), "sequence_truncate", None, 3.0)
    assert masked.shape == (1, 1) and masked.item() == pytest.approx(math.exp(0.5))  # padding does not count
    with pytest.raises(ValueError, match="token_truncate"):
        vllm_importance_ratio(old, sampling, mask, "tokens", None, None)


def test_ratio_metrics_skip_padding_and_unscored_tokens():
    old = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    sampling = torch.tensor([[-1.5, float("nan"), -3.0], [-1.0, -0.5, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    ratio = vllm_importance_ratio(old, sampling, mask, "token_truncate", None, 3.0)
    m = ratio_metrics(old, sampling, mask, ratio, sequence_level=False)
    assert m["sampling_logp_difference/mean"].item() == pytest.approx((0.5 + 0.0 + 0.0 + 0.5) / 4)
    assert m["sampling_logp_difference/max"].item() == pytest.approx(0.5)
    assert m["importance_sampling_ratio/max"].item() == pytest.approx(math.exp(0.5))
    assert m["importance_sampling_ratio/min"].item() == pytest.approx(math.exp(-0.5))


def length_reward(completions, **_):
    """Varies with the completion, so advantages (and the loss) are not zero."""
    return [len(str(c)) / 50 for c in completions]


class StandInEngine:
    """What TRL's ``VLLMGeneration`` returns in colocate mode: the prompt ids, sampled completion ids and
    each token's log-prob (top-1), here drawn from a fixed RNG instead of sampled by vLLM."""

    def __init__(self, trainer: RftGRPOTrainer, seed: int = 0):
        tokenizer = trainer.processing_class.tokenizer
        specials = set(tokenizer.all_special_ids) | set(trainer.processing_class.tokenizer.added_tokens_decoder)
        self.words = [i for i in range(len(tokenizer)) if i not in specials]
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.max_tokens = trainer.max_completion_length
        self.rng = np.random.default_rng(seed)
        self.syncs = 0

    def sync_weights(self):
        self.syncs += 1

    def generate(self, prompts, images, num_generations, profiler=None):
        completions, logprobs = [], []
        for _ in prompts:
            n = int(self.rng.integers(2, self.max_tokens + 1))
            ids = [int(t) for t in self.rng.choice(self.words, size=n)]
            if n < self.max_tokens:
                ids[-1] = self.eos
            completions.append(ids)
            logprobs.append([[float(v)] for v in self.rng.uniform(-7.5, -5.0, size=n)])
        return prompts, completions, logprobs, None


SAMPLING_REWARDS = Path(__file__).with_name("sampling_rewards.py")
DYNAMIC = {"sampling": {"filter": "zero_std", "max_rounds": 10}, "rewards": [{"name": f"{SAMPLING_REWARDS}:half_constant"}]}
"""Dynamic sampling on, with a reward constant on half the prompts (rounds of the stand-in engine)."""


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "accumulation", "iterations", "variant"), [
    ("token_truncate", 1, 1, {}), ("sequence_mask", 1, 1, {}),
    ("token_truncate", 2, 1, {}),  # on-policy with gradient accumulation: one generation per optimizer step
    ("token_truncate", 1, 2, {}),  # two iterations per generation: off-policy, TRL's pass stays
    # loss variants (README table) with dynamic sampling: GSPO's sequence-level ratio, and DAPO's
    # truncated-completion mask with entropy masking
    ("sequence_truncate", 1, 1, {**DYNAMIC, "grpo": {"importance_sampling_level": "sequence", "loss_type": "grpo"}}),
    ("token_truncate", 1, 1, {**DYNAMIC, "grpo": {"loss_type": "dapo", "mask_truncated_completions": True,
                                                   "top_entropy_quantile": 0.5}}),
], ids=["token", "sequence", "accumulation", "iterations", "gspo_dynamic_sampling", "dapo_entropy_dynamic_sampling"])
def test_ratio_from_the_training_forward_gives_trls_losses_and_weights(mode, accumulation, iterations, variant, tmp_path,
                                                                        monkeypatch):
    """Two GRPO steps through TRL's vLLM path (stand-in engine), with TRL's extra log-prob pass and
    with the ratio taken from the training forward: equal losses and weights, the same ratio metrics
    (without accumulation: with it they are averaged over micro-batches), no pass where on-policy; the
    same under loss variants with dynamic sampling (its rounds generate, the pass runs on kept groups only)."""
    original_init = RftGRPOTrainer.__init__
    passes = []

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.use_vllm, self.vllm_mode, self._last_loaded_step = True, "colocate", -1
        self.vllm_generation = StandInEngine(self)
        self.vllm_importance_sampling_correction = True
        self.vllm_importance_sampling_mode = mode
        self.vllm_importance_sampling_clip_min, self.vllm_importance_sampling_clip_max = None, 3.0
        logps = self._get_per_token_logps_and_entropies

        def counted(*a, **k):
            passes.append(torch.is_grad_enabled())
            return logps(*a, **k)

        self._get_per_token_logps_and_entropies = counted

    monkeypatch.setattr(RftGRPOTrainer, "__init__", init)

    def run(reuse: bool):
        passes.clear()
        recipe = validate({
            "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
            "data": {"datasets": [{"name": "cls", "kind": "synthetic_shapes", "task": "classification", "num_samples": 8}]},
            "rewards": [{"name": f"{__file__}:length_reward"}],  # by file: the registry stays as other tests expect
            **variant,
            "grpo": {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 8, "max_steps": 2,
                     "learning_rate": 1e-2, "beta": 0.0, "gradient_accumulation_steps": accumulation,
                     "num_iterations": iterations, **variant.get("grpo", {})},
            "speed": {"reuse_training_logprobs": reuse},
            "output": {"dir": str(tmp_path / str(reuse)), "report_to": [], "log_completions_every": 0},
        })
        trainer = train(recipe)
        logs = [h for h in trainer.state.log_history if "reward" in h]
        weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        return logs, weights, list(passes), trainer.vllm_generation.syncs

    with_pass, weights_pass, passes_trl, syncs = run(False)
    reused, weights_reused, passes_rft, _ = run(True)
    if "sampling" in variant:  # groups were dropped and refilled; the kept batch has spread
        assert max(h["dynamic_sampling/rounds"] for h in with_pass) >= 2
        assert all(h["frac_reward_zero_std"] == 0.0 for h in with_pass + reused)
    generations = 2 if iterations == 1 else 1  # generation batches in two optimizer steps
    assert passes_trl.count(False) == generations  # TRL's no-grad pass, once per generation batch
    assert passes_rft.count(False) == (0 if iterations == 1 else generations)
    assert passes_trl.count(True) == passes_rft.count(True) == 2 * accumulation and syncs >= 1
    assert len(with_pass) == len(reused) == generations  # rewards are logged on the steps that generate
    for a, b in zip(with_pass, reused):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-7)  # the same rollouts
        assert a["loss"] != 0.0
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        for key in ("importance_sampling_ratio/min", "importance_sampling_ratio/mean", "importance_sampling_ratio/max",
                    "sampling_logp_difference/mean", "sampling_logp_difference/max"):
            if accumulation == 1:
                assert a[f"sampling/{key}"] == pytest.approx(b[f"sampling/{key}"], rel=1e-4, abs=1e-6), key
            else:
                assert b[f"sampling/{key}"] > 0, key
    assert with_pass[0]["sampling/importance_sampling_ratio/mean"] not in (0.0, 1.0)  # the correction did something
    moved = max((weights_pass[n] - p).abs().max().item() for n, p in weights_reused.items())
    assert moved < 1e-5
