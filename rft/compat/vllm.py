"""vLLM internals rft relies on (vLLM 0.22 to 0.31; vLLM is optional and imported only when a run uses it):
the encoder-cache reset of the engine and of the dev-mode server, and the environment switch of that
mode. Checked against the installed vLLM in tests/test_compat.py (skipped where vLLM is not installed).
"""

from __future__ import annotations

import warnings
from importlib import metadata
from typing import Any, Callable

from packaging.version import Version

SUPPORTED = ("0.22", "0.32")
"""vLLM versions these internals follow: from the first (included) to the second (excluded), as pyproject's extra."""

DEV_MODE = "VLLM_SERVER_DEV_MODE"
"""The environment variable that opens vLLM's dev endpoints, TRL's weight transfer and cache resets among them."""
ENCODER_CACHE_ENDPOINT = "/reset_encoder_cache"
"""The dev-mode server endpoint that drops cached image features."""


def installed_version() -> str | None:
    """The installed vLLM's version, without importing it (None: not installed)."""
    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return None


def version_problem(version: str | None = None) -> str | None:
    """Why the installed vLLM (or ``version``) is outside :data:`SUPPORTED`, or None."""
    version = version or installed_version()
    if version is None or Version(SUPPORTED[0]) <= Version(version) < Version(SUPPORTED[1]):
        return None
    return f"rft's vLLM set-up follows vLLM >={SUPPORTED[0]},<{SUPPORTED[1]}; vLLM {version} is installed"


if version_problem():
    warnings.warn(version_problem(), stacklevel=2)


def encoder_cache_reset(llm: Any) -> Callable[[], Any] | None:
    """The method that resets ``llm``'s (a ``vllm.LLM``) cache of image features: its own or its engine's
    ``reset_encoder_cache``; None when this vLLM has none."""
    for owner in (llm, getattr(llm, "llm_engine", None)):
        reset = getattr(owner, "reset_encoder_cache", None)
        if callable(reset):
            return reset
    return None
