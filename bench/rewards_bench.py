"""Completions scored per second by each built-in reward, on one core.

Answers give 10 boxes against 10 ground-truth boxes (detection rewards), in TRL's batch layout:
8 prompts x 8 generations per call. Completions per CPU-second, median and worst of 5 rounds.
Run: ``python bench/rewards_bench.py [--seconds 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import rewards  # noqa: E402

TASK_OF = {"classification_accuracy": "classification", "tagging_f1": "tagging", "grounding_iou": "grounding"}


def make_batch(rng: np.random.Generator, task: str, n_prompts: int = 8, n_generations: int = 8):
    completions, cols = [], {"task": [], "solution": [], "image_size": [], "coord_format": []}
    for _ in range(n_prompts):
        xy = rng.uniform(0, 500, size=(10, 2))
        gt = np.hstack([xy, xy + rng.uniform(20, 120, size=(10, 2))]).round(1)
        n_gt = 1 if task == "grounding" else 10
        sol = json.dumps({"boxes": gt[:n_gt].tolist(), "labels": ["cat"] * n_gt, "label": "cat", "tags": ["cat", "sofa"]})
        for _ in range(n_generations):
            pred = (gt[:n_gt] + rng.normal(0, 8, size=gt[:n_gt].shape)) / 640 * 1000
            pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
            if task in ("detection", "grounding"):
                items = [{"bbox_2d": [int(v) for v in b], "label": "cat", "confidence": 0.9} for b in pred]
                answer = json.dumps(items)
            elif task == "classification":
                answer = "cat"
            else:
                answer = "cat, sofa, window"
            completions.append(f"<think>I see the objects.</think><answer>{answer}</answer>")
            for key, value in (("task", task), ("solution", sol), ("image_size", [640, 640]), ("coord_format", "norm1000")):
                cols[key].append(value)
    return completions, cols


def bench(name: str, seconds: float, rounds: int = 5) -> tuple[float, float]:
    """(median, worst) completions per CPU-second over ``rounds`` timed rounds."""
    fn = rewards.get(name)
    task = TASK_OF.get(name, "detection")
    completions, cols = make_batch(np.random.default_rng(0), task)
    fn(completions, **cols)  # warm caches
    rates = []
    for _ in range(rounds):
        done, start = 0, time.process_time()  # CPU time: fair on a shared machine
        while time.process_time() - start < seconds / rounds:
            fn(completions, **cols)
            done += len(completions)
        rates.append(done / (time.process_time() - start))
    return float(np.median(rates)), min(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(f"{'reward':<26}{'median /s':>12}{'worst /s':>12}")
    print("-" * 50)
    for name in ["detection_iou", "detection_confidence", "detection_map", "grounding_iou", "negative_sample",
                 "classification_accuracy", "tagging_f1", "format"]:
        median, worst = bench(name, args.seconds)
        print(f"{name:<26}{median:>12,.0f}{worst:>12,.0f}")


if __name__ == "__main__":
    main()
