"""``rft eval`` end to end on tiny models: report, summary, pictures, retention check."""

import json

import pytest
import yaml

from rft.cli import main
from rft.recipe import validate
from rft.train.run import train

pytestmark = pytest.mark.slow

SHAPES = {"kind": "synthetic_shapes", "num_samples": 6, "seed": 3, "split": "eval"}
RECIPE = {
    "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
    "data": {"datasets": [{"name": "cls", "kind": "synthetic_shapes", "num_samples": 8}]},
    "rewards": [{"name": "classification_accuracy"}, {"name": "detection_iou"}, {"name": "grounding_iou"}],
    "grpo": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "max_steps": 1},
    "eval": {"datasets": [{**SHAPES, "name": "det", "task": "detection", "negative_ratio": 0.5},
                          {**SHAPES, "name": "grd", "task": "grounding"},
                          {**SHAPES, "name": "cls", "task": "classification"}],
             "max_new_tokens": 16, "batch_size": 4, "pictures": 3,
             "retention": [{**SHAPES, "name": "general", "task": "classification", "seed": 9}]},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(validate({**RECIPE, "output": {"dir": str(out), "report_to": []}}))
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "output": {"dir": str(out), "report_to": []}}))
    return path, out / "final"


def test_eval_writes_report_summary_pictures_and_retention(trained, tmp_path):
    recipe_path, checkpoint = trained
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(recipe_path), "--model", str(checkpoint), "--output-dir", str(tmp_path)])
    assert exit_.value.code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"detection", "negatives", "grounding", "classification", "parse_failures"} <= set(report)
    assert 0.0 <= report["detection"]["mAP"] <= 1.0 and report["negatives"]["n_negatives"] > 0
    assert report["parse_failures"]["n"] == 18  # every answer is counted, parsed or not
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 18 and all("completion" in json.loads(l) for l in lines)
    assert "mAP" in (tmp_path / "summary.txt").read_text()
    assert len(list((tmp_path / "pictures").glob("*.png"))) == 3
    retention = report["retention"]
    assert set(retention) == {"base", "fine_tuned", "change"}
    assert "classification/accuracy" in retention["change"]
    assert retention["base"]["classification"]["n"] == retention["fine_tuned"]["classification"]["n"] == 6


def test_eval_without_eval_datasets_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "eval": {}}))
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(path), "--output-dir", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "eval.datasets is empty" in capsys.readouterr().err


def test_heldout_shares_cover_the_rows_in_order():
    from hypothesis import given
    from hypothesis import strategies as st

    from rft.processes import share

    @given(st.lists(st.integers(), min_size=1, max_size=40), st.integers(1, 8))
    def check(rows, world):
        shares = [share(rows, rank, world) for rank in range(world)]
        assert len({len(s) for s in shares}) == 1  # the same number of batches on every process
        assert [r for s in shares for r in s][:len(rows)] == rows

    check()
