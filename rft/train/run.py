"""``rft train``: a recipe becomes a GRPO run on TRL's GRPOTrainer."""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rft.errors import EXIT_ERROR, EXIT_INTERRUPTED, RecipeError, RftError
from rft.recipe import Recipe, dump_recipe

log = logging.getLogger(__name__)


WARMED_UP = "warmed_up"
"""The folder in ``output.dir`` with the weights after the supervised warm-up (vLLM runs, LoRA runs)."""


class TrainingStopped(RftError):
    """Training stopped early for a reason the user must see (it saved a checkpoint first)."""


class TrainingInterrupted(RftError):
    """SIGTERM or SIGINT stopped the run after it saved a checkpoint: resume it (exit status 75)."""

    exit_status = EXIT_INTERRUPTED


@dataclass(frozen=True)
class BatchPlan:
    """How many unique prompts each TRL generation batch takes, and how many batches the run needs."""

    prompts_per_batch: int
    n_batches: int
    max_steps: int


def plan_batches(grpo: dict[str, Any], world_size: int, total_rows: int) -> BatchPlan:
    """Batch arithmetic of TRL's GRPOTrainer: a generation batch is ``per_device_train_batch_size x
    world_size x steps_per_generation`` completions, ``num_generations`` per prompt; it serves
    ``steps_per_generation x num_iterations`` micro-steps."""
    per_device = int(grpo["per_device_train_batch_size"])
    accumulation = int(grpo.get("gradient_accumulation_steps", 1))
    steps_per_generation = int(grpo.get("steps_per_generation") or accumulation)
    generations = int(grpo["num_generations"])
    completions = per_device * world_size * steps_per_generation
    if completions % generations:
        raise RecipeError(
            f"grpo: per_device_train_batch_size ({per_device}) x GPUs ({world_size}) x steps_per_generation "
            f"({steps_per_generation}) = {completions} completions per generation batch, not a multiple of "
            f"num_generations ({generations})"
        )
    prompts = completions // generations
    micro_steps_per_batch = steps_per_generation * int(grpo.get("num_iterations", 1))
    if grpo.get("max_steps", -1) and int(grpo.get("max_steps", -1)) > 0:
        max_steps = int(grpo["max_steps"])
    else:
        epochs = float(grpo.get("num_train_epochs", 1.0))
        max_steps = max(1, math.ceil(epochs * total_rows / prompts * micro_steps_per_batch / accumulation))
    n_batches = math.ceil(max_steps * accumulation / micro_steps_per_batch) + 1
    return BatchPlan(prompts, n_batches, max_steps)


def grpo_start(recipe: Recipe, out: Path) -> str:
    """The weights GRPO started from: the run's warmed-up model if it warmed up, else the recipe's model."""
    from rft.models.load import tiny_model_path

    if (out / WARMED_UP).is_dir():
        return str(out / WARMED_UP)
    if recipe.model.tiny is not None:
        return str(tiny_model_path(recipe.model.tiny, out))
    return str(recipe.model.path)


def prepare_model(recipe: Recipe, loaded, banned: list[int]):
    """The model GRPO trains: parts frozen or LoRA added as the recipe says, ``banned`` tokens biased
    out of its logits (as vLLM samples), and the recipe's ``speed`` options applied."""
    from rft.models.image_features import share_image_features
    from rft.models.lora import apply_lora
    from rft.models.parts import freeze_parts
    from rft.models.vision_attention import batch_vision_attention
    from rft.models.vision_tokens import ban_in_logits

    model_section = recipe.model
    if model_section.lora.enabled:
        model = apply_lora(loaded.model, model_section.lora, model_section.freeze)
    else:
        frozen = [p for p in ("vision", "projector", "language") if getattr(model_section.freeze, p)]
        freeze_parts(loaded.model, frozen)
        model = loaded.model
    ban_in_logits(model, banned)  # the trainer's log-probs are those of the policy rollouts sample from
    share_image_features(model, recipe.speed.dedupe_images, recipe.speed.cache_frozen_image_features)
    if recipe.speed.batched_vision_attention:
        batch_vision_attention(model)
    return model


def train(recipe: Recipe, resume: str | None = None, overwrite: bool = False):
    """Run GRPO as ``recipe`` says; returns the trainer (its ``state.log_history`` holds the metrics).

    ``output.dir`` is locked for the run, and an earlier run there is refused unless ``resume`` continues it
    or ``overwrite`` replaces it (:mod:`rft.train.output_dir`). Nothing is written over an earlier run's
    files before the model, data, rewards and GRPO config are ready. A run stopped by SIGTERM/SIGINT saves a
    checkpoint and raises :class:`TrainingInterrupted` (no ``final/``)."""
    from rft.processes import process_state
    from rft.recipe.combinations import combination_problems
    from rft.train.output_dir import claim_output_dir
    from rft.zero import require_deepspeed

    # Under torchrun / accelerate launch every rank runs this: files shared between ranks (the
    # resolved recipe, a tiny model, resized images, the warmed-up weights) are written by the
    # local main process first, and the others read them.
    if recipe.distributed.zero_stage:
        require_deepspeed(recipe.distributed.zero_stage)
    state = process_state(deepspeed=recipe.distributed.zero_stage > 0)
    problems = combination_problems(recipe, state.num_processes)
    if problems:
        raise RecipeError("invalid recipe\n  " + "\n  ".join(problems))
    out = Path(recipe.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = claim_output_dir(out, resume, overwrite, state.is_main_process)
    try:
        return _train(recipe, resume, overwrite, state, out)
    finally:
        if lock is not None:
            lock.release()


def _ending(exc: BaseException) -> tuple[str, int]:
    """``run_status.json``'s status and exit status for a run that raised ``exc``."""
    if isinstance(exc, TrainingInterrupted):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, RftError):
        return "stopped", exc.exit_status
    return "failed", EXIT_ERROR


@dataclass
class StartUp:
    """What start-up prepared for the GRPO run (:func:`train`)."""

    resume: str | None
    loaded: Any
    rows: dict[str, list[dict]]
    dataset: Any
    banned: list[int]
    heldout_rows: list[dict] | None
    config: Any
    stop: Any
    failures: Any
    reward_funcs: list
    reward_names: list[str]
    decoded: Any = None  # decoded-image cache shared by the training rows and dynamic sampling's refills
    images_per_prompt: int = 1  # the most images a training row has (vLLM's limit_mm_per_prompt)
    trainer: Any = None


def _train(recipe: Recipe, resume: str | None, overwrite: bool, state, out: Path):
    from transformers import set_seed

    from rft.data.build import check_modalities, images_per_row, to_dataset
    from rft.data.image_cache import DecodedImages
    from rft.data.mixing import order_rows
    from rft.data.sources import training_rows
    from rft.eval.run import eval_rows
    from rft.models.load import load_model
    from rft.models.vision_tokens import vision_token_ids
    from rft.train.checkpoints import CheckpointOnSignal, process_count_note, resolve_resume
    from rft.train.config import RFT_DEFAULTS, grpo_config
    from rft.train.output_dir import clear_earlier_run, write_status
    from rft.train.reward_guard import FailureLog, guarded
    from rft.train.reward_setup import build_rewards

    set_seed(recipe.seed)
    reward_funcs, reward_weights = build_rewards(recipe)  # fail fast on a bad reward spec
    reward_names = [fn.__name__ for fn in reward_funcs]
    guard, stop = recipe.reward_guard, CheckpointOnSignal()
    failures = FailureLog(out / "failures.jsonl", guard.max_failure_rate, guard.min_samples)
    reward_funcs = [guarded(fn, failures, guard.fallback, guard.timeout_s, on_interrupt=stop.request_stop)
                    for fn in reward_funcs]
    resume = resolve_resume(resume, out)
    note = process_count_note(resume, state.num_processes) if resume is not None else None
    if note and state.is_main_process:
        log.warning(note)
    model_section = recipe.model
    if resume is not None and not recipe.model.lora.enabled:
        # The Trainer's own checkpoint loading skips transformers' key conversion for Qwen-VL models
        # (every weight reported missing, training silently goes on from the old weights): load the
        # checkpoint's weights through from_pretrained, under the weight report; the Trainer then
        # restores optimizer, scheduler, RNG states and step.
        model_section = recipe.model.model_copy(update={"path": resume, "tiny": None})
    elif resume is not None and (out / WARMED_UP).is_dir():  # a LoRA run resumes on its warmed-up base
        model_section = recipe.model.model_copy(update={"path": str(out / WARMED_UP), "tiny": None})
    with state.local_main_process_first():
        loaded = load_model(model_section, out)
        rows = training_rows(recipe, loaded, out / "data")
    check_modalities(rows, recipe.distributed.zero_stage)
    plan = plan_batches({**RFT_DEFAULTS, **recipe.grpo}, state.num_processes, sum(len(r) for r in rows.values()))
    ordered = order_rows(rows, recipe.data, plan.prompts_per_batch, plan.n_batches, recipe.seed)
    decoded = DecodedImages()  # one cache of decoded images for the training rows and dynamic sampling's refills
    images_per_prompt = images_per_row(r for rs in rows.values() for r in rs)
    # the refills' image column is the training rows', even where the ordered batches hold no row with several
    dataset = to_dataset(ordered, recipe.speed.cache_decoded_images, decoded, images_per_prompt > 1)
    log.info("training on %d prompts in %d batches of %d, %d steps", len(ordered), plan.n_batches,
             plan.prompts_per_batch, plan.max_steps)
    banned = vision_token_ids(loaded.processor.tokenizer, loaded.family, loaded.processor)
    heldout_rows = eval_rows(recipe.eval.datasets, recipe, loaded, out / "data") if recipe.eval.datasets else None
    config = grpo_config(recipe, loaded.model.dtype, banned, reward_weights, plan.max_steps)

    # Start-up is over: from here on the run writes its outputs (over an earlier run's only with overwrite).
    if overwrite and state.is_main_process:
        clear_earlier_run(out)
    state.wait_for_everyone()
    if state.is_local_main_process:
        dump_recipe(recipe, out / "recipe.yaml")
    ready = StartUp(resume, loaded, rows, dataset, banned, heldout_rows, config, stop, failures, reward_funcs, reward_names,
                    decoded, images_per_prompt)
    try:
        trainer = _run_grpo(recipe, state, out, ready)
    except BaseException as exc:
        if state.is_main_process:
            step = ready.trainer.state.global_step if ready.trainer is not None else None
            write_status(out, *_ending(exc), step, message=str(exc))
        raise
    if state.is_main_process:
        write_status(out, "finished", 0, trainer.state.global_step)
    return trainer


def _run_grpo(recipe: Recipe, state, out: Path, ready: StartUp):
    """The warm-up, GRPO and the final model, once start-up is over (:func:`train`)."""
    import torch
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl.models.utils import unwrap_model_for_generation

    from rft.compat.transformers import set_name_or_path
    from rft.compat.trl import log_metric, server_client
    from rft.eval.heldout import HeldOut, HeldOutCallback, format_scores
    from rft.models.load import load_model
    from rft.models.lora import base_record
    from rft.models.vision_tokens import placeholder_token_ids
    from rft.train.checkpoints import INCOMPLETE, SkipNonFiniteSteps, latest_checkpoint, publish
    from rft.train.completion_log import completion_log
    from rft.train.dynamic_sampling import dynamic_sampler
    from rft.train.reward_setup import build_rewards
    from rft.train.run_log import RunLog
    from rft.train.trainer import RftGRPOTrainer
    from rft.rollout.engine import colocated_engine_options, engine_options, reset_encoder_cache_on_server
    from rft.zero import gathered

    loaded, resume = ready.loaded, ready.resume
    if recipe.warmup.steps and resume is None:  # a resumed run's weights come from the checkpoint
        from rft.train.warmup import supervised_warmup

        # GRPO starts from the warmed-up weights, and model.name_or_path must say so: TRL builds the KL
        # reference model from it, vLLM loads it, a LoRA adapter records it as its base.
        supervised_warmup(loaded, [r for rs in ready.rows.values() for r in rs], recipe.warmup, recipe.seed,
                          distributed=recipe.distributed, save_to=out / WARMED_UP)
        if recipe.distributed.zero_stage:  # the warm-up's DeepSpeed engine holds that model: GRPO gets a fresh one
            loaded = load_model(recipe.model.model_copy(update={"path": str(out / WARMED_UP), "tiny": None}), out)
    if (recipe.warmup.steps and resume is None) or (resume is not None and not recipe.model.lora.enabled):
        # A resumed run's weights come from its checkpoint, but its KL reference is still where GRPO started.
        set_name_or_path(loaded.model, grpo_start(recipe, out))
    heldout = None
    if ready.heldout_rows is not None:
        heldout = HeldOut(ready.heldout_rows, build_rewards(recipe, route=False)[0], loaded.processor, ready.banned,
                          recipe.eval.max_new_tokens, recipe.eval.batch_size, recipe.eval.protocol)
    before = {}
    if heldout and resume is None:
        if recipe.distributed.zero_stage != 3:
            # on the device the trainer would move the model to next (under ZeRO-3 a whole copy on every
            # GPU may not fit: it stays where it is)
            loaded.model.to(state.device)
        with gathered(loaded.model):  # a ZeRO-3 model loaded under zero.Init (the warmed-up one) holds shards
            before = heldout(loaded.model)
    if before and state.is_main_process:
        print(f"held-out before GRPO: {format_scores(before)}", flush=True)
    # a LoRA adapter records the weights it was trained on, which rft eval / export check its base against
    adapter_base = base_record(loaded.model) if recipe.model.lora.enabled else None
    model = prepare_model(recipe, loaded, ready.banned)
    nonfinite = SkipNonFiniteSteps(recipe.output.max_nonfinite_steps)
    callbacks = [RunLog(out, extra={"eval_before_grpo": before}), ready.stop, nonfinite]
    completions = completion_log(recipe, torch.cuda.is_available()) if state.is_main_process else None
    engine = engine_options(recipe.model, loaded.family, ready.images_per_prompt, cuda=torch.cuda.is_available())
    with colocated_engine_options(engine if recipe.rollout.backend == "vllm" else {}, placeholder_token_ids(loaded.processor)):
        trainer = RftGRPOTrainer(
            model=model, reward_funcs=ready.reward_funcs, args=ready.config, train_dataset=ready.dataset,
            processing_class=loaded.processor, callbacks=callbacks,
            part_learning_rates=recipe.model.learning_rates.model_dump(),
            reuse_training_logps=recipe.speed.reuse_training_logprobs, adapter_base=adapter_base,
            dynamic_sampler=dynamic_sampler(recipe, ready.rows, ready.decoded), completion_log=completions,
        )
    ready.trainer = trainer
    if completions is not None:
        completions.follow_tensorboard(trainer)
    server = server_client(trainer)  # main process, server mode
    if server is not None:
        reset_encoder_cache_on_server(server)
    if heldout is not None:  # generation from the trained model, with ZeRO-3's parameters gathered once per call
        heldout.unwrap = lambda _: unwrap_model_for_generation(
            trainer.model_wrapped, trainer.accelerator, gather_deepspeed3_params=ready.config.ds3_gather_for_generation)
    periodic = None
    if heldout and recipe.eval.every_steps:
        periodic = HeldOutCallback(heldout, recipe.eval.every_steps, log_metric(trainer))
        trainer.add_callback(periodic)
    trainer.remove_callback(PrinterCallback)  # RunLog prints one readable line per step instead
    trainer.remove_callback(ProgressCallback)
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if completions is not None:
            completions.close()
    failed = ready.failures.summary(ready.reward_names)
    if failed and state.is_main_process:
        log.warning("%s", failed)
    if ready.stop.stopped_by:
        raise TrainingInterrupted(
            f"interrupted by {ready.stop.stopped_by} at step {trainer.state.global_step}, after saving "
            f"{latest_checkpoint(out)}; continue with: rft train <recipe> --resume latest")
    if nonfinite.stopped:
        raise TrainingStopped(
            f"training stopped at step {trainer.state.global_step}: steps {nonfinite.skipped} had a NaN or infinite "
            f"loss or gradient (more than output.max_nonfinite_steps={recipe.output.max_nonfinite_steps}); "
            f"the last checkpoint is {latest_checkpoint(out)}"
        )
    if heldout:
        after = heldout(trainer.model)
        if state.is_main_process:
            print(f"held-out after GRPO:  {format_scores(after)}", flush=True)
            callbacks[0].write(trainer.state, {"eval_before_grpo": before, "eval_after_grpo": after,
                                               "heldout_history": periodic.history if periodic else [],
                                               "heldout_eval_seconds": periodic.seconds if periodic else 0.0})
    # like a checkpoint, final/ appears whole: written aside, then renamed
    staging = out / INCOMPLETE / "final"
    if state.is_main_process and staging.exists():
        shutil.rmtree(staging)
    state.wait_for_everyone()
    trainer.save_model(str(staging))  # every rank: under ZeRO-3 it gathers the shards
    if state.is_main_process:
        loaded.processor.save_pretrained(str(staging))
        publish(staging, out / "final")
    state.wait_for_everyone()
    return trainer
