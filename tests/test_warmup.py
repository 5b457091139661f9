"""Reference answers score 1 in every convention; the warm-up masks prompts and can teach format only."""

import random

import pytest

import rewards
from rft.data.answers import reference_answer
from rft.data.build import to_trl_rows
from rft.data.synthetic import make_shapes
from rft.models.tiny import build_tiny_vlm
from rft.train.supervised import batch_inputs
from rft.train.warmup import warmup_targets

REWARD_OF = {"detection": "detection_iou", "grounding": "grounding_iou", "classification": "classification_accuracy"}
COLUMNS = ("task", "solution", "image_size", "coord_format", "model_image_size")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    raw = []
    for task in ("detection", "grounding", "classification"):
        raw += make_shapes(tmp / task, 6, task=task, seed=1, negative_ratio=0.3 if task != "classification" else 0.0)
    out = {}
    for family in ("qwen2_vl", "qwen2_5_vl"):
        out[family] = to_trl_rows(raw, family=family, min_pixels=3136, max_pixels=200_704, factor=28,
                                  resized_dir=tmp / f"resized_{family}")
    return out


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_reference_answers_score_one(rows, family):
    for row in rows[family]:
        answer = reference_answer(row)
        for name in (REWARD_OF[row["task"]], "format"):
            assert rewards.get(name)([answer], **{k: [row[k]] for k in COLUMNS}) == [pytest.approx(1.0, abs=0.05)], (name, row["id"])


def test_format_only_targets_stay_within_task(rows):
    trl = rows["qwen2_5_vl"]
    targets = warmup_targets(trl, format_only=True, rng=random.Random(0))
    own = [reference_answer(r) for r in trl]
    assert sorted(targets) == sorted(own) and targets != own
    for row, target in zip(trl, targets):
        donor_tasks = {r["task"] for r, a in zip(trl, own) if a == target}
        assert row["task"] in donor_tasks


def test_labels_cover_only_the_answer(rows, tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(build_tiny_vlm("qwen2_5_vl", tmp_path / "m", max_image_tokens=256))
    trl = rows["qwen2_5_vl"][:3]
    targets = [reference_answer(r) for r in trl]
    inputs = batch_inputs(processor, trl, targets)
    for i, target in enumerate(targets):
        labelled = inputs["labels"][i][inputs["labels"][i] != -100]
        assert processor.tokenizer.decode(labelled) == target + processor.tokenizer.eos_token
    # Qwen's 3-D M-RoPE needs mm_token_type_ids (transformers 5 falls back to 1-D positions without it)
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ((inputs["mm_token_type_ids"] == 1) == (inputs["input_ids"] == image_token)).all()
