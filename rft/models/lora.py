"""LoRA through peft, with the vision tower left out unless the recipe asks for it."""

from __future__ import annotations

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
