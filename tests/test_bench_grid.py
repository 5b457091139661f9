"""Issue 17's speed grid in bench/grpo_throughput.py: the row presets and the grid's table and plot (no model run)."""

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("grpo_throughput_grid", ROOT / "bench" / "grpo_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def resolved(**given) -> tuple[argparse.Namespace, dict]:
    args = argparse.Namespace(row=None, tiny=False, prompts=None, max_model_length=None, train_vision=False,
                              **{name: None for name in bench.ROW_SETTINGS})
    for key, value in given.items():
        setattr(args, key, value)
    return args, bench.resolve_row(args)


@pytest.mark.parametrize("name, expected", [
    ("standard", dict(arch="3b", lora=0, image_tokens=391, new_tokens=256, generations=8, max_model_length=2048)),
    ("large_images", dict(image_size="1280x960", max_pixels=1_228_800, image_tokens=1564, max_model_length=4096)),
    ("long_completions", dict(new_tokens=1024, image_tokens=391, max_model_length=2048)),
    ("gen16", dict(generations=16, new_tokens=256)),
    ("7b", dict(arch="7b", lora=0, image_tokens=391)),
    ("lora", dict(arch="3b", lora=64)),
])
def test_row_presets_give_the_rows_settings(name, expected):
    args, row = resolved(row=name)
    assert row["name"] == name and row["prompts"] == 8
    for key, value in expected.items():
        assert row[key] == value, key
    # (B)'s prompt holds each image twice: the model length leaves room for it and the new tokens
    assert row["max_model_length"] >= 2 * row["image_tokens"] + 20 + row["new_tokens"]
    assert args.new_tokens == row["new_tokens"] and args.arch == row["arch"]


def test_explicit_flags_win_and_rename_the_row_and_tiny_keeps_the_shape():
    _, row = resolved(row="long_completions", new_tokens=64)
    assert row["new_tokens"] == 64 and row["name"] == "long_completions+new_tokens=64"
    _, row = resolved(row="long_completions", tiny=True)  # an eighth of the new tokens, said in the row
    assert row["new_tokens"] == 128 and row["prompts"] == 1 and "1024 -> 128" in row["tiny_note"]
    _, row = resolved(row="large_images", tiny=True)
    assert row["image_tokens"] == 1564  # the large image size is kept
    with pytest.raises(SystemExit):
        resolved(image_size="640by480")


def test_tiny_configs_keep_the_architectures_shape():
    for arch in bench.ARCHS:
        full, full_vision, tied = bench.text_and_vision_sizes(arch, tiny=False)
        tiny, tiny_vision, tiny_tied = bench.text_and_vision_sizes(arch, tiny=True)
        gqa = lambda t: t["num_attention_heads"] // t["num_key_value_heads"]  # noqa: E731
        assert tied == tiny_tied == (arch == "3b")
        assert tiny_vision["out_hidden_size"] == tiny["hidden_size"] and full_vision["out_hidden_size"] == full["hidden_size"]
        if arch == "7b":
            assert gqa(full) == gqa(tiny) == 7 and full["hidden_size"] == 3584


def result(s_per_step, peak=90.0):
    return {"s_per_step": s_per_step, "generated_tokens": 16384, "train_tokens": 42304, "peak_gpu_gib": peak,
            "phases": dict.fromkeys(bench.PHASES, s_per_step / 10)}


def report(name, image_tokens, new_tokens, results, peak_tflops=800.0):
    return {"params": 3_750_000_000, "bf16_peak_tflops": peak_tflops, "device": "NVIDIA H200",
            "row": {"name": name, "varies": name, "image_tokens": image_tokens, "new_tokens": new_tokens},
            "results": results}


def test_grid_table_ratios_failures_and_plot(tmp_path):
    reports = [
        report("large_images", 1564, 256, {"C": result(14.0)}),  # (B) and (C) of a row from two files
        report("large_images", 1564, 256, {"B": result(100.0, peak=120.0)}, peak_tflops=700.0),
        report("standard", 391, 256, {"B": result(30.0), "C": result(6.0)}),
        report("long_completions", 391, 1024, {"C": result(15.0)}),
        report("7b", 391, 256, {"B": {"error": "torch.OutOfMemoryError: CUDA out of memory."}, "C": result(14.0)}),
    ]
    rows = bench.grid_rows(reports)
    assert list(rows) == ["standard", "large_images", "long_completions", "7b"]  # ROWS' order
    lines = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in bench.grid_table(rows).splitlines()[2:]}
    assert lines["standard"][4:7] == ["30.00", "6.00", "5.00x"]
    assert lines["large_images"][4:7] == ["100.00", "14.00", "7.14x"]
    assert lines["large_images"][8:10] == ["120.0", "90.0"]
    assert lines["long_completions"][4:7] == ["not run", "15.00", "-"]
    assert lines["7b"][4:7] == ["out of memory", "14.00", "-"] and lines["7b"][8] == "out of memory"
    mfu = (6 * 3.75e9 * 42304 + 2 * 3.75e9 * 16384) / (6.0 * 800e12)
    assert lines["standard"][7] == f"{mfu:.1%}"
    assert lines["standard"][10].startswith("generation 0.60 / weight 0.60")
    png = bench.plot_grid(rows, tmp_path / "grid.png")
    assert png.stat().st_size > 10_000


def test_every_mode_trains_the_same_parts():
    """(A)/(B) freeze the vision tower as (C)'s recipe does (rft's default), unless --train-vision: the rows
    compare frameworks training the same parameters."""
    from transformers import AutoModelForImageTextToText

    from rft.recipe.schema import ModelSection

    assert ModelSection(path="x").freeze.vision  # (C)'s recipe: rft's default
    _, row = resolved()
    assert row["train_vision"] is False and resolved(train_vision=True)[1]["train_vision"] is True
    config = bench.qwen25vl_config("3b", tiny=True)
    frozen = bench.train_like_rft(AutoModelForImageTextToText.from_config(config), train_vision=False)
    trained = bench.train_like_rft(AutoModelForImageTextToText.from_config(config), train_vision=True)
    assert frozen["vision"] == 0 < trained["vision"] and frozen["language"] == trained["language"] > 0
