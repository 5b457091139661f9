"""Reading, overriding, validating and writing recipes.

Recipes are data: YAML is read with ``safe_load`` only, and nothing in a recipe executes code
except the reward plugin files it names explicitly.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from rft.errors import RecipeError
from rft.recipe.combinations import combination_problems
from rft.recipe.schema import MAX_BATCH, MAX_STEPS, Recipe

# GRPOConfig fields that other recipe sections own.
OWNED_ELSEWHERE = {
    "output_dir": "output.dir", "seed": "seed", "report_to": "output.report_to", "reward_weights": "rewards[].weight",
    "use_vllm": "rollout.backend", "vllm_mode": "rollout.vllm_mode", "deepspeed": "distributed.zero_stage",
    "vllm_gpu_memory_utilization": "rollout.gpu_memory_utilization", "vllm_enable_sleep_mode": "rollout.enable_sleep_mode",
    "vllm_tensor_parallel_size": "rollout.tensor_parallel_size", "vllm_server_host": "rollout.server_host",
    "vllm_server_port": "rollout.server_port", "vllm_server_base_url": "rollout.server_base_url",
    "save_steps": "output.save_steps", "save_total_limit": "output.save_total_limit",
}

_INDEX = re.compile(r"^(\w+)\[(\d+)\]$")

# GRPOConfig fields whose values TRL and torch accept but cannot train with (or only after memory has
# grown): the accepted range (low exclusive when it is 0, else inclusive) and why. Floats must be finite.
GRPO_RANGES: dict[str, tuple[float, float, str]] = {
    "per_device_train_batch_size": (1, MAX_BATCH, "completions per process per step"),
    "per_device_eval_batch_size": (1, MAX_BATCH, ""),
    "gradient_accumulation_steps": (1, MAX_BATCH, ""),
    "steps_per_generation": (1, MAX_BATCH, ""),
    "num_generations": (2, MAX_BATCH, "GRPO compares several completions of each prompt"),
    "num_iterations": (1, 10_000, ""),
    "max_completion_length": (1, 1_000_000, "new tokens per completion"),
    "max_steps": (1, MAX_STEPS, "or -1: as many as num_train_epochs take"),
    "num_train_epochs": (0, 1e6, ""),
    "learning_rate": (0, 1e3, ""),
    "temperature": (0, 100, ""),
    "beta": (0, 1e6, ""),
    "logging_steps": (0, MAX_STEPS, ""),
}


def yaml_path(loc: tuple[Any, ...]) -> str:
    """``("data", "datasets", 1, "weight")`` -> ``data.datasets[1].weight``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[DatasetSpec] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_submodel, typing.get_args(annotation)) if m is not None), None)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (to list its allowed keys)."""
    model: type[BaseModel] | None = Recipe
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _submodel(field.annotation) if field else None
    return model


def _explain(error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    where = yaml_path(loc)
    if error["type"] == "extra_forbidden":
        model = _model_at(loc)
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}: unknown key{hint}; allowed keys: {', '.join(allowed)}"
    message = error["msg"].removeprefix("Value error, ")
    if not where:  # a check across sections: its message names the fields
        return message
    given = error.get("input")
    shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
    return f"{where}: {message}{shown}"


@lru_cache(maxsize=1)
def grpo_field_types() -> dict[str, Any]:
    """GRPOConfig's fields and their types, from the installed TRL."""
    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(GRPOConfig) if f.init}


def check_grpo(grpo: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``grpo:`` coerced to the installed TRL's GRPOConfig field types, and the problems found.

    Coercion matters: YAML reads ``1e-6`` as a string; GRPOConfig wants a float.
    """
    fields = grpo_field_types()
    coerced, problems = {}, []
    for key, value in grpo.items():
        if key in OWNED_ELSEWHERE:
            problems.append(f"grpo.{key}: set this through {OWNED_ELSEWHERE[key]} instead")
        elif key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            problems.append(f"grpo.{key}: not a GRPOConfig field of the installed TRL{hint}")
        else:
            try:
                coerced[key] = TypeAdapter(fields[key]).validate_python(value)
            except ValidationError as exc:  # a number out of the type's range is reported with the accepted one
                problems.append(_out_of_range(key, value) or
                                f"grpo.{key}: {exc.errors()[0]['msg']} (got {value!r}, expected {fields[key]})")
                continue
            except Exception:  # a type pydantic cannot check: TRL will when the config is built
                coerced[key] = value
            problem = _out_of_range(key, coerced[key])
            if problem:
                problems.append(problem)
    return coerced, problems


def _out_of_range(key: str, value: Any) -> str | None:
    """``grpo.<key>: ...`` when ``value`` is outside :data:`GRPO_RANGES` or a non-finite float, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"grpo.{key}: must be a finite number (got {value!r})"
    if key not in GRPO_RANGES or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    low, high, why = GRPO_RANGES[key]
    exclusive = low == 0 and key != "beta"
    if (low < value if exclusive else low <= value) and value <= high or (key == "max_steps" and value == -1):
        return None
    accepted = f"above 0 and at most {high:g}" if exclusive else f"from {low:g} to {high:g}"
    return f"grpo.{key}: must be {accepted}{f' ({why})' if why else ''} (got {value!r})"


def validate(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """A :class:`Recipe` from plain data, or a :class:`RecipeError` listing every problem by YAML path."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping of sections, got {type(data).__name__}")
    problems: list[str] = []
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = [_explain(e) for e in exc.errors()]
        recipe = None
    grpo, grpo_problems = check_grpo(data["grpo"]) if isinstance(data.get("grpo"), dict) else ({}, [])
    problems += grpo_problems
    if recipe is not None:
        problems += _template_problems(recipe)
    if not problems:
        recipe.grpo = grpo
        problems = combination_problems(recipe)
    if problems:
        raise RecipeError(f"{source}: invalid recipe\n  " + "\n  ".join(problems))
    return recipe


def _template_problems(recipe: Recipe) -> list[str]:
    """Every prompt template of a recipe checked in Jinja's sandbox before any data is read."""
    from rft.data.prompts import template_problems

    problems = [p for task, text in recipe.data.templates.items()
                for p in template_problems(task, text, f"data.templates.{task}")]
    for section, specs in (("data.datasets", recipe.data.datasets), ("eval.datasets", recipe.eval.datasets),
                           ("eval.retention", recipe.eval.retention)):
        problems += [p for i, spec in enumerate(specs) if spec.template
                     for p in template_problems(spec.task or "classification", spec.template, f"{section}[{i}].template")]
    return problems


def _parse_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for token in key.split("."):
        match = _INDEX.match(token)
        if match:
            parts += [match.group(1), int(match.group(2))]
        elif token:
            parts.append(token)
        else:
            raise RecipeError(f"--set {key}: empty key part")
    return parts


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b[0].c=value`` to ``data`` in place; the value is read as YAML (``2e-6``, ``true``, ``[1, 2]``)."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment}: expected KEY=VALUE, e.g. grpo.learning_rate=2e-6")
    key, raw = assignment.split("=", 1)
    parts = _parse_key(key.strip())
    value = yaml.safe_load(raw) if raw.strip() else ""
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise RecipeError(f"--set {key}: {yaml_path(tuple(parts[: i + 1]))} does not exist")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise RecipeError(f"--set {key}: {yaml_path(tuple(parts[:i]))} is not a mapping")
        node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise RecipeError(f"--set {key}: {yaml_path(tuple(parts))} does not exist")
    elif not isinstance(node, dict):
        raise RecipeError(f"--set {key}: {yaml_path(tuple(parts[:-1]))} is not a mapping")
    node[last] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The recipe file as plain data (``yaml.safe_load``), with YAML errors naming file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the recipe as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(f"{where}: malformed YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: malformed YAML: {exc}") from None
    return data if data is not None else {}


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override (``--set``) and validate a recipe file."""
    data = read_yaml(path)
    for assignment in overrides:
        apply_override(data, assignment)
    return validate(data, str(path))


def dump_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write the fully resolved recipe (every default filled in) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    return path
