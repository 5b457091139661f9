"""Progress lines while training, ``metrics.json`` + ``reward_curve.png`` at the end, and the plots of
supervised runs (``rft sft``)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from rft.models.parts import describe_groups


def number(value: object) -> float:
    """A logged value as a float; NaN for None (TRL logs None for a reward that applied to nothing)."""
    return float(value) if isinstance(value, (int, float)) else math.nan


def reward_keys(history: list[dict]) -> list[str]:
    """The per-reward mean keys TRL logged (``rewards/<name>/mean``)."""
    return sorted({k for h in history for k in h if k.startswith("rewards/") and k.endswith("/mean")})


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points, ignoring NaNs (shorter at the start)."""
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1): i + 1]
        chunk = chunk[~np.isnan(chunk)]
        out[i] = chunk.mean() if len(chunk) else np.nan
    return out


def plot_rewards(history: list[dict], path: Path, title: str = "GRPO reward") -> Path | None:
    """Total reward, each named reward and held-out scores (``eval/*``) over training steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logged = [h for h in history if "reward" in h and "step" in h]
    if not logged:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    steps = np.array([h["step"] for h in logged])
    window = max(1, len(logged) // 20)
    series = [("reward (weighted sum)", [number(h["reward"]) for h in logged], "black")]
    series += [(k.removeprefix("rewards/").removesuffix("/mean"), [number(h.get(k)) for h in logged], None)
               for k in reward_keys(logged)]
    for label, values, colour in series:
        values = np.array(values)
        line, = ax.plot(steps, values, alpha=0.25, color=colour, linewidth=0.8)
        ax.plot(steps, moving_average(values, window), color=line.get_color(), linewidth=2,
                label=f"{label} ({window}-step mean)" if window > 1 else label)
    for key in sorted({k for h in history for k in h if k.startswith("eval/")}):
        points = [(h["step"], number(h[key])) for h in history if key in h and "step" in h]
        ax.plot(*zip(*points), linestyle="--", marker="o", markersize=3, label=f"held-out {key[5:]}")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def heldout_series(metrics: dict) -> dict[str, list[tuple[int, float]]]:
    """Each held-out score over training steps from a run's ``metrics.json`` (``rft train`` or
    ``rft sft``): before training at step 0, every ``eval.every_steps``, after training at the last step."""
    method = "grpo" if "eval_before_grpo" in metrics else "sft"
    history = metrics.get("log_history", [])
    last = max([h["step"] for h in history if "step" in h] + [metrics.get("steps", 0)])
    points = [(0, metrics.get(f"eval_before_{method}") or {})]
    # rft train keeps each evaluation at the step it followed (TRL's log shows it with the next step)
    evaluations = metrics["heldout_history"] if "heldout_history" in metrics else history
    points += [(h["step"], h) for h in evaluations if "step" in h]
    points.append((last, metrics.get(f"eval_after_{method}") or {}))
    series: dict[str, list[tuple[int, float]]] = {}
    for step, scores in points:
        for key, value in scores.items():
            if key.startswith("eval/") and not math.isnan(number(value)):
                series.setdefault(key, []).append((step, number(value)))
    return series


def plot_supervised(metrics: dict, path: Path, title: str = "supervised fine-tuning") -> Path:
    """Training loss and held-out scores over steps of an ``rft sft`` run (its ``metrics.json``), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    logged = [h for h in metrics.get("log_history", []) if "loss" in h]
    if logged:
        left.plot([h["step"] for h in logged], [h["loss"] for h in logged], color="black", linewidth=1.2)
        left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    left.set_title(title)
    left.grid(alpha=0.3)
    for key, points in sorted(heldout_series(metrics).items()):
        right.plot(*zip(*points), linestyle="--", marker="o", markersize=3, label=key.removeprefix("eval/"))
    right.set_xlabel("step")
    right.set_ylabel("held-out score")
    right.set_title("held-out (greedy answers)")
    right.grid(alpha=0.3)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class RunLog(TrainerCallback):
    """Prints one line per logged step and writes the run's metrics and reward curve when it ends."""

    def __init__(self, output_dir: str | Path, print_fn=print, extra: dict | None = None):
        self.output_dir = Path(output_dir)
        self.print = print_fn
        self.extra = dict(extra or {})
        self.start = time.monotonic()

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        """Records the optimizer's groups (``optimizer_groups`` in ``metrics.json``): learning rate per part, and
        the parameter values process 0 holds (all of them with DDP, its shard under ZeRO)."""
        if state.is_world_process_zero and optimizer is not None:
            self.extra["optimizer_groups"] = describe_groups(optimizer)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        parts = [f"step {state.global_step:>4}/{state.max_steps}", f"reward {logs['reward']:.3f}"]
        parts += [f"{k.removeprefix('rewards/').removesuffix('/mean')} {number(logs[k]):.3f}"
                  for k in reward_keys([logs]) if not math.isnan(number(logs[k]))]
        if "dynamic_sampling/filtered" in logs:  # rft.train.dynamic_sampling
            parts.append(f"filtered {number(logs['dynamic_sampling/filtered']):.2f} "
                         f"rounds {number(logs['dynamic_sampling/rounds']):.1f}")
        parts.append(f"{time.monotonic() - self.start:.0f}s")
        self.print("  ".join(parts), flush=True)

    def write(self, state, extra: dict | None = None) -> None:
        """``metrics.json`` (the log history and ``extra`` results) and ``reward_curve.png``."""
        self.extra.update(extra or {})
        self.output_dir.mkdir(parents=True, exist_ok=True)
        metrics = {**self.extra, "log_history": state.log_history}
        (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        plot_rewards([h for h in state.log_history if "reward" in h], self.output_dir / "reward_curve.png")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.write(state)
