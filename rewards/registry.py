"""The reward plugin registry: ``register``, ``get``, ``available``.

A reward is a TRL reward function ``fn(completions, *, <options>, **columns) -> list[float | None]``.
Its keyword-only parameters with defaults are its options, set by ``get(spec, **options)``
(from a recipe's ``kwargs``); everything else TRL passes (dataset columns, ``prompts``,
``trainer_state`` ...) arrives in ``**columns``.

``spec`` is a registered name, ``"package.module:function"`` or ``"path/to/file.py:function"``;
the function a module or file spec names must be a reward (registered, or defined there with the
reward signature :func:`is_reward_function`), never any other callable (``os:system``). Naming a
file or module imports it, which runs its code. Third-party packages register through the
entry-point group ``rft.rewards``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

ENTRY_POINT_GROUP = "rft.rewards"

RewardFn = Callable[..., list]

_REGISTRY: dict[str, RewardFn] = {}
_entry_points_loaded = False


class RewardSpecError(ValueError):
    """A reward spec or option that cannot be resolved; the message says what is available."""


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: register a reward function under ``name``."""

    def decorator(fn: RewardFn) -> RewardFn:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not fn and _qualname(existing) != _qualname(fn):
            raise RewardSpecError(f"reward {name!r} is already registered by {_qualname(existing)}")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            try:
                _REGISTRY[ep.name] = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the others
                raise RewardSpecError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc


def available() -> list[str]:
    """Names of all registered rewards, built-in and from entry points."""
    _load_entry_points()
    return sorted(_REGISTRY)


def options(fn: RewardFn) -> dict[str, Any]:
    """The options of a reward function (keyword-only parameters with defaults) and their defaults."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}


def is_reward_function(fn: Any) -> bool:
    """Whether ``fn`` has the reward signature: a Python function taking ``completions`` and ``**columns``."""
    if not inspect.isfunction(fn):
        return False
    params = inspect.signature(fn).parameters.values()
    takes_completions = any(p.name == "completions" and p.kind is not p.POSITIONAL_ONLY for p in params)
    return takes_completions and any(p.kind is p.VAR_KEYWORD for p in params)


def _load_file(path: str, attr: str, spec: str) -> RewardFn:
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise RewardSpecError(f"reward file not found: {path} (from reward spec {spec!r})")
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    module_spec = importlib.util.spec_from_file_location(f"rft_user_rewards.{file.stem}_{digest}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise RewardSpecError(f"reward file {path} line {exc.lineno}: {exc.msg} (from reward spec {spec!r})") from None
    except Exception as exc:
        frame = next((f for f in reversed(traceback.extract_tb(exc.__traceback__)) if f.filename == str(file)), None)
        where = f" line {frame.lineno}" if frame else ""
        raise RewardSpecError(f"reward file {path}{where}: importing it raised {type(exc).__name__}: {exc} "
                              f"(from reward spec {spec!r})") from None
    return _attribute(module, attr, spec)


def _attribute(module: Any, attr: str, spec: str) -> RewardFn:
    fn = getattr(module, attr, None)
    rewards_there = sorted(n for n, v in vars(module).items() if _reward_of(v, module) and not n.startswith("_"))
    if fn is None:
        raise RewardSpecError(f"{spec!r}: no function {attr!r} in {module.__name__}; rewards there: {rewards_there}")
    if not _reward_of(fn, module):
        raise RewardSpecError(
            f"{spec!r}: {attr} in {module.__name__} is not a reward function (a reward is a Python function "
            f"fn(completions, **columns) defined in the file or module named, or a registered reward); rewards "
            f"there: {rewards_there}")
    return fn


def _reward_of(fn: Any, module: Any) -> bool:
    """A registered reward, or a function with the reward signature defined in ``module`` (not imported into it)."""
    registered = any(fn is r for r in _REGISTRY.values())
    return registered or (is_reward_function(fn) and getattr(fn, "__module__", None) == module.__name__)


def resolve(spec: str) -> tuple[str, RewardFn]:
    """The (name, function) a spec names, without binding options."""
    if ":" in spec:
        target, attr = spec.rsplit(":", 1)
        if target.endswith(".py") or "/" in target or "\\" in target:
            return attr, _load_file(target, attr, spec)
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise RewardSpecError(f"reward spec {spec!r}: cannot import {target!r}: {exc}") from exc
        return attr, _attribute(module, attr, spec)
    if spec not in _REGISTRY:
        _load_entry_points()
    if spec not in _REGISTRY:
        raise RewardSpecError(
            f"unknown reward {spec!r}; registered rewards: {', '.join(available())} "
            "(or give 'package.module:function' or 'path/to/file.py:function')"
        )
    return spec, _REGISTRY[spec]


TRL_ARGUMENTS = frozenset({"prompts", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"})
"""What TRL's GRPOTrainer passes a reward besides the dataset columns: it reaches a reward that names it,
even as a keyword with a default (``*, trainer_state=None``)."""


def get(spec: str, name: str | None = None, **opts: Any) -> RewardFn:
    """A reward callable for ``spec`` with ``opts`` bound; its ``__name__`` is ``name`` or the spec's name.

    Unknown options fail with the list of the reward's options (unless it takes ``**kwargs``
    only, in which case options are passed through to it unchecked). Options come from ``opts``
    only: a dataset column named like an option never reaches the function (a ``metric`` column
    does not set ``grounding_iou``'s ``metric``); the option keeps its value. TRL's own arguments
    (:data:`TRL_ARGUMENTS`) are no dataset columns and always reach it.
    """
    reg_name, fn = resolve(spec)
    allowed = options(fn)
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    unknown = sorted(set(opts) - set(allowed))
    if unknown and (allowed or not has_var_kw):
        raise RewardSpecError(
            f"reward {reg_name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(sorted(allowed)) or '(none)'}"
        )

    @functools.wraps(fn)
    def reward(completions: list, **columns: Any) -> list:
        passed = {k: v for k, v in columns.items() if k not in allowed or k in TRL_ARGUMENTS}
        return fn(completions, **{**passed, **opts})

    reward.__name__ = reward.__qualname__ = name or reg_name
    reward.options = {**allowed, **opts}  # type: ignore[attr-defined]
    return reward
