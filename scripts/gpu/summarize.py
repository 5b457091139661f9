"""One JSON line per GPU proof run: steps done, rewards, importance-sampling ratio, s/step, peak memory."""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def main(out: str, rc: str, wall: str, args: str) -> None:
    folder = Path(out)
    log = (folder / "log.txt").read_text(errors="replace") if (folder / "log.txt").is_file() else ""
    steps = [(int(m[1]), float(m[2]), float(m[3])) for m in re.finditer(r"step\s+(\d+)/\d+\s+reward ([\d.]+).*?(\d+)s$", log, re.M)]
    times = [b[2] - a[2] for a, b in zip(steps, steps[1:])]
    history = []
    if (folder / "metrics.json").is_file():
        history = [h for h in json.loads((folder / "metrics.json").read_text())["log_history"] if "reward" in h]
    ratio = [h["sampling/importance_sampling_ratio/mean"] for h in history if "sampling/importance_sampling_ratio/mean" in h]
    peak = {}
    for line in (folder / "memory.csv").read_text().splitlines() if (folder / "memory.csv").is_file() else []:
        index, used = (x.strip() for x in line.split(","))
        peak[index] = max(peak.get(index, 0), int(used))
    errors = [line for line in log.splitlines() if re.search(r"Error|error:|Traceback", line)][-3:]
    print(json.dumps({
        "run": folder.name, "exit": int(rc), "wall_s": int(wall), "args": args, "steps": len(steps),
        "reward_first": steps[0][1] if steps else None, "reward_last": steps[-1][1] if steps else None,
        "s_per_step_median": round(statistics.median(times[1:] or times), 2) if times else None,
        "is_ratio_mean_first": ratio[:3], "is_ratio_mean_last": ratio[-3:],
        "peak_gpu_mib": peak, "held_out": [l for l in log.splitlines() if l.startswith("held-out")],
        "errors": errors,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:5])
