"""rft.compat: the private parts of TRL, transformers and vLLM that rft relies on, checked against the
real classes of the installed versions (vLLM's only where vLLM is installed: the GPU machine)."""

import inspect

import pytest
import torch
from transformers import BertConfig, BertModel, Trainer
from trl import GRPOTrainer
from trl.generation.vllm_client import VLLMClient
from trl.generation.vllm_generation import VLLMGeneration

from rft.compat import transformers as compat_transformers
from rft.compat import trl as compat_trl
from rft.compat import vllm as compat_vllm
from rft.errors import RftError


def test_grpo_trainer_has_what_rft_hooks():
    assert compat_trl.hook_problems(GRPOTrainer) == [] and compat_trl.attribute_problems(GRPOTrainer) == []

    class Moved(GRPOTrainer):
        def __init__(self):  # sets none of the attributes rft reads
            pass

    assert compat_trl.attribute_problems(Moved)[0] == "GRPOTrainer.__init__ no longer sets self._metrics"


def test_vllm_generation_builds_its_engine_through_the_global_rft_replaces(monkeypatch):
    # TRL's VLLMGeneration calls the module global LLM (what compat.trl.engine_built_by replaces) ...
    methods = [f for _, f in inspect.getmembers(VLLMGeneration, inspect.isfunction)]
    assert any("LLM" in f.__code__.co_names for f in methods)
    # ... and engine_built_by replaces it for the span of the block, then puts TRL's back
    import trl.generation.vllm_generation as generation

    monkeypatch.setattr(generation, "LLM", lambda **kw: ("trl", kw), raising=False)
    original = generation.LLM
    with compat_trl.engine_built_by(lambda llm: lambda **kw: ("rft", llm(**kw))) as replaced:
        assert replaced and generation.LLM(model="m") == ("rft", ("trl", {"model": "m"}))
    assert generation.LLM is original
    # VLLMGeneration keeps its client where compat.trl.server_client looks for it
    assert "self.vllm_client = VLLMClient(" in inspect.getsource(VLLMGeneration)


def test_vllm_client_keeps_what_rft_uses():
    source = inspect.getsource(VLLMClient.__init__)
    assert "self.session = requests.Session()" in source and "self.base_url = f" in source
    assert callable(VLLMClient.reset_prefix_cache)


def test_a_real_vllm_client_has_what_rft_uses(monkeypatch):
    pytest.importorskip("vllm", reason="TRL's VLLMClient refuses to build without vLLM (the GPU machine has it)")
    requests = pytest.importorskip("requests")
    monkeypatch.setattr(VLLMClient, "check_server", lambda self, timeout: None)  # no server here
    monkeypatch.setattr(VLLMClient, "_get", lambda self, url: {"data": [{"id": "m"}]})
    client = VLLMClient(base_url="http://h:8000")
    assert isinstance(client.session, requests.Session) and callable(client.reset_prefix_cache)
    posted = []
    monkeypatch.setattr(client.session, "post", lambda url: posted.append(url) or "response")
    assert compat_trl.post_to_server(client, compat_vllm.ENCODER_CACHE_ENDPOINT) == "response"
    assert posted == ["http://h:8000/reset_encoder_cache"]


def test_trainer_has_what_rft_overrides():
    assert compat_transformers.trainer_problems(Trainer) == []
    compat_transformers.check_trainer_internals()

    class Changed(Trainer):
        def _save_checkpoint(self, model, trial, metrics):
            pass

    problems = compat_transformers.trainer_problems(Changed)
    assert problems[0] == ("Trainer._save_checkpoint: expected parameters ['self', 'model', 'trial'], found "
                           "['self', 'model', 'trial', 'metrics']")
    assert "Trainer._save_checkpoint no longer calls self._get_output_dir(trial=trial)" in problems
    with pytest.raises(RftError, match="install transformers>=5.17,<5.18"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(compat_transformers, "trainer_problems", lambda: problems)
            compat_transformers.check_trainer_internals()


def test_name_or_path_and_attention_implementation_on_a_real_model(tmp_path):
    config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, vocab_size=16)
    model = BertModel._from_config(config, attn_implementation="eager", dtype=torch.float32)
    compat_transformers.set_name_or_path(model, "/runs/x/warmed_up")
    assert model.name_or_path == model.config.name_or_path == "/runs/x/warmed_up"
    assert compat_transformers.attention_implementation(model.config) == "eager"


def test_supported_versions_are_the_installed_ones():
    import transformers
    import trl
    from packaging.version import Version

    for module, (low, high) in ((transformers, compat_transformers.SUPPORTED), (trl, compat_trl.SUPPORTED)):
        assert Version(low) <= Version(module.__version__) < Version(high)
    assert compat_vllm.version_problem("0.25.0") is None
    assert "vLLM >=0.22,<0.32; vLLM 0.40.0 is installed" in compat_vllm.version_problem("0.40.0")


def test_encoder_cache_reset_found_on_the_engine_or_its_llm_engine():
    from types import SimpleNamespace

    own = SimpleNamespace(reset_encoder_cache=lambda: "own")
    inner = SimpleNamespace(llm_engine=SimpleNamespace(reset_encoder_cache=lambda: "engine"))
    assert compat_vllm.encoder_cache_reset(own)() == "own" and compat_vllm.encoder_cache_reset(inner)() == "engine"
    assert compat_vllm.encoder_cache_reset(SimpleNamespace()) is None


def test_the_installed_vllm_has_what_rft_uses():
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed here (the GPU machine has it)")
    assert compat_vllm.version_problem() is None
    from vllm.v1.engine.llm_engine import LLMEngine

    assert callable(getattr(vllm.LLM, "reset_encoder_cache", None)) or callable(getattr(LLMEngine, "reset_encoder_cache", None))
    import vllm.envs

    assert compat_vllm.DEV_MODE in vllm.envs.environment_variables


def test_accelerate_state_is_where_rft_looks():
    from accelerate import PartialState

    from rft.compat import accelerate as compat_accelerate

    assert isinstance(PartialState._shared_state, dict)
    assert "self._shared_state" in inspect.getsource(PartialState.initialized.fget)  # what state_exists reads
    assert compat_accelerate.state_exists() == (PartialState._shared_state != {})
