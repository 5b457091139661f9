"""TRL internals rft relies on: GRPOTrainer's private methods it overrides or calls, private attributes
it reads, the module global through which TRL builds its colocated vLLM engine, and what its
``VLLMClient`` holds. Written for TRL 1.16; checked at import (a changed signature refuses to import)
and against the real classes in tests/test_compat.py.

What rft does through these: dynamic sampling and the completion log (:mod:`rft.train.trl_hooks`),
the importance-sampling ratio from the training forward (:mod:`rft.train.trainer`), held-out scores
logged with TRL's metrics (:mod:`rft.train.run`), the colocated engine and the server's encoder
cache (:mod:`rft.rollout.engine`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trl
from packaging.version import Version
from trl import GRPOTrainer

from rft.compat import signature_problems

SUPPORTED = ("1.16", "1.17")
"""TRL versions these internals follow: from the first (included) to the second (excluded)."""

HOOKED = {
    "_generate_and_score_completions": ["self", "inputs"],
    "_generate": ["self", "prompts"],
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_log_metric": ["self", "name", "value"],
    "_compute_loss": ["self", "model", "inputs"],
}
"""GRPOTrainer's private methods rft overrides or calls, with the parameters it passes."""
PASSED_THROUGH = ("_get_per_token_logps_and_entropies",)
"""Private methods rft overrides passing every argument through (only their first output is read)."""
ATTRIBUTES = ("_metrics", "use_vllm", "num_iterations", "vllm_generation", "vllm_importance_sampling_correction",
              "vllm_importance_sampling_mode", "vllm_importance_sampling_clip_min", "vllm_importance_sampling_clip_max")
"""Attributes ``GRPOTrainer.__init__`` sets that rft reads (``vllm_importance_sampling_correction`` it also
switches off and on around a step)."""


def hook_problems(trainer_class: type = GRPOTrainer) -> list[str]:
    """Hooked methods of ``trainer_class`` whose parameters differ from :data:`HOOKED` (empty: all match)."""
    return signature_problems(trainer_class, HOOKED, "GRPOTrainer")


def attribute_problems(trainer_class: type = GRPOTrainer) -> list[str]:
    """:data:`ATTRIBUTES` and :data:`PASSED_THROUGH` that ``trainer_class`` no longer sets or has."""
    source = inspect.getsource(trainer_class.__init__)
    missing = [f"GRPOTrainer.__init__ no longer sets self.{a}" for a in ATTRIBUTES if f"self.{a} " not in source
               and f"self.{a}=" not in source]
    return missing + [f"GRPOTrainer.{m} is gone" for m in PASSED_THROUGH if not hasattr(trainer_class, m)]


if not Version(SUPPORTED[0]) <= Version(trl.__version__) < Version(SUPPORTED[1]):
    warnings.warn(f"rft's dynamic sampling, completion log and vLLM set-up follow TRL {SUPPORTED[0]}'s GRPOTrainer; "
                  f"TRL {trl.__version__} is installed (supported: >={SUPPORTED[0]},<{SUPPORTED[1]})", stacklevel=2)
if hook_problems() or attribute_problems():
    raise ImportError(f"TRL {trl.__version__}'s GRPOTrainer does not match what rft hooks (install trl "
                      f"{SUPPORTED[0]}.x): " + "; ".join(hook_problems() + attribute_problems()))


def append_metric(trainer: GRPOTrainer, name: str, value: float) -> None:
    """Add ``value`` to TRL's metric ``name`` for the current mode (logged, averaged, with TRL's own)."""
    trainer._metrics["train" if trainer.model.training else "eval"][name].append(value)


def log_metric(trainer: GRPOTrainer) -> Callable[[str, float], None]:
    """TRL's ``_log_metric`` of ``trainer``: ``(name, value)`` logged with TRL's metrics."""
    return trainer._log_metric


def server_client(trainer: GRPOTrainer) -> Any:
    """TRL's ``VLLMClient`` of a server-mode run (main process only), else None."""
    return getattr(getattr(trainer, "vllm_generation", None), "vllm_client", None)


def post_to_server(client: Any, path: str) -> Any:
    """POST to ``path`` of the vLLM server ``client`` (TRL's ``VLLMClient``) talks to, through its own session."""
    return client.session.post(f"{client.base_url}{path}")


@contextmanager
def engine_built_by(factory: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[bool]:
    """While active, TRL's colocate mode builds its ``vllm.LLM`` through ``factory(LLM)`` (TRL's
    ``VLLMGeneration`` calls the module global ``trl.generation.vllm_generation.LLM``). Yields False, and
    changes nothing, when vLLM is not installed (TRL itself reports it when the engine is needed)."""
    import trl.generation.vllm_generation as generation

    original = getattr(generation, "LLM", None)
    if original is None:
        yield False
        return
    generation.LLM = factory(original)
    try:
        yield True
    finally:
        generation.LLM = original
