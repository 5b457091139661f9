"""Issue 14's learning proof at toy size on the CPU (scripts/gpu/learning_proof.py --toy --in-process):
base model by rft sft -> few-shot SFT and GRPO from it -> rft eval -> the docs/learning.md table;
and the proof's data sets and base model rebuild bit for bit from their seeds."""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
from pathlib import Path

import pytest

from rft.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "gpu"
RECIPES = ROOT / "recipes" / "learning"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def test_recipes_keep_novel_categories_out_of_the_base_model():
    base, fewshot = load_recipe(RECIPES / "base.yaml"), load_recipe(RECIPES / "fewshot.yaml")
    base_shapes = set(base.data.datasets[0].options["shapes"]) | set(base.eval.datasets[0].options["shapes"])
    assert "distractors" not in base.data.datasets[0].options  # distractors default to the queried shapes
    for spec in (fewshot.data.datasets[0], fewshot.eval.datasets[0]):
        assert not set(spec.options["shapes"]) & base_shapes  # novel categories: never seen by the base model
        assert set(spec.options["distractors"]) == base_shapes and spec.negative_ratio > 0
    assert (fewshot.data.datasets[0].seed, fewshot.data.datasets[0].split) != (fewshot.eval.datasets[0].seed,
                                                                               fewshot.eval.datasets[0].split)
    rewards = {r.name: r.kwargs for r in fewshot.rewards}
    assert set(rewards) == {"detection_iou", "negative_sample", "format"}
    assert rewards["detection_iou"] == {"label_aware": False}  # the query names the category; labels are unknown words
    assert rewards["negative_sample"] == {"positive_reward": 1.0}  # the presence decision pays the same both ways
    assert fewshot.rollout.backend == "vllm" and fewshot.rollout.vllm_mode == "colocate"
    assert fewshot.sft.steps == fewshot.grpo["max_steps"]  # (a) and (b) take the same number of optimizer steps


def test_named_base_sees_novel_shapes_in_classification_only():
    named, base = load_recipe(RECIPES / "base_named.yaml"), load_recipe(RECIPES / "base.yaml")
    fewshot = load_recipe(RECIPES / "fewshot.yaml")
    novel = set(fewshot.data.datasets[0].options["shapes"])
    detection = [d for d in named.data.datasets if d.task == "detection"]
    classification = [d for d in named.data.datasets if d.task == "classification"]
    assert detection == [base.data.datasets[0]]  # the same detection data as base.yaml: base categories only
    assert not novel & set(detection[0].options["shapes"])
    assert len(classification) == 1 and novel < set(classification[0].options["shapes"])
    assert named.model == base.model and named.sft == base.sft  # one difference: the classification rows


def test_fewshot_commands_follow_the_base_models_pixel_budget(tmp_path):
    proof = _script("learning_proof")
    assert proof.base_pixels(tmp_path) == []  # no base recipe written: the few-shot recipe's own
    (tmp_path / "recipe.yaml").write_text("model: {min_pixels: 50176, max_pixels: 50176, dtype: float32}\n")
    assert proof.base_pixels(tmp_path) == ["model.min_pixels=50176", "model.max_pixels=50176"]
    toy = proof.toy_base(RECIPES / "base_named.yaml")
    assert "data.datasets[1].num_samples=8" in toy and "eval.datasets[1].num_samples=4" in toy
    assert proof.toy_base(RECIPES / "base.yaml") == proof.TOY_BASE


@pytest.mark.slow
def test_data_sets_and_toy_base_model_rebuild_bit_for_bit(tmp_path):
    proof = _script("learning_proof")
    sets = {f"fewshot_n{n}": (RECIPES / "fewshot.yaml", [f"data.datasets[0].num_samples={n}"], "data") for n in (16, 64)}
    sets["novel_heldout"] = (RECIPES / "fewshot.yaml", [], "eval")
    sets["base_train_first_500"] = (RECIPES / "base.yaml", ["data.datasets[0].num_samples=500"], "data")
    digests = proof.data_digests(sets)
    assert all(d["rebuilt_identical"] for d in digests.values())
    assert len({d["sha256"] for d in digests.values()}) == len(digests)

    from rft.train.sft import sft

    def base_model(name: str, seed: int) -> bytes:
        recipe = load_recipe(RECIPES / "base.yaml", [*proof.TOY_BASE, *proof.TOY_CHECK, "eval.datasets=[]",
                                                     f"model.tiny.seed={seed}", f"output.dir={tmp_path / name}"])
        sft(recipe, print_fn=lambda *a, **k: None)
        return (tmp_path / name / "final" / "model.safetensors").read_bytes()

    first = base_model("a", 0)
    assert base_model("b", 0) == first
    assert base_model("c", 1) != first


@pytest.mark.slow
def test_learning_proof_pipeline_at_toy_size(tmp_path):
    proof, table = _script("learning_proof"), _script("learning_table")
    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--toy", "--in-process", "--work", str(work), "--out", str(out)]
    assert proof.main(["base", *common]) == 0
    base = json.loads((out / "learning_base.json").read_text())
    assert base["bit_for_bit"]["weights_identical"] and all(d["rebuilt_identical"] for d in base["bit_for_bit"]["data"].values())
    assert base["base"]["steps"] == 4 and base["eval_base"]["detection"]["n_samples"] == 4
    assert base["eval_novel"]["negatives"]["n_negatives"] == 1  # novel held-out: a quarter negatives

    assert proof.main(["n16", *common, "--set", "grpo.temperature=0.9"]) == 0
    few = json.loads((out / "learning_n16.json").read_text())
    assert few["sets"] == ["grpo.temperature=0.9"]
    for run in ("sft_steps", "grpo", "sft_wall"):  # every command of the part ran with the override
        assert "temperature: 0.9" in (work / "n16" / run / "recipe.yaml").read_text(), run
    runs = few["runs"]
    assert runs["grpo"]["steps"] == runs["sft_steps"]["steps"] == few["grpo_max_steps"] == 2
    assert runs["sft_wall"]["steps"] >= 1 and runs["sft_wall"]["target_seconds"] > 0
    for name, run in runs.items():
        assert run["eval"]["n"] == 4, name  # rft eval of each result on the novel held-out set
        assert run["heldout"]["eval/AP50"][0][0] == 0, name  # held-out AP50 from the start
    assert [s for s, _ in runs["grpo"]["heldout"]["eval/mAP"]] == [0, 1, 2]  # GRPO's held-out mAP before, every step, after
    for section in ("detection", "negatives", "parse_failures"):  # the same base model on the same held-out set
        assert few["eval_base"][section] == base["eval_novel"][section]

    rows = table.table_rows([base, few])
    assert [r["method"] for r in rows] == ["SFT, same steps as GRPO", "SFT, same training time as GRPO",
                                           "GRPO (transformers rollouts)"]
    text = table.markdown([base, few])
    assert text.count("| 16 |") == 3 and "Base model: 4 supervised steps" in text
    with tarfile.open(out / "learning_n16.tgz") as tar:
        names = set(tar.getnames())
    for member in ("summary.json", "table.md", "pictures/heldout_n16.png", "pictures/boxes_n16.png",
                   "pictures/grpo_reward_n16.png", "grpo/metrics.json", "eval_grpo/report.json", "logs/grpo.log"):
        assert f"learning_n16/{member}" in names, member
    redrawn = tmp_path / "redrawn"
    assert table.main([str(work / "results" / "base"), str(work / "results" / "n16"), "--pictures", str(redrawn)]) == 0
    assert {p.name for p in redrawn.iterdir()} == {"heldout_n16.png", "boxes_n16.png", "grpo_reward_n16.png"}


@pytest.mark.slow
def test_named_base_part_at_toy_size_passes_its_pixel_budget_on(tmp_path):
    """The base part with --base-recipe base_named.yaml and a smaller pixel budget: both datasets rebuilt bit for
    bit, the novel held-out evaluation (and every few-shot command after it) at the base model's budget."""
    proof = _script("learning_proof")
    work, out = tmp_path / "work", tmp_path / "out"
    budget = ["model.min_pixels=6272", "model.max_pixels=6272"]
    argv = ["base", "--toy", "--in-process", "--work", str(work), "--out", str(out),
            "--base-recipe", str(RECIPES / "base_named.yaml"), *[a for s in budget for a in ("--set", s)]]
    assert proof.main(argv) == 0
    base = json.loads((out / "learning_base.json").read_text())
    data = base["bit_for_bit"]["data"]
    assert "base_train/all_shapes_named" in data and all(d["rebuilt_identical"] for d in data.values())
    assert base["base"]["recipe"] == "recipes/learning/base_named.yaml" and base["base"]["sets"] == budget
    assert proof.base_pixels(work / "base") == budget
    novel = next(c for c in base["commands"] if c["name"] == "eval_novel")
    assert all(s in novel["argv"] for s in budget)
    assert base["eval_base"]["classification"]["n"] == 4  # the named held-out set: classification of all ten shapes
