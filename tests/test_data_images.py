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


def _png_rgb16(path, pixels) -> None:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow writes none): ``pixels`` is uint16 (h, w, 3)."""
    import struct
    import zlib

    import numpy as np

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = pixels.shape
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert np.asarray(pixels).dtype == np.uint16


def test_every_image_mode_resizes_to_the_content_it_shows(tmp_path):
    """Grayscale, 16-bit (gray and RGB), RGBA (opaque and transparent), palette, CMYK and EXIF-rotated
    files come out of the resizing pass with the content they show (16-bit PNGs came out 99% white;
    transparent pixels come out white, as transformers' convert_to_rgb makes them)."""
    import numpy as np

    from rft.data.build import to_trl_rows

    colours = np.array([[200, 30, 30], [30, 160, 60], [20, 40, 220], [240, 240, 40]], dtype=np.uint8)
    blocks = np.zeros((84, 112, 3), dtype=np.uint8)  # four solid colours: exact in a palette and in CMYK
    for k, colour in enumerate(colours):
        blocks[(k // 2) * 42:(k // 2 + 1) * 42, (k % 2) * 56:(k % 2 + 1) * 56] = colour
    rgb = Image.fromarray(blocks)
    gray = rgb.convert("L")
    transparent = np.dstack([blocks, np.full(blocks.shape[:2], 255, np.uint8)])
    transparent[:42, :56] = [0, 0, 0, 0]  # a transparent corner whose stored colour is black
    white_corner = blocks.copy()
    white_corner[:42, :56] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° to display": rft keeps the stored pixel grid (module docstring)
    files = {  # file -> (how it is written, the RGB content expected)
        "gray.png": (lambda p: gray.save(p), gray.convert("RGB")),
        "gray16.png": (lambda p: Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).save(p), gray.convert("RGB")),
        "rgb16.png": (lambda p: _png_rgb16(p, blocks.astype(np.uint16) * 257), rgb),
        "rgba.png": (lambda p: rgb.convert("RGBA").save(p), rgb),
        "transparent.png": (lambda p: Image.fromarray(transparent, "RGBA").save(p), Image.fromarray(white_corner)),
        "palette.png": (lambda p: rgb.quantize(4).save(p), rgb),
        "cmyk.tif": (lambda p: rgb.convert("CMYK").save(p), rgb),
        "exif.png": (lambda p: rgb.save(p, exif=exif), rgb),
    }
    rows = []
    for name, (write, _) in files.items():
        write(tmp_path / name)
        rows.append({"id": name, "dataset": "d", "task": "classification", "image": str(tmp_path / name),
                     "image_size": [112, 84], "solution": {"label": "x"}, "query": {"classes": None}})
    budget = {"min_pixels": 56 * 56, "max_pixels": 56 * 84, "factor": 28}
    out = to_trl_rows(rows, family="qwen2_5_vl", resized_dir=tmp_path / "resized", **budget)
    assert Image.open(tmp_path / "exif.png").getexif()[0x0112] == 6
    for row, (name, (_, expected)) in zip(out, files.items()):
        resized = Image.open(row["image"])
        assert resized.mode == "RGB" and not resized.getexif().get(0x0112), name  # nothing downstream rotates it
        want = resize_to_budget(expected, budget["min_pixels"], budget["max_pixels"], budget["factor"])
        difference = np.abs(np.asarray(resized, dtype=int) - np.asarray(want, dtype=int)).max()
        assert resized.size == want.size == tuple(row["model_image_size"]) and difference <= 1, (name, difference)
