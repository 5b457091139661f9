"""Decode each distinct image once, not once per generation.

TRL's sampler hands the dataloader every prompt once per generation (8 times for 8 generations),
and a ``datasets.Image`` column decodes the file on every fetch: 64 decodes a step for 8 images.
:class:`DecodedImages`, a ``datasets`` transform over an undecoded ``image`` column, decodes each
file once (``datasets.Image``'s own decoding), keeps the decoded images in a least-recently-used
cache bounded by their pixel bytes (few-shot datasets then decode each image once for the whole
run) and hands out copies, so that nothing a consumer does to one row's image reaches another.
Recipe switch: ``speed.cache_decoded_images`` (on by default).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import datasets
from PIL import Image

_DECODER = datasets.Image()


def _key(value: dict[str, Any]) -> Any:
    if value.get("bytes") is not None:
        return hashlib.blake2b(value["bytes"], digest_size=16).digest()
    return value["path"]


def _pixel_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


class DecodedImages:
    """A ``datasets`` transform (``Dataset.with_transform``): the ``image`` column's ``{"path", "bytes"}``
    values (or each of the ``images`` column's lists) become PIL images, each file decoded once while it stays among the ``max_bytes`` of
    most recently used decoded pixels."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes, self.bytes = max_bytes, 0
        self.cache: OrderedDict[Any, Image.Image] = OrderedDict()
        self.decoded = self.hits = 0

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if "image" in batch:
            batch["image"] = [self.get(v) for v in batch["image"]]
        if "images" in batch:  # rows with several images: a list per row
            batch["images"] = [None if vs is None else [self.get(v) for v in vs] for vs in batch["images"]]
        return batch

    def get(self, value: dict[str, Any] | None) -> Image.Image | None:
        if value is None:
            return None
        key = _key(value)
        image = self.cache.get(key)
        if image is None:
            image = _DECODER.decode_example(value)
            image.load()
            self.decoded += 1
            self._put(key, image)
        else:
            self.cache.move_to_end(key)
            self.hits += 1
        return image.copy()

    def _put(self, key: Any, image: Image.Image) -> None:
        size = _pixel_bytes(image)
        if size > self.max_bytes:
            return
        self.cache[key] = image
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.cache.popitem(last=False)
            self.bytes -= _pixel_bytes(old)
