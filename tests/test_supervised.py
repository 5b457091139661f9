"""The supervised engine (rft.train.supervised) behind the warm-up and ``rft sft``: schedule, held-out
scores every N steps, the time limit, workers that change nothing, and ``rft sft`` end to end."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForImageTextToText

from rft.data.answers import reference_answer
from rft.data.build import to_trl_rows
from rft.data.synthetic import make_shapes
from rft.errors import RecipeError
from rft.models.tiny import build_tiny_vlm
from rft.recipe import validate
from rft.recipe.schema import SftSection
from rft.train.sft import check_sft_recipe
from rft.train.supervised import supervised_train


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("supervised")
    path = build_tiny_vlm("qwen2_5_vl", tmp / "model")
    rows = make_shapes(tmp / "data", 12, task="detection", seed=2, negative_ratio=0.25)
    trl = to_trl_rows(rows, family="qwen2_5_vl", min_pixels=12544, max_pixels=12544, factor=28, resized_dir=tmp / "resized")
    return path, trl, [reference_answer(r) for r in trl]


def _train(setup, settings: SftSection, **kwargs):
    from transformers import AutoProcessor

    path, rows, targets = setup
    model = AutoModelForImageTextToText.from_pretrained(path)
    run = supervised_train(model, AutoProcessor.from_pretrained(path), rows, targets, settings, random.Random(0),
                           print_fn=lambda *a, **k: None, **kwargs)
    return model, run


def test_schedule_evaluations_and_history(setup):
    calls = []

    def evaluate(model):
        calls.append(len(calls))
        return {"eval/probe": float(len(calls))}

    settings = SftSection(steps=6, batch_size=4, learning_rate=1e-3, warmup_ratio=0.34)
    _, run = _train(setup, settings, evaluate=evaluate, eval_every=2, log_every=1)
    logged = [h for h in run.history if "loss" in h]
    lrs = [h["learning_rate"] for h in logged]
    assert [h["step"] for h in logged] == [1, 2, 3, 4, 5, 6] and run.steps == 6
    assert lrs[0] == 0.0 and lrs[3] == pytest.approx(1e-3)  # 3 warm-up steps from 0, then cosine down
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))
    evals = [h for h in run.history if "eval/probe" in h]
    assert [h["step"] for h in evals] == [2, 4]  # not after the last step: the caller scores the final model
    assert all(h["seconds"] <= run.train_seconds for h in evals) and run.eval_seconds >= 0
    assert not run.stopped_by_time and len(run.losses) == 6


def test_workers_change_nothing(setup):
    settings = SftSection(steps=3, batch_size=4, learning_rate=1e-3)
    plain, run0 = _train(setup, settings)
    with_workers, run2 = _train(setup, settings, num_workers=2)
    assert run0.losses == run2.losses
    for (name, a), (_, b) in zip(plain.state_dict().items(), with_workers.state_dict().items()):
        assert torch.equal(a, b), name


def test_time_limit_stops_after_a_step(setup):
    _, run = _train(setup, SftSection(steps=50, batch_size=2), max_seconds=1e-6)
    assert run.steps == 1 and run.stopped_by_time and run.history[-1]["step"] == 1


@pytest.mark.parametrize(("model", "processes", "message"), [
    ({"lora": {"enabled": True}}, 1, "model.lora.enabled: false"),
    ({"learning_rates": {"vision": 1e-5}}, 1, r"remove model.learning_rates \(\['vision'\]\)"),
    ({}, 2, "one process"),
])
def test_sft_refuses_what_it_does_not_do(model, processes, message):
    recipe = validate({"model": {"tiny": {}, **model}, "data": {"datasets": [{"name": "d", "kind": "synthetic_shapes"}]},
                       "rewards": [{"name": "format"}]})
    with pytest.raises(RecipeError, match=message):
        check_sft_recipe(recipe, processes)


SFT_RECIPE = {
    "name": "sft_format",
    "model": {"tiny": {"family": "qwen2_5_vl"}, "dtype": "float32", "min_pixels": 12544, "max_pixels": 12544,
              "freeze": {"vision": False, "projector": False, "language": False}},
    "data": {"datasets": [{"name": "det", "kind": "synthetic_shapes", "task": "detection", "num_samples": 64,
                           "negative_ratio": 0.25, "options": {"shapes": ["circle", "square"], "max_objects": 2}}]},
    "rewards": [{"name": "detection_iou"}, {"name": "negative_sample"}, {"name": "format"},
                {"name": "format", "alias": "answer_template", "kwargs": {"check_answer": False}}],
    "sft": {"steps": 80, "batch_size": 8, "learning_rate": 3e-3, "warmup_ratio": 0.1, "log_every": 10},
    "eval": {"datasets": [{"name": "det_eval", "kind": "synthetic_shapes", "task": "detection", "split": "eval", "seed": 3,
                           "num_samples": 8, "negative_ratio": 0.25, "options": {"shapes": ["circle", "square"], "max_objects": 2}}],
             "every_steps": 40, "max_new_tokens": 48, "batch_size": 8},
}


@pytest.mark.slow
def test_rft_sft_learns_the_answer_and_saves_a_loadable_model(tmp_path):
    """``rft sft`` from random weights: held-out answers go from unparseable to answers in the template
    whose box lists parse (80 steps teach a 0.2M-parameter model the answer's shape, not yet four numbers
    per box, so the strict ``format`` reward is not asserted); the final folder loads with from_pretrained and as ``rft eval --model``."""
    from rft.cli import main
    from rft.eval.run import evaluate_recipe
    from rft.train.sft import sft

    recipe = validate({**SFT_RECIPE, "output": {"dir": str(tmp_path / "run"), "report_to": []}})
    run = sft(recipe, print_fn=lambda *a, **k: None)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == run.steps == 80 and metrics["method"] == "sft"
    before, after = metrics["eval_before_sft"], metrics["eval_after_sft"]
    assert before["eval/parse_failures"] == 1.0 and before["eval/answer_template"] == 0.0
    assert after["eval/answer_template"] >= 0.9 and after["eval/parse_failures"] <= 0.1
    assert {"eval/mAP", "eval/AP50", "eval/negatives_correct", "eval/false_positive_rate"} <= set(after)
    assert [h["step"] for h in metrics["log_history"] if "eval/format" in h] == [40]
    assert (tmp_path / "run" / "sft_curve.png").stat().st_size > 10_000
    model, info = AutoModelForImageTextToText.from_pretrained(tmp_path / "run" / "final", output_loading_info=True)
    assert not any(info.values())
    report = evaluate_recipe(recipe, str(tmp_path / "run" / "final"), tmp_path / "eval")
    assert report["detection"]["AP50"] == pytest.approx(after["eval/AP50"])  # rft eval and the run's own scores agree
    assert report["negatives"]["negative_accuracy"] == pytest.approx(after["eval/negatives_correct"])
    with pytest.raises(SystemExit) as exit_:
        main(["sft", str(tmp_path / "missing.yaml")])
    assert exit_.value.code == 2
