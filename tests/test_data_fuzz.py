"""Fuzzing the loaders with random records: rows or a clear DataError naming the place, nothing else."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rft.data.classification import load_classification_jsonl
from rft.data.grounding import load_grounding_jsonl
from rft.data.rows import load_rows_jsonl
from rft.data.tagging import load_tagging_jsonl
from rft.errors import DataError
from test_data_helpers import make_image

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 2000), st.floats(allow_nan=True), st.text(max_size=6),
              st.sampled_from(["IMG", "cat", "detection", "classification", "grounding"])),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(
        ["image", "label", "tags", "phrase", "box", "boxes", "labels", "id", "task", "solution", "query", "image_size",
         "synonyms", "dataset", "category"]), inner, max_size=6)),
    max_leaves=12,
)
records = st.lists(st.one_of(values, st.text(max_size=20)), min_size=1, max_size=4)
LOADERS = [load_classification_jsonl, load_grounding_jsonl, load_tagging_jsonl]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("fuzz") / "img.png", (40, 30))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records, st.sampled_from(range(4)))
def test_random_records_give_rows_or_clear_errors(tmp_path, image, recs, which):
    lines = []
    for r in recs:
        if isinstance(r, dict) and r.get("image") == "IMG":
            r = {**r, "image": str(image)}
        lines.append(r if isinstance(r, str) else json.dumps(r))
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n")
    try:
        if which == 3:
            load_rows_jsonl(path)
        else:
            LOADERS[which](path, name="fuzz")
    except DataError as exc:
        assert "fuzz.jsonl" in str(exc) or "fuzz:" in str(exc)
