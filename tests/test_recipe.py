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
    "grpo.per_device_train_batch_size", "grpo.learning_rate", "grpo.max_steps", "grpo.max_completion_length",
    "rewards[0].weight", "model.max_pixels", "data.datasets[0].num_samples", "data.templates.classification",
]), st.one_of(field_values, st.sampled_from([10**30, 1e30, -1e30, float("inf"), "{{ cycler }}", "{{ x.__class__ }}"]))),
    max_size=4))
def test_fuzzed_recipes_give_only_clear_errors(changes):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for key, value in changes:
        apply_override(data, f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    try:
        validate(data)
    except RecipeError as exc:
        assert "invalid recipe" in str(exc)


@pytest.mark.parametrize("changes, expected", [
    ({"grpo": {"per_device_train_batch_size": 0}}, "grpo.per_device_train_batch_size: must be from 1 to 65536"),
    ({"grpo": {"per_device_train_batch_size": -4}}, "grpo.per_device_train_batch_size: must be from 1 to 65536"),
    ({"grpo": {"num_generations": 1}}, "grpo.num_generations: must be from 2 to 65536 (GRPO compares several"),
    ({"grpo": {"num_generations": 0}}, "grpo.num_generations: must be from 2"),
    ({"grpo": {"learning_rate": 0}}, "grpo.learning_rate: must be above 0 and at most 1000 (got 0.0)"),
    ({"grpo": {"learning_rate": -1e-6}}, "grpo.learning_rate: must be above 0"),
    ({"grpo": {"learning_rate": float("nan")}}, "grpo.learning_rate: must be a finite number (got nan)"),
    ({"grpo": {"max_completion_length": 0}}, "grpo.max_completion_length: must be from 1 to 1e+06"),
    ({"grpo": {"max_steps": 10**30}}, "grpo.max_steps: must be from 1 to 1e+08 (or -1"),
    ({"grpo": {"max_steps": 1e30}}, "grpo.max_steps: must be from 1 to 1e+08"),
    ({"model": {"tiny": {"hidden_size": 10**30}}}, "model.tiny.hidden_size: Input should be less than or equal to 8192"),
    ({"model": {"tiny": {}, "max_pixels": 10**30}}, "model.max_pixels: Input should be less than or equal to 100000000"),
    ({"data": {"datasets": [{"name": "s", "kind": "synthetic_shapes", "num_samples": 10**30}]}},
     "data.datasets[0].num_samples: Input should be less than or equal to 10000000"),
    ({"data": {"datasets": [{"name": "s", "kind": "synthetic_shapes"}], "replay": {"dataset": "s", "ratio": 0.3}}},
     "data.replay.dataset: 's' is the only dataset"),
    ({"rewards": [{"name": "format", "weight": float("nan")}]}, "rewards[0].weight: Input should be a finite number"),
    ({"rewards": [{"name": "format", "weight": -1}]}, "rewards[0].weight: Input should be greater than or equal to 0"),
    ({"rewards": [{"name": "format"}, {"name": "classification_accuracy"}, {"name": "rewards.answer_format:format"}]},
     "rewards[2] (rewards.answer_format:format) is logged as 'format', like rewards[0]"),
    ({"eval": {"datasets": [{"name": "e", "kind": "synthetic_shapes"}, {"name": "e", "kind": "synthetic_shapes"}]}},
     "eval.datasets: dataset names must be unique (scores are reported by dataset name); 'e' appears more than once"),
])
def test_bad_values_are_refused_up_front_naming_field_and_range(changes, expected):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for section, value in changes.items():
        if section == "model" and "tiny" in value:
            value = {**value, "tiny": {"family": "qwen2_5_vl", **value["tiny"]}}
        data[section] = value
    assert expected in error_of(data)


def test_bad_values_end_in_one_message_and_exit_status_2(tmp_path, capsys):
    from rft.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "grpo": {"per_device_train_batch_size": 0, "max_steps": 10**30},
                                    "output": {"dir": str(tmp_path / "out")}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "grpo.per_device_train_batch_size: must be from 1" in err and "grpo.max_steps: must be from 1" in err
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_recipe_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: run\nmodel:\n  path: café\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"latin1.yaml:3: not UTF-8 text \(invalid continuation byte at byte 28\)"):
        load_recipe(path)


EXPLOIT = "{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}What shape?"


@pytest.mark.parametrize("where", ["data.templates.classification", "data.datasets[0].template", "eval.datasets[0].template"])
def test_a_template_cannot_run_commands(tmp_path, where):
    """A prompt template rendered with a plain jinja2.Environment ran shell commands; templates render in
    Jinja's sandbox with only the documented variables, and reaching for anything else fails up front,
    naming the field."""
    marker = tmp_path / "pwned"
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    if where == "eval.datasets[0].template":
        data["eval"] = {"datasets": [{"name": "e", "kind": "synthetic_shapes"}]}
    apply_override(data, f"{where}={yaml.safe_dump(EXPLOIT % marker, default_style=chr(34)).strip()}")
    message = error_of(data)
    assert f"{where}: the template uses 'cycler'; a prompt template sees only query, task, family" in message
    assert f"{where}: the template reaches for '__globals__', '__init__'" in message
    assert not marker.exists()


def test_the_sandbox_refuses_what_the_up_front_check_cannot_see():
    from rft.data.prompts import render_prompt

    row = {"id": "r1", "task": "classification", "query": {"classes": ["a"]}}
    sneaky = "{{ query|attr('__class__') }}"  # no attribute node to see: the sandbox refuses it when rendering
    validate({**MINIMAL, "data": {**MINIMAL["data"], "templates": {"classification": sneaky}}})
    with pytest.raises(RecipeError, match=r"prompt template <classification template> for row r1: refused by the sandbox"):
        render_prompt(row, "qwen2_vl", sneaky)
    assert render_prompt(row, "qwen2_vl", "Which? {{ query.classes | join(', ') | upper }}") == "Which? A"


def test_the_exploit_fails_when_rendered_too(tmp_path):
    from rft.data.prompts import render_prompt

    marker = tmp_path / "pwned"
    row = {"id": "r1", "task": "classification", "query": {"classes": ["a"]}}
    for template in (EXPLOIT % marker, EXPLOIT.replace("cycler", "query") % marker):
        with pytest.raises(RecipeError, match="prompt template <classification template> for row r1: "):
            render_prompt(row, "qwen2_vl", template)
    assert not marker.exists()


def test_tiny_model_sizes_must_split_into_heads():
    base = {"data": {"datasets": [{"name": "d", "kind": "synthetic_shapes"}]}, "rewards": [{"name": "format"}]}
    recipe = validate({**base, "model": {"tiny": {"vision_hidden_size": 192, "vision_num_heads": 3}}})
    assert recipe.model.tiny.vision_depth == 2 and recipe.model.tiny.intermediate_size is None
    with pytest.raises(RecipeError, match="vision_hidden_size \\(40\\) must be vision_num_heads \\(4\\) x a head size divisible by 4"):
        validate({**base, "model": {"tiny": {"vision_hidden_size": 40, "vision_num_heads": 4}}})
