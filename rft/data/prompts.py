"""Prompt templates per task: Jinja2 files in ``rft/templates/<task>.jinja``, overridable.

A template sees ``query`` (the row's query), ``task``, ``family``, ``coord_format``, ``coords``
(how to write coordinates in that convention, ``rewards.contract.COORD_PHRASES``) and ``exemplars``
(a ``visual_prompt_detection`` row's example boxes written in that convention, :mod:`rft.data.exemplars`;
``[]`` for other rows), and nothing else: templates
render in Jinja's immutable sandbox with no globals, so a recipe's template cannot reach Python
objects (``cycler.__init__.__globals__``...) or run code. Undefined variables are errors, and
:func:`template_problems` finds the variables and unsafe attributes a template reaches for before
any data is read. The defaults ask for the family's native box format, ``[{"bbox_2d": [x1, y1, x2, y2],
"label": ...}]`` in the family's convention (:mod:`rft.families`: pixels of the image as the model sees
it, or 0..1000), "No Objects" when the object is absent, and think/answer tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rewards.contract import COORD_PHRASES
from rft.data.exemplars import exemplars_as_written
from rft.errors import RecipeError
from rft.families import family_of

Template = str | Path | jinja2.Template

TEMPLATE_VARIABLES = ("query", "task", "family", "coord_format", "coords", "exemplars")
"""The only names a prompt template sees."""

_ENV = ImmutableSandboxedEnvironment(
    loader=jinja2.PackageLoader("rft", "templates"), undefined=jinja2.StrictUndefined, autoescape=False,
)
_ENV.globals.clear()  # no range, dict, cycler, joiner, lipsum, namespace: only TEMPLATE_VARIABLES


def coord_format_for(model_type: str) -> str:
    """The box convention a model answers in, from its HF ``config.model_type`` (its family's,
    :mod:`rft.families`; unknown types get "norm1000"); a recipe's ``model.coord_format`` (or
    ``to_trl_rows(coord_format=...)``) overrides this."""
    return family_of(model_type).coord_format


def row_coord_format(row: Mapping[str, Any], family: str, coord_format: str | None = None) -> str:
    """The convention a row's prompt asks for: the row's own (a verbatim Visual-RFT problem),
    else ``coord_format``, else the family's."""
    return row["query"].get("coord_format") or coord_format or coord_format_for(family)


def _is_file(template: str | Path) -> bool:
    return isinstance(template, Path) or template.endswith(".jinja")


def _text(task: str, template: str | Path, field: str | None) -> str:
    try:
        return Path(template).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise RecipeError(f"{field or f'prompt template for {task}'}: cannot read {template} ({reason})") from None


def load_template(task: str, template: Template | None = None, field: str | None = None) -> jinja2.Template:
    """The template for ``task``: the default, a file (a ``Path`` or a string ending in ``.jinja``),
    or template text. ``field`` (the recipe field it came from) names it in error messages."""
    if isinstance(template, jinja2.Template):
        return template
    if template is None:
        name, text = f"{task}.jinja", None
    elif _is_file(template):
        name, text = field or str(template), _text(task, template, field)
    else:
        name, text = field or f"<{task} template>", template
    try:
        if text is None:
            return _ENV.get_template(name)
        return _ENV.template_class.from_code(_ENV, _ENV.compile(text, name, name), _ENV.make_globals(None), None)
    except jinja2.TemplateSyntaxError as exc:
        raise RecipeError(f"prompt template {name} line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound:
        raise RecipeError(f"no default prompt template for task {task!r}") from None


def template_problems(task: str, template: str | Path, field: str) -> list[str]:
    """What is wrong with a recipe's template, found without rendering it: syntax errors, names other
    than :data:`TEMPLATE_VARIABLES`, and attributes the sandbox refuses (``__class__``, ``_private``)."""
    try:
        text = _text(task, template, field) if _is_file(template) else template
        tree = _ENV.parse(text)
    except RecipeError as exc:
        return [str(exc)]
    except jinja2.TemplateSyntaxError as exc:
        return [f"{field}: line {exc.lineno}: {exc.message}"]
    problems = []
    unknown = sorted(jinja2.meta.find_undeclared_variables(tree) - set(TEMPLATE_VARIABLES))
    if unknown:
        problems.append(f"{field}: the template uses {', '.join(map(repr, unknown))}; a prompt template sees only "
                        f"{', '.join(TEMPLATE_VARIABLES)}")
    attributes = [n.attr for n in tree.find_all(jinja2.nodes.Getattr)]
    attributes += [n.arg.value for n in tree.find_all(jinja2.nodes.Getitem)
                   if isinstance(n.arg, jinja2.nodes.Const) and isinstance(n.arg.value, str)]
    unsafe = sorted({a for a in attributes if a.startswith("_")})
    if unsafe:
        problems.append(f"{field}: the template reaches for {', '.join(map(repr, unsafe))}; templates may not use "
                        "attributes that start with an underscore")
    return problems


def render_prompt(
    row: Mapping[str, Any], family: str, template: Template | None = None, coord_format: str | None = None,
    model_image_size: Sequence[int] | None = None,
) -> str:
    """The user text of a row's prompt (see :func:`load_template` for ``template`` and
    :func:`row_coord_format` for the coordinate convention it asks for). ``model_image_size`` is the
    size the model sees the image at, which exemplars written in ``pixels`` refer to (None: the row's
    ``image_size``, the image unresized)."""
    compiled = load_template(row["task"], template)
    fmt = row_coord_format(row, family, coord_format)
    if fmt not in COORD_PHRASES:
        raise RecipeError(f"coord_format must be one of {sorted(COORD_PHRASES)}, got {fmt!r}")
    try:
        text = compiled.render(
            query=row["query"], task=row["task"], family=family, coord_format=fmt, coords=COORD_PHRASES[fmt],
            exemplars=_exemplars(row, fmt, model_image_size),
        )
    except jinja2.UndefinedError as exc:
        raise RecipeError(f"prompt template {compiled.name} for row {row.get('id')}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise RecipeError(f"prompt template {compiled.name} for row {row.get('id')}: refused by the sandbox ({exc}); "
                          f"a template sees only {', '.join(TEMPLATE_VARIABLES)}") from None
    return text.strip()


def _exemplars(row: Mapping[str, Any], fmt: str, model_image_size: Sequence[int] | None) -> list[list[float | int]]:
    if not row["query"].get("exemplars"):
        return []
    return exemplars_as_written(row["query"], row["image_size"], fmt, model_image_size)
