"""The row contract (rewards.contract) is the one definition the recipe schema, the data layer and the
rewards share."""

import typing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.contract import (
    BOX_TASKS, COORD_FORMATS, COORD_PHRASES, IMAGE, MODEL_PARTS, REWARD_COLUMNS, TASKS, convert_boxes, dataset_features,
    from_image_pixels, to_image_pixels,
)
from rewards.inputs import Sample
from rft.recipe import schema


def test_schema_literals_are_the_contracts():
    assert typing.get_args(schema.TaskName) == TASKS
    assert typing.get_args(schema.ModelSection.model_fields["coord_format"].annotation) == ("auto", *COORD_FORMATS)
    assert tuple(schema.PartSettings.model_fields) == MODEL_PARTS == tuple(schema.PartLearningRates.model_fields)
    assert set(BOX_TASKS) < set(TASKS) and tuple(COORD_PHRASES) == COORD_FORMATS


def test_reward_columns_are_the_samples_and_the_datasets():
    assert REWARD_COLUMNS == ("task", "solution", "image_size", "coord_format", "model_image_size")
    assert tuple(f for f in Sample.__dataclass_fields__) == REWARD_COLUMNS
    features = dataset_features()
    assert set(REWARD_COLUMNS) < set(features) and {"prompt", "image", "id", "dataset", "query"} < set(features)
    from rft.data.build import TRL_FEATURES

    assert TRL_FEATURES == features


def test_convert_boxes_known_values():
    box = [[64.0, 48.0, 320.0, 240.0]]  # pixels of a 640x480 image the model saw at 320x240
    np.testing.assert_allclose(convert_boxes(box, IMAGE, "norm1000", (640, 480)), [[100, 100, 500, 500]])
    np.testing.assert_allclose(convert_boxes(box, IMAGE, "pixels", (640, 480), (320, 240)), [[32, 24, 160, 120]])
    np.testing.assert_allclose(convert_boxes([[100, 100, 500, 500]], "norm1000", "norm1", (640, 480)), [[.1, .1, .5, .5]])
    with pytest.raises(ValueError, match="coord_format must be one of"):
        convert_boxes(box, "percent", IMAGE, (640, 480))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1000), min_size=4, max_size=4), st.sampled_from(COORD_FORMATS),
       st.sampled_from(COORD_FORMATS), st.integers(10, 3000), st.integers(10, 3000))
def test_convert_boxes_is_the_named_directions(box, a, b, w, h):
    model_size = (w // 2 + 1, h // 3 + 1)
    direct = convert_boxes([box], a, b, (w, h), model_size)
    np.testing.assert_allclose(direct, from_image_pixels(to_image_pixels([box], a, (w, h), model_size), b, (w, h), model_size),
                               rtol=1e-9, atol=1e-9)
