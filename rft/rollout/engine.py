"""What vLLM must be told so that its rollouts match what the trainer computes.

TRL builds the colocated engine (``vllm.LLM``) from ``model.name_or_path`` with no dtype and no
processor options, and GRPOConfig has no field for them. Two consequences, both measured on the GPU
machine (docs/gpu.md): vLLM runs a float32 checkpoint in bfloat16 ("Downcasting torch.float32 to
torch.bfloat16"), so its log-probs differ from the float32 trainer's and TRL's importance-sampling
correction masks whole sequences; and the image processor uses the checkpoint's pixel budget, not
the recipe's. :func:`engine_options` lists what rft adds; :func:`colocated_engine_options` passes
it to the engine TRL builds; ``rft serve`` passes the same options on the server's command line.

A third mismatch is in the prompt: TRL gives vLLM the trainer's token ids, in which the processor
has already expanded each image to its N ``<|image_pad|>`` tokens, together with the image; vLLM
0.25 expands again (one pad becomes N: 31 image tokens where the trainer has 16, measured), so
every rollout is sampled from a different prompt than the one trained on. The colocated engine rft
hands to TRL therefore collapses each run of image tokens to one before vLLM expands it
(:func:`collapse_image_runs`), and resets vLLM's encoder cache whenever TRL resets the prefix cache
after a weight sync (image features are cached by image, not by weights).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rft.compat.trl import engine_built_by, post_to_server
from rft.compat.vllm import ENCODER_CACHE_ENDPOINT, encoder_cache_reset
from rft.families import family_of
from rft.recipe.schema import ModelSection

log = logging.getLogger(__name__)


def vllm_dtype(model: ModelSection, cuda: bool = True) -> str:
    """The dtype name the trainer holds the policy in (``auto`` resolved as the trainer does)."""
    if model.dtype != "auto":
        return model.dtype
    return "bfloat16" if cuda else "float32"


def engine_options(model: ModelSection, family: str, images_per_prompt: int = 1, cuda: bool = True) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments that make rollouts see the policy as the trainer does: its dtype,
    the recipe's pixel budget (for families whose vLLM processor takes it, :meth:`Family.vllm_options
    <rft.families.base.Family.vllm_options>`), and ``images_per_prompt`` images per prompt at most (the most a
    training row has: :func:`rft.data.build.images_per_row`; few, so vLLM's memory profiling does not reserve
    room for many images). ``family`` is the model's ``config.model_type``."""
    options: dict[str, Any] = {"dtype": vllm_dtype(model, cuda), "limit_mm_per_prompt": {"image": images_per_prompt}}
    return options | family_of(family).vllm_options(model.min_pixels, model.max_pixels)


def collapse_image_runs(token_ids: list[int], image_token_ids: set[int]) -> list[int]:
    """``token_ids`` with every run of one image token cut to a single token (vLLM expands it)."""
    return [t for i, t in enumerate(token_ids) if t not in image_token_ids or i == 0 or token_ids[i - 1] != t]


class ColocatedEngine:
    """A ``vllm.LLM`` as TRL's colocate mode should drive it.

    - ``generate`` takes prompts whose images are already expanded (as TRL sends them) and gives vLLM
      one image token per image, which vLLM expands (:func:`collapse_image_runs`).
    - ``reset_prefix_cache``, which TRL calls after every weight sync, also resets vLLM's encoder cache:
      vLLM keeps image features keyed by the image alone, so without this an image seen again after
      an update (the next epoch of a few-shot dataset) gets features from the old vision weights.
    Everything else is the engine's own.
    """

    def __init__(self, llm: Any, image_token_ids: set[int]):
        self.llm, self.image_token_ids = llm, image_token_ids
        self.encoder_cache_resets = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def generate(self, prompts: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(prompts, list) and self.image_token_ids:
            prompts = [self._collapsed(p) for p in prompts]
        return self.llm.generate(prompts, *args, **kwargs)

    def reset_prefix_cache(self, *args: Any, **kwargs: Any) -> Any:
        result = self.llm.reset_prefix_cache(*args, **kwargs)
        reset = encoder_cache_reset(self.llm)
        if reset is None:
            if not self.encoder_cache_resets:
                log.warning("this vLLM has no reset_encoder_cache: after a weight update it may reuse image features "
                            "computed with the old vision weights")
            self.encoder_cache_resets = -1
        else:
            reset()
            self.encoder_cache_resets += 1
        return result

    def _collapsed(self, prompt: Any) -> Any:
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt and prompt.get("multi_modal_data"):
            return {**prompt, "prompt_token_ids": collapse_image_runs(list(prompt["prompt_token_ids"]), self.image_token_ids)}
        return prompt


def reset_encoder_cache_on_server(client: Any) -> None:
    """Make ``client.reset_prefix_cache`` (TRL's ``VLLMClient``; TRL calls it after every weight sync in
    server mode) also reset the server's encoder cache, through vLLM's dev-mode endpoint
    ``/reset_encoder_cache`` (``rft serve`` starts the server in dev mode). Without it the server keeps
    image features of the old vision weights, as the colocated engine did (docs/gpu.md; TRL issue 7198).
    A server without the endpoint is reported once and training goes on."""
    original = client.reset_prefix_cache
    reported = []

    def reset_prefix_cache(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        response = post_to_server(client, ENCODER_CACHE_ENDPOINT)
        if response.status_code != 200 and not reported:
            reported.append(response.status_code)
            log.warning("the vLLM server did not reset its encoder cache (HTTP %s from %s): after a weight update it "
                        "may reuse image features computed with the old vision weights", response.status_code,
                        ENCODER_CACHE_ENDPOINT)
        return result

    client.reset_prefix_cache = reset_prefix_cache


@contextmanager
def colocated_engine_options(options: dict[str, Any], image_token_ids: set[int] | None = None) -> Iterator[None]:
    """While active, the ``vllm.LLM`` that TRL's colocate mode builds also gets ``options``
    (TRL's own arguments win where both name one) and, given ``image_token_ids``, takes prompts
    whose images are already expanded, and resets vLLM's encoder cache after weight syncs (:class:`ColocatedEngine`)."""

    def factory(original: Any) -> Any:
        def build_engine(*args: Any, **kwargs: Any):
            llm = original(*args, **{**options, **kwargs})
            return ColocatedEngine(llm, image_token_ids or set())

        return build_engine

    with engine_built_by(factory):  # vLLM not installed: nothing changes (TRL reports it when the engine is needed)
        yield
