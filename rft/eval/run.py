"""``rft eval``: generate answers for the evaluation split, score them with ``rft.eval.metrics``, write
``predictions.jsonl``, ``report.json``, ``summary.txt`` and pictures; optionally a retention check."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rewards.contract import BOX_TASKS
from rft.errors import RecipeError
from rft.eval import metrics
from rft.processes import process_state, shared_map
from rft.recipe import Recipe

log = logging.getLogger(__name__)


def load_for_eval(recipe: Recipe, model_path: str | None, work_dir: Path):
    """The recipe's model, or a trained checkpoint (a full model folder or a LoRA adapter folder, merged),
    on this process's device (a GPU where there is one)."""
    from rft.models.load import load_checkpoint

    state = process_state()
    with state.local_main_process_first():  # a tiny model is built once
        loaded = load_checkpoint(recipe.model, model_path, work_dir)
    loaded.model.to(state.device)
    return loaded


def eval_rows(specs, recipe: Recipe, loaded, work_dir: Path) -> list[dict]:
    """TRL rows of ``specs`` (images resized once, by the first process of each machine)."""
    from rft.data.sources import trl_rows_for

    with process_state().local_main_process_first():
        return [r for rs in trl_rows_for(specs, recipe, loaded, work_dir).values() for r in rs]


def generate_samples(loaded, rows: list[dict], recipe: Recipe, batch_size: int | None = None) -> list[dict]:
    """Rows with the model's greedy ``completion`` added (the scored-sample format of ``rft.eval.metrics``)."""
    from rft.eval.generate import generate_answers, scored_samples
    from rft.models.vision_tokens import vision_token_ids

    banned = vision_token_ids(loaded.processor.tokenizer, loaded.family, loaded.processor)
    answers = shared_map(lambda part: generate_answers(loaded.model, loaded.processor, part, banned, recipe.eval.max_new_tokens,
                                                       batch_size or recipe.eval.batch_size), rows)
    return scored_samples(rows, answers)


def draw_pictures(samples: list[dict], out: Path, n: int) -> list[Path]:
    """Ground-truth and predicted boxes for the first ``n`` detection/grounding samples."""
    from rft.data.build import trl_images
    from rft.eval.pictures import boxes_of, draw_boxes, picture_name

    box_samples = [s for s in samples if s["task"] in BOX_TASKS][:n]
    paths = []
    for i, (s, (truth, predicted)) in enumerate(zip(box_samples, boxes_of(box_samples))):
        # boxes are in original-image pixels; the picture is of the resized copy the model saw
        paths.append(draw_boxes(s["image"], truth, predicted, s["id"], out / "pictures" / picture_name(i, s["id"]),
                                boxes_size=s["image_size"], others=trl_images(s)[1:]))
    return paths


def retention(recipe: Recipe, loaded, out: Path) -> dict:
    """Base model vs fine-tuned model on the recipe's general held-out data, per metric."""
    rows = eval_rows(recipe.eval.retention, recipe, loaded, out / "data")
    base = load_for_eval(recipe, None, out / "base")
    reports = {"base": metrics.evaluate(generate_samples(base, rows, recipe)),
               "fine_tuned": metrics.evaluate(generate_samples(loaded, rows, recipe))}
    change = {}
    for task, values in reports["fine_tuned"].items():
        if isinstance(values, dict):
            for key, value in values.items():
                before = reports["base"].get(task, {}).get(key)
                if isinstance(value, (int, float)) and isinstance(before, (int, float)) and not key.startswith("n"):
                    change[f"{task}/{key}"] = value - before
    return {**reports, "change": change}


def evaluate_recipe(recipe: Recipe, model_path: str | None, out: str | Path, batch_size: int | None = None) -> dict:
    """Run the evaluation a recipe's ``eval:`` section describes; returns the report. Under ``torchrun``
    (``rft eval --gpus N``) each process answers a share of the rows; the first writes the results."""
    if not recipe.eval.datasets:
        raise RecipeError("eval.datasets is empty: name the evaluation split(s) in the recipe's eval section")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_for_eval(recipe, model_path, out)
    rows = eval_rows(recipe.eval.datasets, recipe, loaded, out / "data")
    start = time.monotonic()
    samples = generate_samples(loaded, rows, recipe, batch_size)
    seconds = time.monotonic() - start
    report = metrics.evaluate(samples, protocol=recipe.eval.protocol)
    report["model"] = model_path or (recipe.model.path or "tiny")
    report["generation_seconds"] = seconds
    if recipe.eval.retention:
        report["retention"] = retention(recipe, loaded, out)
    if process_state().is_main_process:
        write_results(samples, report, recipe, out)
    return report


def write_results(samples: list[dict], report: dict, recipe: Recipe, out: Path) -> None:
    """``predictions.jsonl``, ``report.json``, ``summary.txt`` (also printed) and ``pictures/``."""
    with open(out / "predictions.jsonl", "w") as f:
        for s in samples:
            f.write(json.dumps(s) + "\n")
    draw_pictures(samples, out, recipe.eval.pictures)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    table = metrics.summary_table(report)
    (out / "summary.txt").write_text(table + "\n")
    print(table)
