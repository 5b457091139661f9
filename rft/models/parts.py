"""Model parts (vision tower, projector, language model): naming, freezing, learning-rate groups."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

from torch import nn

from rewards.contract import MODEL_PARTS as PARTS
from rft.families import FAMILIES

# Each family's module names, and the names other Hugging Face VLMs use for the same parts.
_GENERIC = {"vision": ("vision_tower", "vision_model", "vision_encoder", "image_encoder"),
            "projector": ("multi_modal_projector", "mm_projector", "connector", "visual_projection")}


def _names(part: str) -> re.Pattern[str]:
    names = dict.fromkeys([n for f in FAMILIES for n in f.parts.get(part, ())] + list(_GENERIC[part]))
    return re.compile(rf"(^|\.)({'|'.join(map(re.escape, names))})(\.|$)")


_PROJECTOR, _VISION = _names("projector"), _names("vision")


def part_of(name: str) -> str:
    """The part a parameter (or module) belongs to, from its qualified name."""
    if _PROJECTOR.search(name):
        return "projector"
    if _VISION.search(name):
        return "vision"
    return "language"


def parameters_by_part(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Named parameters grouped by part."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = defaultdict(list)
    for name, param in model.named_parameters():
        groups[part_of(name)].append((name, param))
    return {p: groups.get(p, []) for p in PARTS}


def freeze_parts(model: nn.Module, frozen: Iterable[str]) -> dict[str, int]:
    """Turn off gradients for the parts in ``frozen``; returns trainable parameter counts per part."""
    frozen = set(frozen)
    unknown = frozen - set(PARTS)
    if unknown:
        raise ValueError(f"unknown model parts {sorted(unknown)}; parts: {PARTS}")
    counts = {}
    for part, params in parameters_by_part(model).items():
        for _, param in params:
            if part in frozen:
                param.requires_grad_(False)
        counts[part] = sum(p.numel() for _, p in params if p.requires_grad)
    return counts


def parameter_groups(
    model: nn.Module, base_lr: float, part_lrs: dict[str, float | None], weight_decay: float,
    decay_names: Iterable[str],
) -> list[dict]:
    """Optimizer parameter groups: one per (part, decayed or not), each with its part's learning rate.

    ``decay_names`` are the parameters that get weight decay (the Trainer's ``get_decay_parameter_names``).
    """
    decay_names = set(decay_names)
    groups = []
    for part, params in parameters_by_part(model).items():
        lr = part_lrs.get(part) or base_lr
        trainable = [(n, p) for n, p in params if p.requires_grad]
        for decayed, wd in ((True, weight_decay), (False, 0.0)):
            chunk = [p for n, p in trainable if (n in decay_names) == decayed]
            if chunk:
                groups.append({"params": chunk, "lr": lr, "weight_decay": wd, "part": part})
    return groups


def describe_groups(optimizer) -> list[dict]:
    """Each parameter group of ``optimizer`` (a torch optimizer or the sharded one DeepSpeed wraps around
    it): its part, learning rate as created (before any schedule), weight decay, and how many parameter
    values this process holds for it (its shard under ZeRO)."""
    from rft.zero import zero3_group_sizes

    sizes = zero3_group_sizes(optimizer) or [sum(p.numel() for p in g["params"]) for g in optimizer.param_groups]
    return [{"part": g.get("part"), "lr": g.get("initial_lr", g["lr"]), "weight_decay": g.get("weight_decay"), "values": n}
            for g, n in zip(optimizer.param_groups, sizes)]
