"""Tiny random-weight VLMs: build, reload offline, forward, generate, tokenizer round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor

from rft.models.tiny import build_tiny_vlm, vision_token_ids

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")  # the Qwen-VL families (other families: tests/test_family_*.py)

ANSWERS = [
    '<think>a red circle</think><answer>[{"bbox_2d": [12, 40, 88, 97], "label": "circle"}]</answer>',
    '<think>two shapes</think><answer>[{"bbox_2d": [0, 0, 1000, 999], "label": "star"}, '
    '{"bbox_2d": [5, 6, 7, 8], "label": "yellow triangle"}]</answer>',
    "<answer>no objects</answer>",
    "<think>none</think><answer>none</answer>",
    "green square, blue star, 1000, 0, 42, 7.5; purple hexagon!",
]
PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]}]


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    family = request.param
    return family, build_tiny_vlm(family, tmp_path_factory.mktemp(family))


def _image() -> Image.Image:
    img = Image.new("RGB", (112, 112), "white")
    ImageDraw.Draw(img).ellipse((20, 30, 90, 100), fill="red")
    return img


def test_load_forward_generate(checkpoint: tuple[str, Path]) -> None:
    family, path = checkpoint
    model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True)
    processor = AutoProcessor.from_pretrained(path)
    assert model.config.model_type == family
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]

    tok = processor.tokenizer
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == processor.image_token_id
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert model.config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert model.get_input_embeddings().num_embeddings == len(tok)

    text = processor.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What shape?<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor(text=[text], images=[_image()], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 16  # 112x112 image -> 16 tokens

    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()

    banned = vision_token_ids(tok)
    assert len(banned) == 5
    out = model.generate(**inputs, max_new_tokens=6, do_sample=True, suppress_tokens=banned)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new) <= 6
    assert not set(new.tolist()) & set(banned)


def test_tokenizer_round_trip(checkpoint: tuple[str, Path]) -> None:
    tok = AutoProcessor.from_pretrained(checkpoint[1]).tokenizer
    for text in ANSWERS:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.decode(ids, skip_special_tokens=True) == text  # tags are plain added tokens
    assert tok.tokenize("1000") == ["1", "0", "0", "0"]
    assert len(tok.tokenize("<think>circle</think>")) == 3


def test_deterministic(tmp_path: Path) -> None:
    a = build_tiny_vlm("qwen2_5_vl", tmp_path / "a", seed=1)
    b = build_tiny_vlm("qwen2_5_vl", tmp_path / "b", seed=1)
    c = build_tiny_vlm("qwen2_5_vl", tmp_path / "c", seed=2)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_vlm("llava", tmp_path)


def test_geometry_read_from_files_is_the_loaded_processors(checkpoint: tuple[str, Path]) -> None:
    """`rft data` reads family and factor from the model's files; they are what loading it gives."""
    from rft.models.geometry import model_geometry
    from rft.recipe.schema import ModelSection, TinyModel

    family, path = checkpoint
    processor = AutoProcessor.from_pretrained(path)
    factor = processor.image_processor.patch_size * processor.image_processor.merge_size
    geometry = model_geometry(ModelSection(path=str(path)))
    assert (geometry.family, geometry.factor) == (family, factor)
    assert "processor_config.json" in geometry.source  # read from the files, not the family's default
    tiny = model_geometry(ModelSection(tiny=TinyModel(family=family)))
    assert (tiny.family, tiny.factor) == (family, factor)


def test_sizes_of_vision_tower_and_mlps(tmp_path: Path) -> None:
    """Every size is a field; the defaults are the smallest model (vision hidden 32, depth 2)."""
    from rft.families.qwen2_5_vl import full_attention_blocks

    small = AutoModelForImageTextToText.from_pretrained(build_tiny_vlm("qwen2_5_vl", tmp_path / "small"))
    vision = small.config.vision_config
    assert (vision.hidden_size, vision.depth, vision.num_heads, vision.intermediate_size) == (32, 2, 2, 64)
    assert vision.fullatt_block_indexes == [1] and small.config.text_config.intermediate_size == 128
    path = build_tiny_vlm("qwen2_5_vl", tmp_path / "big", hidden_size=128, num_layers=3, intermediate_size=384,
                          vision_hidden_size=64, vision_depth=5, vision_num_heads=4, vision_intermediate_size=96, rope_theta=10.0)
    big = AutoModelForImageTextToText.from_pretrained(path)
    vision, text = big.config.vision_config, big.config.text_config
    assert (vision.hidden_size, vision.depth, vision.num_heads, vision.intermediate_size) == (64, 5, 4, 96)
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (128, 3, 384)
    assert text.rope_parameters["rope_theta"] == 10.0 and small.config.text_config.rope_parameters["rope_theta"] == 1e6
    assert vision.fullatt_block_indexes == full_attention_blocks(5) == [4] and full_attention_blocks(32) == [7, 15, 23, 31]
    assert len(big.model.visual.blocks) == 5 and big.model.visual.blocks[0].mlp.up_proj.out_features == 96
    inputs = AutoProcessor.from_pretrained(path)(text=[AutoProcessor.from_pretrained(path).apply_chat_template(
        PROMPT, add_generation_prompt=True, tokenize=False)], images=[_image()], return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(big(**inputs).logits).all()
    qwen2 = AutoModelForImageTextToText.from_pretrained(build_tiny_vlm("qwen2_vl", tmp_path / "q2", vision_hidden_size=64,
                                                                       vision_intermediate_size=192))
    assert qwen2.model.visual.blocks[0].mlp.fc1.out_features == 192
    with pytest.raises(ValueError, match="multiple of vision_hidden_size"):
        build_tiny_vlm("qwen2_vl", tmp_path / "q2bad", vision_hidden_size=64, vision_intermediate_size=160)
