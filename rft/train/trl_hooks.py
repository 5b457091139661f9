"""rft's additions around TRL's rollout step (TRL's private methods they hook: :mod:`rft.compat.trl`).

TRL 1.16's ``GRPOTrainer._generate_and_score_completions`` prepares a generation batch's prompts (images
into the messages), generates (``_generate``), pads, runs the no-grad log-prob passes (old policy for
vLLM's importance sampling or off-policy batches, reference model for the KL), scores (``_calculate_rewards``,
gathered over all processes) and turns rewards into advantages and metrics. rft hooks two of those calls:

- Dynamic sampling (:mod:`rft.train.dynamic_sampling`) needs rollouts and rewards alone, for one or more
  rounds, before it knows which groups the batch keeps. :meth:`RolloutHooks.rollout` runs TRL's step up to
  the end of ``_generate`` (TRL's own prompt preparation and generation, either backend) and scores what
  was generated; no log-prob pass is spent on groups that will be dropped. TRL's whole step then runs once
  on the kept groups, ``_generate`` and ``_calculate_rewards`` handing back their rollouts and rewards, so
  padding, log-prob passes, advantages and metrics are TRL's own, computed on the batch that trains.
- The completion log (:mod:`rft.train.completion_log`) receives each scored batch with its advantages.

The private methods hooked here are declared, version-checked and tested against the real class in
:mod:`rft.compat.trl`: against another TRL it warns, and if a hooked method's signature changed, it
refuses to import.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
from trl import GRPOTrainer

from rft.compat.trl import hook_problems  # noqa: F401  (imported first: it checks TRL's methods)


def _pick(value: Any, rows: list[int], n: int) -> Any:
    """The entries ``rows`` of a per-completion list of length ``n``; anything else as it is."""
    if isinstance(value, dict):
        return {k: _pick(v, rows, n) for k, v in value.items()}
    if isinstance(value, list) and len(value) == n:
        return [value[i] for i in rows]
    return value


def _join(values: list[Any]) -> Any:
    if all(v is None for v in values):
        return None
    if isinstance(values[0], dict):
        return {k: _join([v[k] for v in values]) for k in values[0]}
    if any(v is None for v in values):
        raise ValueError("rounds of rollouts disagree on which fields they carry")
    if not isinstance(values[0], list):  # a value for the whole batch
        return values[0]
    return [x for v in values for x in v]


@dataclass
class Generation:
    """What TRL's ``_generate`` returns for a list of prompts (per-completion lists, in its order)."""

    prompt_ids: list
    completion_ids: list
    tool_mask: list | None
    completions: list
    logprobs: list | None
    extra_fields: dict
    images: list | None
    tool_images: list

    def __len__(self) -> int:
        return len(self.completion_ids)

    def select(self, rows: list[int]) -> Generation:
        """The completions ``rows``, in that order."""
        n = len(self)
        return Generation(*(_pick(getattr(self, f.name), rows, n) for f in fields(self)))

    @staticmethod
    def join(parts: list[Generation]) -> Generation:
        """The completions of ``parts``, one after the other."""
        return Generation(*(_join([getattr(p, f.name) for p in parts]) for f in fields(Generation)))

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass
class Rollout:
    """One round of rollouts: this process's rows and completions, and every process's rewards."""

    inputs: list[dict]
    prompts: list
    generation: Generation
    rewards: torch.Tensor
    """(completions of all processes, reward functions), gathered by TRL; NaN where a reward does not apply."""


class _Generated(Exception):
    """Stops TRL's step once ``_generate`` has returned (a rollout round needs nothing after it)."""

    def __init__(self, prompts: list, generation: Generation):
        super().__init__()
        self.prompts, self.generation = prompts, generation


class RolloutHooks(GRPOTrainer):
    """``GRPOTrainer`` with rounds of rollouts for dynamic sampling (``dynamic_sampler``, a
    :class:`~rft.train.dynamic_sampling.DynamicSampler`) and each scored batch handed to ``completion_log``
    (a :class:`~rft.train.completion_log.CompletionLog`)."""

    def __init__(self, *args, dynamic_sampler=None, completion_log=None, **kwargs):
        self.dynamic_sampler, self.completion_log = dynamic_sampler, completion_log
        self._stop_after_generation = False
        self._replay: tuple[Generation, torch.Tensor] | None = None  # what TRL's next step generates and scores
        self._scored: tuple[list[dict], list, torch.Tensor] | None = None  # the last scored rows, completions, rewards
        super().__init__(*args, **kwargs)

    def _generate_and_score_completions(self, inputs):
        training = self.model.training
        if self.dynamic_sampler is not None and training:
            inputs, generation, rewards = self.dynamic_sampler.fill(
                self.rollout, inputs, step=self.state.global_step, process=self.accelerator.process_index,
                processes=self.accelerator.num_processes, generations=self.num_generations, log_metric=self._log_metric)
            self._replay = (generation, rewards)
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._replay = None
        if self.completion_log is not None and training and self.accelerator.is_main_process:
            rows, completions, rewards = self._scored
            start = self.accelerator.process_index * len(rows)
            self.completion_log.add(self.state.global_step + 1, rows, completions, rewards[start:start + len(rows)],
                                    output["advantages"])
        return output

    def rollout(self, inputs: list[dict]) -> Rollout:
        """Completions for ``inputs`` (TRL's prompt preparation and generation) and every process's rewards
        for them; no log-prob pass. Every process must call it at the same point (generation and rewards
        gather over the processes)."""
        self._stop_after_generation = True
        try:
            GRPOTrainer._generate_and_score_completions(self, inputs)
            raise RuntimeError("TRL's step did not call _generate")  # hook_problems() guards against this
        except _Generated as done:
            prompts, generation = done.prompts, done.generation
        finally:
            self._stop_after_generation = False
        rewards = self._calculate_rewards(inputs, prompts, generation.completions, generation.completion_ids)
        return Rollout(inputs, prompts, generation, rewards)

    def _generate(self, prompts):
        if self._replay is not None:
            return self._replay[0].as_tuple()
        out = super()._generate(prompts)
        if self._stop_after_generation:
            raise _Generated(prompts, Generation(*out))
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if self._replay is not None:
            rewards = self._replay[1]
        else:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._scored = (inputs, completions, rewards)
        return rewards


RolloutFn = Callable[[list[dict]], Rollout]
