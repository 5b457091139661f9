"""LoRA through peft, with the vision tower left out unless the recipe asks for it, and the record of
the base an adapter was trained on (name and weight fingerprint) that ``rft eval`` / ``rft export`` check."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from rft.models.parts import part_of
from rft.recipe.schema import Lora, PartSettings


def lora_targets(model: nn.Module, lora: Lora) -> list[str]:
    """Full names of the Linear modules that get adapters."""
    parts = {"language", "vision"} if lora.include_vision else {"language"}
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or part_of(name) not in parts or name.endswith("lm_head"):
            continue
        if lora.target_modules == "all-linear" or name.rsplit(".", 1)[-1] in lora.target_modules:
            names.append(name)
    if not names:
        raise ValueError(f"model.lora.target_modules {lora.target_modules} matches no Linear layer of the model")
    if lora.include_vision and not any(part_of(n) == "vision" for n in names):
        layers = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear) and part_of(n) == "vision"})
        raise ValueError(f"model.lora.include_vision: target_modules {lora.target_modules} match no Linear layer of the "
                         f"vision tower (its layers: {', '.join(layers)}); add them to target_modules, or use all-linear")
    return names


def projector_modules(model: nn.Module) -> list[str]:
    """Top-level projector modules (trained in full next to the adapters when not frozen)."""
    names = [n for n, _ in model.named_modules() if n and part_of(n) == "projector"]
    return [n for n in names if not any(n.startswith(o + ".") for o in names)]


def apply_lora(model: nn.Module, lora: Lora, freeze: PartSettings) -> PeftModel:
    """Wrap ``model`` with LoRA adapters; base weights are frozen, an unfrozen projector trains in full."""
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora_targets(model, lora),
        modules_to_save=None if freeze.projector else projector_modules(model) or None, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


# ---------------------------------------------------------------- the base an adapter was trained on

BASE_RECORD = "rft_base.json"
"""Written next to every LoRA adapter rft saves: the base model's name and a weight fingerprint."""

_VALUES_PER_TENSOR = 8


def weight_fingerprint(model: nn.Module) -> dict[str, list]:
    """Per weight of ``model`` (a plain model, not a PEFT wrapper): its shape and a few values at fixed
    positions. The same weights give the same fingerprint; another model of the same shape does not."""
    out = {}
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        if flat.numel() == 0:  # a ZeRO-3 placeholder
            continue
        # float32 linspace can round the last index up past the end (e.g. 151,936 x 128 values): clamped,
        # which leaves every fingerprint that did not fail unchanged
        index = torch.linspace(0, flat.numel() - 1, _VALUES_PER_TENSOR).long().clamp_(max=flat.numel() - 1).unique()
        out[name] = [list(tensor.shape), flat[index].float().cpu().tolist()]
    return out


def base_record(model: nn.Module) -> dict:
    """What :data:`BASE_RECORD` holds for ``model`` as an adapter's base."""
    return {"base_model_name_or_path": str(getattr(model, "name_or_path", "")), "dtype": str(model.dtype),
            "fingerprint": weight_fingerprint(model)}


def fingerprint_difference(recorded: dict, record_dtype: str, model: nn.Module) -> str | None:
    """How ``model``'s weights differ from a recorded fingerprint, or None when they match (exactly in the
    dtype they were recorded in, within that of bfloat16 otherwise)."""
    exact = record_dtype == str(model.dtype)
    current = weight_fingerprint(model)
    for name, (shape, values) in recorded.items():
        if name not in current:
            return f"it has no weight {name}"
        now_shape, now_values = current[name]
        if now_shape != shape:
            return f"{name} is {now_shape}, the adapter's base had {shape}"
        close = (torch.equal if exact else lambda a, b: torch.allclose(a, b, rtol=1e-2, atol=1e-4))
        if len(now_values) != len(values) or not close(torch.tensor(now_values), torch.tensor(values)):
            return f"{name} holds other values"
    return None


def write_base_record(folder: str | Path, record: dict) -> None:
    (Path(folder) / BASE_RECORD).write_text(json.dumps(record))


def read_base_record(folder: str | Path) -> dict | None:
    path = Path(folder) / BASE_RECORD
    return json.loads(path.read_text()) if path.is_file() else None
