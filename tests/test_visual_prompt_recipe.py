"""recipes/visual_prompt_detection.yaml: 8 batches of visual-prompt detection, then 1 of text-prompt
detection (T-Rex2's schedule); it loads, lays out batches in that order, and trains at demo size."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from rft.data.mixing import batch_sources
from rft.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "visual_prompt_detection.yaml"
EIGHT_THEN_ONE = ["visual_prompt"] * 8 + ["text_prompt"]


def test_recipe_alternates_eight_visual_prompt_batches_with_one_text_prompt_batch():
    recipe = load_recipe(RECIPE)
    tasks = {d.name: d.task for d in recipe.data.datasets}
    assert tasks == {"visual_prompt": "visual_prompt_detection", "text_prompt": "detection"}
    assert batch_sources(recipe.data, 18, random.Random(0)) == EIGHT_THEN_ONE * 2
    assert recipe.data.datasets[0].options["exemplar"] == "coordinates"
    assert {r.logged_name for r in recipe.rewards} == {"format", "visual_prompt_iou", "text_prompt_iou",
                                                      "negative_sample"}


@pytest.mark.slow
def test_recipe_trains_both_tasks_in_schedule_order(tmp_path):
    from rft.train.run import train

    toy = ["model.tiny={family: qwen2_5_vl}", "model.min_pixels=3136", "model.max_pixels=3136",
           "data.datasets[0].num_samples=16", "data.datasets[1].num_samples=8", "warmup.steps=0",
           "grpo.max_steps=10", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
           "grpo.max_completion_length=8", "eval.datasets[0].num_samples=4", "eval.every_steps=100",
           "eval.max_new_tokens=8", "eval.batch_size=4", f"output.dir={tmp_path}"]
    trainer = train(load_recipe(RECIPE, toy))
    steps = [h for h in trainer.state.log_history if "reward" in h]
    assert len(steps) == 10
    for step, source in zip(steps, EIGHT_THEN_ONE + ["visual_prompt"]):
        ours, other = ("visual_prompt_iou", "text_prompt_iou")[:: 1 if source == "visual_prompt" else -1]
        assert math.isfinite(step[f"rewards/{ours}/mean"]) and step[f"rewards/{other}/mean"] is None, step["step"]
        assert math.isfinite(step["rewards/format/mean"]) and math.isfinite(step["loss"])


def test_rft_serve_allows_the_images_a_crop_prompt_holds(tmp_path):
    from rft.rollout.serve import recipe_images_per_prompt

    crops = ["data.datasets[0].options.exemplar=crop", "data.datasets[0].options.exemplars=2",
             "data.datasets[0].num_samples=4", "data.datasets[1].num_samples=4", f"output.dir={tmp_path}"]
    assert recipe_images_per_prompt(load_recipe(RECIPE, crops)) == 3  # the scene and two crops
    assert recipe_images_per_prompt(load_recipe(RECIPE, crops[2:])) == 1


@pytest.mark.slow
def test_recipe_trains_with_exemplars_as_crops_in_a_second_image(tmp_path):
    from rft.train.run import train

    toy = ["model.tiny={family: qwen2_5_vl}", "model.min_pixels=3136", "model.max_pixels=3136",
           "data.datasets[0].options.exemplar=crop", "data.datasets[0].num_samples=8", "data.datasets[1].num_samples=8",
           "warmup.steps=2", "warmup.batch_size=4", "grpo.max_steps=2", "grpo.per_device_train_batch_size=4",
           "grpo.num_generations=2", "grpo.max_completion_length=8", "eval.datasets[0].options.exemplar=crop",
           "eval.datasets[0].num_samples=4", "eval.every_steps=1", "eval.max_new_tokens=8", "eval.batch_size=4",
           f"output.dir={tmp_path}"]
    trainer = train(load_recipe(RECIPE, toy))
    steps = [h for h in trainer.state.log_history if "reward" in h]
    assert len(steps) == 2 and all(math.isfinite(s["rewards/visual_prompt_iou/mean"]) for s in steps)
    assert all(math.isfinite(s["loss"]) for s in steps)
    evaluated = [h for h in trainer.state.log_history if "eval/visual_prompt_iou" in h]
    assert evaluated and math.isfinite(evaluated[0]["eval/visual_prompt_mAP"])
    crops = list((tmp_path / "data" / "resized").glob("*-crop-*.png"))
    assert len(crops) >= 8  # one crop per visual-prompt row (and held-out row)
