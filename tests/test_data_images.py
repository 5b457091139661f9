"""Image reading, sizing, resizing to the pixel budget, and ground-truth box checks."""

from __future__ import annotations

import pytest
from PIL import Image

from rft.data.images import check_box, image_size, open_image, resize_to_budget
from rft.errors import DataError, RftError
from test_data_helpers import make_image


def test_errors_are_rft_errors():
    assert issubclass(DataError, RftError)


def test_image_size_and_open_image(tmp_path):
    gray = make_image(tmp_path / "gray.png", (30, 20), mode="L")
    assert image_size(gray) == (30, 20)
    image = open_image(gray)
    assert image.mode == "RGB" and image.size == (30, 20)


def test_missing_image_names_the_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    for read in (image_size, open_image):
        with pytest.raises(DataError, match=rf"{missing}: image file not found"):
            read(missing)


def test_corrupt_image_names_the_file(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    for read in (image_size, open_image):
        with pytest.raises(DataError, match=rf"{garbage}: not a readable image"):
            read(garbage)


def test_truncated_image_fails_on_decode(tmp_path):
    full = make_image(tmp_path / "full.jpg", (200, 200)).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full[: len(full) // 2])
    assert image_size(cut) == (200, 200)  # the header is intact
    with pytest.raises(DataError, match=rf"{cut}: not a readable image"):
        open_image(cut)


def test_resize_to_budget():
    image = Image.new("RGB", (640, 480))
    resized = resize_to_budget(image, 56 * 56, 200_000, 28)
    w, h = resized.size
    assert w % 28 == 0 and h % 28 == 0 and 56 * 56 <= w * h <= 200_000
    assert resize_to_budget(resized, 56 * 56, 200_000, 28) is resized  # already there: untouched
    small = resize_to_budget(Image.new("RGB", (20, 10)), 64 * 64, 200_000, 32)
    assert small.size[0] % 32 == 0 and small.size[0] * small.size[1] >= 64 * 64


def test_check_box_accepts_and_clips():
    assert check_box([10, 20, 30, 40], (64, 48), "x") == [10.0, 20.0, 30.0, 40.0]
    assert check_box([-0.3, 0, 64.4, 48.2], (64, 48), "x") == [0.0, 0.0, 64.0, 48.0]


@pytest.mark.parametrize("box, message", [
    ([50, 10, 20, 40], r"\[50, 10, 20, 40\] is inverted \(x2 <= x1\)"),
    ([10, 40, 20, 40], r"is inverted \(y2 <= y1\)"),
    ([10, 10, 80, 40], r"\[10, 10, 80, 40\] lies outside the 64x48 image"),
    ([-20, 10, 30, 40], "lies outside"),
    ([64.1, 10, 64.5, 40], "lies outside"),
    ([1, 2, 3], r"\[1, 2, 3\] is not 4 finite numbers"),
    ([1, 2, float("nan"), 4], "is not 4 finite numbers"),
    ([1, 2, "3", 4], "is not 4 finite numbers"),
    ([True, 2, 3, 4], "is not 4 finite numbers"),
    ("1,2,3,4", "is not 4 finite numbers"),
])
def test_check_box_errors_name_the_place(box, message):
    with pytest.raises(DataError, match=rf"^data/train.jsonl line 12: box .*{message}"):
        check_box(box, (64, 48), "data/train.jsonl line 12")
