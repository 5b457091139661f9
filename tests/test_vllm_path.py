"""What rft tells vLLM (colocate engine and ``rft serve``) so rollouts match the trainer, and the
ZeRO-3 mixed-batch guard. The GPU runs themselves are in scripts/gpu/ (docs/gpu.md)."""

import json
import shlex

import pytest

from rft.cli import main
from rft.data.build import check_modalities
from rft.errors import DataError
from rft.recipe import validate
from rft.recipe.schema import ModelSection
from rft.rollout.serve import serve_command
from rft.rollout.engine import colocated_engine_options, engine_options

BASE = {
    "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
    "data": {"datasets": [{"name": "s", "kind": "synthetic_shapes"}]},
    "rewards": [{"name": "classification_accuracy"}],
    "rollout": {"backend": "vllm", "vllm_mode": "server", "server_port": 8123, "gpu_memory_utilization": 0.4,
                "max_model_length": 2048},
}


@pytest.mark.parametrize("family, pixel_kwargs", [("qwen2_vl", True), ("qwen2_5_vl", True), ("qwen3_vl", False)])
def test_engine_options_per_family(family, pixel_kwargs):
    options = engine_options(ModelSection(path="m", dtype="float32", min_pixels=3136, max_pixels=12544), family)
    assert options["dtype"] == "float32" and options["limit_mm_per_prompt"] == {"image": 1}
    assert ("mm_processor_kwargs" in options) == pixel_kwargs
    if pixel_kwargs:
        assert options["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 12544}


@pytest.mark.parametrize("dtype, cuda, expected", [("auto", True, "bfloat16"), ("auto", False, "float32"),
                                                   ("float16", True, "float16"), ("float32", True, "float32")])
def test_engine_dtype_follows_the_trainer(dtype, cuda, expected):
    # vLLM's own "auto" would run a float32 checkpoint in bfloat16 while the trainer computes in float32
    assert engine_options(ModelSection(path="m", dtype=dtype), "qwen2_vl", cuda=cuda)["dtype"] == expected


def test_colocated_engine_gets_the_options(monkeypatch):
    import trl.generation.vllm_generation as generation

    calls = []

    def fake_llm(*args, **kwargs):
        calls.append(kwargs)
        return "engine"

    monkeypatch.setattr(generation, "LLM", fake_llm, raising=False)
    with colocated_engine_options({"dtype": "float32", "max_model_len": 1}):
        assert generation.LLM(model="m", max_model_len=512).llm == "engine"  # as TRL calls it
    assert calls == [{"dtype": "float32", "max_model_len": 512, "model": "m"}]  # TRL's own arguments win
    assert generation.LLM is fake_llm  # restored


def test_colocated_engine_options_without_vllm(monkeypatch):
    import trl.generation.vllm_generation as generation

    monkeypatch.delattr(generation, "LLM", raising=False)
    with colocated_engine_options({"dtype": "float32"}):
        assert not hasattr(generation, "LLM")


def test_serve_command_carries_the_recipe():
    recipe = validate({**BASE, "model": {"path": "/models/qwen", "dtype": "float32", "min_pixels": 3136, "max_pixels": 12544}})
    cmd = serve_command(recipe, "/models/qwen", "qwen2_5_vl")
    assert cmd[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", "/models/qwen"]

    def arg(flag):
        return cmd[cmd.index(flag) + 1]

    assert arg("--port") == "8123" and arg("--gpu-memory-utilization") == "0.4" and arg("--dtype") == "float32"
    assert arg("--max-model-len") == "2048" and arg("--tensor-parallel-size") == "1"
    assert arg("--logprobs-mode") == "processed_logprobs"  # TRL's importance-sampling correction needs it
    assert json.loads(arg("--mm-processor-kwargs")) == {"min_pixels": 3136, "max_pixels": 12544}
    assert json.loads(arg("--limit-mm-per-prompt")) == {"image": 1}
    assert "--weight-transfer-config" in cmd


def test_rft_serve_dry_run_builds_the_tiny_model_once(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({**BASE, "output": {"dir": str(tmp_path / "out")}}))
    for _ in range(2):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", str(recipe), "--dry-run"])
        assert exit_.value.code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    cmd = shlex.split(line.removeprefix("serving: "))
    assert cmd[0] == "VLLM_SERVER_DEV_MODE=1" and cmd[cmd.index("serve") + 1] == str(tmp_path / "out" / "tiny_model")
    assert cmd[cmd.index("--dtype") + 1] == "bfloat16"  # dtype auto on a GPU
    stamp = tmp_path / "out" / "tiny_model" / "rft_tiny.json"
    assert json.loads(stamp.read_text())["family"] == "qwen2_5_vl"


def test_zero3_refuses_batches_mixing_images_and_text():
    rows = {"det": [{"id": "a", "image": "/x.jpg"}], "chat": [{"id": "c1", "image": "/y.jpg"}, {"id": "c2", "image": None}]}
    with pytest.raises(DataError, match=r"zero_stage 3.*'chat' \(first: sample c2\).*zero_stage 2"):
        check_modalities(rows, zero_stage=3)
    check_modalities(rows, zero_stage=2)  # ZeRO-2 keeps whole layers on every rank: no gathers to wait in
    check_modalities({"det": rows["det"]}, zero_stage=3)
    check_modalities({"chat": [{"id": "t", "image": None}]}, zero_stage=3)  # text only everywhere: no mixing


def test_collapse_image_runs():
    from rft.rollout.engine import collapse_image_runs

    assert collapse_image_runs([1, 9, 9, 9, 2, 9, 9, 3, 8, 8], {9, 8}) == [1, 9, 2, 9, 3, 8]
    assert collapse_image_runs([9, 9], {9}) == [9] and collapse_image_runs([], {9}) == []
    assert collapse_image_runs([1, 2, 2], {9}) == [1, 2, 2]  # other repeated tokens stay


def test_colocated_engine_collapses_expanded_image_prompts(monkeypatch, tmp_path):
    """TRL sends the trainer's token ids (each image already expanded to its N pads) plus the image;
    the engine rft hands it gives vLLM one pad per image, which vLLM expands to the same N."""
    import trl.generation.vllm_generation as generation
    from transformers import AutoProcessor

    from rft.models.tiny import build_tiny_vlm
    from rft.models.vision_tokens import placeholder_token_ids

    processor = AutoProcessor.from_pretrained(build_tiny_vlm("qwen2_5_vl", tmp_path / "m"))
    pad = processor.image_token_id
    seen = []

    class FakeLLM:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            seen.extend(prompts)
            return ["out"] * len(prompts)

        def reset_prefix_cache(self):
            return "reset"

    monkeypatch.setattr(generation, "LLM", FakeLLM, raising=False)
    with colocated_engine_options({"dtype": "float32"}, placeholder_token_ids(processor)):
        llm = generation.LLM(model="m")
    expanded = [1, 2, *[pad] * 16, 3]
    assert llm.generate([{"prompt_token_ids": expanded, "multi_modal_data": {"image": "img"}},
                         {"prompt_token_ids": [1, pad, pad]}], sampling_params=None, use_tqdm=False) == ["out", "out"]
    assert seen[0]["prompt_token_ids"] == [1, 2, pad, 3] and seen[0]["multi_modal_data"] == {"image": "img"}
    assert seen[1]["prompt_token_ids"] == [1, pad, pad]  # no image: left as is
    assert llm.reset_prefix_cache() == "reset" and llm.kwargs == {"dtype": "float32", "model": "m"}  # forwarded


def test_ban_in_logits_matches_vllm_logit_bias(tmp_path):
    """The trainer's log-probs with rft's hook equal the renormalised distribution vLLM samples from
    with a -100 logit bias on the banned tokens (its processed log-probs), and gradients still flow."""
    import torch
    from transformers import AutoModelForImageTextToText

    from rft.models.tiny import build_tiny_vlm
    from rft.models.vision_tokens import ban_in_logits

    model = AutoModelForImageTextToText.from_pretrained(build_tiny_vlm("qwen2_vl", tmp_path / "m"))
    ids = torch.tensor([[1, 2, 3, 4]])
    plain = model(input_ids=ids).logits.detach()
    banned = [5, 17]
    handle = ban_in_logits(model, banned)
    logits = model(input_ids=ids).logits
    assert torch.allclose(logits[..., banned], plain[..., banned] - 100.0)
    keep = [i for i in range(plain.shape[-1]) if i not in banned]
    expected = torch.log_softmax(plain[..., keep], dim=-1)  # sampling without the banned tokens
    assert torch.allclose(torch.log_softmax(logits, dim=-1)[..., keep], expected, atol=1e-5)
    torch.log_softmax(logits, dim=-1)[..., keep].sum().backward()
    assert model.get_output_embeddings().weight.grad is not None
    handle.remove()
    assert torch.allclose(model(input_ids=ids).logits, plain)


def test_weight_sync_also_resets_vllm_encoder_cache(monkeypatch, caplog):
    """TRL resets vLLM's prefix cache after each weight sync; rft's engine also resets the encoder
    cache, where vLLM keeps image features keyed by the image alone (stale after an update)."""
    import trl.generation.vllm_generation as generation

    calls = []

    class Engine:
        def reset_encoder_cache(self):
            calls.append("encoder")

    class FakeLLM:
        def __init__(self, **kwargs):
            self.llm_engine = Engine()

        def reset_prefix_cache(self):
            calls.append("prefix")
            return True

    monkeypatch.setattr(generation, "LLM", FakeLLM, raising=False)
    with colocated_engine_options({}, {9}):
        llm = generation.LLM(model="m")
    assert llm.reset_prefix_cache() is True and calls == ["prefix", "encoder"]
    assert llm.reset_prefix_cache() and llm.encoder_cache_resets == 2

    class OldLLM(FakeLLM):  # a vLLM without the method: warn once, keep going
        def __init__(self, **kwargs):
            self.llm_engine = object()

    monkeypatch.setattr(generation, "LLM", OldLLM, raising=False)
    with colocated_engine_options({}, {9}):
        old = generation.LLM(model="m")
    with caplog.at_level("WARNING"):
        assert old.reset_prefix_cache() and old.reset_prefix_cache()
    assert sum("reset_encoder_cache" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("size", [(640, 480), (97, 61), (1000, 90)])
def test_vllm_sees_as_many_image_tokens_as_the_trainer(family, size, tmp_path):
    """The trainer's processor carries the recipe's pixel budget; vLLM loads the checkpoint's processor
    and calls it with rft's ``mm_processor_kwargs`` (Qwen2-VL/2.5-VL) on the image rft pre-resized to
    the budget. Both must give the same image grid, hence the same number of image tokens."""
    from PIL import Image
    from transformers import AutoProcessor

    from rft.data.images import resize_to_budget
    from rft.models.load import set_pixel_budget
    from rft.models.tiny import build_tiny_vlm

    path = build_tiny_vlm(family, tmp_path / family, max_image_tokens=1024)  # the checkpoint's own budget is wider
    section = ModelSection(path=str(path), min_pixels=6272, max_pixels=50176)
    trainer = AutoProcessor.from_pretrained(path)
    set_pixel_budget(trainer, section.min_pixels, section.max_pixels)
    factor = trainer.image_processor.patch_size * trainer.image_processor.merge_size
    image = resize_to_budget(Image.new("RGB", size, "gray"), section.min_pixels, section.max_pixels, factor)
    vllm_side = AutoProcessor.from_pretrained(path).image_processor
    kwargs = engine_options(section, family).get("mm_processor_kwargs", {})
    seen_by_trainer = trainer.image_processor(images=[image], return_tensors="pt")["image_grid_thw"]
    seen_by_vllm = vllm_side(images=[image], return_tensors="pt", **kwargs)["image_grid_thw"]
    assert seen_by_trainer.tolist() == seen_by_vllm.tolist()
    assert seen_by_trainer.prod().item() // 4 <= section.max_pixels // factor**2  # within the budget
    if kwargs:  # with the processor kwargs even an image that was not pre-resized gets the trainer's grid
        raw = Image.new("RGB", size, "gray")
        assert (trainer.image_processor(images=[raw], return_tensors="pt")["image_grid_thw"].tolist()
                == vllm_side(images=[raw], return_tensors="pt", **kwargs)["image_grid_thw"].tolist()
                != vllm_side(images=[raw], return_tensors="pt")["image_grid_thw"].tolist() or size == (97, 61))


def test_server_client_also_resets_the_encoder_cache(caplog):
    from types import SimpleNamespace

    from rft.rollout.engine import reset_encoder_cache_on_server

    posted = []

    class Session:
        def __init__(self, status):
            self.status = status

        def post(self, url):
            posted.append(url)
            return SimpleNamespace(status_code=self.status, text="")

    def client(status):
        c = SimpleNamespace(base_url="http://h:8000", session=Session(status))
        c.reset_prefix_cache = lambda: c.session.post(f"{c.base_url}/reset_prefix_cache")
        reset_encoder_cache_on_server(c)
        return c

    ok = client(200)
    ok.reset_prefix_cache()
    assert posted == ["http://h:8000/reset_prefix_cache", "http://h:8000/reset_encoder_cache"]
    old_server = client(404)  # a vLLM without the endpoint: reported once, training goes on
    with caplog.at_level("WARNING"):
        old_server.reset_prefix_cache()
        old_server.reset_prefix_cache()
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "HTTP 404" in caplog.records[0].message and len(posted) == 6
