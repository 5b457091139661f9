"""Run the vision tower once per distinct image in a forward pass.

GRPO puts each prompt's image into the batch once per generation (8 copies for 8 generations), and
TRL's passes (generation prefill, old and reference log-probs, the training forward) run the vision
tower on every copy. On Qwen2.5-VL-3B the vision tower is most of a forward pass (issue 7: 0.59 s of
0.63 s for 16 prompts). :func:`share_image_features` makes the model's ``get_image_features`` find
identical images (same grid, bitwise-equal pixels), encode each once and hand every copy the same
features: the outputs are the same, and gradients reaching the vision tower are the sum over the
copies, as before. Recipe switch: ``speed.dedupe_images`` (on by default).

When the vision tower (with its projector) is frozen, an image's features cannot change, so they are
also kept across passes (:class:`FeatureCache`): the prefill, the log-prob passes and the training
forward of a step encode each image once between them. Recipe switch: ``speed.cache_frozen_image_features``.
Under ZeRO-3 the processes decide together, once per call, whether anyone must run the tower: its
parameter gathers need all of them.
"""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any

import torch
from torch import nn

from rft.processes import summed_over_processes
from rft.zero import zero3_sharded

log = logging.getLogger(__name__)


def image_groups(pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> tuple[list[int], list[int]]:
    """``(unique, slot)``: the index of the first copy of each distinct image, and for every image the
    position of its copy in ``unique``. Images are the ``grid_thw.prod(-1)``-row chunks of
    ``pixel_values``; two are the same when their grids match and their pixels are bitwise equal."""
    sizes = grid_thw.prod(-1).tolist()
    chunks = pixel_values.split(sizes)
    sums = torch.stack([c.float().sum() for c in chunks]).tolist()  # a cheap key; equality is checked exactly
    grids = [tuple(g) for g in grid_thw.tolist()]
    unique: list[int] = []
    slot: list[int] = []
    seen: dict[tuple, list[int]] = {}
    for i, chunk in enumerate(chunks):
        key = (grids[i], sums[i])
        match = next((pos for pos in seen.get(key, []) if torch.equal(chunks[unique[pos]], chunk)), None)
        if match is None:
            match = len(unique)
            unique.append(i)
            seen.setdefault(key, []).append(match)
        slot.append(match)
    return unique, slot


class FeatureCache:
    """The features of the last ``size`` distinct images a frozen vision tower encoded, found by exact pixels."""

    def __init__(self, size: int = 256):
        self.size = size
        self.entries: list[tuple[tuple, torch.Tensor, Any]] = []  # (grid, pixels, (features, deepstack))
        self.hits = self.misses = 0
        self.output_type: type | None = None  # the model's output class, for calls that need no encoding

    def get(self, grid: tuple, pixels: torch.Tensor) -> Any:
        for i, (g, p, value) in enumerate(self.entries):
            if g == grid and p.shape == pixels.shape and torch.equal(p, pixels):
                self.entries.append(self.entries.pop(i))  # most recently used last
                self.hits += 1
                return value
        self.misses += 1
        return None

    def put(self, grid: tuple, pixels: torch.Tensor, value: Any) -> None:
        self.entries.append((grid, pixels.detach(), value))
        del self.entries[: max(0, len(self.entries) - self.size)]


def _frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.visual.parameters())


def _cached_features(get_image_features, module: nn.Module, cache: FeatureCache):
    """``get_image_features`` for a frozen tower: encode only the images ``cache`` does not hold."""

    @wraps(get_image_features)
    def cached(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, **kwargs: Any):
        if not _frozen(module):
            return get_image_features(pixel_values, image_grid_thw, **kwargs)
        chunks = pixel_values.split(image_grid_thw.prod(-1).tolist())
        grids = [tuple(g) for g in image_grid_thw.tolist()]
        found = [cache.get(g, c) for g, c in zip(grids, chunks)]
        missing = [i for i, v in enumerate(found) if v is None]
        encode = missing
        if zero3_sharded(module.visual):
            # The tower's parameters are gathered by all processes together, layer by layer: when any process
            # must encode, every process runs the tower (one with nothing missing re-encodes its first image).
            (anywhere,) = summed_over_processes(int(bool(missing)))
            encode = missing or ([0] if anywhere else [])
        if encode:
            out = get_image_features(torch.cat([chunks[i] for i in encode]), image_grid_thw[encode], **kwargs)
            cache.output_type = type(out)
            deepstack = getattr(out, "deepstack_features", None)
            lengths = [f.shape[0] for f in out.pooler_output]
            for k, i in enumerate(encode):
                if found[i] is None:
                    layers = [d.split(lengths)[k].detach() for d in deepstack] if deepstack else None
                    found[i] = (out.pooler_output[k].detach(), layers)
                    cache.put(grids[i], chunks[i], found[i])
        if not missing:
            out = cache.output_type()
        out.pooler_output = tuple(f for f, _ in found)
        if found[0][1] is not None:
            out.deepstack_features = [torch.cat([layers[j] for _, layers in found]) for j in range(len(found[0][1]))]
        return out

    return cached


def _dedupe(get_image_features):
    @wraps(get_image_features)
    def dedupe_image_features(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None, **kwargs: Any):
        if image_grid_thw is None or kwargs.get("return_dict") is False:
            return get_image_features(pixel_values, image_grid_thw, **kwargs)
        unique, slot = image_groups(pixel_values, image_grid_thw)
        if len(unique) == len(slot):
            return get_image_features(pixel_values, image_grid_thw, **kwargs)
        chunks = pixel_values.split(image_grid_thw.prod(-1).tolist())
        out = get_image_features(torch.cat([chunks[i] for i in unique]), image_grid_thw[unique], **kwargs)
        features = out.pooler_output  # one tensor per distinct image
        out.pooler_output = tuple(features[s] for s in slot)
        deepstack = getattr(out, "deepstack_features", None)  # Qwen3-VL: per layer, all images concatenated
        if deepstack:
            lengths = [f.shape[0] for f in features]
            out.deepstack_features = [torch.cat([d.split(lengths)[s] for s in slot]) for d in deepstack]
        return out  # (last_hidden_state / hidden_states, which the model does not read, stay per distinct image)

    return dedupe_image_features


def share_image_features(model: nn.Module, dedupe: bool = True, cache_frozen: bool = False,
                         cache: FeatureCache | None = None) -> int:
    """Make the vision-language submodules of ``model`` (with a ``visual`` tower and a
    ``get_image_features`` method) encode each distinct image once per call (``dedupe``) and, while
    their tower is frozen, once across calls (``cache_frozen``); returns how many it changed."""
    if not (dedupe or cache_frozen):
        return 0
    changed = 0
    for module in model.modules():
        method = getattr(module, "get_image_features", None)
        if method is None or not hasattr(module, "visual") or getattr(method, "rft_dedupe", False):
            continue
        if not isinstance(getattr(module, "visual", None), nn.Module) or "visual" not in dict(module.named_children()):
            continue  # a wrapper that only points at the inner model's tower
        if cache_frozen:
            method = _cached_features(method, module, cache if cache is not None else FeatureCache())
        if dedupe:
            method = _dedupe(method)
        method.rft_dedupe = True
        module.get_image_features = method
        changed += 1
    if not changed:
        log.info("speed.dedupe_images: %s has no vision tower with get_image_features; left as is", type(model).__name__)
    return changed
