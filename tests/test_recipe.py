"""Recipe validation names the field at fault; overrides; GRPOConfig pass-through; resolved dump."""

import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rft.errors import RecipeError
from rft.recipe import dump_recipe, load_recipe, validate
from rft.recipe.load import apply_override

MINIMAL = {
    "model": {"tiny": {"family": "qwen2_5_vl"}},
    "data": {"datasets": [{"name": "shapes", "kind": "synthetic_shapes"}]},
    "rewards": [{"name": "classification_accuracy"}],
}


def with_(**changes):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for key, value in changes.items():
        apply_override(data, f"{key.replace('__', '.')}={yaml.safe_dump(value, default_flow_style=True).strip()}")
    return data


def error_of(data) -> str:
    with pytest.raises(RecipeError) as err:
        validate(data)
    return str(err.value)


def test_minimal_recipe_gets_defaults():
    recipe = validate(MINIMAL)
    assert recipe.model.freeze.vision and not recipe.model.freeze.language
    assert recipe.rollout.backend == "transformers" and recipe.distributed.zero_stage == 0


@pytest.mark.parametrize(
    "data, expected",
    [
        ({**MINIMAL, "modle": {}}, "modle: unknown key (did you mean 'model'?)"),
        (with_(data__datasets=[{"name": "a", "kind": "synthetic_shapes"}, {"name": "b", "kind": "coco", "path": "x", "weight": -1}]),
         "data.datasets[1].weight: Input should be greater than 0"),
        (with_(rollout__backend="vlm"), "rollout.backend: Input should be 'transformers' or 'vllm'"),
        (with_(distributed__zero_stage=1), "distributed.zero_stage: Input should be 0, 2 or 3"),
        (with_(data__datasets=[{"name": "a", "kind": "coco"}]), "dataset 'a' of kind 'coco' needs a path"),
        (with_(data__datasets=[{"name": "a", "kind": "cocoa", "path": "x"}]), "data.datasets[0].kind: Input should be 'coco'"),
        (with_(grpo={"learnin_rate": 1e-5}), "grpo.learnin_rate: not a GRPOConfig field of the installed TRL; did you mean learning_rate"),
        (with_(grpo={"num_generations": "many"}), "grpo.num_generations: Input should be a valid integer"),
        (with_(grpo={"use_vllm": True}), "grpo.use_vllm: set this through rollout.backend"),
        (with_(rewards=[{"name": "format", "weight": "heavy"}]), "rewards[0].weight: Input should be a valid number"),
        (with_(data__schedule=[{"dataset": "nope", "batches": 2}]), "unknown dataset 'nope'"),
        (with_(model__freeze={"vision": True, "projector": True, "language": True}), "nothing would train"),
        (with_(model__path="x"), "give exactly one of model.path"),
        (with_(data__datasets=[{"name": "a", "kind": "synthetic_shapes", "rewards": ["fromat"]}]),
         "data.datasets[0].rewards names 'fromat'"),
        (with_(model__lora={"r": 0}), "model.lora.r: Input should be greater than 0"),
    ],
)
def test_errors_name_the_field(data, expected):
    assert expected in error_of(data)


def test_every_problem_is_reported_at_once():
    message = error_of({**with_(rollout__backend="x", grpo={"betaa": 0.1}), "oops": 1})
    assert "rollout.backend" in message and "grpo.betaa" in message and "oops" in message


def test_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    recipe = load_recipe(path, ["grpo.learning_rate=2e-6", "data.datasets[0].weight=3", "output.dir=" + str(tmp_path / "o"),
                                "model.lora.enabled=true"])
    assert recipe.grpo["learning_rate"] == 2e-6 and recipe.data.datasets[0].weight == 3.0 and recipe.model.lora.enabled
    with pytest.raises(RecipeError, match=r"data.datasets\[5\] does not exist"):
        load_recipe(path, ["data.datasets[5].weight=1"])
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe(path, ["grpo.beta"])


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        model:
          tiny: {family: qwen2_5_vl
        data: []
    """))
    with pytest.raises(RecipeError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_yaml_is_data_only(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="malformed YAML"):
        load_recipe(path)


def test_resolved_recipe_round_trips(tmp_path):
    recipe = validate(with_(grpo={"beta": 0.0, "num_generations": 4}))
    path = dump_recipe(recipe, tmp_path / "out" / "recipe.yaml")
    assert load_recipe(path) == recipe
    assert "min_pixels" in path.read_text()


field_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8),
                         st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([
    "model.dtype", "model.min_pixels", "model.freeze.vision", "model.lora.r", "data.schedule", "data.datasets[0].kind",
    "data.datasets[0].weight", "data.replay", "rewards[0].name", "rewards[0].range", "grpo.beta", "grpo.num_generations",
    "grpo.temperature", "rollout.backend", "distributed.zero_stage", "output.report_to", "warmup.steps", "seed", "name",
]), field_values), max_size=4))
def test_fuzzed_recipes_give_only_clear_errors(changes):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for key, value in changes:
        apply_override(data, f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    try:
        validate(data)
    except RecipeError as exc:
        assert "invalid recipe" in str(exc)


def test_tiny_model_sizes_must_split_into_heads():
    base = {"data": {"datasets": [{"name": "d", "kind": "synthetic_shapes"}]}, "rewards": [{"name": "format"}]}
    recipe = validate({**base, "model": {"tiny": {"vision_hidden_size": 192, "vision_num_heads": 3}}})
    assert recipe.model.tiny.vision_depth == 2 and recipe.model.tiny.intermediate_size is None
    with pytest.raises(RecipeError, match="vision_hidden_size \\(40\\) must be vision_num_heads \\(4\\) x a head size divisible by 4"):
        validate({**base, "model": {"tiny": {"vision_hidden_size": 40, "vision_num_heads": 4}}})
