"""Prompt templates per task: Jinja2 files in ``rft/templates/<task>.jinja``, overridable.

A template sees ``query`` (the row's query), ``task``, ``family``, ``coord_format`` and ``coords``
(how to write coordinates in that convention, :data:`COORD_PHRASES`). Undefined variables are
errors. The defaults ask for the family's native box format, ``[{"bbox_2d": [x1, y1, x2, y2],
"label": ...}]`` (pixels of the image as the model sees it for Qwen2.5-VL, 0..1000 for
Qwen2-VL and Qwen3-VL), "No Objects" when the object is absent, and think/answer tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jinja2

from rft.errors import RecipeError

FAMILY_COORD_FORMAT = {"qwen2_vl": "norm1000", "qwen2_5_vl": "pixels", "qwen3_vl": "norm1000"}
MODEL_TYPE_FAMILY = {"qwen3_vl_moe": "qwen3_vl"}
"""HF ``model_type`` values that answer like a family of :data:`FAMILY_COORD_FORMAT`."""

COORD_PHRASES = {
    "pixels": "in pixel coordinates of the image",
    "norm1000": "with coordinates normalized to integers from 0 to 1000",
    "norm1": "with coordinates as fractions of the image width and height, from 0 to 1",
}

Template = str | Path | jinja2.Template

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("rft", "templates"), undefined=jinja2.StrictUndefined, autoescape=False,
)


def coord_format_for(model_type: str) -> str:
    """The box convention a model answers in, from its HF ``config.model_type`` ("qwen2_vl",
    "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"). Unknown types get "norm1000"; a recipe's
    ``model.coord_format`` (or ``to_trl_rows(coord_format=...)``) overrides this."""
    return FAMILY_COORD_FORMAT.get(MODEL_TYPE_FAMILY.get(model_type, model_type), "norm1000")


def row_coord_format(row: Mapping[str, Any], family: str, coord_format: str | None = None) -> str:
    """The convention a row's prompt asks for: the row's own (a verbatim Visual-RFT problem),
    else ``coord_format``, else the family's."""
    return row["query"].get("coord_format") or coord_format or coord_format_for(family)


def load_template(task: str, template: Template | None = None) -> jinja2.Template:
    """The template for ``task``: the default, a file (a ``Path`` or a string ending in ``.jinja``),
    or template text."""
    if isinstance(template, jinja2.Template):
        return template
    if template is None:
        name, text = f"{task}.jinja", None
    elif isinstance(template, Path) or template.endswith(".jinja"):
        name = str(template)
        try:
            text = Path(template).read_text(encoding="utf-8")
        except OSError as exc:
            raise RecipeError(f"prompt template for {task}: cannot read {template} ({exc.strerror})") from None
    else:
        name, text = f"<{task} template>", template
    try:
        if text is None:
            return _ENV.get_template(name)
        return _ENV.template_class.from_code(_ENV, _ENV.compile(text, name, name), _ENV.make_globals(None), None)
    except jinja2.TemplateSyntaxError as exc:
        raise RecipeError(f"prompt template {name} line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound:
        raise RecipeError(f"no default prompt template for task {task!r}") from None


def render_prompt(
    row: Mapping[str, Any], family: str, template: Template | None = None, coord_format: str | None = None,
) -> str:
    """The user text of a row's prompt (see :func:`load_template` for ``template`` and
    :func:`row_coord_format` for the coordinate convention it asks for)."""
    compiled = load_template(row["task"], template)
    fmt = row_coord_format(row, family, coord_format)
    if fmt not in COORD_PHRASES:
        raise RecipeError(f"coord_format must be one of {sorted(COORD_PHRASES)}, got {fmt!r}")
    try:
        text = compiled.render(
            query=row["query"], task=row["task"], family=family, coord_format=fmt, coords=COORD_PHRASES[fmt],
        )
    except jinja2.UndefinedError as exc:
        raise RecipeError(f"prompt template {compiled.name} for row {row.get('id')}: {exc.message}") from None
    return text.strip()
