"""How long ``rft eval`` takes per 100 images on the CPU with the tiny model: batch size 1 vs batched.

Both paths run in one process on the same 100 synthetic detection images (tiny Qwen2.5-VL, greedy,
32 new tokens). Run: ``python bench/eval_bench.py [--batch-size 16]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from rft.data.sources import trl_rows_for
from rft.eval.run import generate_samples
from rft.eval.metrics import evaluate
from rft.models.load import load_model
from rft.recipe import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="rft_eval_bench_"))
    recipe = validate({
        "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 12544, "max_pixels": 12544},
        "data": {"datasets": [{"name": "d", "kind": "synthetic_shapes", "num_samples": 4}]},
        "rewards": [{"name": "detection_iou"}],
        "eval": {"datasets": [{"name": "bench", "kind": "synthetic_shapes", "task": "detection",
                               "num_samples": args.images, "negative_ratio": 0.2, "split": "bench"}],
                 "max_new_tokens": 32},
        "output": {"dir": str(work)},
    })
    loaded = load_model(recipe.model, work)
    rows = [r for rs in trl_rows_for(recipe.eval.datasets, recipe, loaded, work / "data").values() for r in rs]
    generate_samples(loaded, rows[:4], recipe, batch_size=4)  # warm up
    results = []
    for batch in (1, args.batch_size):
        start = time.perf_counter()
        samples = generate_samples(loaded, rows, recipe, batch_size=batch)
        generation = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(samples)
        scoring = time.perf_counter() - start
        results.append((batch, generation, scoring))
    print(f"{'batch size':>10}  {'generate s/100 img':>18}  {'score s/100 img':>15}  {'speed-up':>8}")
    for batch, generation, scoring in results:
        per100 = 100 / len(rows)
        print(f"{batch:>10}  {generation * per100:>18.2f}  {scoring * per100:>15.3f}  {results[0][1] / generation:>7.1f}x")


if __name__ == "__main__":
    main()
