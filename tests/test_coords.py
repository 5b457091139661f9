"""The coordinate-convention layer: conversions and Qwen's resize rule."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

from rewards.contract import from_image_pixels, to_image_pixels
from rft.families import patch_grid_size as model_input_size

BOX = np.array([[64.0, 48.0, 320.0, 240.0]])  # in a 640x480 image


def test_norm1000():
    np.testing.assert_allclose(from_image_pixels(BOX, "norm1000", (640, 480)), [[100, 100, 500, 500]])
    np.testing.assert_allclose(to_image_pixels([[100, 100, 500, 500]], "norm1000", (640, 480)), BOX)


def test_norm1():
    np.testing.assert_allclose(from_image_pixels(BOX, "norm1", (640, 480)), [[0.1, 0.1, 0.5, 0.5]])


def test_pixels_of_resized_image():
    # Qwen2.5-VL sees a 640x480 image resized to fit max_pixels; its answer is in that resized frame.
    size = model_input_size((640, 480), factor=28, min_pixels=3136, max_pixels=200_704)
    assert size == (504, 364)  # (width, height), both multiples of 28
    answer = from_image_pixels(BOX, "pixels", (640, 480), size)
    np.testing.assert_allclose(answer, [[50.4, 36.4, 252.0, 182.0]])
    np.testing.assert_allclose(to_image_pixels(answer, "pixels", (640, 480), size), BOX)


def test_pixels_without_model_size_is_identity():
    np.testing.assert_allclose(to_image_pixels(BOX, "pixels", (640, 480)), BOX)


def test_unknown_format():
    with pytest.raises(ValueError, match="coord_format"):
        to_image_pixels(BOX, "percent", (640, 480))


@settings(max_examples=200, deadline=None)
@given(st.integers(28, 4000), st.integers(28, 4000), st.sampled_from([28, 32]))
def test_smart_resize_matches_transformers(h, w, factor):
    if max(h, w) / min(h, w) > 200:
        return
    rw, rh = model_input_size((w, h), factor, 3136, 1_003_520)
    assert (rh, rw) == hf_smart_resize(h, w, factor, 3136, 1_003_520)
    assert rh % factor == 0 and rw % factor == 0 and rh * rw <= 1_003_520


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1000), min_size=4, max_size=4),
    st.sampled_from(["norm1000", "norm1", "pixels"]),
    st.integers(10, 3000), st.integers(10, 3000),
)
def test_roundtrip(box, fmt, w, h):
    model_size = (w // 2 + 1, h // 3 + 1)
    there = from_image_pixels([box], fmt, (w, h), model_size)
    np.testing.assert_allclose(to_image_pixels(there, fmt, (w, h), model_size), [box], rtol=1e-9, atol=1e-9)
