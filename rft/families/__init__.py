"""Model families: one module each holds everything rft knows of a family (its ``FAMILY``, a
:class:`~rft.families.base.Family`); the rest of rft asks :func:`family_of` and names no family.

Add a family: a module in this folder with a ``FAMILY`` record (found here by itself), its tests, and
its row in the README's model table.
"""

from __future__ import annotations

import importlib
import pkgutil

from rft.families.base import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Family, TinySpec, patch_grid_size


def _discover() -> tuple[Family, ...]:
    modules = (importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__))
    return tuple(sorted((m.FAMILY for m in modules if isinstance(getattr(m, "FAMILY", None), Family)),
                        key=lambda f: f.name))


FAMILIES: tuple[Family, ...] = _discover()
"""Every family rft knows (each module of this folder with a ``FAMILY``), by name."""
TINY_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES if f.tiny is not None)
"""The families :mod:`rft.models.tiny` builds a tiny model of (``model.tiny.family``)."""
DEFAULT_TINY = "qwen2_5_vl"
"""``model.tiny.family`` when a recipe names none."""
ASSUMED = "qwen2_vl"
"""The family ``rft data`` assumes of a model whose files and name say nothing."""

GENERIC = Family(name="generic", coord_format="norm1000", factor=28, vision_tokens=(), parts={})
"""What rft assumes of a model of no known family: 0..1000 boxes, vision tokens from its processor."""

__all__ = ["ASSUMED", "DEFAULT_MAX_PIXELS", "DEFAULT_MIN_PIXELS", "DEFAULT_TINY", "FAMILIES", "GENERIC", "TINY_NAMES",
           "Family", "TinySpec", "family_named_in", "family_of", "patch_grid_size"]


def family_of(model_type: str | None) -> Family:
    """The family of a ``config.model_type`` (or a config, or a model with one), :data:`GENERIC` for others."""
    if model_type is not None and not isinstance(model_type, str):
        config = getattr(model_type, "config", model_type)
        model_type = getattr(config, "model_type", None)
    return next((f for f in FAMILIES if model_type is not None and f.recognises(model_type)), GENERIC)


def family_named_in(name: str) -> Family | None:
    """The family a model's name (hub id or folder) names, when no ``config.json`` says (None: none)."""
    return next((f for f in FAMILIES if f.named_in(name)), None)
