"""The demo with and without dynamic sampling (``sampling.filter: zero_std``): does filtering reach the
plain demo's final reward in no more steps, and what does it cost?

Both runs train the demo recipe (rft/demo.yaml) from the same seed. The policy's reward is compared on
the scheduled prompts, before any filtering: the plain run's ``reward``, the filtered run's
``dynamic_sampling/unfiltered_reward`` (its ``reward`` is the kept batch's, biased by design). The target
is the plain run's final reward (the mean of its last ``--window`` steps); a run reaches it at the first
step whose trailing ``--window``-step mean is at least the target.

    python bench/demo_sampling.py                          # both demos, one after the other (minutes each on 2 cores)
    python bench/demo_sampling.py --runs outputs/plain outputs/filtered   # two finished demo folders

Prints a table (and writes it as JSON with ``--out``); results go to docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def policy_rewards(history: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, the policy's mean reward on the scheduled prompts) of a run's log history."""
    logged = [h for h in history if "reward" in h and "step" in h]
    key = "dynamic_sampling/unfiltered_reward"
    return (np.array([h["step"] for h in logged]),
            np.array([h[key] if key in h else h["reward"] for h in logged], dtype=float))


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    return np.array([values[max(0, i - window + 1): i + 1].mean() for i in range(len(values))])


def summary(run: Path, target: float | None, window: int) -> dict:
    """One run's row: final reward, the step at which it reaches ``target``, held-out accuracy, cost."""
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics["log_history"]
    steps, rewards = policy_rewards(history)
    smooth = trailing_mean(rewards, window)
    reached = [int(s) for s, v in zip(steps, smooth) if target is not None and v >= target - 1e-9]
    evals = {h["step"]: h["eval/classification_accuracy"] for h in history if "eval/classification_accuracy" in h}
    filtered = [h["dynamic_sampling/filtered"] for h in history if "dynamic_sampling/filtered" in h]
    prompts = [h["dynamic_sampling/prompts"] for h in history if "dynamic_sampling/prompts" in h]
    runtime = next((h["train_runtime"] for h in history if "train_runtime" in h), None)
    grpo = yaml.safe_load((run / "recipe.yaml").read_text())["grpo"]
    scheduled = int(steps[-1]) * grpo["per_device_train_batch_size"] // grpo["num_generations"]  # one process
    return {
        "run": str(run), "steps": int(steps[-1]), "final_reward": float(rewards[-window:].mean()),
        "steps_to_target": reached[0] if reached else None,
        "heldout_before": metrics.get("eval_before_grpo", {}).get("eval/classification_accuracy"),
        "heldout_during": evals,
        "heldout_after": metrics.get("eval_after_grpo", {}).get("eval/classification_accuracy"),
        "filtered_mean": float(np.mean(filtered)) if filtered else 0.0,
        "rounds_mean": float(np.mean([h["dynamic_sampling/rounds"] for h in history if "dynamic_sampling/rounds" in h]
                                     or [1.0])),
        "prompts_generated": int(sum(prompts)) if prompts else scheduled,
        "train_runtime_s": runtime,
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_demo(out: Path, filtered: bool) -> Path:
    overrides = ["--set", "sampling.filter=zero_std"] if filtered else []
    subprocess.run([sys.executable, "-m", "rft.cli", "demo", "--output-dir", str(out), *overrides], cwd=ROOT, check=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs=2, metavar=("PLAIN", "FILTERED"), help="two finished demo output folders")
    p.add_argument("--work", default="/tmp/rft_demo_sampling")
    p.add_argument("--window", type=int, default=30, help="steps in the trailing mean (default 30: a tenth of the demo)")
    p.add_argument("--out", help="also write the table as JSON")
    args = p.parse_args()
    if args.runs:
        plain, filtered = map(Path, args.runs)
    else:
        plain = run_demo(Path(args.work) / "plain", filtered=False)
        filtered = run_demo(Path(args.work) / "filtered", filtered=True)
    target = summary(plain, None, args.window)["final_reward"]
    rows = {"plain": summary(plain, target, args.window), "dynamic sampling": summary(filtered, target, args.window)}
    print(f"target: the plain demo's final reward {target:.3f} (mean of its last {args.window} steps)\n")
    head = ["run", "steps", "final reward", "steps to target", "held-out acc. before -> after", "filtered",
            "rounds", "prompts generated", "train s"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for name, r in rows.items():
        runtime = f"{r['train_runtime_s']:.0f}" if r["train_runtime_s"] is not None else "-"
        print(" | ".join([name, str(r["steps"]), f"{r['final_reward']:.3f}", str(r["steps_to_target"]),
                          f"{_number(r['heldout_before'])} -> {_number(r['heldout_after'])}", f"{r['filtered_mean']:.2f}",
                          f"{r['rounds_mean']:.2f}", str(r["prompts_generated"]), runtime]))
    if args.out:
        Path(args.out).write_text(json.dumps({"target": target, "window": args.window, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
