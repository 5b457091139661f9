#!/usr/bin/env python3
"""The docs/learning.md table and pictures from the results of ``scripts/gpu/learning_proof.sh``.

    python scripts/gpu/learning_table.py RESULTS [RESULTS ...] [--pictures DIR]

Each RESULTS is a part's results folder (``learning_n16/`` unpacked from ``learning_n16.tgz``, or
``/tmp/learning/results/n16`` on the machine that ran it), or its ``summary.json``. Prints the
markdown table: N, method, steps, training time, held-out mAP, AP50, negatives correct, false-positive
rate and parse failures, before (the base model) -> after, all from ``rft eval`` reports. With
``--pictures`` it (re)draws, per few-shot part, the held-out mAP / AP50 over steps and training time
of each method and a grid of held-out images with the boxes each model predicted.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

METHODS = {"sft_steps": "SFT, same steps as GRPO", "sft_wall": "SFT, same training time as GRPO", "grpo": "GRPO"}
COLUMNS = ("mAP", "AP50", "negatives correct", "false-positive rate", "parse failures")


def report_scores(report: dict | None) -> dict[str, float]:
    """The table's numbers from an ``rft eval`` ``report.json`` (NaN where missing)."""
    if not report:
        return {c: math.nan for c in COLUMNS}
    detection, negatives, failures = report.get("detection", {}), report.get("negatives", {}), report.get("parse_failures", {})
    n = failures.get("n") or 0
    return {
        "mAP": detection.get("mAP", math.nan),
        "AP50": detection.get("AP50", math.nan),
        "negatives correct": negatives.get("negative_accuracy", math.nan),
        "false-positive rate": negatives.get("false_positive_rate", math.nan),
        "parse failures": (failures.get("no_answer", 0) + failures.get("unparsed", 0)) / n if n else math.nan,
    }


def load_summary(path: str | Path) -> dict:
    path = Path(path)
    return json.loads((path / "summary.json" if path.is_dir() else path).read_text())


def _value(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def table_rows(summaries: list[dict]) -> list[dict]:
    """One row per (N, method): steps, training seconds, and each column before -> after."""
    rows = []
    for summary in summaries:
        if summary.get("part") == "base":
            continue
        before = report_scores(summary.get("eval_base"))
        for method, label in METHODS.items():
            run = summary.get("runs", {}).get(method)
            if not run:
                continue
            after = report_scores(run.get("eval"))
            if method == "grpo":
                label += f" ({summary.get('rollout', 'vllm')} rollouts)"
            rows.append({"N": summary["n"], "method": label, "steps": run.get("steps"),
                         "train_seconds": run.get("train_seconds"), "before": before, "after": after,
                         "change_AP50": after["AP50"] - before["AP50"]})
    return rows


def markdown(summaries: list[dict]) -> str:
    """The results table (and the base model's own held-out line) as markdown."""
    lines = []
    for summary in summaries:
        if summary.get("part") == "base":
            base = report_scores(summary.get("eval_base"))
            novel = report_scores(summary.get("eval_novel"))
            run = summary.get("base", {})
            lines.append(f"Base model: {run.get('steps')} supervised steps in {_value(run.get('train_seconds'))} s; "
                         "held-out base categories: " + ", ".join(f"{k} {_value(v)}" for k, v in base.items())
                         + "; novel categories (before few-shot training): "
                         + ", ".join(f"{k} {_value(v)}" for k, v in novel.items()) + ".")
            lines.append("")
    header = "| N | method | steps | training time (s) | " + " | ".join(f"{c}: before -> after" for c in COLUMNS) + " |"
    lines += [header, "|" + " --- |" * (4 + len(COLUMNS))]
    for row in table_rows(summaries):
        cells = [f"{_value(row['before'][c])} -> **{_value(row['after'][c])}**" for c in COLUMNS]
        seconds = row["train_seconds"]
        lines.append(f"| {row['N']} | {row['method']} | {row['steps']} | {'n/a' if seconds is None else f'{seconds:.0f}'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Pictures


def plot_heldout(summary: dict, path: Path) -> Path | None:
    """Held-out mAP and AP50 of each method over optimizer steps and over training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {m: r for m, r in summary.get("runs", {}).items() if r.get("heldout")}
    if not runs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    for (method, run), colour in zip(runs.items(), ("tab:blue", "tab:orange", "tab:red")):
        per_step = (run.get("train_seconds") or 0) / max(1, run.get("steps") or 1)
        for key, style in (("eval/AP50", "-"), ("eval/mAP", ":")):
            points = run["heldout"].get(key) or []
            if not points:
                continue
            steps, values = zip(*points)
            label = f"{METHODS[method]}: {key.removeprefix('eval/')}"
            axes[0].plot(steps, values, style, marker="o", markersize=3, color=colour, label=label)
            axes[1].plot([s * per_step for s in steps], values, style, marker="o", markersize=3, color=colour, label=label)
    for ax, xlabel in zip(axes, ("optimizer step", "training time (s, held-out evaluation excluded)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out novel categories")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"N = {summary['n']}: held-out AP50 (solid) and mAP (dotted)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def boxes_grid(summary: dict, results: Path, path: Path, n_images: int = 4) -> Path | None:
    """Held-out images (rows) with each model's boxes (columns: base model, then each method), from the
    ``pictures/`` of their ``rft eval`` runs (ground truth green, prediction red)."""
    from PIL import Image, ImageDraw

    columns = [("base model", results / "eval_base")]
    columns += [(METHODS[m], results / f"eval_{m}") for m in METHODS if m in summary.get("runs", {})]
    pictures = [sorted((folder / "pictures").glob("*.png"))[:n_images] for _, folder in columns]
    if not pictures or not all(pictures):
        return None
    rows = min(len(p) for p in pictures)
    cell_w, cell_h = Image.open(pictures[0][0]).size
    header = 18
    grid = Image.new("RGB", (cell_w * len(columns), header + cell_h * rows), "white")
    draw = ImageDraw.Draw(grid)
    for c, ((title, _), files) in enumerate(zip(columns, pictures)):
        draw.text((c * cell_w + 4, 3), title[:40], fill=(0, 0, 0))
        for r, file in enumerate(files[:rows]):
            grid.paste(Image.open(file).convert("RGB"), (c * cell_w, header + r * cell_h))
    grid.save(path)
    return path


def pictures(summary: dict, results: Path, out: Path) -> list[Path]:
    """Every picture of a few-shot part into ``out``: held-out curves, box grid, GRPO's reward curve."""
    out.mkdir(parents=True, exist_ok=True)
    n = summary["n"]
    made = [plot_heldout(summary, out / f"heldout_n{n}.png"), boxes_grid(summary, results, out / f"boxes_n{n}.png")]
    reward_curve = results / "grpo" / "reward_curve.png"
    if reward_curve.is_file():
        made.append(Path(shutil.copy(reward_curve, out / f"grpo_reward_n{n}.png")))
    return [p for p in made if p]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results folders (or summary.json files) of the parts")
    parser.add_argument("--pictures", type=Path, default=None, help="draw the pictures of each few-shot part here")
    args = parser.parse_args(argv)
    summaries = [load_summary(p) for p in args.results]
    print(markdown(summaries))
    if args.pictures:
        for path, summary in zip(args.results, summaries):
            folder = Path(path) if Path(path).is_dir() else Path(path).parent
            if summary.get("part") != "base":
                for made in pictures(summary, folder, args.pictures):
                    print(f"wrote {made}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
