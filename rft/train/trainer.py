"""rft's GRPOTrainer: TRL's, with optimizer parameter groups per model part and, when the batch is
on-policy, no extra log-prob pass for vLLM's importance-sampling correction.

TRL's generation, loss and logging are TRL's; what is overridden: ``create_optimizer`` (the Trainer
hook meant for it), ``_load_from_checkpoint`` (a LoRA run's trained adapter, which transformers skips
next to TRL's reference adapter), ``_save`` (a LoRA run's adapter under ZeRO-3), ``save_model`` (a LoRA
adapter gets the record of its base, :mod:`rft.models.lora`), checkpoint saving (written whole or not at
all: :class:`rft.train.checkpoints.AtomicCheckpoints`), and around ``_generate_and_score_completions`` /
``_compute_loss`` the place where the importance-sampling ratio is computed (:mod:`rft.train.onpolicy_logps`).
Dynamic sampling and the completion log come from :class:`~rft.train.trl_hooks.RolloutHooks`. The private
methods and attributes of TRL and transformers used here are declared and checked in :mod:`rft.compat`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rft.compat.trl import append_metric
from rft.models.lora import write_base_record
from rft.models.parts import parameter_groups
from rft.train.checkpoints import AtomicCheckpoints
from rft.train.onpolicy_logps import ACROSS_PROCESSES, on_policy, ratio_metrics, vllm_importance_ratio
from rft.train.trl_hooks import RolloutHooks


class RftGRPOTrainer(AtomicCheckpoints, RolloutHooks):
    """``GRPOTrainer`` whose optimizer gives the vision tower, projector and language model their own
    learning rates (``part_learning_rates``; None means ``args.learning_rate``), which, given
    ``reuse_training_logps``, takes vLLM's importance-sampling ratio from the training forward's
    log-probs when they equal the extra pass's (on-policy batches), whose checkpoints appear only when
    complete, and which writes ``adapter_base`` (:func:`rft.models.lora.base_record`) next to each
    LoRA adapter it saves. ``dynamic_sampler`` and ``completion_log`` go to
    :class:`~rft.train.trl_hooks.RolloutHooks`."""

    def __init__(self, *args, part_learning_rates: dict[str, float | None] | None = None,
                 reuse_training_logps: bool = False, adapter_base: dict | None = None, **kwargs):
        self.part_learning_rates = part_learning_rates or {}
        self.reuse_training_logps = reuse_training_logps
        self.adapter_base = adapter_base
        self._ratio_inputs: dict[str, Any] | None = None  # the batch whose ratio the next log-prob call gives
        super().__init__(*args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.adapter_base is not None and self.args.should_save:
            write_base_record(output_dir or self.args.output_dir, self.adapter_base)

    def create_optimizer(self, model=None):
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = parameter_groups(opt_model, self.args.learning_rate, self.part_learning_rates,
                                      self.args.weight_decay, self.get_decay_parameter_names(opt_model))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = self.model if model is None else model
        # TRL adds a frozen "ref" adapter to a LoRA policy; PEFT saves it in a sub-folder next to the
        # trained adapter, and transformers then loads only the sub-folders' adapters: the trained one
        # would silently restart from its initial values. Load it too.
        if getattr(model, "peft_config", None) and (Path(resume_from_checkpoint) / "adapter_model.safetensors").is_file():
            model.load_adapter(resume_from_checkpoint, model.active_adapters[0], is_trainable=True)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        adapters = getattr(self.model, "peft_config", None)
        if state_dict is None or not adapters:
            return super()._save(output_dir, state_dict)
        # Under ZeRO-3 transformers gathers only the trainable weights of a PEFT model: TRL's frozen "ref"
        # adapter (the adapter as GRPO began, which TRL makes anew when a run resumes) is not among them, and
        # PEFT, asked to save every adapter, fails on its missing keys. Save the adapters the weights are of.
        output_dir = output_dir or self.args.output_dir
        present = [name for name in adapters if any(f".{name}." in key for key in state_dict)]
        self.model.save_pretrained(output_dir, state_dict=state_dict, selected_adapters=present)
        self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, Path(output_dir) / "training_args.bin")

    # ------------------------------------------------------------------ the ratio from the training forward

    @property
    def ratio_from_training_forward(self) -> bool:
        """Whether this run skips TRL's extra log-prob pass (vLLM, IS correction on, on-policy batches)."""
        return (self.reuse_training_logps and self.use_vllm and self.vllm_importance_sampling_correction
                and on_policy(self.args.gradient_accumulation_steps, self.args.steps_per_generation, self.num_iterations))

    def _generate_and_score_completions(self, inputs):
        if not self.ratio_from_training_forward:
            return super()._generate_and_score_completions(inputs)
        # With the correction off, TRL skips the pass, the ratio and its metrics, and keeps vLLM's
        # log-probs (``sampling_per_token_logps``); the ratio is made in the loss instead.
        self.vllm_importance_sampling_correction = False
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self.vllm_importance_sampling_correction = True

    def _compute_loss(self, model, inputs):
        if self.ratio_from_training_forward and "importance_sampling_ratio" not in inputs:
            self._ratio_inputs = inputs  # filled in by the policy's log-prob call inside TRL's loss
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._ratio_inputs = None

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        inputs, self._ratio_inputs = self._ratio_inputs, None
        if inputs is not None:  # TRL's loss: the first call is the policy's; its log-probs are the "old" ones
            inputs["importance_sampling_ratio"] = self._importance_ratio(out[0].detach(), inputs)
        return out

    def _importance_ratio(self, old: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """TRL's ratio and ``sampling/*`` metrics, from ``old`` = the training forward's log-probs."""
        mask = inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
        sampling = inputs["sampling_per_token_logps"]
        mode = self.vllm_importance_sampling_mode
        ratio = vllm_importance_ratio(old, sampling, mask, mode, self.vllm_importance_sampling_clip_min,
                                      self.vllm_importance_sampling_clip_max)
        for name, value in ratio_metrics(old, sampling, mask, ratio, sequence_level=mode.startswith("sequence")).items():
            append_metric(self, f"sampling/{name}", ACROSS_PROCESSES[name](self.accelerator.gather(value)).item())
        return ratio
