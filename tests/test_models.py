"""Model controls: weight-load report, freezing, per-part learning rates, LoRA, vision-token bans."""

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoProcessor

from rft.errors import RecipeError
from rft.models.load import load_model
from rft.models.lora import apply_lora
from rft.models.parts import freeze_parts, parameter_groups, part_of, parameters_by_part
from rft.models.tiny import build_tiny_vlm
from rft.models.vision_tokens import vision_token_ids
from rft.recipe.schema import Lora, ModelSection, PartSettings


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture()
def loaded(tiny_path, tmp_path):
    return load_model(ModelSection(path=str(tiny_path)), tmp_path)


def test_part_names():
    assert part_of("model.visual.blocks.0.attn.qkv.weight") == "vision"
    assert part_of("model.visual.merger.mlp.0.weight") == "projector"
    assert part_of("model.visual.deepstack_merger_list.0.norm.weight") == "projector"
    assert part_of("model.multi_modal_projector.linear_1.weight") == "projector"
    assert part_of("model.vision_tower.encoder.layers.0.q_proj.weight") == "vision"
    assert part_of("model.language_model.layers.0.self_attn.q_proj.weight") == "language"
    assert part_of("lm_head.weight") == "language"


def test_every_part_is_found(loaded):
    counts = {p: len(v) for p, v in parameters_by_part(loaded.model).items()}
    assert all(counts.values()), counts
    assert loaded.report.ok and loaded.family == "qwen2_5_vl"


def test_freezing_really_freezes(loaded):
    model = loaded.model
    trainable = freeze_parts(model, ["vision", "projector"])
    assert trainable["vision"] == 0 and trainable["projector"] == 0 and trainable["language"] > 0
    proc = loaded.processor
    from PIL import Image

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what shape"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    batch = proc(text=[text], images=[Image.new("RGB", (112, 112), "red")], return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    groups = parameters_by_part(model)
    assert all(p.grad is None for _, p in groups["vision"] + groups["projector"])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in groups["language"])


def test_parameter_groups_have_part_learning_rates(loaded):
    freeze_parts(loaded.model, [])
    names = {n for n, _ in loaded.model.named_parameters() if n.endswith("weight") and "norm" not in n}
    groups = parameter_groups(loaded.model, 1e-5, {"vision": 1e-6, "projector": 3e-5, "language": None}, 0.01, names)
    lrs = {g["part"]: g["lr"] for g in groups}
    assert lrs == {"vision": 1e-6, "projector": 3e-5, "language": 1e-5}
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == sum(1 for p in loaded.model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(groups, lr=1e-5)
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [1e-6, 1e-5, 3e-5]


def test_lora_trains_only_adapters(loaded):
    model = apply_lora(loaded.model, Lora(enabled=True, r=4), PartSettings(vision=True, projector=True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(part_of(n) == "vision" for n in trainable)  # the vision tower is left out by default


def test_lora_can_include_vision_and_train_projector(loaded):
    model = apply_lora(loaded.model, Lora(enabled=True, r=4, include_vision=True), PartSettings(vision=True, projector=False))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in n and part_of(n) == "vision" for n in trainable)
    assert any("merger" in n and "lora_" not in n for n in trainable)


def test_lora_including_vision_that_targets_no_vision_layer_is_an_error(tmp_path):
    from transformers import AutoModelForImageTextToText

    # Qwen2-VL's vision blocks: qkv, proj, fc1, fc2; none of the language model's *_proj names
    model = AutoModelForImageTextToText.from_pretrained(build_tiny_vlm("qwen2_vl", tmp_path / "m"))
    with pytest.raises(ValueError, match=r"include_vision: target_modules .* match no Linear layer of the vision tower "
                                         r"\(its layers: fc1, fc2, proj, qkv\)"):
        apply_lora(model, Lora(enabled=True, r=4, include_vision=True), PartSettings(vision=True))
    assert apply_lora(model, Lora(enabled=True, r=4, include_vision=True, target_modules=["q_proj", "qkv"]), PartSettings())


def test_weight_report_fires_on_a_damaged_checkpoint(tiny_path, tmp_path, caplog):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in tiny_path.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    weights = load_file(damaged / "model.safetensors")
    dropped = [k for k in weights if ".merger." in k or "layers.1." in k]
    save_file({k: v for k, v in weights.items() if k not in dropped}, damaged / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RecipeError) as err:
        load_model(ModelSection(path=str(damaged)), tmp_path)
    message = str(err.value)
    assert "missing (left at random initialisation)" in message and "projector" in message and "language" in message
    assert "allow_missing_weights" in message
    with caplog.at_level(logging.WARNING):
        loaded = load_model(ModelSection(path=str(damaged), allow_missing_weights=True), tmp_path)
    assert len(loaded.report.missing) == len(dropped) and "did not load cleanly" in caplog.text


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(RecipeError, match="model.path: cannot load"):
        load_model(ModelSection(path=str(tmp_path / "nowhere")), tmp_path)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_pixel_budget_reaches_the_processor(family, tmp_path):
    from PIL import Image

    path = build_tiny_vlm(family, tmp_path / family, max_image_tokens=1024)  # the checkpoint's budget is wider
    loaded = load_model(ModelSection(path=str(path), min_pixels=6272, max_pixels=50176), tmp_path)
    size = loaded.processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (6272, 50176)
    grid = loaded.processor.image_processor(images=[Image.new("RGB", (640, 480))], return_tensors="pt")["image_grid_thw"]
    pixels = grid.prod().item() * loaded.processor.image_processor.patch_size ** 2
    assert 6272 <= pixels <= 50176  # a 640x480 image is shrunk to the recipe's budget, not the checkpoint's


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_vision_token_ban_list_per_family(family, tmp_path):
    processor = AutoProcessor.from_pretrained(build_tiny_vlm(family, tmp_path / family))
    ids = vision_token_ids(processor.tokenizer, family)
    tokens = processor.tokenizer.convert_ids_to_tokens(ids)
    assert set(tokens) == {"<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"}
    assert processor.tokenizer.convert_tokens_to_ids(processor.image_token) in ids


def test_a_damaged_safetensors_file_is_a_message(tiny_path, tmp_path, capsys):
    """A truncated, empty or garbage model.safetensors ended in a safetensors traceback."""
    import shutil

    from rft.cli import main

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_path, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(RecipeError, match=r"cannot load .*damaged'? \(a weight file is damaged or incomplete\): "
                                          r"Error while deserializing header"):
        load_model(ModelSection(path=str(damaged)), tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{path: {tiny_path}}}\ndata: {{datasets: [{{name: s, kind: synthetic_shapes}}]}}\n"
                      "rewards: [{name: classification_accuracy}]\n"
                      "eval: {datasets: [{name: e, kind: synthetic_shapes, num_samples: 2}]}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(recipe), "--model", str(damaged), "--output-dir", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and "damaged or incomplete" in err


@pytest.fixture(scope="module")
def adapter(tiny_path, tmp_path_factory):
    """A LoRA adapter saved as rft saves one: with the record of its base (name and weight fingerprint)."""
    from rft.models.lora import base_record, write_base_record

    folder = tmp_path_factory.mktemp("adapter")
    base = load_model(ModelSection(path=str(tiny_path)), folder).model
    record = base_record(base)
    model = apply_lora(base, Lora(enabled=True, r=4), PartSettings(vision=True, projector=True))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a trained adapter (B starts at zero)
    model.save_pretrained(folder)
    write_base_record(folder, record)
    return folder


def test_an_adapter_merges_onto_its_own_base_in_any_dtype(adapter, tiny_path, tmp_path):
    from rft.models.load import load_checkpoint

    merged = load_checkpoint(ModelSection(path=str(tiny_path)), adapter, tmp_path).model
    in_bf16 = load_checkpoint(ModelSection(path=str(tiny_path), dtype="bfloat16"), adapter, tmp_path).model
    name = next(n for n in merged.state_dict() if n.endswith("q_proj.weight") and "language" in n)
    assert torch.allclose(merged.state_dict()[name], in_bf16.state_dict()[name].float(), atol=2e-2)


def copy_adapter(adapter, to, base=None, record=True):
    """A copy of ``adapter`` whose config names ``base`` as its base (and without rft's record, unless ``record``)."""
    import json

    to.mkdir()
    for f in adapter.iterdir():
        if record or f.name != "rft_base.json":
            (to / f.name).write_bytes(f.read_bytes())
    config = json.loads((adapter / "adapter_config.json").read_text())
    (to / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
    return to


def test_an_adapter_on_another_base_of_the_same_shape_is_refused(adapter, tiny_path, tmp_path):
    """rft eval merged an adapter onto whatever model the recipe named when its recorded base was missing or
    another model of the same shape: the base's weights are checked against the fingerprint saved with it."""
    from rft.models.load import load_checkpoint

    other = build_tiny_vlm("qwen2_5_vl", tmp_path / "other", seed=1)  # same shapes, other weights
    replaced = copy_adapter(adapter, tmp_path / "replaced", base=other)  # its base folder now holds another model
    with pytest.raises(RecipeError, match=rf"the LoRA adapter was trained on '{tiny_path}', but the model loaded as its "
                                          rf"base, '{other}', is another model \(.* holds other values\)"):
        load_checkpoint(ModelSection(path=str(tiny_path)), replaced, tmp_path)
    gone = copy_adapter(adapter, tmp_path / "gone", base=tmp_path / "nothing")  # not there: the recipe's model is checked
    with pytest.raises(RecipeError, match="is another model"):
        load_checkpoint(ModelSection(path=str(other)), gone, tmp_path)
    assert load_checkpoint(ModelSection(path=str(tiny_path)), gone, tmp_path).model is not None
    unrecorded = copy_adapter(adapter, tmp_path / "unrecorded", base=tmp_path / "nothing", record=False)
    with pytest.raises(RecipeError, match=r"a LoRA adapter of '.*nothing', which is not there, and without rft's record"):
        load_checkpoint(ModelSection(path=str(other)), unrecorded, tmp_path)


def test_an_adapter_of_the_wrong_shape_is_a_message(adapter, tmp_path):
    from rft.models.load import load_checkpoint

    wider = build_tiny_vlm("qwen2_5_vl", tmp_path / "wider", hidden_size=96)
    with pytest.raises(RecipeError, match=r"is another model \(.* is \[\d+, 96\], the adapter's base had \[\d+, 64\]\)"):
        load_checkpoint(ModelSection(path=str(wider)), copy_adapter(adapter, tmp_path / "a", base=wider), tmp_path)
    foreign = copy_adapter(adapter, tmp_path / "foreign", base=wider, record=False)  # from elsewhere: no record
    with pytest.raises(RecipeError, match=r"the LoRA adapter does not fit the model '.*wider' \(RuntimeError: .*size mismatch"):
        load_checkpoint(ModelSection(path=str(wider)), foreign, tmp_path)


def test_weight_fingerprint_of_a_full_vocabulary_embedding():
    """151,936 x 128 values: float32 linspace rounds the last index past the end; the fingerprint reads the last
    value instead of failing, and still tells two weights apart."""
    from torch import nn

    from rft.models.lora import weight_fingerprint

    torch.manual_seed(0)
    model = nn.Embedding(151_936, 128)
    shape, values = weight_fingerprint(model)["weight"]
    assert shape == [151_936, 128] and values[-1] == model.weight.reshape(-1)[-1].item()
    assert weight_fingerprint(model) == weight_fingerprint(model)
    other = nn.Embedding(151_936, 128)
    assert weight_fingerprint(other) != weight_fingerprint(model)
