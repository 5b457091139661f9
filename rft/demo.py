"""``rft demo``: train a tiny VLM on synthetic shapes on the CPU and show its reward rising."""

from __future__ import annotations

import json
from pathlib import Path

DEMO_RECIPE = Path(__file__).with_name("demo.yaml")
QUICK = ["grpo.max_steps=40", "warmup.steps=40", "data.datasets[0].num_samples=512", "eval.datasets[0].num_samples=64"]


def run_demo(output_dir: str = "outputs/demo", overrides: list[str] | tuple[str, ...] = (), quick: bool = False,
             overwrite: bool = False) -> dict:
    """Run the demo recipe; returns its summary (also printed and written to ``metrics.json``). An earlier
    run in ``output_dir`` is replaced only with ``overwrite``."""
    import torch

    from rft.recipe import load_recipe
    from rft.train.run import train

    torch.set_num_threads(max(1, torch.get_num_threads()))
    recipe = load_recipe(DEMO_RECIPE, [*(QUICK if quick else []), f"output.dir={output_dir}", *overrides])
    print(f"rft demo: tiny {recipe.model.tiny.family} from random weights, synthetic shapes, "
          f"{recipe.warmup.steps} warm-up steps then {recipe.grpo['max_steps']} GRPO steps on the CPU", flush=True)
    trainer = train(recipe, overwrite=overwrite)
    metrics = json.loads((Path(output_dir) / "metrics.json").read_text())
    steps = [h for h in trainer.state.log_history if "reward" in h]
    k = max(1, len(steps) // 10)
    first = sum(h["reward"] for h in steps[:k]) / k
    last = sum(h["reward"] for h in steps[-k:]) / k
    summary = {
        "reward_first_steps": first, "reward_last_steps": last,
        "heldout_accuracy_before_grpo": metrics["eval_before_grpo"].get("eval/classification_accuracy"),
        "heldout_accuracy_after_grpo": metrics["eval_after_grpo"].get("eval/classification_accuracy"),
        "chance": 1 / 4,
    }
    print(f"\nreward: {first:.3f} (first {k} steps) -> {last:.3f} (last {k} steps)")
    print(f"held-out accuracy: {summary['heldout_accuracy_before_grpo']:.3f} before GRPO -> "
          f"{summary['heldout_accuracy_after_grpo']:.3f} after (chance {summary['chance']:.2f})")
    print(f"reward curve: {Path(output_dir) / 'reward_curve.png'}")
    metrics["demo_summary"] = summary
    (Path(output_dir) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return summary
