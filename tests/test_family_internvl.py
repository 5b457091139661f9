"""InternVL, the second family (rft/families/internvl.py): a tiny model from a config, its vision tokens
banned, its parts, its 0..1000 boxes read and converted to original-image pixels by the rewards and by
``rft eval``, and GRPO on the CPU raising the demo's reward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor

import rewards
from rft.families import family_of
from rft.models.parts import freeze_parts, part_of
from rft.models.tiny import FAMILIES, build_tiny_vlm
from rft.models.vision_tokens import placeholder_token_ids, vision_token_ids

PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_vlm("internvl", tmp_path_factory.mktemp("internvl"), max_image_tokens=64)  # 3 tiles + thumbnail


def _image(size=(112, 112)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).ellipse((20, 30, 90, 100), fill="red")
    return img


def test_family_record():
    family = family_of("internvl")
    assert family.name == "internvl" and family.coord_format == "norm1000" and "internvl" in FAMILIES
    assert family.vllm_options(3136, 12544) == {}  # its vLLM processor tiles images itself


def test_tiny_model_builds_loads_and_generates_without_vision_tokens(tiny):
    model, info = AutoModelForImageTextToText.from_pretrained(tiny, output_loading_info=True)
    processor = AutoProcessor.from_pretrained(tiny)
    assert model.config.model_type == "internvl" and family_of(model.config).name == "internvl"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    tok = processor.tokenizer
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<IMG_CONTEXT>") == processor.image_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok)

    text = processor.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\n<IMG_CONTEXT>\nWhat shape?<|im_end|>\n<|im_start|>assistant\n"
    inputs = processor(text=[text], images=[_image((224, 112))], return_tensors="pt")
    tiles = inputs["pixel_values"].shape[0]
    assert tiles == 3  # a 2:1 image: two tiles and the thumbnail
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 16 * tiles  # 16 tokens per 112x112 tile
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()

    banned = vision_token_ids(tok, "internvl", processor)
    assert tok.convert_ids_to_tokens(banned) == ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    assert placeholder_token_ids(processor) == {model.config.image_token_id}
    out = model.generate(**inputs, max_new_tokens=8, do_sample=True, suppress_tokens=banned)
    assert not set(out[0, inputs["input_ids"].shape[1]:].tolist()) & set(banned)
    for answer in ('<think>a circle</think><answer>[{"bbox_2d": [12, 40, 880, 997], "label": "circle"}]</answer>',
                   "<answer><ref>circle</ref><box>[[100, 200, 500, 600]]</box></answer>"):
        assert tok.decode(tok.encode(answer), skip_special_tokens=True) == answer
    assert tok.tokenize("1000") == ["1", "0", "0", "0"]


def test_parts_are_the_vision_tower_projector_and_language_model(tiny):
    model = AutoModelForImageTextToText.from_pretrained(tiny)
    parts = {part_of(n) for n, _ in model.named_parameters()}
    assert parts == {"vision", "projector", "language"}
    assert all(part_of(n) == "vision" for n, _ in model.named_parameters() if ".vision_tower." in n)
    assert all(part_of(n) == "projector" for n, _ in model.named_parameters() if ".multi_modal_projector." in n)
    counts = freeze_parts(model, ["vision", "projector"])
    assert counts["vision"] == counts["projector"] == 0 and counts["language"] > 0


def test_prompts_ask_for_0_to_1000_and_native_answers_score_in_pixels(tmp_path):
    from rft.data.build import to_trl_rows

    image = tmp_path / "street.png"
    _image((640, 480)).save(image)
    row = {"id": "d", "dataset": "t", "task": "detection", "image": str(image), "image_size": [640, 480],
           "query": {"category": "circle"}, "solution": {"boxes": [[64.0, 48.0, 320.0, 240.0]], "labels": ["circle"]}}
    (trl,) = to_trl_rows([row], family="internvl", min_pixels=3136, max_pixels=12544, factor=28, resized_dir=tmp_path / "r")
    assert trl["coord_format"] == "norm1000" and "normalized to integers from 0 to 1000" in trl["prompt"][0]["content"][1]["text"]
    native = "<think>one circle</think><answer><ref>circle</ref><box>[[100, 100, 500, 500]]</box></answer>"
    half = "<think>one circle</think><answer><ref>circle</ref><box>[[100, 100, 300, 500]]</box></answer>"
    columns = {k: [trl[k]] * 2 for k in ("task", "solution", "image_size", "coord_format", "model_image_size")}
    assert rewards.get("detection_iou")([native, half], **columns) == pytest.approx([1.0, 0.5])


def test_rft_eval_reads_internvl_answers_in_original_pixels(tmp_path, monkeypatch):
    """``rft eval`` on the tiny InternVL, its answers those of a model that writes the ground truth in its
    family's convention: COCO AP 1 once converted back to pixels (generation itself runs in the slow test)."""
    import rft.eval.generate as generate
    from rft.eval.run import evaluate_recipe
    from rft.recipe import validate

    def oracle(model, processor, rows, banned, max_new_tokens, batch_size):
        import json

        answers = []
        for r in rows:
            (w, h), boxes = r["image_size"], json.loads(r["solution"])["boxes"]
            norm = [[round(x1 * 1000 / w), round(y1 * 1000 / h), round(x2 * 1000 / w), round(y2 * 1000 / h)]
                    for x1, y1, x2, y2 in boxes]
            answers.append(f"<answer>{''.join(f'<ref>shape</ref><box>[{b}]</box>' for b in norm) or 'No Objects'}</answer>")
        return answers

    monkeypatch.setattr(generate, "generate_answers", oracle)
    recipe = validate({
        "model": {"tiny": {"family": "internvl"}, "min_pixels": 3136, "max_pixels": 12544},
        "data": {"datasets": [{"name": "cls", "kind": "synthetic_shapes", "num_samples": 4}]},
        "rewards": [{"name": "detection_iou"}],
        "eval": {"datasets": [{"name": "det", "kind": "synthetic_shapes", "task": "detection", "num_samples": 6,
                               "seed": 3, "split": "eval", "negative_ratio": 0.5}], "pictures": 0},
        "output": {"dir": str(tmp_path), "report_to": []},
    })
    report = evaluate_recipe(recipe, None, tmp_path / "eval")
    assert report["detection"]["AP50"] == pytest.approx(1.0) and report["detection"]["mAP"] > 0.8
    assert report["negatives"]["negative_accuracy"] == 1.0 and report["negatives"]["false_positive_rate"] == 0.0
    failures = report["parse_failures"]
    assert failures["n"] == 6 and failures["unparsed"] == failures["invalid_boxes"] == failures["no_answer"] == 0


@pytest.mark.slow
def test_demo_learns_with_internvl(tmp_path):
    """The demo recipe with model.tiny.family: internvl: GRPO raises the reward and held-out accuracy."""
    from rft.demo import run_demo

    summary = run_demo(output_dir=str(tmp_path), overrides=["model.tiny.family=internvl"])
    assert summary["reward_last_steps"] >= summary["reward_first_steps"] + 0.15
    assert summary["heldout_accuracy_after_grpo"] >= summary["chance"] + 0.15
