"""CPU time to fetch one GRPO step's rows from rft's dataset, with and without ``speed.cache_decoded_images``.

The set-up of bench/grpo_throughput.py: 8 prompts x 8 generations, one 640x480 image per prompt
(stored as rft stores resized images: PNG, or JPEG quality 95 for JPEG sources), fetched in the order
TRL's sampler asks for them (each prompt once per generation). "new images" fetches 8 images the
cache has not seen (every step of a first epoch); "seen before" fetches them again (later epochs of
a few-shot dataset). Median of ``--repeats`` fetches, both variants alternately in one run.

    python bench/data_fetch_bench.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rft.data.build import to_dataset  # noqa: E402


def rows_for(folder: Path, n: int, suffix: str, offset: int) -> list[dict]:
    rng, rows = np.random.default_rng(offset), []
    for i in range(n):
        image = Image.fromarray((rng.random((476, 644, 3)) * 60 + 100).astype(np.uint8))  # textured, like a photo
        ImageDraw.Draw(image).rectangle((50 + i * 10, 60, 300, 280), fill=(200, 30, 30))
        path = folder / f"{offset + i}{suffix}"
        image.save(path, **({"quality": 95} if suffix == ".jpg" else {}))
        rows.append({"prompt": [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "q"}]}],
                     "image": str(path), "task": "classification", "solution": "{}", "image_size": [644, 476],
                     "coord_format": None, "model_image_size": [644, 476], "id": str(offset + i), "dataset": "bench"})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    print(f"{args.prompts} prompts x {args.generations} generations, 644x476 images; seconds per step's fetch (median)\n")
    print("format | images | decoded every fetch | cache_decoded_images | speed-up")
    print("--- | --- | --- | --- | ---")
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".png", ".jpg"):
            steps = [rows_for(Path(folder), args.prompts, suffix, k * args.prompts) for k in range(args.repeats)]
            data = {False: to_dataset(sum(steps, []), False), True: to_dataset(sum(steps, []), True)}
            times = {("new", c): [] for c in data} | {("seen", c): [] for c in data}
            for k in range(args.repeats):
                order = [k * args.prompts + i for i in range(args.prompts) for _ in range(args.generations)]
                for kind in ("new", "seen"):
                    for cached, dataset in data.items():
                        start = time.perf_counter()
                        dataset.__getitems__(order)
                        times[(kind, cached)].append(time.perf_counter() - start)
            for kind, label in (("new", "new"), ("seen", "seen before")):
                plain, fast = (statistics.median(times[(kind, c)]) for c in (False, True))
                print(f"{suffix[1:].upper()} | {label} | {plain:.3f} | {fast:.3f} | {plain / fast:.1f}x")


if __name__ == "__main__":
    main()
