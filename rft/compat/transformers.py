"""transformers internals rft relies on (written for 5.17; checked at import and in tests/test_compat.py)."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import transformers
from packaging.version import Version
from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints  # noqa: F401  (rotates checkpoints as the Trainer does)

from rft.compat import signature_problems
from rft.errors import RftError

SUPPORTED = ("5.17", "5.18")
"""transformers versions these internals follow: from the first (included) to the second (excluded)."""

if not Version(SUPPORTED[0]) <= Version(transformers.__version__) < Version(SUPPORTED[1]):
    warnings.warn(f"rft follows transformers {SUPPORTED[0]}.x's internals; transformers {transformers.__version__} is "
                  f"installed (supported: >={SUPPORTED[0]},<{SUPPORTED[1]})", stacklevel=2)


TRAINER_OVERRIDES = {
    "_save_checkpoint": ["self", "model", "trial"],
    "_get_output_dir": ["self", "trial"],
    "_load_from_checkpoint": ["self", "resume_from_checkpoint", "model"],
    "_save": ["self", "output_dir", "state_dict"],
}
"""The Trainer's private methods rft overrides (:mod:`rft.train.checkpoints`, :mod:`rft.train.trainer`), with
their parameters."""
SAVE_CHECKPOINT_CALLS = ("self._get_output_dir(trial=trial)", "rotate_checkpoints(")
"""What ``Trainer._save_checkpoint`` must still call for :class:`rft.train.checkpoints.AtomicCheckpoints`: it
writes the whole checkpoint under ``self._get_output_dir(trial)`` and rotates there."""


def trainer_problems(trainer_class: type = Trainer) -> list[str]:
    """What of :data:`TRAINER_OVERRIDES` and :data:`SAVE_CHECKPOINT_CALLS` ``trainer_class`` no longer matches."""
    problems = signature_problems(trainer_class, TRAINER_OVERRIDES, "Trainer")
    source = inspect.getsource(trainer_class._save_checkpoint)
    problems += [f"Trainer._save_checkpoint no longer calls {call}" for call in SAVE_CHECKPOINT_CALLS if call not in source]
    return problems


def check_trainer_internals() -> None:
    """Fail clearly when the installed transformers saves checkpoints differently from what rft's atomic
    checkpoints rely on (:func:`trainer_problems`), rather than write checkpoints where nobody looks for them."""
    problems = trainer_problems()
    if problems:
        raise RftError(f"transformers {transformers.__version__}: {'; '.join(problems)} (rft follows transformers "
                       f"{SUPPORTED[0]}.x; install transformers>={SUPPORTED[0]},<{SUPPORTED[1]})")


def set_name_or_path(model: Any, path: str) -> None:
    """Make ``model`` (and its config, ``config._name_or_path``, which ``save_pretrained`` and TRL read) say
    it came from ``path``."""
    model.name_or_path = model.config._name_or_path = path


def attention_implementation(config: Any) -> str:
    """The attention implementation a (sub-)config runs with (``config._attn_implementation``)."""
    return str(getattr(config, "_attn_implementation", ""))
