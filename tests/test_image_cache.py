"""speed.cache_decoded_images: the dataset hands TRL the same images, decoding each file once."""

import datasets
import numpy as np
import pytest
from PIL import Image

from rft.data.build import to_dataset
from rft.data.image_cache import DecodedImages


@pytest.fixture
def rows(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)).save(path)
        out.append({"prompt": [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "q"}]}],
                    "image": str(path), "task": "classification", "solution": "{}", "image_size": [30, 20 + i],
                    "coord_format": None, "model_image_size": [30, 20 + i], "id": str(i), "dataset": "d", "query": "{}"})
    return out


def test_cached_rows_equal_decoded_rows_and_each_file_is_decoded_once(rows):
    plain, cached = to_dataset(rows, cache_decoded_images=False), to_dataset(rows)
    order = [i for i in range(3) for _ in range(4)]  # as TRL's sampler repeats each prompt per generation
    expected, got = plain.__getitems__(order), cached.__getitems__(order)
    for a, b in zip(expected, got):
        assert a.keys() == b.keys() and {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}
        assert b["image"].mode == a["image"].mode and b["image"].size == a["image"].size
        assert np.array_equal(np.asarray(b["image"]), np.asarray(a["image"]))
    cache = cached.format["format_kwargs"]["transform"]
    assert (cache.decoded, cache.hits) == (3, 9)
    cached[0]["image"].paste((255, 0, 0), (0, 0, 10, 10))  # a consumer that draws on its image
    assert np.array_equal(np.asarray(cached[0]["image"]), np.asarray(plain[0]["image"]))  # reaches no other row


def test_cache_keeps_the_most_recently_used_images_within_its_byte_budget(tmp_path):
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (10, 10), (i, 0, 0)).save(paths[-1])  # 300 bytes of pixels each
    cache = DecodedImages(max_bytes=700)
    for p in [paths[0], paths[1], paths[0], paths[2], paths[0]]:
        cache.get({"path": p, "bytes": None})
    assert list(cache.cache) == [paths[2], paths[0]] and cache.bytes == 600  # 1 was least recently used
    assert (cache.decoded, cache.hits) == (3, 2)
    assert cache.get(None) is None
    big = DecodedImages(max_bytes=100)
    assert big.get({"path": paths[3], "bytes": None}).getpixel((0, 0)) == (3, 0, 0) and not big.cache  # too big to keep


def test_bytes_values_are_cached_by_content():
    import io

    buffer = io.BytesIO()
    Image.new("L", (4, 4), 7).save(buffer, format="PNG")
    cache = DecodedImages()
    data = datasets.Dataset.from_dict({"image": [{"bytes": buffer.getvalue(), "path": None}] * 2},
                                      features=datasets.Features({"image": datasets.Image(decode=False)}))
    images = data.with_transform(cache)["image"]
    assert [im.getpixel((0, 0)) for im in images] == [7, 7] and (cache.decoded, cache.hits) == (1, 1)
