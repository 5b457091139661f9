"""Dynamic sampling (recipe section ``sampling``): groups whose rewards are all equal are dropped and
their slots refilled from the same dataset, every process keeping an equal batch; TRL's step then runs on
the kept groups (rft.train.trl_hooks)."""

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rft.errors import RecipeError
from rft.recipe import validate
from rft.train.dynamic_sampling import DynamicSampler, Refill, SlotPlan, informative, total_reward
from rft.train.trl_hooks import Generation, Rollout, hook_problems
from sampling_rewards import constant_prompt

NAN = float("nan")


def test_informative_drops_equal_groups_and_groups_outside_the_band():
    values = torch.tensor([1, 1, 1, 1,  0, 1, 0, 0,  0.5, 0.5, 0.5, 0.5,  NAN, NAN, NAN, NAN,  NAN, 1, NAN, 1,  0.2, 0.9, 0.9, 0.9])
    assert informative(values, 4).tolist() == [False, True, False, True, False, True]  # all-NaN: no reward applies, kept
    band = informative(values, 4, band=(0.01, 0.7)).tolist()
    assert band == [False, True, False, True, False, False]  # mean 0.725 of the last group is outside the band
    assert informative(torch.tensor([0.3, 0.3 + 1e-8]), 2).tolist() == [False]  # equal within the tolerance


def test_total_reward_is_the_weighted_sum_trl_normalises():
    rewards = torch.tensor([[1.0, NAN], [0.5, 1.0], [NAN, NAN]])
    total = total_reward(rewards, torch.tensor([2.0, 0.5]))
    assert total[:2].tolist() == [2.0, 1.5] and math.isnan(total[2])  # unscorable completions stay NaN, as in TRL


@settings(max_examples=200, deadline=None)
@given(processes=st.integers(1, 4), slots=st.integers(1, 5), seed=st.integers(0, 10_000), rounds=st.integers(1, 4))
def test_slot_plan_fills_each_slot_once_from_a_kept_group_made_for_it(processes, slots, seed, rounds):
    import random

    rng = random.Random(seed)
    plan = SlotPlan(processes, slots)
    verdicts = []
    for r in range(rounds):
        if r:
            if not plan.open_slots():
                break
            size = plan.next_round()
            assert size == max(len(o) for o in plan.open) and all(len(t) == size for t in plan.targets)
        targets = [list(t) for t in plan.targets]
        open_before = [list(o) for o in plan.open]
        keep = [[rng.random() < 0.5 for _ in t] for t in targets]
        plan.record(keep)
        verdicts.append((targets, keep))
        for p in range(processes):  # a slot closes exactly when a kept group was made for it this round
            closed = set(open_before[p]) - set(plan.open[p])
            assert closed == {s for s, k in zip(targets[p], keep[p]) if k and s is not None} & set(open_before[p])
    for p in range(processes):
        for slot, (r, g) in enumerate(plan.source[p]):
            targets, keep = verdicts[r]
            assert targets[p][g] == slot
            assert keep[p][g] or (slot in plan.open[p] and (r, g) == (0, slot))  # unfilled slots keep round 0's group
    assert plan.sizes[0] == slots and len(plan.sizes) == len(verdicts)


def test_refill_draws_from_the_asked_dataset_avoiding_tried_rows_and_repeats_by_key():
    rows = [{"dataset": d, "id": f"{d}{i}"} for d in "ab" for i in range(5)]
    refill = Refill(rows, lambda i: rows[i], seed=0)
    tried = {("a", "a0"), ("a", "a1")}
    drawn = refill.draw(["a", "b", "a", "a"], (3, 1, 0), set(tried))
    assert [r["dataset"] for r in drawn] == ["a", "b", "a", "a"]
    assert not {("a", r["id"]) for r in drawn if r["dataset"] == "a"} & tried
    assert refill.draw(["a", "b", "a", "a"], (3, 1, 0), set(tried)) == drawn  # same key, same rows (resume)
    assert refill.draw(["a"] * 8, (3, 2, 0), set()) != refill.draw(["a"] * 8, (3, 2, 1), set())  # per process
    assert [r["dataset"] for r in refill.draw(["gone"], (0, 1, 0), set())][0] in "ab"  # unknown dataset: any row


def test_generation_select_and_join_keep_every_field_aligned():
    g = Generation(prompt_ids=[[1], [2], [3]], completion_ids=[[4], [5], [6]], tool_mask=None, completions=["a", "b", "c"],
                   logprobs=[[-1.0], [-2.0], [-3.0]], extra_fields={"env": [7, 8, 9], "constant": 1}, images=[["x"], ["y"], ["z"]],
                   tool_images=[])
    picked = Generation.join([g.select([2]), g.select([0, 1])])
    assert picked.completions == ["c", "a", "b"] and picked.prompt_ids == [[3], [1], [2]] and picked.logprobs[0] == [-3.0]
    assert picked.extra_fields == {"env": [9, 7, 8], "constant": 1} and picked.images == [["z"], ["x"], ["y"]]
    assert picked.tool_mask is None and picked.tool_images == [] and len(picked) == 3


def test_hooked_trl_methods_have_the_expected_signatures():
    from trl import GRPOTrainer

    assert hook_problems(GRPOTrainer) == []

    class Changed(GRPOTrainer):
        def _generate(self, prompts, images):
            pass

    assert hook_problems(Changed) == ["GRPOTrainer._generate: expected parameters ['self', 'prompts'], found "
                                      "['self', 'prompts', 'images']"]


# ---------------------------------------------------------------------------------------------- the sampler alone

def fake_rollout(processes, generations, verdict):
    """A stand-in for :meth:`RolloutHooks.rollout`: completions name their row; every process's rewards are
    ``verdict(round, process, group)`` (1: spread, 0: all equal), the same on every process, as TRL's
    gathered rewards are."""
    calls = []

    def rollout(inputs):
        round_, n = len(calls), len(inputs) // generations
        calls.append(inputs)
        rewards = [[float(j) if verdict(round_, p, g) else 0.5] for p in range(processes) for g in range(n)
                   for j in range(generations)]
        completions = [f"{row['id']}#{j % generations}" for j, row in enumerate(inputs)]
        generation = Generation([[0]] * len(inputs), [[1]] * len(inputs), None, completions, None, {}, None, [])
        return Rollout(inputs, [], generation, torch.tensor(rewards))

    return rollout, calls


def sampler(max_rounds=3):
    rows = [{"dataset": d, "id": f"{d}{i}"} for d in ("a", "b") for i in range(50)]
    config = validate({"model": {"tiny": {}}, "data": {"datasets": [{"name": "a", "kind": "synthetic_shapes"}]},
                       "rewards": [{"name": "format"}], "sampling": {"filter": "zero_std", "max_rounds": max_rounds}}).sampling
    return DynamicSampler(config, Refill(rows, lambda i: rows[i], seed=0), ["format"], [1.0])


def batch(ids, generations):
    return [{"dataset": i[0], "id": i} for i in ids for _ in range(generations)]


def test_dropped_groups_are_refilled_in_place_from_their_dataset():
    logged = {}
    rollout, calls = fake_rollout(1, 2, lambda r, p, g: not (r == 0 and g in (1, 2)) and not (r == 1 and g == 1))
    rows, generation, rewards = sampler().fill(rollout, batch(["a0", "b0", "a1", "b1"], 2), step=7, process=0, processes=1,
                                               generations=2, log_metric=logged.__setitem__)
    assert len(calls) == 3 and [len(c) for c in calls] == [8, 4, 2]  # round 2: the slot still open, one group
    ids = [r["id"] for r in rows][::2]
    assert ids[0] == "a0" and ids[3] == "b1" and ids[1][0] == "b" and ids[2][0] == "a"  # slot order, same dataset
    assert ids[1] not in ("b0", "b1") and ids[2] not in ("a0", "a1")
    assert generation.completions == [f"{r['id']}#{j % 2}" for j, r in enumerate(rows)]  # completions follow their rows
    assert rewards[:, 0].tolist() == [0.0, 1.0] * 4  # every kept group has spread
    assert logged == {"dynamic_sampling/filtered": 0.5, "dynamic_sampling/rounds": 3.0, "dynamic_sampling/prompts": 7.0,
                      "dynamic_sampling/unfilled": 0.0, "dynamic_sampling/unfiltered_reward": 0.5}


def test_slots_left_open_after_max_rounds_keep_their_group():
    logged = {}
    rollout, calls = fake_rollout(1, 2, lambda r, p, g: g == 0 and r == 0)
    rows, _, rewards = sampler(max_rounds=2).fill(rollout, batch(["a0", "b0"], 2), step=0, process=0, processes=1,
                                                  generations=2, log_metric=logged.__setitem__)
    assert len(calls) == 2 and [r["id"] for r in rows] == ["a0", "a0", "b0", "b0"] and rewards.shape == (4, 1)
    assert logged["dynamic_sampling/unfilled"] == 0.5


def test_every_process_plans_the_same_batch():
    """Each process computes the whole plan from the gathered rewards: the same rounds, the same gathered
    rewards of the kept batch, and an equal share, without talking to the others."""
    # process 0 keeps 2 of its 3 first groups, process 1 none; later rounds keep every other group
    verdict = lambda r, p, g: (r == 0 and p == 0 and g < 2) or (r > 0 and g % 2 == 0)  # noqa: E731
    results = []
    for process in range(2):
        rollout, calls = fake_rollout(2, 4, verdict)
        ids = [f"a{i}" for i in range(3 * process, 3 * process + 3)]
        rows, generation, rewards = sampler(max_rounds=4).fill(rollout, batch(ids, 4), step=1, process=process, processes=2,
                                                              generations=4, log_metric=lambda *a: None)
        results.append(([len(c) for c in calls], len(rows), len(generation), rewards))
    assert results[0][0] == results[1][0] == [12, 12, 4]  # rounds of 3 groups (process 1's open slots), then 1
    assert results[0][1] == results[1][1] == results[0][2] == 12
    assert torch.equal(results[0][3], results[1][3]) and results[0][3].shape == (24, 1)


def test_a_recipe_whose_processes_would_split_groups_is_refused():
    base = {"model": {"tiny": {}}, "data": {"datasets": [{"name": "a", "kind": "synthetic_shapes"}]},
            "rewards": [{"name": "format"}], "sampling": {"filter": "zero_std"}}
    with pytest.raises(RecipeError, match=r"sampling.filter 'zero_std' with grpo.per_device_train_batch_size 6 x "
                                          r"steps_per_generation 1 = 6 .* not a multiple of grpo.num_generations 4"):
        validate({**base, "grpo": {"per_device_train_batch_size": 6, "num_generations": 4}})
    validate({**base, "grpo": {"per_device_train_batch_size": 6, "num_generations": 4, "steps_per_generation": 2}})
    from rft.recipe.combinations import combination_problems

    # with generation_batch_size, what a process holds depends on how many there are: checked when training starts
    spread = validate({**base, "grpo": {"per_device_train_batch_size": 2, "num_generations": 4, "generation_batch_size": 8}})
    assert combination_problems(spread, world_size=1) == [] and "= 2 completions" in combination_problems(spread, 4)[0]
    with pytest.raises(RecipeError, match="sampling.metric names 'acc', which is not a reward"):
        validate({**base, "sampling": {"filter": "zero_std", "metric": "acc"}})
    with pytest.raises(RecipeError, match="keep_band needs filter: zero_std"):
        validate({**base, "sampling": {"keep_band": [0.1, 0.9]}})


# ---------------------------------------------------------------------------------------------- end to end

REWARDS = Path(__file__).with_name("sampling_rewards.py")
"""``half_constant``: the same reward for all completions of half the prompts; ``varying``: never constant."""

TINY = {"model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544}}


def schedule_recipe(out):
    """Dataset ``a`` (classification, half its prompts constant) twice, then ``b`` (detection) once."""
    shapes = {"kind": "synthetic_shapes", "num_samples": 16}
    return {
        **TINY,
        "data": {"datasets": [{**shapes, "name": "a", "task": "classification", "rewards": [f"{REWARDS}:half_constant"]},
                              {**shapes, "name": "b", "task": "detection", "seed": 3, "rewards": [f"{REWARDS}:varying"]}],
                 "schedule": [{"dataset": "a", "batches": 2}, {"dataset": "b", "batches": 1}]},
        "rewards": [{"name": f"{REWARDS}:half_constant"}, {"name": f"{REWARDS}:varying"}],
        "grpo": {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 8, "max_steps": 3},
        "sampling": {"filter": "zero_std", "max_rounds": 10},
        "output": {"dir": str(out), "report_to": ["tensorboard"]},
    }


def check_filtered_run(history):
    """Every trained group had spread, dropped groups were refilled from their dataset, the schedule held."""
    steps = [h for h in history if "reward" in h]
    assert len(steps) == 3
    for step, dataset in zip(steps, "aab"):
        assert step["frac_reward_zero_std"] == 0.0 and step["dynamic_sampling/unfilled"] == 0.0
        # a refill from the other dataset would give the other dataset's reward a value at this step
        assert (step["rewards/half_constant/mean"] is not None) == (dataset == "a")
        assert (step["rewards/varying/mean"] is not None) == (dataset == "b")
    a_steps = steps[:2]
    assert max(s["dynamic_sampling/filtered"] for s in a_steps) > 0  # about half of a's prompts are constant
    assert max(s["dynamic_sampling/rounds"] for s in a_steps) >= 2
    assert steps[2]["dynamic_sampling/filtered"] == 0.0 and steps[2]["dynamic_sampling/rounds"] == 1.0
    return steps


@pytest.fixture(scope="module")
def filtered_run(tmp_path_factory):
    from rft.train.run import train

    tmp = tmp_path_factory.mktemp("dynamic")
    return tmp, train(validate(schedule_recipe(tmp / "run")))


@pytest.mark.slow
def test_trained_groups_all_have_spread_and_the_schedule_holds(filtered_run):
    out, trainer = filtered_run
    check_filtered_run(trainer.state.log_history)


@pytest.mark.slow
def test_completion_log_shows_the_trained_batch(filtered_run):
    out, trainer = filtered_run
    folder = out / "run" / "completions"
    for step, task in zip((1, 2, 3), ("classification", "classification", "detection")):
        records = [json.loads(line) for line in (folder / f"step_{step}.jsonl").read_text().splitlines()]
        assert len(records) == 2 and {r["task"] for r in records} == {task}
        for r in records:
            assert (folder / r["image"]).is_file() and r["step"] == step and r["prompt"] and isinstance(r["advantage"], float)
            name = "half_constant" if task == "classification" else "varying"
            assert r["reward"] == r["rewards"][name] and r["rewards"][{"half_constant": "varying", "varying": "half_constant"}[name]] is None
            if task == "classification":  # the trained batch holds none of the prompts whose reward is constant
                assert not constant_prompt(r["id"])
            assert ("boxes" in r) == (task == "detection")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "run").rglob("events.out.tfevents*")).parent), size_guidance={"images": 0}).Reload()
    assert {"completions/classification_0", "completions/detection_1"} <= set(events.Tags()["images"])


@pytest.mark.slow
def test_with_nothing_filtered_the_run_is_trls(tmp_path):
    """A reward never constant within a group: with and without dynamic sampling, the same rewards, losses
    and weights (the rollout round and the replay through TRL's step change nothing)."""
    from rft.train.run import train

    runs = []
    for filtered in (False, True):
        recipe = {**TINY, "data": {"datasets": [{"name": "a", "kind": "synthetic_shapes", "num_samples": 8}]},
                  "rewards": [{"name": f"{REWARDS}:varying"}],
                  "grpo": {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 8, "max_steps": 2,
                           "learning_rate": 1e-2, "beta": 0.04},
                  "sampling": {"filter": "zero_std" if filtered else "none"},
                  "output": {"dir": str(tmp_path / str(filtered)), "report_to": [], "log_completions_every": 0}}
        trainer = train(validate(recipe))
        logs = [x for h in trainer.state.log_history if "reward" in h for x in (h["reward"], h["loss"], h["kl"])]
        runs.append((logs, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}))
    assert runs[0][0] == pytest.approx(runs[1][0], abs=1e-6) and runs[0][0][1] != 0.0 and runs[0][0][5] > 0  # loss, kl
    assert max((runs[0][1][n] - p).abs().max().item() for n, p in runs[1][1].items()) < 1e-6
