"""Dynamic sampling (online filtering): every optimizer step trains on groups that teach something.

A GRPO advantage is a completion's reward relative to its group's. A group whose rewards are all equal
(every answer right, or every answer wrong) has zero advantages and gives no policy gradient, and the
better the policy, the more of each batch such groups fill. With ``sampling.filter: zero_std`` rft drops
them (with ``keep_band``, also groups whose mean reward lies outside the band) and fills their slots with
groups of fresh prompts, in up to ``sampling.max_rounds`` generation rounds, before TRL computes
log-probs, advantages and the loss on the kept groups (DAPO's dynamic sampling: verl's ``filter_groups``,
EasyR1's ``online_filtering``). TRL's own step runs on the kept batch (:mod:`rft.train.trl_hooks`).

**Where fresh prompts come from**: a refill source per dataset (:class:`Refill`), not the dataloader's
next batch. The Trainer owns the dataloader's iterator, and rft's batch order (schedules such as 8
detection batches then 1 classification batch, replay shares, see :mod:`rft.data.mixing`) must hold: the
scheduled batches are consumed as planned, one per generation, and a dropped group is replaced by a
prompt drawn at random from the dataset that group came from (seeded by step, round and process, so a
resumed run draws the same; prompts already tried for the batch are avoided where the dataset has others).

**Buffered generation**: with TRL's ``steps_per_generation`` > 1 (or ``num_iterations`` > 1) the filter
acts on the whole generation batch, before TRL shuffles it and splits it into micro-batches, so every
micro-batch of the buffer holds kept groups only; the number of optimizer steps is unchanged.

**Several processes**: decisions use all processes' rewards (TRL gathers them), so every process
computes the same plan. Each process holds whole groups (the recipe check,
:mod:`rft.recipe.combinations`) and refills its own slots; every round, all processes generate the same
number of prompts (as many as the process missing most needs; on the others the extra prompts are spare
candidates for their own open slots), so the backends' and TRL's collective calls line up and the batch
stays equal on all processes.

Logged per generation batch (TRL's loggers, and the progress line): ``dynamic_sampling/filtered`` (share
of the scheduled groups dropped), ``dynamic_sampling/rounds``, ``dynamic_sampling/prompts`` (prompts
generated for the batch, all processes), ``dynamic_sampling/unfilled`` (share of slots still holding a
dropped group after ``max_rounds``: trained on, with no policy gradient) and
``dynamic_sampling/unfiltered_reward`` (the first round's mean reward: what ``reward`` would have been
without filtering; ``reward`` itself is the kept batch's).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Callable, Sequence

import torch

from rft.recipe.schema import Recipe, SamplingSection
from rft.train.trl_hooks import Generation, RolloutFn

SPREAD_TOLERANCE = 1e-6
"""Rewards of a group within this of each other count as equal."""


def total_reward(rewards: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TRL's weighted sum of the reward functions per completion (NaN where none applies)."""
    total = (rewards * weights.to(rewards.device).unsqueeze(0)).nansum(dim=1)
    return total.masked_fill(torch.isnan(rewards).all(dim=1), float("nan"))


def informative(values: torch.Tensor, generations: int, band: tuple[float, float] | None = None) -> torch.Tensor:
    """Per group of ``generations`` consecutive values: whether it is kept. Dropped: groups whose values
    are all equal, or whose mean lies outside ``band``. Groups where the value applies to no completion
    (all NaN: another task's reward) are kept: nothing judges them."""
    groups = values.view(-1, generations)
    scored = ~torch.isnan(groups)
    high = groups.masked_fill(~scored, -torch.inf).amax(dim=1)
    low = groups.masked_fill(~scored, torch.inf).amin(dim=1)
    keep = (high - low) > SPREAD_TOLERANCE
    if band is not None:
        mean = groups.nanmean(dim=1)
        keep &= (mean >= band[0]) & (mean <= band[1])
    return keep | ~scored.any(dim=1)


class SlotPlan:
    """Which generated group fills each slot of each process's share of the batch.

    Round 0 generates the scheduled groups: group ``s`` is slot ``s``'s. A kept group fills its slot; a
    slot stays open until a later round's group generated for it is kept. Every later round generates
    :meth:`next_round` groups per process; process ``p``'s group ``j`` is a candidate for its open slot
    ``j mod (open slots)``. A slot never filled keeps its round-0 group. Every process keeps the whole
    plan (it needs every process's choices to lay out the gathered rewards).
    """

    def __init__(self, processes: int, slots: int):
        self.slots = slots
        self.source = [[(0, s) for s in range(slots)] for _ in range(processes)]
        self.open = [list(range(slots)) for _ in range(processes)]
        self.sizes: list[int] = []  # groups per process generated in each round
        self.targets = [list(range(slots)) for _ in range(processes)]  # the slot each group of the round is for
        self.kept_first = 0

    def record(self, keep: Sequence[Sequence[bool]]) -> None:
        """Take a round's verdicts: ``keep[p][j]`` for process ``p``'s group ``j``."""
        round_ = len(self.sizes)
        for p, targets in enumerate(self.targets):
            for j, slot in enumerate(targets):
                if slot is not None and slot in self.open[p] and keep[p][j]:
                    self.source[p][slot] = (round_, j)
                    self.open[p].remove(slot)
        if round_ == 0:
            self.kept_first = sum(map(sum, keep))
        self.sizes.append(len(self.targets[0]))

    def open_slots(self) -> int:
        return sum(len(o) for o in self.open)

    def next_round(self) -> int:
        """Groups per process in the next round (as many as the process with the most open slots has)."""
        size = max(len(o) for o in self.open)
        self.targets = [[o[j % len(o)] if o else None for j in range(size)] for o in self.open]
        return size


class Refill:
    """Fresh prompts per dataset: rows drawn at random from a dataset's rows, seeded by a key (step,
    round, process), avoiding rows already tried where the dataset has others."""

    TRIES = 8

    def __init__(self, rows: Sequence[dict], fetch: Callable[[int], dict], seed: int):
        """``rows``: every training row (their ``dataset`` and ``id``); ``fetch(i)``: row ``i`` as TRL receives it
        (the training ``datasets.Dataset``'s item, image decoded)."""
        self.fetch, self.seed = fetch, seed
        self.keys = [(r.get("dataset"), r.get("id")) for r in rows]
        self.by_dataset: dict[str | None, list[int]] = defaultdict(list)
        for i, (name, _) in enumerate(self.keys):
            self.by_dataset[name].append(i)
        self.everything = list(range(len(self.keys)))

    def draw(self, datasets: Sequence[str | None], key: tuple, tried: set) -> list[dict]:
        """One row from each of ``datasets`` (a dataset without rows here: any row); the chosen rows'
        (dataset, id) keys are added to ``tried``."""
        rng = random.Random(f"{self.seed}:{':'.join(map(str, key))}")
        out = []
        for name in datasets:
            pool = self.by_dataset.get(name) or self.everything
            index = rng.choice(pool)
            for _ in range(self.TRIES):
                if self.keys[index] not in tried:
                    break
                index = rng.choice(pool)
            tried.add(self.keys[index])
            out.append(self.fetch(index))
        return out


class DynamicSampler:
    """Fills a generation batch with informative groups (module docstring) for :class:`~rft.train.trl_hooks.RolloutHooks`."""

    def __init__(self, config: SamplingSection, refill: Refill, reward_names: list[str], reward_weights: list[float]):
        self.config, self.refill = config, refill
        self.metric = None if config.metric == "total" else reward_names.index(config.metric)
        self.weights = torch.tensor(reward_weights, dtype=torch.float32)
        self._step, self._fills = -1, 0  # generation batches filled at this optimizer step (several with accumulation)

    def keep(self, rewards: torch.Tensor, processes: int, generations: int) -> list[list[bool]]:
        """Per process, per group of a round: kept (from all processes' rewards)."""
        values = total_reward(rewards, self.weights) if self.metric is None else rewards[:, self.metric]
        return informative(values, generations, self.config.keep_band).view(processes, -1).tolist()

    def fill(self, rollout: RolloutFn, inputs: list[dict], *, step: int, process: int, processes: int,
             generations: int, log_metric: Callable[[str, float], None]) -> tuple[list[dict], Generation, torch.Tensor]:
        """This process's rows and completions of the filled batch, and all processes' rewards for it (in
        the order TRL gathers them). Every process must call it at the same point."""
        self._fills = self._fills + 1 if step == self._step else 0
        self._step = step
        slots = len(inputs) // generations
        plan = SlotPlan(processes, slots)
        rounds = [rollout(inputs)]
        plan.record(self.keep(rounds[0].rewards, processes, generations))
        datasets = [inputs[s * generations].get("dataset") for s in range(slots)]
        tried = {(r.get("dataset"), r.get("id")) for r in inputs}
        while plan.open_slots() and len(rounds) < self.config.max_rounds:
            plan.next_round()
            names = [datasets[slot if slot is not None else j % slots] for j, slot in enumerate(plan.targets[process])]
            fresh = self.refill.draw(names, (step, self._fills, len(rounds), process), tried)
            batch = [dict(row) for row in fresh for _ in range(generations)]
            rounds.append(rollout(batch))
            plan.record(self.keep(rounds[-1].rewards, processes, generations))

        def group(round_: int, index: int, p: int = 0) -> list[int]:
            """Rows of process ``p``'s group ``index`` of a round, among all processes' completions (p=0: local)."""
            start = (p * plan.sizes[round_] + index) * generations
            return list(range(start, start + generations))

        chosen = plan.source[process]
        kept_inputs = [rounds[r].inputs[i] for r, g in chosen for i in group(r, g)]
        generation = Generation.join([rounds[r].generation.select(group(r, g)) for r, g in chosen])
        rewards = torch.cat([rounds[r].rewards[group(r, g, p)] for p in range(processes) for r, g in plan.source[p]])
        first = total_reward(rounds[0].rewards, self.weights)
        groups = processes * slots
        log_metric("dynamic_sampling/filtered", 1 - plan.kept_first / groups)
        log_metric("dynamic_sampling/rounds", float(len(rounds)))
        log_metric("dynamic_sampling/prompts", float(processes * sum(plan.sizes)))
        log_metric("dynamic_sampling/unfilled", plan.open_slots() / groups)
        if not torch.isnan(first).all():
            log_metric("dynamic_sampling/unfiltered_reward", first.nanmean().item())
        return kept_inputs, generation, rewards


def dynamic_sampler(recipe: Recipe, rows_by_dataset: dict[str, list[dict]], decoded=None) -> DynamicSampler | None:
    """The recipe's dynamic sampler (None with ``sampling.filter: none``), refilling from every training row
    (TRL rows by dataset; their images decoded through ``decoded``, the training dataset's cache)."""
    if recipe.sampling.filter == "none":
        return None
    from rft.data.build import to_dataset

    rows = [r for rs in rows_by_dataset.values() for r in rs]
    data = to_dataset(rows, recipe.speed.cache_decoded_images, decoded)  # several images per row as in training
    return DynamicSampler(recipe.sampling, Refill(rows, data.__getitem__, recipe.seed),
                          [r.logged_name for r in recipe.rewards], [r.weight for r in recipe.rewards])
