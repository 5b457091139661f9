"""The ``rft`` command: ``rft data``, ``rft train``, ``rft sft``, ``rft eval``, ``rft export``, ``rft serve``, ``rft demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rft.errors import EXIT_USAGE, RftError


def _data(args: argparse.Namespace) -> int:
    from rft.data.check import check_recipe
    from rft.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.set)
    out = args.output_dir or str(Path(recipe.output.dir) / "data")
    return 0 if check_recipe(recipe, out, args.pictures)["ok"] else 1


def _train(args: argparse.Namespace) -> int:
    from rft.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.set)
    gpus = args.gpus or recipe.distributed.gpus
    if gpus > 1 and "LOCAL_RANK" not in os.environ:
        import time

        from rft.train.launch import launch
        from rft.train.output_dir import check_before_launch, launched_exit_status

        out = Path(recipe.output.dir)
        check_before_launch(out, args.resume, args.overwrite)  # the processes check again, under the lock
        started = time.time()
        code = launch(args.recipe, args.set, recipe.distributed, gpus, args.resume, overwrite=args.overwrite)
        return launched_exit_status(out, started, code)
    from rft.processes import leave_process_group
    from rft.train.run import TrainingInterrupted, train

    try:
        train(recipe, resume=args.resume, overwrite=args.overwrite)
    except TrainingInterrupted:  # every process stops at the same step: they leave the group together
        leave_process_group()
        raise
    leave_process_group()
    return 0


def _sft(args: argparse.Namespace) -> int:
    from rft.recipe import load_recipe
    from rft.train.sft import sft

    sft(load_recipe(args.recipe, args.set))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rft.eval.run import evaluate_recipe
    from rft.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.set)
    if args.gpus > 1 and "LOCAL_RANK" not in os.environ:
        from rft.train.launch import run, set_args, torchrun_command

        passed = [f"--{k.replace('_', '-')}={v}" for k in ("model", "output_dir", "batch_size") if (v := getattr(args, k)) is not None]
        return run(torchrun_command("rft.eval", [args.recipe, *passed, *set_args(args.set)], args.gpus))
    from rft.processes import leave_process_group

    out = args.output_dir or str(Path(recipe.output.dir) / "eval")
    evaluate_recipe(recipe, args.model, out, args.batch_size)
    leave_process_group()
    return 0


def _export(args: argparse.Namespace) -> int:
    from rft.models.load import export_model
    from rft.recipe import load_recipe

    out = export_model(load_recipe(args.recipe, args.set).model, args.model, args.out)
    print(f"exported {args.model} to {out} (model and processor; LoRA adapters merged)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rft.recipe import load_recipe
    from rft.rollout.serve import serve

    return serve(load_recipe(args.recipe, args.set), dry_run=args.dry_run)


def _demo(args: argparse.Namespace) -> int:
    from rft.demo import run_demo

    run_demo(output_dir=args.output_dir, overrides=args.set, quick=args.quick, overwrite=args.overwrite)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rft", description="Reinforcement fine-tuning (GRPO) for vision-language models.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("data", help="load and check every dataset of a recipe (no model is loaded): rows, tasks, "
                       "categories, image sizes, prompts; exits non-zero when a dataset fails")
    c.add_argument("recipe", help="recipe YAML")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one recipe field")
    c.add_argument("--output-dir", default=None, help="where summary.json and pictures/ go (default: <output.dir>/data)")
    c.add_argument("--pictures", type=int, default=4, help="images per dataset drawn with their ground-truth boxes")
    c.set_defaults(func=_data)
    t = sub.add_parser("train", help="train with a recipe")
    t.add_argument("recipe", help="recipe YAML")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one recipe field, e.g. grpo.learning_rate=2e-6 or data.datasets[0].path=x")
    t.add_argument("--gpus", type=int, default=None, help="launch on N GPUs with accelerate (+ DeepSpeed if zero_stage)")
    t.add_argument("--resume", default=None, help="resume: latest (newest checkpoint in output.dir) or a checkpoint folder")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in output.dir (its checkpoints, final model and logs are deleted once "
                        "this run has loaded its model and data); without it, rft train refuses to write over one")
    t.set_defaults(func=_train)
    f = sub.add_parser("sft", help="supervised fine-tuning on the recipe's training data (reference answers; its sft: section)")
    f.add_argument("recipe", help="recipe YAML")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one recipe field")
    f.set_defaults(func=_sft)
    e = sub.add_parser("eval", help="evaluate a model on the recipe's eval datasets (mAP, accuracy, negatives, ...)")
    e.add_argument("recipe", help="recipe YAML")
    e.add_argument("--model", default=None, help="checkpoint or model folder (default: the recipe's model)")
    e.add_argument("--output-dir", default=None, help="where the report goes (default: <output.dir>/eval)")
    e.add_argument("--batch-size", type=int, default=None, help="generation batch size (default: eval.batch_size)")
    e.add_argument("--gpus", type=int, default=1, help="N processes (one per GPU, or CPU processes without GPUs), "
                   "each answering a share of the rows")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one recipe field")
    e.set_defaults(func=_eval)
    x = sub.add_parser("export", help="write a checkpoint (LoRA adapters merged) as a plain Hugging Face model folder")
    x.add_argument("recipe", help="recipe YAML (its model section names the base of a LoRA adapter)")
    x.add_argument("--model", required=True, help="checkpoint folder (checkpoint-N, final, or an adapter folder)")
    x.add_argument("--out", required=True, help="folder to write (from_pretrained / vLLM / rft eval --model load it)")
    x.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one recipe field")
    x.set_defaults(func=_export)
    s = sub.add_parser("serve", help="start the vLLM server for a recipe's rollout.vllm_mode: server")
    s.add_argument("recipe", help="recipe YAML")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one recipe field")
    s.add_argument("--dry-run", action="store_true", help="print the server command line and exit")
    s.set_defaults(func=_serve)
    d = sub.add_parser("demo", help="train a tiny VLM on synthetic shapes on the CPU and show its reward rising")
    d.add_argument("--output-dir", default="outputs/demo")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a demo recipe field")
    d.add_argument("--quick", action="store_true", help="a shorter run (for tests)")
    d.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --output-dir")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        sys.exit(args.func(args))
    except RftError as exc:
        print(f"rft: {'error' if exc.exit_status == EXIT_USAGE else 'stopped'}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_status)


if __name__ == "__main__":
    main()
