"""Rows with several images: loaders (rows_jsonl, messages), each image at the pixel budget, prompts with one
image part per image, the ``images`` column (decoded once each), vLLM's image limit, the vision tower's
dedupe, and visual-prompt exemplars shown as crops in a second image."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor

import rewards
from rft.data.answers import reference_answer
from rft.data.build import images_per_row, prompt_images, to_dataset, to_trl_rows
from rft.data.image_cache import DecodedImages
from rft.data.messages import load_messages
from rft.data.rows import load_rows_jsonl
from rft.data.synthetic import make_shapes
from rft.errors import DataError
from rft.families import family_of
from rft.models.image_features import share_image_features
from rft.models.tiny import build_tiny_vlm
from rft.rollout.engine import engine_options
from rft.recipe.schema import ModelSection
from test_data_helpers import columns, make_image, write_jsonl

BUDGET = dict(min_pixels=3136, max_pixels=64 * 28 * 28, factor=28)
BOX = [[100.0, 20.0, 200.0, 100.0]]


def scene(tmp_path):
    """A 400 x 200 red image with a blue patch where BOX is, and a second, 120 x 90 green image."""
    first = make_image(tmp_path / "scene.png", (400, 200), (200, 30, 30))
    with Image.open(first) as image:
        image = image.copy()
    ImageDraw.Draw(image).rectangle((100, 20, 199, 99), fill=(0, 0, 255))
    image.save(first)
    return first, make_image(tmp_path / "other.png", (120, 90), (0, 160, 0))


def detection(extra: dict) -> dict:
    return {"id": "two", "task": "detection", "solution": {"boxes": BOX, "labels": ["patch"]},
            "query": {"category": "patch"}, **extra}


def test_rows_jsonl_and_messages_read_several_images_and_trl_rows_show_each_at_the_budget(tmp_path):
    first, second = scene(tmp_path)
    (row,), _ = load_rows_jsonl(write_jsonl(tmp_path / "rows.jsonl", [detection({"dataset": "d", "images": [
        "scene.png", "other.png"]})]))
    assert row["image"] == str(first) and row["images"] == [str(first), str(second)]
    assert row["image_size"] == [400, 200] and row["image_sizes"] == [[400, 200], [120, 90]]
    answer = json.dumps([{"bbox_2d": [100, 20, 200, 100], "label": "patch"}])
    messages = {"messages": [{"role": "user", "content": "<image><image>Find every patch in the first image."},
                             {"role": "assistant", "content": answer}], "images": ["scene.png", "other.png"]}
    (chat,), _ = load_messages(write_jsonl(tmp_path / "m.jsonl", [messages]), name="m", task="detection")
    assert chat["images"] == row["images"] and chat["image_sizes"] == row["image_sizes"]
    assert chat["solution"]["boxes"] == BOX  # pixels of the first image
    assert chat["query"]["problem"] == "Find every patch in the first image."  # placeholders become image parts

    (trl,) = to_trl_rows([row], family="qwen2_5_vl", resized_dir=tmp_path / "r", **BUDGET)
    assert [p["type"] for p in trl["prompt"][0]["content"]] == ["image", "image", "text"]
    assert trl["image"] == trl["images"][0] and len(trl["images"]) == 2
    sizes = [Image.open(p).size for p in trl["images"]]
    assert sizes == [(308, 140), (112, 84)]  # each resized by its own budget: 400x200 -> 308x140, 120x90 -> 112x84
    assert trl["model_image_size"] == [308, 140] and trl["image_size"] == [400, 200]  # the first image's
    assert rewards.get("detection_iou")([reference_answer(trl)], **columns(trl)) == [1.0]
    assert images_per_row([trl]) == 2 and prompt_images(row) == 2


@pytest.mark.parametrize("record, message", [
    ({"images": []}, "rows.jsonl line 1: field 'images' is an empty list"),
    ({"images": ["scene.png"], "image": "scene.png"}, "rows.jsonl line 1: give 'images' (a list of paths"),
    ({"images": ["scene.png", "missing.png"]}, "rows.jsonl line 1: .*missing.png: image file not found"),
])
def test_bad_image_lists_name_the_file_and_line(tmp_path, record, message):
    scene(tmp_path)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_rows_jsonl(write_jsonl(tmp_path / "rows.jsonl", [detection({"dataset": "d", **record})]))
    empty = {"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "cat"}], "images": []}
    with pytest.raises(DataError, match=r"m.jsonl line 1: field 'images' is an empty list"):
        load_messages(write_jsonl(tmp_path / "m.jsonl", [empty]), name="m")


def crop_row(tmp_path) -> dict:
    first, _ = scene(tmp_path)
    return {"id": "vp", "dataset": "vp", "task": "visual_prompt_detection", "image": str(first), "image_size": [400, 200],
            "solution": {"boxes": BOX + [[300, 120, 400, 180]], "labels": []},
            "query": {"exemplars": BOX, "exemplar": "crop"}}


def test_crop_exemplar_is_a_second_image_cut_from_the_first(tmp_path):
    row = crop_row(tmp_path)
    (trl,) = to_trl_rows([row], family="qwen2_5_vl", resized_dir=tmp_path / "r", **BUDGET)
    text = trl["prompt"][0]["content"][2]["text"]
    assert text.startswith("The image after the first shows an example of what to find, cut out of the first image.")
    assert "in the first image, the example included" in text
    scene_image, crop = (Image.open(p).convert("RGB") for p in trl["images"])
    assert scene_image.size == (308, 140)
    # the 100 x 80 crop at the budget (family rule): 112 x 84, all of it the blue patch
    assert crop.size == tuple(family_of("qwen2_5_vl").model_image_size([100, 80], 28, 3136, 64 * 28 * 28)) == (112, 84)
    assert crop.getcolors() == [(112 * 84, (0, 0, 255))]
    assert prompt_images(row) == 2 and images_per_row([trl]) == 2
    perfect = reference_answer(trl)
    assert rewards.get("detection_iou")([perfect], **columns(trl)) == [1.0]  # boxes in the first image's convention
    again = to_trl_rows([row], family="qwen2_5_vl", resized_dir=tmp_path / "r", **BUDGET)[0]
    assert again["images"] == trl["images"]  # crops written once, reused
    two = {**row, "images": [row["image"]] * 2, "image_sizes": [row["image_size"]] * 2}
    with pytest.raises(DataError, match="row vp: exemplar 'crop' shows the exemplars as the images after the first"):
        to_trl_rows([two], family="qwen2_5_vl", resized_dir=tmp_path / "r", **BUDGET)


def test_dataset_of_rows_with_several_images_decodes_each_image_once(tmp_path):
    crop = to_trl_rows([crop_row(tmp_path)], family="qwen2_5_vl", resized_dir=tmp_path / "r", **BUDGET)[0]
    single = {**crop, "id": "one", "prompt": [{"role": "user", "content": crop["prompt"][0]["content"][1:]}]}
    single.pop("images")
    cache = DecodedImages()
    data = to_dataset([crop, single, crop], decoded=cache)
    assert "images" in data.column_names and "image" not in data.column_names
    assert [len(data[i]["images"]) for i in range(3)] == [2, 1, 2]
    assert [im.size for im in data[0]["images"]] == [(308, 140), (112, 84)]
    assert cache.decoded == 2 and cache.hits >= 3
    assert to_dataset([single]).column_names.count("image") == 1  # one image per row: the column TRL always had
    plain = to_dataset([crop, single], cache_decoded_images=False)
    assert [im.size for im in plain[0]["images"]] == [(308, 140), (112, 84)]


def test_vllm_is_told_the_most_images_a_row_has():
    model = ModelSection(tiny={"family": "qwen2_5_vl"})
    assert engine_options(model, "qwen2_5_vl", 2, cuda=False)["limit_mm_per_prompt"] == {"image": 2}
    rows = make_shapes(None, 3, task="visual_prompt_detection", exemplars=2, max_objects=3, exemplar="crop")
    assert [prompt_images(r) for r in rows] == [3, 3, 3]


def test_dedupe_images_with_several_images_per_row_gives_equal_logits(tmp_path):
    path = build_tiny_vlm("qwen2_5_vl", tmp_path / "m")
    processor = AutoProcessor.from_pretrained(path)
    a, b, c = (Image.new("RGB", (56, 56), colour) for colour in ("red", "blue", "green"))
    rows = [[a, b], [a, c], [a, b], [c, b]]  # 8 images, 3 distinct
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Find it."}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text] * 4, images=rows, padding=True, return_tensors="pt")

    def run(dedupe: bool):
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
        visual = next(m for m in model.modules() if hasattr(m, "visual") and hasattr(m, "get_image_features")).visual
        patches = []
        visual.register_forward_pre_hook(lambda module, args: patches.append(args[0].shape[0]))
        if dedupe:
            share_image_features(model)
        return model(**inputs).logits.detach(), sum(patches)

    (plain, plain_patches), (deduped, patches) = run(False), run(True)
    assert patches * 8 == plain_patches * 3  # three distinct images encoded instead of eight
    assert torch.allclose(deduped, plain, atol=1e-5, rtol=1e-5)


def test_rft_data_decodes_every_image_of_a_row(tmp_path):
    from rft.data.check import check_recipe
    from rft.recipe import validate

    _, second = scene(tmp_path)
    write_jsonl(tmp_path / "rows.jsonl", [detection({"dataset": "d", "images": ["scene.png", "other.png"]})])
    recipe = validate({"name": "two", "model": {"tiny": {"family": "qwen2_5_vl"}},
                       "data": {"datasets": [{"name": "d", "kind": "rows_jsonl", "path": str(tmp_path / "rows.jsonl")}]},
                       "rewards": [{"name": "detection_iou"}], "output": {"dir": str(tmp_path / "out")}})
    summary = check_recipe(recipe, tmp_path / "out", print_fn=lambda _: None)
    assert summary["ok"] and summary["datasets"][0]["rows"] == 1
    [picture] = [Image.open(p).convert("RGB") for p in summary["datasets"][0]["pictures"]]
    # the scene upscaled 2x (800 x 400), then the second image beside it at its height (120 x 90 -> 533 x 400)
    assert picture.width == 800 + 6 + 533 and picture.getpixel((800 + 6 + 260, picture.height - 200)) == (0, 160, 0)
    second.write_bytes(second.read_bytes()[:200])  # a truncated PNG: its header reads, its pixels do not
    summary = check_recipe(recipe, tmp_path / "out", print_fn=lambda _: None)
    assert not summary["ok"] and "other.png: not a readable image" in summary["datasets"][0]["error"]


def test_vllm_prompts_keep_one_image_token_per_image():
    from rft.rollout.engine import collapse_image_runs

    start, pad, end, text = 1, 7, 2, 5  # <|vision_start|> <|image_pad|> x N <|vision_end|>, twice
    ids = [text, start, pad, pad, pad, end, start, pad, pad, end, text]
    assert collapse_image_runs(ids, {pad}) == [text, start, pad, end, start, pad, end, text]


def test_messages_image_parts_naming_several_images_make_one_row_with_them(tmp_path):
    first, second = scene(tmp_path)
    content = [{"type": "image", "image": "scene.png"}, {"type": "image", "image": "other.png"},
               {"type": "text", "text": "Find every patch in the first image."}]
    answer = json.dumps([{"bbox_2d": [100, 20, 200, 100], "label": "patch"}])
    record = {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]}
    (row,), _ = load_messages(write_jsonl(tmp_path / "parts.jsonl", [record]), name="m", task="detection")
    assert row["task"] == "detection" and row["images"] == [str(first), str(second)]
    assert row["image_sizes"] == [[400, 200], [120, 90]] and row["solution"]["boxes"] == BOX
