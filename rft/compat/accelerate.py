"""accelerate internals rft relies on (written for accelerate 1.x; checked in tests/test_compat.py)."""

from __future__ import annotations

import warnings

import accelerate
from packaging.version import Version

SUPPORTED = ("1.10", "2.0")
"""accelerate versions these internals follow: from the first (included) to the second (excluded)."""

if not Version(SUPPORTED[0]) <= Version(accelerate.__version__) < Version(SUPPORTED[1]):
    warnings.warn(f"rft follows accelerate {SUPPORTED[0]}'s internals; accelerate {accelerate.__version__} is installed "
                  f"(supported: >={SUPPORTED[0]},<{SUPPORTED[1]})", stacklevel=2)


def state_exists() -> bool:
    """Whether this process already made accelerate's ``PartialState`` (what its ``initialized`` property
    reads, without creating one: ``PartialState._shared_state``)."""
    from accelerate import PartialState

    return bool(PartialState._shared_state)
