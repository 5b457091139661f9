"""The one seam to each library's non-public API: every private attribute rft reads or sets, private method
it overrides or calls, and module global it replaces lives in :mod:`rft.compat.trl`,
:mod:`rft.compat.transformers`, :mod:`rft.compat.vllm` or :mod:`rft.compat.accelerate`, each with the versions it was written for
(checked at import) and contract tests against the real objects (tests/test_compat.py)."""

from __future__ import annotations

import inspect


def signature_problems(cls: type, expected: dict[str, list[str]], owner: str) -> list[str]:
    """Methods of ``cls`` whose parameters differ from ``expected`` (name -> parameter names), reported as
    ``owner.name`` (empty: all match)."""
    problems = []
    for name, parameters in expected.items():
        method = getattr(cls, name, None)
        found = list(inspect.signature(method).parameters) if method is not None else None
        if found != parameters:
            problems.append(f"{owner}.{name}: expected parameters {parameters}, found {found}")
    return problems
