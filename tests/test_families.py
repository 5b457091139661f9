"""Model families: each is one module under rft/families/, and nothing else in rft or rewards names one."""

import importlib
import re
from pathlib import Path

import pytest
from transformers import AutoConfig

from rewards.contract import COORD_FORMATS
from rft.families import FAMILIES, GENERIC, TINY_NAMES, family_named_in, family_of

ROOT = Path(__file__).resolve().parents[1]
FAMILY_NAME = re.compile(r"[qQ]wen[23](_5)?_?[vV][lL]")
"""How code names a family (a model_type or a transformers class); prose ("Qwen2.5-VL") is not code."""


def test_no_module_outside_the_family_modules_names_a_family():
    sources = [p for folder in ("rft", "rewards") for p in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 50
    offenders = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in sources if "families" not in p.parts
                 for n, line in enumerate(p.read_text().splitlines(), 1) if FAMILY_NAME.search(line)]
    assert offenders == []


def test_the_grep_finds_family_names():
    assert all(FAMILY_NAME.search(s) for s in ("qwen2_vl", "qwen2_5_vl", "Qwen3VLProcessor", "Qwen2_5_VLModel"))
    assert not any(FAMILY_NAME.search(s) for s in ("Qwen2.5-VL", "Qwen2-VL", "Qwen-VL"))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_is_recognised_from_its_config(family):
    for model_type in (family.name, *family.model_types):
        assert family_of(AutoConfig.for_model(model_type)) is family
        assert family_of(model_type) is family
    assert family.coord_format in COORD_FORMATS
    assert family_of("llava") is GENERIC and family_of(None) is GENERIC


def test_family_named_in_a_model_name():
    assert family_named_in("Qwen/Qwen2.5-VL-3B-Instruct").coord_format == "pixels"
    assert [family_named_in(n).coord_format for n in ("Qwen/Qwen2-VL-2B", "qwen3-vl-8b")] == ["norm1000", "norm1000"]
    assert family_named_in("Qwen/Qwen2-VL-2B") is not family_named_in("qwen3-vl-8b")
    assert family_named_in("llava-1.5") is None


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_vision_attention_classes_exist(family):
    # the batched vision attention replaces these classes' forward (equal results: tests/test_speed.py)
    for qualified in family.vision_attention:
        module, name = qualified.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        assert callable(cls.forward) and hasattr(cls, "__init__")
    assert (family.vision_attention_forward is None) == (not family.vision_attention)


def test_every_family_builds_a_tiny_model():
    assert TINY_NAMES == tuple(f.name for f in FAMILIES)  # each builds (tests/test_tiny_models.py, test_family_*.py)
    assert len(FAMILIES) >= 3 and all(f.name in TINY_NAMES for f in FAMILIES)
