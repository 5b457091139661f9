"""transformers internals rft relies on (written for 5.17; checked at import and in tests/test_compat.py)."""

from __future__ import annotations

import warnings
from typing import Any

import transformers
from packaging.version import Version

SUPPORTED = ("5.17", "5.18")
"""transformers versions these internals follow: from the first (included) to the second (excluded)."""

if not Version(SUPPORTED[0]) <= Version(transformers.__version__) < Version(SUPPORTED[1]):
    warnings.warn(f"rft follows transformers {SUPPORTED[0]}.x's internals; transformers {transformers.__version__} is "
                  f"installed (supported: >={SUPPORTED[0]},<{SUPPORTED[1]})", stacklevel=2)


def attention_implementation(config: Any) -> str:
    """The attention implementation a (sub-)config runs with (``config._attn_implementation``)."""
    return str(getattr(config, "_attn_implementation", ""))
