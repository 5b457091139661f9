"""The plugin registry: names, modules, files, entry points, options and errors."""

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
