"""Recipe -> GRPOConfig mapping for both rollout backends, ZeRO/accelerate selection, launch command."""

import json

import pytest
import torch

from rft.errors import RecipeError
from rft.recipe import validate
from rft.recipe.schema import DistributedSection
from rft.train.config import grpo_config, grpo_kwargs, zero_config_path
from rft.train.launch import accelerate_config, launch_command
from rft.train.run import plan_batches

BASE = {
    "model": {"tiny": {}},
    "data": {"datasets": [{"name": "s", "kind": "synthetic_shapes"}]},
    "rewards": [{"name": "format", "weight": 0.5}, {"name": "classification_accuracy"}],
}


def recipe(**sections):
    return validate({**BASE, **sections})


def test_transformers_backend_mapping():
    r = recipe(grpo={"learning_rate": "2e-6", "num_generations": 4, "generation_kwargs": {"suppress_tokens": [7]}},
               output={"dir": "/tmp/x", "report_to": []})
    kw = grpo_kwargs(r, torch.float32, [3, 5], [0.5, 1.0], max_steps=10)
    assert kw["learning_rate"] == 2e-6 and kw["num_generations"] == 4 and kw["max_steps"] == 10
    assert kw["reward_weights"] == [0.5, 1.0] and kw["use_vllm"] is False
    assert kw["generation_kwargs"]["suppress_tokens"] == [3, 5, 7]
    assert kw["use_cpu"] and not kw["bf16"] and kw["remove_unused_columns"] is False and kw["shuffle_dataset"] is False
    config = grpo_config(r, torch.float32, [3, 5], [0.5, 1.0], 10)
    assert config.output_dir == "/tmp/x" and config.beta == 0.04


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_vllm_backend_mapping(mode):
    r = recipe(rollout={"backend": "vllm", "vllm_mode": mode, "gpu_memory_utilization": 0.35, "enable_sleep_mode": True,
                        "server_port": 8001})
    kw = grpo_kwargs(r, torch.bfloat16, [3, 5], [1.0, 1.0], max_steps=1)
    assert kw["use_vllm"] and kw["vllm_mode"] == mode and kw["vllm_gpu_memory_utilization"] == 0.35
    assert kw["vllm_enable_sleep_mode"] and kw["vllm_server_port"] == 8001
    assert kw["generation_kwargs"]["logit_bias"] == {3: -100.0, 5: -100.0}
    assert "suppress_tokens" not in kw["generation_kwargs"]


@pytest.mark.parametrize("stage, offload, name", [(2, False, "zero2"), (3, False, "zero3"), (3, True, "zero3_offload")])
def test_zero_config_selection(stage, offload, name):
    r = recipe(distributed={"zero_stage": stage, "offload": offload})
    kw = grpo_kwargs(r, torch.bfloat16, [], [1.0, 1.0], max_steps=1)
    assert kw["deepspeed"].endswith(f"zero_configs/{name}.json")
    ds = json.loads(zero_config_path(stage, offload).read_text())
    assert ds["zero_optimization"]["stage"] == stage
    assert ("offload_param" in ds["zero_optimization"]) == offload
    assert accelerate_config(r.distributed).name == f"accelerate_{name}.yaml"
    assert accelerate_config(r.distributed).is_file()
    if not torch.cuda.is_available():  # DeepSpeed's CPU accelerator, in the process state rft.zero set up
        assert kw["use_cpu"] is False and kw["accelerator_config"] == {"use_configured_state": True}


def test_zero_config_auto_values_filled_for_an_engine_rft_runs():
    from rft.zero import deepspeed_config

    ds = deepspeed_config(3, True, micro_batch=2, world_size=4, hidden_size=64, dtype=torch.bfloat16, max_grad_norm=1.0)
    assert "auto" not in json.dumps(ds)
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (8, 2, 1)
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"] and ds["gradient_clipping"] == 1.0
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["reduce_bucket_size"] == 64 * 64


def test_no_deepspeed_without_zero():
    assert "deepspeed" not in grpo_kwargs(recipe(), torch.float32, [], [1.0, 1.0], max_steps=1)
    assert accelerate_config(DistributedSection()).name == "accelerate_ddp.yaml"


def test_launch_command():
    cmd = launch_command("r.yaml", ["grpo.beta=0"], DistributedSection(zero_stage=3), 2, resume="latest", cuda=True)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[cmd.index("--deepspeed_config_file") + 1].endswith("zero3.json")
    assert cmd[-7:] == ["-m", "rft.train", "r.yaml", "--set", "grpo.beta=0", "--resume", "latest"]


@pytest.mark.parametrize("dist", [DistributedSection(), DistributedSection(zero_stage=3, offload=True)], ids=["ddp", "zero3"])
def test_launch_without_cuda_runs_cpu_processes(dist):
    """Without GPUs, DDP and ZeRO alike run as CPU processes; ``rft.train`` reads the ZeRO config from the recipe."""
    cmd = launch_command("r.yaml", [], dist, 2, cuda=False)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and cmd[cmd.index("--nproc_per_node") + 1] == "2"
    assert cmd[-3:] == ["-m", "rft.train", "r.yaml"]


@pytest.mark.parametrize("cuda", [True, False])
def test_zero_without_deepspeed_says_how_to_install_it(monkeypatch, cuda):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    with pytest.raises(RecipeError, match=r'zero_stage 2 needs DeepSpeed, which is not installed: pip install -e "\.\[deepspeed\]"'):
        launch_command("r.yaml", [], DistributedSection(zero_stage=2), 2, cuda=cuda)
    assert launch_command("r.yaml", [], DistributedSection(), 2, cuda=cuda)  # DDP needs no DeepSpeed


def test_plan_batches():
    plan = plan_batches({"per_device_train_batch_size": 8, "num_generations": 4, "max_steps": 10}, 1, 100)
    assert (plan.prompts_per_batch, plan.max_steps) == (2, 10) and plan.n_batches >= 10
    plan = plan_batches({"per_device_train_batch_size": 4, "num_generations": 4, "gradient_accumulation_steps": 2}, 2, 40)
    assert plan.prompts_per_batch == 4 and plan.max_steps == 10
    with pytest.raises(RecipeError, match="not a multiple of num_generations"):
        plan_batches({"per_device_train_batch_size": 6, "num_generations": 4}, 1, 10)


def test_bad_reward_kwargs_fail_at_setup():
    from rft.errors import RecipeError
    from rft.train.reward_setup import build_rewards

    with pytest.raises(RecipeError, match=r"rewards\[0\] \(detection_confidence\): reward 'detection_confidence' has no "
                                          r"option 'iou_treshold'; its options: .*iou_threshold"):
        build_rewards(recipe(rewards=[{"name": "detection_confidence", "kwargs": {"iou_treshold": 0.3}}]))


def test_a_dataset_may_name_a_file_reward_as_the_recipe_does_or_as_trl_logs_it(tmp_path):
    """``data.datasets[].rewards`` naming ``file.py:fn`` routed the reward to no dataset (routing compared
    the function's name ``fn``)."""
    from rft.train.reward_setup import build_rewards

    plugin = tmp_path / "plugin.py"
    plugin.write_text("def one(completions, **columns):\n    return [1.0] * len(completions)\n")
    for listed in (f"{plugin}:one", "one"):
        r = recipe(data={"datasets": [{"name": "a", "kind": "synthetic_shapes", "rewards": [listed]},
                                      {"name": "b", "kind": "synthetic_shapes", "rewards": ["format"]}]},
                   rewards=[{"name": f"{plugin}:one"}, {"name": "format"}])
        one = build_rewards(r)[0][0]
        assert one(["x", "y"], dataset=["a", "b"]) == [1.0, None], listed
