"""End to end on the CPU with tiny models: a multi-task recipe trains and logs every reward by name."""

import json

import pytest
import yaml

from rft.recipe import load_recipe, validate
from rft.train.run import train

pytestmark = pytest.mark.slow

MULTITASK = {
    "name": "multitask_tiny",
    "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544,
              "freeze": {"vision": False, "projector": True, "language": False}, "learning_rates": {"vision": 1e-5}},
    "data": {
        "datasets": [
            {"name": "det", "kind": "synthetic_shapes", "task": "detection", "num_samples": 12, "negative_ratio": 0.5,
             "rewards": ["format", "detection_iou", "negative_sample"]},
            {"name": "cls", "kind": "synthetic_shapes", "task": "classification", "num_samples": 12,
             "rewards": ["format", "classification_accuracy"]},
        ],
        "schedule": [{"dataset": "det", "batches": 2}, {"dataset": "cls", "batches": 1}],
    },
    "rewards": [{"name": "format", "weight": 0.5}, {"name": "detection_iou"}, {"name": "negative_sample"},
                {"name": "classification_accuracy"}],
    "grpo": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 12, "max_steps": 3,
             "learning_rate": 1e-4},
    "eval": {"datasets": [{"name": "cls_eval", "kind": "synthetic_shapes", "task": "classification", "num_samples": 4,
                           "split": "eval", "seed": 5}],
             "every_steps": 2, "max_new_tokens": 12, "batch_size": 4},
    "output": {"report_to": ["tensorboard"]},
}


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("multitask")
    recipe = validate({**MULTITASK, "output": {**MULTITASK["output"], "dir": str(out)}})
    return out, train(recipe)


def test_each_reward_is_logged_by_name_and_routed_by_schedule(multitask_run):
    _, trainer = multitask_run
    steps = [h for h in trainer.state.log_history if "reward" in h]
    assert len(steps) == 3
    det, det2, cls = steps
    for logs in (det, det2):  # detection batches: classification does not apply
        assert logs["rewards/detection_iou/mean"] is not None and logs["rewards/classification_accuracy/mean"] is None
    assert cls["rewards/classification_accuracy/mean"] is not None and cls["rewards/detection_iou/mean"] is None
    assert all(s["rewards/format/mean"] is not None for s in steps)


def test_part_learning_rates_and_freezing_reach_the_optimizer(multitask_run):
    _, trainer = multitask_run
    by_part = {g["part"]: g for g in trainer.optimizer.param_groups}
    assert "projector" not in by_part  # frozen: no parameters to optimise
    assert by_part["vision"]["initial_lr"] == 1e-5 and by_part["language"]["initial_lr"] == 1e-4
    assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if ".merger." in n)


def test_heldout_eval_reaches_the_loggers(multitask_run):
    out, trainer = multitask_run
    logged = [h for h in trainer.state.log_history if "eval/classification_accuracy" in h]
    assert [h["step"] for h in logged] == [3]  # evaluated after step 2, reported with step 3's metrics
    metrics = json.loads((out / "metrics.json").read_text())
    assert "eval/classification_accuracy" in metrics["eval_before_grpo"] and "eval_after_grpo" in metrics
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(out.rglob("events.out.tfevents*")).parent)).Reload()
    assert "train/eval/classification_accuracy" in events.Tags()["scalars"]


def test_run_writes_resolved_recipe_metrics_curve_and_model(multitask_run):
    out, _ = multitask_run
    resolved = load_recipe(out / "recipe.yaml")
    assert resolved.grpo["max_steps"] == 3 and resolved.model.min_pixels == 3136
    history = json.loads((out / "metrics.json").read_text())["log_history"]
    assert any("reward" in h for h in history)
    assert (out / "reward_curve.png").stat().st_size > 10_000
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "processor_config.json").is_file()


def test_lora_run_trains_only_adapters(tmp_path):
    recipe = validate({**MULTITASK, "data": {"datasets": [MULTITASK["data"]["datasets"][1]]},
                       "rewards": [{"name": "format"}, {"name": "classification_accuracy"}],
                       "model": {**MULTITASK["model"], "freeze": {"vision": True, "projector": True, "language": False},
                                 "lora": {"enabled": True, "r": 4}},
                       "grpo": {**MULTITASK["grpo"], "max_steps": 1}, "output": {"dir": str(tmp_path), "report_to": []}})
    trainer = train(recipe)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert (tmp_path / "final" / "adapter_model.safetensors").is_file()


def test_yaml_recipe_from_cli(tmp_path):
    from rft.cli import main

    path = tmp_path / "r.yaml"
    dataset = {**MULTITASK["data"]["datasets"][1], "rewards": None}
    path.write_text(yaml.safe_dump({**MULTITASK, "data": {"datasets": [dataset]}, "rewards": [{"name": "classification_accuracy"}]}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(path), "--set", f"output.dir={tmp_path / 'out'}", "--set", "grpo.max_steps=1"])
    assert exit_.value.code == 0
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_cli_reports_recipe_errors_without_traceback(tmp_path, capsys):
    from rft.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**MULTITASK, "grpo": {"num_generation": 4}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "grpo.num_generation: not a GRPOConfig field" in err and "Traceback" not in err


def test_lora_adapter_after_warmup_evaluates_on_its_warmed_up_base(tmp_path):
    """The warm-up changes the base weights before LoRA: the adapter records that base, and rft eval
    (and a resumed run) load it instead of the recipe's untouched model."""
    import torch

    from rft.eval.run import load_for_eval
    from rft.models.load import load_model

    recipe = validate({**MULTITASK, "data": {"datasets": [MULTITASK["data"]["datasets"][1]]},
                       "rewards": [{"name": "format"}, {"name": "classification_accuracy"}],
                       "model": {**MULTITASK["model"], "lora": {"enabled": True, "r": 4}},
                       "warmup": {"steps": 2, "learning_rate": 1e-2, "batch_size": 4},
                       "grpo": {**MULTITASK["grpo"], "max_steps": 1}, "eval": {},
                       "output": {"dir": str(tmp_path), "report_to": []}})
    trainer = train(recipe)
    adapter = tmp_path / "final"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tmp_path / "warmed_up")
    evaluated = load_for_eval(recipe, str(adapter), tmp_path / "eval").model.state_dict()
    untouched = load_model(recipe.model, tmp_path).model.state_dict()
    trained = trainer.model.merge_and_unload().state_dict()
    name = next(n for n in evaluated if "visual" in n and n.endswith("weight"))
    assert torch.equal(evaluated[name], trained[name]) and not torch.equal(evaluated[name], untouched[name])
    lora_target = next(n for n in evaluated if n.endswith("q_proj.weight") and "language" in n)
    assert torch.allclose(evaluated[lora_target], trained[lora_target], atol=1e-6)
    # the adapter carries its base's name and weight fingerprint: a base replaced by another model of the same
    # shape (here: the model before the warm-up) is refused, naming both, instead of merged onto
    assert json.loads((adapter / "rft_base.json").read_text())["base_model_name_or_path"] == str(tmp_path / "warmed_up")
    import shutil

    from rft.errors import RecipeError

    shutil.rmtree(tmp_path / "warmed_up")
    shutil.copytree(tmp_path / "tiny_model", tmp_path / "warmed_up")
    with pytest.raises(RecipeError, match=rf"trained on '{tmp_path / 'warmed_up'}', but the model loaded as its base, "
                                          rf"'{tmp_path / 'warmed_up'}', is another model"):
        load_for_eval(recipe, str(adapter), tmp_path / "eval")


def test_export_writes_the_merged_adapter_as_a_plain_model(tmp_path):
    """``rft export``: a LoRA checkpoint becomes a model folder that from_pretrained (and vLLM) load
    without peft, with the merged weights; a missing checkpoint is a clear error."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rft.cli import main

    recipe = {**MULTITASK, "data": {"datasets": [MULTITASK["data"]["datasets"][1]]},
              "rewards": [{"name": "format"}, {"name": "classification_accuracy"}],
              "model": {**MULTITASK["model"], "lora": {"enabled": True, "r": 4}},
              "warmup": {"steps": 1, "learning_rate": 1e-2, "batch_size": 4},
              "grpo": {**MULTITASK["grpo"], "max_steps": 1, "learning_rate": 1e-2}, "eval": {},
              "output": {"dir": str(tmp_path / "run"), "report_to": []}}
    trainer = train(validate(recipe))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(path), "--model", str(tmp_path / "run" / "final"), "--out", str(tmp_path / "merged")])
    assert exit_.value.code == 0
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    exported = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").state_dict()
    trained = trainer.model.merge_and_unload().state_dict()
    assert exported.keys() == trained.keys()
    assert all(torch.allclose(exported[k], trained[k], atol=1e-6) for k in trained)
    assert AutoProcessor.from_pretrained(tmp_path / "merged").image_processor.size.longest_edge == recipe["model"]["max_pixels"]
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(path), "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2


def test_kl_reference_is_the_warmed_up_model(tmp_path):
    """GRPO after a warm-up pulls towards the warmed-up weights (TRL's reference model), not towards the
    model before the warm-up (which would undo what the warm-up taught, e.g. the answer format)."""
    import torch
    from transformers import AutoModelForImageTextToText

    recipe = validate({**MULTITASK, "data": {"datasets": [MULTITASK["data"]["datasets"][1]]},
                       "rewards": [{"name": "format"}, {"name": "classification_accuracy"}],
                       "warmup": {"steps": 2, "learning_rate": 1e-2, "batch_size": 4},
                       "grpo": {**MULTITASK["grpo"], "max_steps": 1}, "eval": {},
                       "output": {"dir": str(tmp_path), "report_to": []}})
    trainer = train(recipe)
    reference = trainer.ref_model.state_dict()
    warmed, before = (AutoModelForImageTextToText.from_pretrained(tmp_path / d).state_dict() for d in ("warmed_up", "tiny_model"))
    name = next(n for n in warmed if "language_model" in n and n.endswith("q_proj.weight"))
    assert torch.equal(reference[name], warmed[name]) and not torch.equal(warmed[name], before[name])
