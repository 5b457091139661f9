"""The plugin registry: names, modules, files, entry points, options and errors."""

import re
import textwrap
from importlib.metadata import EntryPoint

import pytest

import rewards
from rewards import registry

BUILTINS = ["format", "detection_iou", "detection_confidence", "detection_map", "grounding_iou",
            "negative_sample", "classification_accuracy", "tagging_f1"]


def test_builtins_are_registered_by_name():
    assert set(BUILTINS) <= set(rewards.available())
    for name in BUILTINS:
        assert rewards.get(name).__name__ == name


def test_unknown_name_lists_known_ones():
    with pytest.raises(rewards.RewardSpecError) as err:
        rewards.get("detection_iuo")
    assert "detection_iou" in str(err.value) and "classification_accuracy" in str(err.value)


def test_unknown_option_lists_options():
    with pytest.raises(rewards.RewardSpecError, match="iou_threshold"):
        rewards.get("detection_confidence", iou_treshold=0.3)


def test_options_are_bound_and_name_overridable():
    fn = rewards.get("negative_sample", name="neg_strict", positive_reward=1.0)
    assert fn.__name__ == "neg_strict"
    assert fn.options["positive_reward"] == 1.0
    out = fn(["<answer>[[1, 2, 3, 4]]</answer>"], solution=[{"boxes": [[1, 2, 3, 4]]}], image_size=[[10, 10]],
             coord_format=["pixels"], task=["detection"])
    assert out == [1.0]


def test_decorator_registration():
    @rewards.register("test_length_reward")
    def length_reward(completions, *, scale: float = 1.0, **columns):
        return [min(1.0, len(c) * scale) for c in completions]

    fn = rewards.get("test_length_reward", scale=0.1)
    assert fn.__name__ == "test_length_reward" and fn(["abc"]) == [pytest.approx(0.3)]
    with pytest.raises(rewards.RewardSpecError, match="already registered"):
        rewards.register("test_length_reward")(lambda completions, **kw: [])


def test_module_spec():
    fn = rewards.get("rewards.detection:detection_iou")
    assert fn.__name__ == "detection_iou"
    with pytest.raises(rewards.RewardSpecError, match="no function 'nope'"):
        rewards.get("rewards.detection:nope")
    with pytest.raises(rewards.RewardSpecError, match="cannot import"):
        rewards.get("no_such_module_xyz:fn")


def test_file_spec(tmp_path):
    plugin = tmp_path / "my_rewards.py"
    plugin.write_text(textwrap.dedent('''
        def short_answer(completions, *, max_chars: int = 10, **columns):
            return [1.0 if len(c) <= max_chars else 0.0 for c in completions]
    '''))
    fn = rewards.get(f"{plugin}:short_answer", max_chars=3)
    assert fn.__name__ == "short_answer" and fn(["abc", "abcd"]) == [1.0, 0.0]
    with pytest.raises(rewards.RewardSpecError, match="short_answer"):
        rewards.get(f"{plugin}:long_answer")
    with pytest.raises(rewards.RewardSpecError, match="not found"):
        rewards.get(f"{tmp_path}/missing.py:fn")


def test_entry_points(monkeypatch):
    ep = EntryPoint(name="ep_reward", value="rewards.tagging:tagging_f1", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "ep_reward" in rewards.available()
    assert rewards.get("ep_reward").__name__ == "ep_reward"


def test_check_reward_accepts_builtins_and_catches_broken_plugins():
    from rft.testing import check_reward

    samples = [{"completion": "<answer>[[0, 0, 5, 5]]</answer>", "task": "detection",
                "solution": {"boxes": [[0, 0, 5, 5]]}, "image_size": [10, 10], "coord_format": "pixels"}]
    for name in BUILTINS:
        check_reward(rewards.get(name), samples)
    assert check_reward(rewards.get("detection_iou"), samples) == [1.0]

    def crashes(completions, **columns):
        return [float(c.split("<answer>")[1][0]) for c in completions]

    with pytest.raises(AssertionError, match="raised"):
        check_reward(crashes, samples)

    def out_of_range(completions, **columns):
        return [2.0 for _ in completions]

    with pytest.raises(AssertionError, match="not finite in"):
        check_reward(out_of_range, samples)

    def wrong_length(completions, **columns):
        return [0.0]

    with pytest.raises(AssertionError, match="values for"):
        check_reward(wrong_length, samples[:1] * 2)


def test_columns_never_bind_to_options_but_trl_arguments_reach_the_reward():
    """A dataset column named like an option does not set it; what TRL passes besides the columns
    (trainer_state, log_metric, ...) reaches a reward that declares it as a keyword with a default."""
    seen = {}

    def scaled(completions, *, scale: float = 1.0, trainer_state=None, log_metric=None, **columns):
        seen.update(state=trainer_state, log_metric=log_metric, columns=sorted(columns))
        return [scale] * len(completions)

    rewards.register("test_registry_scaled")(scaled)
    fn = rewards.get("test_registry_scaled")
    state = object()
    assert fn(["a"], scale=[9.0], trainer_state=state, log_metric=print, solution=["x"]) == [1.0]
    assert seen == {"state": state, "log_metric": print, "columns": ["solution"]}
    assert rewards.get("test_registry_scaled", scale=0.5)(["a"], scale=[9.0]) == [0.5]


@pytest.mark.parametrize("spec", ["os:system", "subprocess:run", "os.path:join", "builtins:eval", "shutil:rmtree",
                                  "rewards.parsing:extract_answer"])
def test_module_spec_must_name_a_reward(spec):
    """``{name: "os:system"}`` called os.system: a spec resolves only to a reward function."""
    with pytest.raises(rewards.RewardSpecError, match="is not a reward function"):
        rewards.get(spec)


def test_file_spec_must_name_a_reward_defined_there(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(textwrap.dedent('''
        from os import system
        from rewards.detection import detection_iou

        def helper(text):
            return text

        def mine(completions, **columns):
            return [1.0] * len(completions)
    '''))
    assert rewards.get(f"{plugin}:mine").__name__ == "mine"
    assert rewards.get(f"{plugin}:detection_iou").__name__ == "detection_iou"  # a registered reward, imported
    for name in ("system", "helper"):
        with pytest.raises(rewards.RewardSpecError, match=rf"{name} in .* is not a reward function.*rewards there: \['detection_iou', 'mine'\]"):
            rewards.get(f"{plugin}:{name}")


def test_reward_file_that_fails_to_import_names_file_and_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def r(completions, **columns):\n    return [\n")
    with pytest.raises(rewards.RewardSpecError, match=r"reward file .*broken.py line 2: .*was never closed"):
        rewards.get(f"{broken}:r")
    raising = tmp_path / "raising.py"
    raising.write_text("import json\n\nCONFIG = json.loads('{')\n")
    with pytest.raises(rewards.RewardSpecError, match=r"raising.py line 3: importing it raised JSONDecodeError"):
        rewards.get(f"{raising}:r")


@pytest.mark.parametrize("spec, message", [
    ("fromat", r"rewards\[1\] \(fromat\): unknown reward 'fromat'; registered rewards: .*format"),
    ("{tmp}/missing.py:fn", r"rewards\[1\] \(.*missing.py:fn\): reward file not found"),
    ("os:system", r"rewards\[1\] \(os:system\): 'os:system': system in os is not a reward function"),
])
def test_bad_reward_specs_end_in_one_message(tmp_path, capsys, spec, message):
    """An unknown reward or a missing reward file: the right message, without the 25-line traceback."""
    import yaml

    from rft.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"tiny": {"family": "qwen2_5_vl"}}, "data": {"datasets": [{"name": "s", "kind": "synthetic_shapes"}]},
        "rewards": [{"name": "format"}, {"name": spec.format(tmp=tmp_path)}], "output": {"dir": str(tmp_path / "o")}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not any((tmp_path / "o").iterdir())  # nothing written
