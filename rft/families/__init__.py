"""Model families: one module each holds everything rft knows of a family (:class:`~rft.families.base.Family`);
the rest of rft asks :func:`family_of` and names no family.

==============  ===============================================  =====================================
family          module                                           box convention
==============  ===============================================  =====================================
Qwen2-VL        :mod:`rft.families.qwen2_vl`                     ``norm1000``
Qwen2.5-VL      :mod:`rft.families.qwen2_5_vl`                   ``pixels`` (of the resized image)
Qwen3-VL        :mod:`rft.families.qwen3_vl`                     ``norm1000``
==============  ===============================================  =====================================

Add a family: a module with a ``FAMILY`` record, listed in :data:`FAMILIES`.
"""

from __future__ import annotations

from rft.families import qwen2_5_vl, qwen2_vl, qwen3_vl
from rft.families.base import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Family, TinySpec, patch_grid_size

FAMILIES: tuple[Family, ...] = (qwen2_vl.FAMILY, qwen2_5_vl.FAMILY, qwen3_vl.FAMILY)
"""Every family rft knows, in the order recipes list them."""
NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
TINY_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES if f.tiny is not None)
"""The families :mod:`rft.models.tiny` builds a tiny model of (``model.tiny.family``)."""
DEFAULT_TINY: str = qwen2_5_vl.FAMILY.name
"""``model.tiny.family`` when a recipe names none."""

GENERIC = Family(name="generic", coord_format="norm1000", factor=28, vision_tokens=(), parts={})
"""What rft assumes of a model of no known family: 0..1000 boxes, vision tokens from its processor."""

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_TINY", "DEFAULT_MIN_PIXELS", "FAMILIES", "GENERIC", "NAMES", "TINY_NAMES", "Family",
           "TinySpec", "family_of", "family_named_in", "patch_grid_size"]


def family_of(model_type: str | None) -> Family:
    """The family of a ``config.model_type`` (or a config, or a model with one), :data:`GENERIC` for others."""
    if model_type is not None and not isinstance(model_type, str):
        config = getattr(model_type, "config", model_type)
        model_type = getattr(config, "model_type", None)
    return next((f for f in FAMILIES if model_type is not None and f.recognises(model_type)), GENERIC)


def family_named_in(name: str) -> Family | None:
    """The family a model's name (hub id or folder) names, when no ``config.json`` says (None: none)."""
    return next((f for f in FAMILIES if f.named_in(name)), None)
