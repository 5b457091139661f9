"""What a model does to images and boxes, read from its files without loading it (``rft data``).

A loaded model gives its family (``config.model_type``) and image factor (the processor's
``patch_size * merge_size``, :attr:`rft.models.load.LoadedModel.factor`). Here both come from the
model folder's ``config.json`` and ``preprocessor_config.json`` / ``processor_config.json`` (or the
Hugging Face cache for a hub id), else from the family's defaults and the model's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rft.data.prompts import coord_format_for
from rft.families import ASSUMED, family_named_in, family_of
from rft.recipe.schema import ModelSection


@dataclass(frozen=True)
class Geometry:
    """A model's family, the side multiple its processor resizes images to, and where both came from."""

    family: str
    factor: int
    source: str

    @property
    def coord_format(self) -> str:
        """The box convention the family answers in (before a recipe's ``model.coord_format``)."""
        return coord_format_for(self.family)


def _model_file(path: str, name: str) -> Path | None:
    folder = Path(path)
    if folder.is_dir():
        return folder / name if (folder / name).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, name)
    except Exception:  # not a valid hub id: nothing cached
        return None
    return Path(cached) if isinstance(cached, str) else None


def _read_json(file: Path | None) -> dict:
    if file is None:
        return {}
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _image_processor(path: str) -> tuple[dict, str | None]:
    """The image processor's settings: ``preprocessor_config.json``, or the ``image_processor`` part
    of ``processor_config.json`` (how transformers 5 saves processors)."""
    settings = _read_json(_model_file(path, "preprocessor_config.json"))
    if settings:
        return settings, "preprocessor_config.json"
    nested = _read_json(_model_file(path, "processor_config.json")).get("image_processor")
    return (nested, "processor_config.json") if isinstance(nested, dict) else ({}, None)


def model_geometry(section: ModelSection) -> Geometry:
    """The :class:`Geometry` of a recipe's model, without loading it."""
    if section.tiny is not None:
        family = section.tiny.family
        return Geometry(family, family_of(family).factor, "model.tiny")
    config = _read_json(_model_file(section.path, "config.json"))
    model_type = config.get("model_type")
    if isinstance(model_type, str):
        family, source = model_type, "config.json"
    else:
        named = family_named_in(section.path)
        source = "the model's name (no config.json found)" if named else f"nothing found: {ASSUMED} defaults"
        family = named.name if named else ASSUMED
    processor, file = _image_processor(section.path)
    patch, merge = processor.get("patch_size"), processor.get("merge_size")
    if isinstance(patch, int) and isinstance(merge, int):
        return Geometry(family, patch * merge, f"{source}, {file}")
    return Geometry(family, family_of(family).factor, source)
