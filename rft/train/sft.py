"""``rft sft``: supervised fine-tuning on a recipe's training data, the baseline GRPO is set beside.

The targets are the rows' reference answers in the model's own coordinate convention
(:func:`rft.data.answers.reference_answer`) after rft's prompts, the same rows ``rft train`` would
build; held-out scores (each reward's mean and, for box tasks, mAP / AP50 / negatives / parse
failures) come before training, every ``eval.every_steps`` and after, from the same code as GRPO's.
Writes ``<output.dir>/final`` (model + processor: ``rft train``'s ``model.path``, ``rft eval
--model`` and vLLM load it), ``metrics.json`` and ``sft_curve.png``.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from rft.errors import RecipeError
from rft.recipe import Recipe, dump_recipe
from rft.train.supervised import SupervisedRun

FINAL = "final"


def check_sft_recipe(recipe: Recipe, num_processes: int) -> None:
    """What ``rft sft`` does not do, refused before anything loads."""
    if num_processes > 1:
        raise RecipeError("rft sft runs in one process (it was started under a launcher with several)")
    if recipe.model.lora.enabled:
        raise RecipeError("rft sft trains the model's weights: set model.lora.enabled: false")
    set_rates = [p for p, v in recipe.model.learning_rates.model_dump().items() if v is not None]
    if set_rates:
        raise RecipeError(f"rft sft uses sft.learning_rate for every part: remove model.learning_rates ({set_rates})")


def sft(recipe: Recipe, print_fn=print) -> SupervisedRun:
    """Run supervised fine-tuning as ``recipe`` says (its ``sft:`` section); returns what the run did."""
    from transformers import set_seed

    from rft.data.answers import reference_answer
    from rft.data.sources import training_rows
    from rft.eval.heldout import HeldOut, format_scores
    from rft.eval.run import eval_rows
    from rft.models.load import load_model
    from rft.models.parts import freeze_parts
    from rft.models.vision_attention import batch_vision_attention
    from rft.models.vision_tokens import vision_token_ids
    from rft.processes import process_state
    from rft.train.reward_setup import build_rewards
    from rft.train.run_log import plot_supervised
    from rft.train.supervised import make_deterministic, supervised_train

    started = time.monotonic()
    make_deterministic()  # before CUDA starts: cuBLAS reads its workspace setting then
    state = process_state()
    check_sft_recipe(recipe, state.num_processes)
    out = Path(recipe.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_recipe(recipe, out / "recipe.yaml")
    set_seed(recipe.seed)
    loaded = load_model(recipe.model, out)
    rows = [r for rs in training_rows(recipe, loaded, out / "data").values() for r in rs]
    targets = [reference_answer(r) for r in rows]
    model = loaded.model.to(state.device)
    freeze_parts(model, [p for p in ("vision", "projector", "language") if getattr(recipe.model.freeze, p)])
    if recipe.speed.batched_vision_attention:
        batch_vision_attention(model)
    heldout = None
    if recipe.eval.datasets:
        banned = vision_token_ids(loaded.processor.tokenizer, loaded.family, loaded.processor)
        heldout = HeldOut(eval_rows(recipe.eval.datasets, recipe, loaded, out / "data"), build_rewards(recipe, route=False)[0],
                          loaded.processor, banned, recipe.eval.max_new_tokens, recipe.eval.batch_size, recipe.eval.protocol)
    section = recipe.sft
    n_params = sum(p.numel() for p in model.parameters())
    print_fn(f"rft sft: {len(rows)} training rows, {section.steps} steps of {section.batch_size}, lr {section.learning_rate:g} "
             f"({section.lr_scheduler}), {n_params / 1e6:.1f}M parameters on {state.device}", flush=True)
    before = heldout(model) if heldout else {}
    if before:
        print_fn(f"held-out before SFT: {format_scores(before)}", flush=True)
    run = supervised_train(model, loaded.processor, rows, targets, section, random.Random(recipe.seed), evaluate=heldout,
                           eval_every=recipe.eval.every_steps, max_seconds=section.max_seconds, log_every=section.log_every,
                           num_workers=min(6, (os.cpu_count() or 2) // 2) if state.device.type == "cuda" else 0, print_fn=print_fn)
    after = heldout(model) if heldout else {}
    if after:
        print_fn(f"held-out after SFT:  {format_scores(after)}", flush=True)
    model.save_pretrained(out / FINAL)
    loaded.processor.save_pretrained(out / FINAL)
    summary = {
        "method": "sft", "steps": run.steps, "train_seconds": run.train_seconds, "heldout_eval_seconds": run.eval_seconds,
        "wall_seconds": time.monotonic() - started, "stopped_by_time": run.stopped_by_time, "rows": len(rows),
        "parameters": n_params, "eval_before_sft": before, "eval_after_sft": after, "log_history": run.history,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    plot_supervised(summary, out / "sft_curve.png")
    print_fn(f"rft sft: {run.steps} steps in {run.train_seconds:.0f} s of training; model in {out / FINAL}", flush=True)
    return run
