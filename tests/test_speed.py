"""Speed optimisations keep TRL's numbers: each one checked for equal outputs and gradients on the CPU."""

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor

from rft.models.image_features import image_groups, share_image_features
from rft.models.tiny import build_tiny_vlm
from rft.recipe import validate
from rft.train.run import train


def test_image_groups_finds_bitwise_equal_images_only():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    c = a.clone()
    c[0, 0] += 1e-6  # one value apart: a different image
    pixels = torch.cat([a, b, a, c, a[:2]])
    grid = torch.tensor([[1, 2, 2], [1, 2, 2], [1, 2, 2], [1, 2, 2], [1, 1, 2]])
    unique, slot = image_groups(pixels, grid)
    assert unique == [0, 1, 3, 4] and slot == [0, 1, 0, 2, 3]
    same_sum = torch.cat([torch.ones(4, 1), torch.tensor([[2.0], [0.0], [1.0], [1.0]])])  # equal sums, other pixels
    assert image_groups(same_sum, torch.tensor([[1, 2, 2], [1, 2, 2]]))[0] == [0, 1]


def _image(colour: str, box: tuple[int, int, int, int]) -> Image.Image:
    img = Image.new("RGB", (112, 84), "white")
    ImageDraw.Draw(img).ellipse(box, fill=colour)
    return img


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_dedupe_images_gives_equal_logits_and_gradients(family, tmp_path):
    path = build_tiny_vlm(family, tmp_path / family)
    processor = AutoProcessor.from_pretrained(path)
    images = [_image("red", (10, 10, 60, 60)), _image("blue", (30, 20, 90, 70)), _image("green", (5, 5, 40, 80))]
    prompts = ["What shape?", "What colour is the shape?", "Detect all objects."]
    batch = [(images[i % 3], prompts[(i // 3 + i) % 3]) for i in range(6)]  # each image twice, with other text
    texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                                           add_generation_prompt=True, tokenize=False) for _, t in batch]
    inputs = processor(text=texts, images=[[img] for img, _ in batch], padding=True, return_tensors="pt")

    def run(dedupe: bool):
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
        visual = next(m for m in model.modules() if hasattr(m, "visual") and hasattr(m, "get_image_features")).visual
        patches = []
        visual.register_forward_pre_hook(lambda module, args: patches.append(args[0].shape[0]))
        if dedupe:
            assert share_image_features(model) >= 1
        logits = model(**inputs).logits
        logits.float().logsumexp(-1).mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return logits.detach(), grads, sum(patches)

    plain_logits, plain_grads, plain_patches = run(False)
    logits, grads, patches = run(True)
    assert patches * 2 == plain_patches  # three distinct images encoded instead of six
    assert torch.allclose(logits, plain_logits, atol=1e-5, rtol=1e-5)
    assert grads.keys() == plain_grads.keys() and any(".visual." in n or n.startswith("model.visual") for n in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, plain_grads[name], atol=1e-6, rtol=1e-4), name


@pytest.mark.slow
@pytest.mark.parametrize("frozen_tower", [False, True])
def test_speed_options_leave_a_grpo_run_unchanged(frozen_tower, tmp_path):
    """Two GRPO steps with every ``speed`` option on and off (with a frozen tower the features are
    also cached across passes): the same rewards, losses and KL."""
    freeze = {"vision": frozen_tower, "projector": frozen_tower, "language": False}

    def run(dedupe: bool):
        recipe = validate({
            "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544, "freeze": freeze},
            "data": {"datasets": [{"name": "cls", "kind": "synthetic_shapes", "task": "classification", "num_samples": 8}]},
            "rewards": [{"name": "format", "weight": 0.5}, {"name": "classification_accuracy"}],
            "grpo": {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 8, "max_steps": 2,
                     "learning_rate": 1e-3, "beta": 0.04},
            "speed": {"dedupe_images": dedupe, "cache_frozen_image_features": dedupe, "batched_vision_attention": dedupe},
            "output": {"dir": str(tmp_path / str(dedupe)), "report_to": []},
        })
        return [h for h in train(recipe).state.log_history if "reward" in h]

    plain, fast = run(False), run(True)
    assert len(plain) == len(fast) == 2
    for a, b in zip(plain, fast):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["kl"] == pytest.approx(b["kl"], abs=1e-5)


def _batch(processor, images, texts):
    prompts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                                             add_generation_prompt=True, tokenize=False) for t in texts]
    return processor(text=prompts, images=[[img] for img in images], padding=True, return_tensors="pt")


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_frozen_tower_encodes_each_image_once_across_passes(family, tmp_path):
    from rft.models.image_features import FeatureCache
    from rft.models.parts import freeze_parts

    path = build_tiny_vlm(family, tmp_path / family)
    processor = AutoProcessor.from_pretrained(path)
    red, blue = _image("red", (10, 10, 60, 60)), _image("blue", (30, 20, 90, 70))
    first = _batch(processor, [red, blue, red, blue], ["What shape?"] * 4)
    second = _batch(processor, [blue, red], ["Detect all objects.", "What colour is the shape?"])

    def run(cache: FeatureCache | None, frozen: bool = True):
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
        if frozen:
            freeze_parts(model, ["vision", "projector"])
        inner = next(m for m in model.modules() if "visual" in m._modules)
        patches = []
        inner.visual.register_forward_pre_hook(lambda module, args: patches.append(args[0].shape[0]))
        if cache is not None:
            share_image_features(model, dedupe=True, cache_frozen=True, cache=cache)
        with torch.no_grad():  # a log-prob pass, then the training forward of the same step
            before = model(**first).logits
        logits = model(**second).logits
        logits.logsumexp(-1).mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return before, logits.detach(), grads, patches

    plain_before, plain_logits, plain_grads, plain_patches = run(None)
    cache = FeatureCache()
    before, logits, grads, patches = run(cache)
    assert len(plain_patches) == 2 and len(patches) == 1  # the second pass found both images in the cache
    assert patches[0] * 2 == plain_patches[0] and cache.hits == 2
    assert torch.allclose(before, plain_before, atol=1e-5) and torch.allclose(logits, plain_logits, atol=1e-5)
    assert grads.keys() == plain_grads.keys() and not any("visual" in n for n in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, plain_grads[name], atol=1e-6, rtol=1e-4), name
    _, _, _, trained_tower = run(FeatureCache(), frozen=False)
    assert len(trained_tower) == 2  # a trainable tower is never cached


def test_segment_attention_equals_attention_per_segment():
    from torch.nn import functional as F

    from rft.models.vision_attention import segment_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 23, 8, requires_grad=True) for _ in range(3))
    cu = torch.tensor([0, 4, 8, 8, 11, 15, 23])  # lengths 4, 4, 0, 3, 4, 8
    out = segment_attention(q, k, v, cu, scale=0.3)
    pieces = [F.scaled_dot_product_attention(q[:, a:b], k[:, a:b], v[:, a:b], scale=0.3) for a, b in zip(cu[:-1], cu[1:]) if b > a]
    expected = torch.cat(pieces, dim=1)
    assert torch.allclose(out, expected, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, expected_grads))


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_batched_vision_attention_gives_equal_logits_and_gradients(family, tmp_path):
    from rft.models.vision_attention import batch_vision_attention

    path = build_tiny_vlm(family, tmp_path / family, max_image_tokens=64)
    processor = AutoProcessor.from_pretrained(path)
    images = [_image("red", (10, 10, 60, 60)), _image("blue", (30, 20, 90, 70)).resize((224, 168))]
    inputs = _batch(processor, images, ["What shape?", "Detect all objects."])

    def run(batched: bool):
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
        if batched:
            assert batch_vision_attention(model) == model.config.vision_config.depth
        logits = model(**inputs).logits
        logits.logsumexp(-1).mean().backward()
        return logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain_logits, plain_grads = run(False)
    logits, grads = run(True)
    assert torch.allclose(logits, plain_logits, atol=1e-5)
    for name, grad in grads.items():
        assert torch.allclose(grad, plain_grads[name], atol=1e-6, rtol=1e-4), name
