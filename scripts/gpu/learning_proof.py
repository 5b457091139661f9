#!/usr/bin/env python3
"""Issue 14's learning proof (docs/learning.md): one part per command, each under 9 minutes on one GPU.

    python scripts/gpu/learning_proof.py base   # rft sft of the base model on base categories (kept in WORK/base),
                                                # a bit-for-bit check (two short runs, the data sets twice),
                                                # rft eval on base and on novel held-out images
    python scripts/gpu/learning_proof.py n16    # from WORK/base, N = 16 novel images: SFT for GRPO's number of
                                                # steps, GRPO (vLLM colocate under torchrun), SFT for GRPO's
                                                # training time; rft eval of the base model and of each result
    python scripts/gpu/learning_proof.py n64    # the same with N = 64

``scripts/gpu/learning_proof.sh PART`` runs this with the GPU machine's environment. Results go to
WORK/results/PART (logs, metrics, rft eval reports and pictures, plots, ``summary.json``, ``table.md``)
and are packed into OUT/learning_PART.tgz, next to OUT/learning_PART.json (the summary). ``--toy``
runs the same steps at toy size on the CPU (tiny model, a few steps, transformers rollouts), and
``--in-process`` runs the rft commands in this process, one after another (what the CI test does).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "learning"
BASE_RECIPE, FEWSHOT_RECIPE = RECIPES / "base.yaml", RECIPES / "fewshot.yaml"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

CHECK_STEPS, CHECK_ROWS = 40, 2048
"""The bit-for-bit check: two runs of the base recipe for this many steps on this many images."""

# Toy sizes for the CPU (the CI test): the smallest tiny model, a few steps, transformers rollouts.
TOY_BASE = [
    "model.tiny={family: qwen2_5_vl}", "data.datasets[0].num_samples=16", "sft.steps=4", "sft.batch_size=4",
    "sft.log_every=2", "eval.datasets[0].num_samples=4", "eval.every_steps=2", "eval.max_new_tokens=16", "eval.batch_size=4",
]
TOY_FEWSHOT = [
    "sft.batch_size=4", "sft.log_every=1", "grpo.max_steps=2", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
    "grpo.max_completion_length=12", "grpo.bf16=false", "rollout.backend=transformers", "eval.datasets[0].num_samples=4",
    "eval.every_steps=1", "eval.max_new_tokens=12", "eval.batch_size=4",
]
TOY_CHECK = ["sft.steps=2", "data.datasets[0].num_samples=8"]
EVAL_RESERVE_S = 75
"""Time kept back at the end of a part for the last rft eval, the pictures and the packing."""
BASE_STARTUP_S, AFTER_BASE_S = 60, 130
"""The base run's start-up (imports, data, model) and what follows its training (held-out scores,
saving, two rft evals, packing, a margin): the base run trains for the rest of the part's time."""
STEP_ROUNDING = 250
CONCURRENT_SLOWDOWN = 1.8
"""How much slower each of the two check runs trains while they share the GPU: 0.58 s/step each, against
0.30 s/step for the base run alone (one H200, 2026-12-02, docs/learning.md)."""


@dataclass
class Proof:
    """One part's settings, clock and record."""

    part: str
    work: Path
    out: Path
    toy: bool
    in_process: bool
    deadline_s: float
    sets: list[str] = field(default_factory=list)
    """``--set`` overrides of the part's recipe (few-shot or base), for every command of the part."""
    base_steps: int | None = None
    """The base run's steps when given (``--base-steps``), instead of as many as fit the part's time."""
    base_recipe: Path = BASE_RECIPE
    """The base part's recipe (``--base-recipe``): base.yaml, or base_named.yaml (the novel names and looks seen
    in classification only)."""
    start: float = field(default_factory=time.monotonic)
    commands: list[dict] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return self.work / "results" / self.part

    def left(self) -> float:
        return self.deadline_s - (time.monotonic() - self.start)

    def log(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:6.0f}s] {message}"
        print(line, flush=True)
        with open(self.results / "driver.log", "a") as f:
            f.write(line + "\n")


@dataclass
class Job:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    rc: int | None = None
    seconds: float = 0.0


def rft_argv(proof: Proof, command: str, recipe: Path, sets: list[str], extra: list[str] = (), torchrun_port: int | None = None) -> list[str]:
    """``rft COMMAND RECIPE [extra] --set ...`` (under ``torchrun`` for a vLLM colocate run)."""
    tail = [command, str(recipe), *extra, *[a for s in sets for a in ("--set", s)]]
    if torchrun_port is not None:
        return ["torchrun", "--nproc_per_node", "1", "--master_port", str(torchrun_port), "-m", "rft.cli", *tail]
    return [sys.executable, "-m", "rft.cli", *tail]


def start(proof: Proof, name: str, argv: list[str]) -> Job:
    """Start one command (a subprocess; in-process mode runs it now, to the end)."""
    job = Job(name, argv, proof.results / "logs" / f"{name}.log")
    job.log.parent.mkdir(parents=True, exist_ok=True)
    proof.log(f"start {name}: {' '.join(argv)}")
    job.started = time.monotonic()
    if proof.in_process:
        job.rc = _run_in_process(argv, job.log)
        job.seconds = time.monotonic() - job.started
        proof.commands.append({"name": name, "argv": argv, "rc": job.rc, "seconds": round(job.seconds, 1)})
        return job
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4"), "TOKENIZERS_PARALLELISM": "false"}
    job.process = subprocess.Popen(argv, stdout=open(job.log, "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   start_new_session=True)
    return job


def _run_in_process(argv: list[str], log: Path) -> int:
    """Run ``rft ...`` (``argv`` after ``-m rft.cli``) in this process, its output also in ``log``."""
    import contextlib

    from rft.cli import main

    args = argv[argv.index("rft.cli") + 1:]
    with open(log, "w") as f, contextlib.redirect_stdout(_Tee(sys.stdout, f)):
        try:
            main(args)
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def wait(proof: Proof, *jobs: Job, reserve: float = 0.0) -> bool:
    """Wait for ``jobs``; kill what is still running ``reserve`` seconds before the deadline. True when all exited 0."""
    for job in jobs:
        if job.process is not None:
            try:
                job.rc = job.process.wait(timeout=max(1.0, proof.left() - reserve))
            except subprocess.TimeoutExpired:
                proof.log(f"{job.name}: out of time, stopped")
                _kill(job.process)
                job.rc = -9
            job.seconds = time.monotonic() - job.started
            proof.commands.append({"name": job.name, "argv": job.argv, "rc": job.rc, "seconds": round(job.seconds, 1)})
        proof.log(f"{job.name}: exit {job.rc} after {job.seconds:.0f} s")
        if job.rc:
            print(_tail(job.log), flush=True)
    return all(job.rc == 0 for job in jobs)


def _kill(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with _suppress():
            os.killpg(process.pid, signal.SIGKILL)


def _suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError)


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join(f"    | {line}" for line in text[-lines:])


def sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def folder_digest(folder: Path) -> str:
    """One SHA-256 over every file of a folder (relative names and bytes, in sorted order; the folder's
    own path, which rows name their images by, left out)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        if file.suffix == ".jsonl":
            data = data.replace(str(folder).encode(), b"")
        digest.update(str(file.relative_to(folder)).encode() + b"\0" + data)
    return digest.hexdigest()


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def gpu_memory_log(path: Path) -> subprocess.Popen | None:
    """``nvidia-smi`` writing each GPU's used memory (MiB) every second to ``path`` (None without it)."""
    if shutil.which("nvidia-smi") is None:
        return None
    return subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,index,memory.used", "--format=csv,noheader,nounits",
                             "-lms", "1000"], stdout=open(path, "w"), stderr=subprocess.DEVNULL)


def machine() -> dict:
    """GPU, versions and date, for the record."""
    info = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(), "python": platform.python_version()}
    try:
        info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["gpu"] = None
    from importlib.metadata import PackageNotFoundError, version

    for name in ("torch", "transformers", "trl", "vllm", "accelerate", "deepspeed"):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    return info


# ---------------------------------------------------------------------------------------------
# Data sets: rebuilt twice from their seeds, compared byte for byte


def data_digests(sets: dict[str, tuple[Path, list[str], str]]) -> dict[str, dict]:
    """For each named dataset (recipe, overrides, ``data`` or ``eval``: that section's datasets, the first under the name),
    the digest of the files ``make_shapes`` writes, built twice, and whether both builds agree."""
    from rft.data.sources import load_rows
    from rft.recipe import load_recipe

    out = {}
    for name, (recipe_path, sets_, section) in sets.items():
        recipe = load_recipe(recipe_path, sets_)
        specs = (recipe.eval if section == "eval" else recipe.data).datasets
        for i, spec in enumerate(specs):
            digests = []
            for _ in range(2):
                with tempfile.TemporaryDirectory() as tmp:
                    load_rows(spec, "error", Path(tmp))
                    digests.append(folder_digest(Path(tmp)))
            out[name if i == 0 else f"{name}/{spec.name}"] = {
                "sha256": digests[0], "rebuilt_identical": digests[0] == digests[1], "num_samples": spec.num_samples,
                "seed": spec.seed, "split": spec.split}
    return out


# ---------------------------------------------------------------------------------------------
# Parts


def eval_summary(folder: Path) -> dict | None:
    """The ``rft eval`` report of ``folder`` (its numbers only)."""
    return read_json(folder / "report.json")


def run_summary(run_dir: Path, eval_dir: Path, wall: float | None) -> dict:
    """What the table needs from one run: steps, training time, held-out curve, rft eval report."""
    from rft.train.run_log import heldout_series

    metrics = read_json(run_dir / "metrics.json") or {}
    history = metrics.get("log_history", [])
    extra = {}
    if "eval_before_grpo" in metrics:  # rft train: TRL's train_runtime, minus the held-out evaluations in it
        runtime = next((h["train_runtime"] for h in reversed(history) if "train_runtime" in h), None)
        steps = max([h.get("step", 0) for h in history] or [0])
        train_seconds = None if runtime is None else runtime - metrics.get("heldout_eval_seconds", 0.0)
        logged = [h for h in history if "reward" in h]
        k = max(1, len(logged) // 10)
        extra = {  # the reward's first and last tenth, and vLLM's sampling against the trainer's log-probs
            "reward_first": sum(h["reward"] for h in logged[:k]) / k if logged else None,
            "reward_last": sum(h["reward"] for h in logged[-k:]) / k if logged else None,
            "is_ratio_mean": [h[key] for h in logged if (key := "sampling/importance_sampling_ratio/mean") in h][:: max(1, k)],
        }
    else:
        steps, train_seconds = metrics.get("steps"), metrics.get("train_seconds")
    return {"steps": steps, "train_seconds": train_seconds, "process_seconds": wall, **extra,
            "seconds_per_step": seconds_per_step(history), "heldout": heldout_series(metrics) if metrics else {},
            "eval": eval_summary(eval_dir)}


def seconds_per_step(history: list[dict]) -> float | None:
    """An ``rft sft`` run's training seconds per step after its first step (which also warms the GPU up)."""
    timed = [h for h in history if "loss" in h and "seconds" in h]
    if len(timed) < 2 or timed[-1]["step"] == timed[0]["step"]:
        return None
    return (timed[-1]["seconds"] - timed[0]["seconds"]) / (timed[-1]["step"] - timed[0]["step"])


def copy_run(run_dir: Path, results: Path, name: str) -> None:
    """A run's small files (metrics, recipe, plots; not the model) into the results."""
    target = results / name
    target.mkdir(parents=True, exist_ok=True)
    for pattern in ("metrics.json", "recipe.yaml", "*.png", "failures.jsonl"):
        for file in run_dir.glob(pattern):
            shutil.copy(file, target / file.name)


def base_steps(proof: Proof, checks: list[dict], most: int) -> tuple[int, float | None]:
    """The base run's steps: as many as fit the part's time at the speed the check runs measured (in
    multiples of ``STEP_ROUNDING``, at most the recipe's ``sft.steps``); the recipe's own with ``--toy``."""
    speeds = [c["seconds_per_step"] for c in checks if c.get("seconds_per_step")]
    if proof.toy or not speeds:
        return most, max(speeds, default=None)
    per_step = max(speeds) / CONCURRENT_SLOWDOWN  # two runs shared the GPU; one alone is faster
    budget = proof.left() - BASE_STARTUP_S - AFTER_BASE_S
    return max(STEP_ROUNDING, min(most, int(budget / per_step) // STEP_ROUNDING * STEP_ROUNDING)), per_step


def toy_base(recipe_path: Path) -> list[str]:
    """TOY_BASE, with every further dataset of the base recipe (base_named.yaml's classification) cut to toy size too."""
    from rft.recipe import load_recipe

    recipe = load_recipe(recipe_path, TOY_BASE)
    return [*TOY_BASE, *[f"data.datasets[{i}].num_samples=8" for i in range(1, len(recipe.data.datasets))],
            *[f"eval.datasets[{i}].num_samples=4" for i in range(1, len(recipe.eval.datasets))]]


def base_pixels(base_dir: Path) -> list[str]:
    """``--set`` overrides giving a few-shot command the pixel budget the base model was trained at (read from the
    ``recipe.yaml`` that ``rft sft`` wrote beside it): images of another size would be new to the model."""
    import yaml

    written = base_dir / "recipe.yaml"
    model = (yaml.safe_load(written.read_text()) or {}).get("model", {}) if written.is_file() else {}
    return [f"model.{k}={model[k]}" for k in ("min_pixels", "max_pixels") if model.get(k) is not None]


def part_base(proof: Proof) -> dict:
    from rft.recipe import load_recipe

    base_dir, recipe = proof.work / "base", proof.base_recipe
    sets = [*(toy_base(recipe) if proof.toy else []), *proof.sets]  # every base command's overrides
    check = [*sets, *(TOY_CHECK if proof.toy else [f"sft.steps={CHECK_STEPS}", f"data.datasets[0].num_samples={CHECK_ROWS}"]),
             "eval.datasets=[]"]
    for folder in (base_dir, proof.work / "check_a", proof.work / "check_b"):
        shutil.rmtree(folder, ignore_errors=True)
    # 1. two identical short runs: the same weights bit for bit, and the speed that sizes the real run
    checks = [start(proof, f"check_{x}", rft_argv(proof, "sft", recipe, [*check, f"output.dir={proof.work / f'check_{x}'}"]))
              for x in "ab"]
    wait(proof, *checks, reserve=EVAL_RESERVE_S)
    check_runs = [run_summary(proof.work / f"check_{x}", proof.work / "none", None) for x in "ab"]
    steps, per_step = base_steps(proof, check_runs, load_recipe(recipe, sets).sft.steps)
    steps = proof.base_steps or steps
    proof.log(f"check runs: {per_step} s/step; base run: {steps} steps")
    # 2. the base model; its training stops at the part's deadline in any case (keeping its model)
    cap = max(10.0, proof.left() - BASE_STARTUP_S - AFTER_BASE_S / 2)
    main = start(proof, "base_sft", rft_argv(proof, "sft", recipe, [*sets, f"output.dir={base_dir}", f"sft.steps={steps}",
                                                                    f"sft.max_seconds={cap:.0f}"]))
    data = data_digests({  # while it trains: every data set rebuilt twice from its seed
        "base_train": (recipe, sets, "data"), "base_heldout": (recipe, sets, "eval"),
        **{f"novel_fewshot_n{n}": (FEWSHOT_RECIPE, [f"data.datasets[0].num_samples={n}"], "data") for n in (16, 64)},
        "novel_heldout": (FEWSHOT_RECIPE, TOY_FEWSHOT if proof.toy else [], "eval"),
    })
    base_ok = wait(proof, main, reserve=EVAL_RESERVE_S)
    final = base_dir / "final"
    # 3. rft eval on held-out images of the base categories, and of the novel ones (the few-shot parts' "before")
    if base_ok:
        evals = [start(proof, "eval_base", rft_argv(proof, "eval", recipe, sets, ["--model", str(final), "--output-dir",
                                                                                     str(proof.results / "eval_base")])),
                 start(proof, "eval_novel", rft_argv(proof, "eval", FEWSHOT_RECIPE, [*(TOY_FEWSHOT if proof.toy else []), *base_pixels(base_dir)],
                                                     ["--model", str(final), "--output-dir", str(proof.results / "eval_novel")]))]
        wait(proof, *evals, reserve=10)
    copy_run(base_dir, proof.results, "base")
    weights = [sha256(proof.work / f"check_{x}" / "final" / "model.safetensors") for x in "ab"]
    base = run_summary(base_dir, proof.results / "eval_base", main.seconds)
    named = str(recipe.relative_to(ROOT) if recipe.is_relative_to(ROOT) else recipe)
    return {
        "base": {**base, "sha256": sha256(final / "model.safetensors"), "path": str(final),
                 "recipe": named, "sets": proof.sets,
                 "rebuild": " ".join([f"rft sft {named}", *[f"--set '{s}'" for s in proof.sets], f"--set sft.steps={steps}"])},
        "bit_for_bit": {"check_steps": check_runs[0]["steps"], "check_seconds_per_step": per_step, "weights_sha256": weights,
                        "weights_identical": weights[0] is not None and weights[0] == weights[1], "data": data},
        "eval_base": eval_summary(proof.results / "eval_base"),
        "eval_novel": eval_summary(proof.results / "eval_novel"),
    }


def part_fewshot(proof: Proof, n: int) -> dict:
    from rft.recipe import load_recipe

    base = proof.work / "base" / "final"
    if not (base / "model.safetensors").is_file():
        raise SystemExit(f"{base}: no base model. Run the base part first, on this same machine (it keeps "
                         f"{proof.work} only while it stays warm): learning_proof.sh base")
    runs_dir = proof.work / f"n{n}"
    shutil.rmtree(runs_dir, ignore_errors=True)
    common = [*(TOY_FEWSHOT if proof.toy else []), f"model.path={base}", *base_pixels(base.parent),
              f"data.datasets[0].num_samples={n}", *proof.sets]
    recipe = load_recipe(FEWSHOT_RECIPE, common)
    steps = int(recipe.grpo["max_steps"])
    every = recipe.eval.every_steps

    def sft(name: str, sft_steps: int, extra: list[str] = ()) -> Job:
        evals = max(every or 1, sft_steps // 6)  # about six held-out points per run
        sets = [*common, f"sft.steps={sft_steps}", f"eval.every_steps={evals}", f"output.dir={runs_dir / name}", *extra]
        return start(proof, name, rft_argv(proof, "sft", FEWSHOT_RECIPE, sets))

    def evaluate(name: str, model: Path) -> Job:
        return start(proof, f"eval_{name}", rft_argv(proof, "eval", FEWSHOT_RECIPE, common,
                                                     ["--model", str(model), "--output-dir", str(proof.results / f"eval_{name}")]))

    # 1. SFT for GRPO's number of steps (it also measures SFT's seconds per step), with the base model's eval
    first = [sft("sft_steps", steps), evaluate("base", base)]
    wait(proof, *first, reserve=EVAL_RESERVE_S)
    # 2. GRPO: alone on the GPU (vLLM's memory profiling at start-up fails when another process frees memory)
    vllm = recipe.rollout.backend == "vllm" and not proof.in_process
    grpo = start(proof, "grpo", rft_argv(proof, "train", FEWSHOT_RECIPE, [*common, f"output.dir={runs_dir / 'grpo'}"],
                                         torchrun_port=29541 if vllm else None))
    grpo_ok = wait(proof, grpo, reserve=EVAL_RESERVE_S)
    # 3. SFT for GRPO's training time (held-out evaluations excluded on both sides), next to the rft evals
    grpo_run = run_summary(runs_dir / "grpo", proof.results / "eval_grpo", grpo.seconds)
    sft_run = run_summary(runs_dir / "sft_steps", proof.results / "eval_sft_steps", first[0].seconds)
    per_step = sft_run["seconds_per_step"] or (sft_run["train_seconds"] or 0) / max(1, sft_run["steps"] or 1)
    budget = grpo_run["train_seconds"] or 0.0
    later = [evaluate(name, runs_dir / name / "final") for name in ("sft_steps", "grpo") if (runs_dir / name / "final").is_dir()]
    if grpo_ok and budget > 0 and per_step > 0:
        wall_steps = max(1, round(budget / per_step))
        cap = max(5.0, proof.left() - 2 * EVAL_RESERVE_S)  # the part's deadline: the run stops there, keeping its model
        proof.log(f"GRPO trained {budget:.1f} s; SFT takes {per_step:.3f} s/step: {wall_steps} SFT steps (cap {cap:.0f} s)")
        later.insert(0, sft("sft_wall", wall_steps, [f"sft.max_seconds={cap:.0f}"]))
    else:
        proof.log("no GRPO training time to match: SFT for GRPO's training time left out")
    wait(proof, *later, reserve=EVAL_RESERVE_S / 2)
    if (runs_dir / "sft_wall" / "final").is_dir():
        wait(proof, evaluate("sft_wall", runs_dir / "sft_wall" / "final"), reserve=5)
    runs = {}
    for name, job in (("sft_steps", first[0]), ("grpo", grpo), ("sft_wall", later[0] if later and later[0].name == "sft_wall" else None)):
        if job is None:
            continue
        copy_run(runs_dir / name, proof.results, name)
        runs[name] = run_summary(runs_dir / name, proof.results / f"eval_{name}", job.seconds)
    if "sft_wall" in runs:
        runs["sft_wall"]["target_seconds"] = budget
    return {"n": n, "sets": proof.sets, "grpo_max_steps": steps, "rollout": recipe.rollout.backend, "eval_base": eval_summary(proof.results / "eval_base"),
            "runs": runs}


def finish(proof: Proof, summary: dict) -> Path:
    """``summary.json``, the table and pictures into the results; the results packed into OUT."""
    import learning_table

    memory = proof.results / "gpu_memory.csv"
    used = [int(line.rsplit(",", 1)[1]) for line in memory.read_text().splitlines() if line.count(",") == 2
            and line.rsplit(",", 1)[1].strip().isdigit()] if memory.is_file() else []
    summary.update(part=proof.part, toy=proof.toy, machine=machine(), commands=proof.commands,
                   seconds=round(time.monotonic() - proof.start, 1), peak_gpu_memory_mib=max(used, default=None))
    (proof.results / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    try:
        if proof.part != "base":
            learning_table.pictures(summary, proof.results, proof.results / "pictures")
        (proof.results / "table.md").write_text(learning_table.markdown([summary]) + "\n")
        print(learning_table.markdown([summary]), flush=True)
    except Exception as exc:  # noqa: BLE001 - the numbers must still come back; the pictures can be redrawn
        proof.log(f"table/pictures failed ({exc!r}); redraw them with scripts/gpu/learning_table.py")
    proof.out.mkdir(parents=True, exist_ok=True)
    packed = proof.out / f"learning_{proof.part}.tgz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(proof.results, arcname=f"learning_{proof.part}")
    shutil.copy(proof.results / "summary.json", proof.out / f"learning_{proof.part}.json")
    proof.log(f"results: {packed} ({packed.stat().st_size / 1e6:.1f} MB), {proof.out / f'learning_{proof.part}.json'}")
    return packed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", help="base, or nN (few-shot with N images: n16, n64)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("LEARNING_DIR", "/tmp/learning")))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "outputs/learning")))
    parser.add_argument("--toy", action="store_true", help="toy sizes on the CPU (tiny model, a few steps, transformers rollouts)")
    parser.add_argument("--in-process", action="store_true", help="run the rft commands in this process, one after another")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds the part may take (default 530; with --toy 3600)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field of the part's recipe in every command of the part: the few-shot recipe "
                             "for nN (SFT, GRPO and rft eval alike, e.g. 'grpo.learning_rate=1e-4'), the base recipe for "
                             "base (e.g. 'model.max_pixels=50176'; the few-shot parts then follow the base's pixel budget)")
    parser.add_argument("--base-recipe", type=Path, default=BASE_RECIPE,
                        help="the base part's recipe (default recipes/learning/base.yaml; base_named.yaml: the novel "
                             "categories' names and looks seen in classification, never in detection)")
    parser.add_argument("--base-steps", type=int, default=None, metavar="N",
                        help="base part: train exactly N steps (the documented base model: 1500) instead of as many "
                             "as fit the deadline; give a deadline that leaves room for them")
    args = parser.parse_args(argv)
    if args.part != "base" and not re.fullmatch(r"n\d+", args.part):
        parser.error(f"part must be base or nN (n16, n64), got {args.part!r}")
    deadline = args.deadline or (3600.0 if args.toy else 530.0)
    if args.base_recipe != BASE_RECIPE and args.part != "base":
        parser.error("--base-recipe applies to the base part; the few-shot parts start from WORK/base/final")
    proof = Proof(args.part, args.work.resolve(), args.out.resolve(), args.toy, args.in_process, deadline, args.sets, args.base_steps,
                  args.base_recipe.resolve())
    shutil.rmtree(proof.results, ignore_errors=True)
    proof.results.mkdir(parents=True)
    memory = gpu_memory_log(proof.results / "gpu_memory.csv")
    summary: dict = {}
    try:
        summary = part_base(proof) if args.part == "base" else part_fewshot(proof, int(args.part[1:]))
    finally:
        if memory is not None:
            memory.terminate()
        finish(proof, summary)
    failed = [c["name"] for c in proof.commands if c["rc"]]
    if failed:
        proof.log(f"failed: {failed} (their logs are in {proof.results / 'logs'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
