"""Prompt templates: the family's box convention, verbatim Visual-RFT problems, overrides, errors."""

from __future__ import annotations

import pytest

from rft.data.prompts import coord_format_for, load_template, render_prompt
from rft.families import family_of
from rft.errors import RecipeError

THINK = "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
DET = {"id": "d", "task": "detection", "query": {"category": "traffic light"}}


def test_coord_format_for():
    assert {f: family_of(f).coord_format for f in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")} == {
        "qwen2_vl": "norm1000", "qwen2_5_vl": "pixels", "qwen3_vl": "norm1000"}
    assert [coord_format_for(t) for t in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "llava")] == [
        "norm1000", "pixels", "norm1000", "norm1000", "norm1000"]


def test_detection_asks_for_the_family_format():
    pixels = render_prompt(DET, "qwen2_5_vl")
    assert '[{"bbox_2d": [x1, y1, x2, y2], "label": "traffic light"}]' in pixels
    assert "pixel coordinates" in pixels and "0 to 1000" not in pixels
    assert "answer No Objects" in pixels and pixels.endswith(THINK)
    for family in ("qwen2_vl", "qwen3_vl"):
        norm = render_prompt(DET, family)
        assert "normalized to integers from 0 to 1000" in norm and '"bbox_2d"' in norm and norm.endswith(THINK)
    assert "from 0 to 1" in render_prompt(DET, "qwen2_5_vl", coord_format="norm1")  # explicit override
    own = {**DET, "query": {"problem": "Find the dogs, 0..1000.", "coord_format": "norm1000"}}
    assert render_prompt(own, "qwen2_5_vl") == "Find the dogs, 0..1000."  # Visual-RFT problem, verbatim


def test_other_tasks():
    grounding = render_prompt({"id": "g", "task": "grounding", "query": {"phrase": "the red car"}}, "qwen2_5_vl")
    assert grounding.startswith("Locate the red car") and "No Objects" in grounding and grounding.endswith(THINK)
    cls = render_prompt({"id": "c", "task": "classification", "query": {"classes": ["daisy", "rose"]}}, "qwen2_vl")
    assert "Choose one of: daisy, rose." in cls and cls.endswith(THINK)
    open_set = render_prompt({"id": "c", "task": "classification", "query": {"classes": None}}, "qwen2_vl")
    assert "Choose" not in open_set
    tags = render_prompt({"id": "t", "task": "tagging", "query": {}}, "qwen3_vl")
    assert "JSON list" in tags and tags.endswith(THINK)


def test_overrides_by_text_and_file(tmp_path):
    assert render_prompt(DET, "qwen3_vl", "Boxes of {{ query.category }} ({{ coord_format }}).") == \
        "Boxes of traffic light (norm1000)."
    path = tmp_path / "det.jinja"
    path.write_text("{{ query.category | upper }} {{ coords }}\n")
    assert render_prompt(DET, "qwen2_5_vl", str(path)) == "TRAFFIC LIGHT in pixel coordinates of the image"
    assert render_prompt(DET, "qwen2_5_vl", path) == render_prompt(DET, "qwen2_5_vl", load_template("detection", path))


def test_template_errors():
    with pytest.raises(RecipeError, match=r"<detection template> for row d: 'dict object' has no attribute 'phrase'"):
        render_prompt(DET, "qwen2_vl", "Find {{ query.phrase }}")
    with pytest.raises(RecipeError, match=r"prompt template <detection template> line 2: Encountered unknown tag 'endif'"):
        render_prompt(DET, "qwen2_vl", "ok\n{{ query.category }}{% endif %}")
    with pytest.raises(RecipeError, match=r"prompt template for detection: cannot read missing.jinja"):
        render_prompt(DET, "qwen2_vl", "missing.jinja")
    with pytest.raises(RecipeError, match="coord_format must be one of"):
        render_prompt(DET, "qwen2_vl", coord_format="xywh")
