"""GRPO step throughput on a Qwen2.5-VL-3B architecture with random weights (issue 7), side by side:

  (A) TRL's GRPOTrainer with transformers generation (the way Visual-RFT trains)
  (B) TRL's GRPOTrainer with vLLM colocate (gpu_memory_utilization 0.35)
  (C) ``rft train`` with its best settings

Set-up (identical for all three): 8 prompts x 8 generations per step, one 640x480 image per prompt at a
pixel budget of 401,408 (391 image tokens), 256 new tokens, bf16, SDPA, gradient checkpointing; a
word-level tokenizer of the full 151,936-token vocabulary and synthetic images, built on the machine.
Each mode runs in its own process (``torchrun``, as TRL's colocated vLLM needs). Prints a table with
s/step (median after the first step), generated tokens/s, MFU = (6 N T_train + 2 N T_generated) /
(time x measured bf16 matmul peak), peak GPU memory (device-wide, sampled), and the time per phase;
writes it all to ``--out`` (JSON).

    python bench/grpo_throughput.py                       # on one GPU: A, B, C
    python bench/grpo_throughput.py --modes A,C --tiny    # a tiny config: checks the harness on the CPU

Results and their dates go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from functools import wraps
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "Describe the objects in this image."
PHASES = ("generation", "weight_sync", "logprob_passes", "rewards", "other_scoring", "forward_backward")


# --------------------------------------------------------------------------- the set-up


def qwen25vl_3b_config(tiny: bool = False):
    """Qwen2.5-VL-3B-Instruct's architecture (3.75 B parameters), or a tiny one of the same shape."""
    from transformers import Qwen2_5_VLConfig

    specials = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
                "vision_end_token_id": 151653}
    if tiny:
        text = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1)
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=128,
                      fullatt_block_indexes=[1])
    else:
        text = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                    num_key_value_heads=2)
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                      fullatt_block_indexes=[7, 15, 23, 31])
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    mrope = [16, 24, 24] if head_dim == 128 else [head_dim // 2 - 2 * (3 * head_dim // 16), 3 * head_dim // 16, 3 * head_dim // 16]
    text |= {"vocab_size": 151936, "max_position_embeddings": 32768, "bos_token_id": 151643, "eos_token_id": 151645,
             "pad_token_id": 151643, "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope}}
    vision |= {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "in_chans": 3}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **specials)


def word_level_processor(max_pixels: int, min_pixels: int = 3136):
    """A Qwen2.5-VL processor whose tokenizer is word-level over the full vocabulary, Qwen's special ids in place."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from rft.families.qwen import CHAT_TEMPLATE

    specials = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>", 151652: "<|vision_start|>",
                151653: "<|vision_end|>", 151654: "<|vision_pad|>", 151655: "<|image_pad|>", 151656: "<|video_pad|>"}
    vocab = {specials.get(i, f"w{i}"): i for i in range(151936)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="<|endoftext|>", additional_special_tokens=list(specials.values()))
    tokenizer.chat_template = CHAT_TEMPLATE
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    common = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(size=dict(size), **common),
                               video_processor=Qwen2VLVideoProcessor(size=dict(size), **common),
                               tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_model_dir(out: Path, tiny: bool, max_pixels: int) -> Path:
    """Random-weight model + processor saved to ``out`` (vLLM and ``rft train`` load it from there)."""
    from transformers import AutoModelForImageTextToText, GenerationConfig

    if (out / "config.json").is_file():
        return out
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(qwen25vl_3b_config(tiny), dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=151645, pad_token_id=151643)
    model.save_pretrained(out)
    word_level_processor(max_pixels).save_pretrained(out)
    return out


def build_images(out: Path, n: int, size: tuple[int, int]) -> list[str]:
    """``n`` synthetic ``size`` images (random rectangles on noise), written once."""
    import numpy as np
    from PIL import Image, ImageDraw

    out.mkdir(parents=True, exist_ok=True)
    paths, rng = [], np.random.default_rng(0)
    for i in range(n):
        path = out / f"{i:04d}.png"
        if not path.is_file():
            img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
            x, y = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
            ImageDraw.Draw(img).rectangle((x, y, x + size[0] // 3, y + size[1] // 3), fill=(200, 30, 30))
            img.save(path)
        paths.append(str(path))
    return paths


def bf16_peak_tflops() -> float | None:
    """Measured bf16 matmul throughput (TFLOP/s): the denominator of MFU."""
    if not torch.cuda.is_available():
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, reps = time.perf_counter(), 50
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * reps / (time.perf_counter() - start) / 1e12


# --------------------------------------------------------------------------- instrumentation


class PhaseTimer:
    """Wall time per phase of TRL's GRPO step, CUDA-synchronised at each boundary, plus step start times."""

    def __init__(self, profile_step: int | None = None):
        self.totals: dict[str, list[float]] = defaultdict(list)
        self.step_starts: list[float] = []
        self.generated_tokens: list[int] = []
        self.train_tokens: list[int] = []
        self.vision = {"seconds": 0.0, "images": 0}  # the trainer's vision tower, forward calls (recompute included)
        self.vision_per_step: list[dict] = []
        self.profile_step = profile_step  # 1-based step run under torch.profiler (left out of the medians)
        self.profile_table = ""

    @staticmethod
    def _sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    @contextmanager
    def phase(self, name: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.totals[name].append(time.perf_counter() - start)

    def wrap(self, owner: type, method: str, name: str, when=None):
        original = getattr(owner, method)
        timer = self

        @wraps(original)
        def timed(*args, **kwargs):
            if when is not None and not when():
                return original(*args, **kwargs)
            with timer.phase(name):
                return original(*args, **kwargs)

        setattr(owner, method, timed)

    def install(self) -> None:
        """Wrap the GRPOTrainer (and vLLM generation) methods whose time makes up a step."""
        from trl import GRPOTrainer
        from trl.generation.vllm_generation import VLLMGeneration

        timer = self
        original_step = GRPOTrainer.training_step

        @wraps(original_step)
        def training_step(trainer, model, inputs, num_items_in_batch=None):
            timer._sync()
            timer.step_starts.append(time.perf_counter())
            timer.vision_per_step.append(dict(timer.vision))
            if len(timer.step_starts) == timer.profile_step:
                return timer._profiled(original_step, trainer, model, inputs, num_items_in_batch)
            with timer.phase("training_step"):
                return original_step(trainer, model, inputs, num_items_in_batch)

        GRPOTrainer.training_step = training_step
        original_score = GRPOTrainer._generate_and_score_completions

        @wraps(original_score)
        def score(trainer, inputs):
            with timer.phase("generate_and_score"):
                out = original_score(trainer, inputs)
            mask = out["completion_mask"]
            timer.generated_tokens.append(int(mask.sum()))
            timer.train_tokens.append(int(out["prompt_mask"].sum() + mask.sum()))
            return out

        GRPOTrainer._generate_and_score_completions = score
        self.wrap(GRPOTrainer, "_generate_single_turn", "generate_with_sync")
        self.wrap(VLLMGeneration, "sync_weights", "weight_sync")
        self.wrap(GRPOTrainer, "_get_per_token_logps_and_entropies", "logprob_passes", when=lambda: not torch.is_grad_enabled())
        self.wrap(GRPOTrainer, "_calculate_rewards", "rewards")
        self._count_vision()
        self._time_completion_log()

    def _time_completion_log(self) -> None:
        """rft's completion log: its part on the training thread (a phase of the step) and the background
        thread's writing (not synchronised with the GPU: it does not wait for it)."""
        from rft.train.completion_log import CompletionLog

        self.wrap(CompletionLog, "add", "completion_log", when=lambda: self._logging_due)
        original_due, original_write, timer = CompletionLog.due, CompletionLog.write, self

        @wraps(original_due)
        def due(log, step):
            timer._logging_due = original_due(log, step)
            return timer._logging_due

        @wraps(original_write)
        def write(log, *args):
            start = time.perf_counter()
            try:
                return original_write(log, *args)
            finally:
                timer.totals["completion_log_background"].append(time.perf_counter() - start)

        CompletionLog.due, CompletionLog.write = due, write
        self._logging_due = False

    def _count_vision(self) -> None:
        """Time the trainer's vision tower (vLLM's has its own classes): seconds and images per step."""
        from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

        cls = qwen.Qwen2_5_VisionTransformerPretrainedModel
        original, timer = cls.forward, self

        @wraps(original)
        def forward(module, hidden_states, grid_thw, *args, **kwargs):
            timer._sync()
            start = time.perf_counter()
            out = original(module, hidden_states, grid_thw, *args, **kwargs)
            timer._sync()
            timer.vision["seconds"] += time.perf_counter() - start
            timer.vision["images"] += int(grid_thw.shape[0])
            return out

        cls.forward = forward

    def _profiled(self, step, *args):
        """Run one step under torch.profiler; keep the table of the ops with the most device time."""
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        # timed as a step like the others, so that every phase has one entry per step (the last is left out)
        with profile(activities=activities) as prof, self.phase("training_step"):
            out = step(*args)
        key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        self.profile_table = prof.key_averages().table(sort_by=key, row_limit=45, max_name_column_width=70)
        return out

    def report(self, skip_first: int = 1) -> dict:
        """Per-step medians after the first ``skip_first`` steps (a profiled last step left out)."""
        steps = [b - a for a, b in zip(self.step_starts, self.step_starts[1:])]
        profiled = self.profile_step is not None and len(self.step_starts) >= self.profile_step
        keep = slice(skip_first, -1 if profiled else None)
        vision = [{k: b[k] - a[k] for k in a} for a, b in zip(self.vision_per_step, self.vision_per_step[1:])][skip_first:]

        def per_step(name):
            values = self.totals.get(name, [])[keep]
            return statistics.median(values) if values else 0.0

        gen_sync, sync = per_step("generate_with_sync"), per_step("weight_sync")
        scoring, step = per_step("generate_and_score"), per_step("training_step")
        logps, rewards = per_step("logprob_passes"), per_step("rewards")
        phases = {"generation": gen_sync - sync, "weight_sync": sync, "logprob_passes": logps, "rewards": rewards,
                  "other_scoring": max(0.0, scoring - gen_sync - logps - rewards), "forward_backward": step - scoring}
        steps_kept = steps[skip_first:]

        def per_log(name):  # per logged step, the first (imports, first pictures) left out when there are others
            values = self.totals.get(name, [])
            return statistics.median(values[1:] or values) if values else None

        logs = {"logged_steps": len(self.totals.get("completion_log", [])), "training_thread_s": per_log("completion_log"),
                "background_s": per_log("completion_log_background")}
        return {"s_per_step": statistics.median(steps_kept) if steps_kept else None, "step_times": steps,
                "completion_log": logs,
                "phases": phases, "generated_tokens": statistics.median(self.generated_tokens[keep] or [0]),
                "train_tokens": statistics.median(self.train_tokens[keep] or [0]),
                "vision_tower_s": statistics.median([v["seconds"] for v in vision] or [0]),
                "vision_tower_images": statistics.median([v["images"] for v in vision] or [0]),
                "profile_table": self.profile_table}


class PeakMemory:
    """Device-wide peak GPU memory in use (what nvidia-smi shows), sampled every 50 ms: vLLM's pools included."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()

    def __enter__(self):
        if torch.cuda.is_available():
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()


# --------------------------------------------------------------------------- one mode, in its own process


def speed_options(pairs: list[str]) -> dict[str, bool]:
    """``--speed dedupe_images=false ...`` as the recipe's ``speed:`` section (the rest at their defaults)."""
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if value.lower() not in ("true", "false"):
            raise SystemExit(f"--speed {pair!r}: expected NAME=true or NAME=false")
        options[key] = value.lower() == "true"
    return options


def total_steps(args) -> int:
    """The measured steps, and one more when it is profiled."""
    return args.steps + int(args.profile)


def trl_dataset(images: list[str]):
    from datasets import Dataset, Image

    rows = [{"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}], "image": p}
            for p in images]
    return Dataset.from_list(rows).cast_column("image", Image())


def length_reward(completions, **_):
    """A cheap verifiable stand-in: the rewards' cost is measured separately (bench/rewards_bench.py)."""
    return [min(len(str(c)), 100) / 100 for c in completions]


def run_trl(mode: str, args) -> dict:
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    from rft.models.vision_tokens import vision_token_ids

    cuda = torch.cuda.is_available()
    model = AutoModelForImageTextToText.from_pretrained(args.model_dir, dtype=torch.bfloat16 if cuda else torch.float32,
                                                        attn_implementation="sdpa")
    processor = AutoProcessor.from_pretrained(args.model_dir)
    config = GRPOConfig(
        output_dir=str(Path(args.work) / f"trl_{mode}"), per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations, max_completion_length=args.new_tokens, max_steps=total_steps(args),
        learning_rate=1e-6, beta=0.0, bf16=cuda, use_cpu=not cuda, gradient_checkpointing=cuda, logging_steps=1,
        report_to=[], save_strategy="no", shuffle_dataset=False, remove_unused_columns=False, seed=0,
        use_vllm=mode == "B", vllm_mode="colocate", vllm_gpu_memory_utilization=args.vllm_memory,
        vllm_max_model_length=args.max_model_length,
        # A random policy samples vision special tokens (5 in 151,936: about one per step of 16,384 tokens) and
        # TRL's training forward then fails ("Image features and image tokens do not match"). TRL's transformers
        # path bans <|image_pad|> itself; its vLLM path needs the ban given (rft gives the same one).
        generation_kwargs={"logit_bias": {i: -100.0 for i in vision_token_ids(processor.tokenizer, "qwen2_5_vl")}}
        if mode == "B" else None,
    )
    timer = PhaseTimer(profile_step=total_steps(args) if args.profile else None)
    timer.install()
    images = json.loads(Path(args.images).read_text())
    with PeakMemory() as memory:
        trainer = GRPOTrainer(model=model, reward_funcs=length_reward, args=config, train_dataset=trl_dataset(images),
                              processing_class=processor)
        trainer.train()
    return {**timer.report(), "peak_gpu_gib": memory.peak / 2**30}


def run_rft(args) -> dict:
    """(C): ``rft train`` on a recipe with the same set-up, its optimisations at their defaults."""
    from rft.recipe import validate
    from rft.train.run import train

    images = json.loads(Path(args.images).read_text())
    rows = Path(args.work) / "rows.jsonl"
    rows.write_text("".join(json.dumps({"image": p, "task": "classification", "solution": {"label": "w7"}, "dataset": "bench", "query": {"classes": None},
                                        "id": str(i)}) + "\n" for i, p in enumerate(images)))
    cuda = torch.cuda.is_available()
    recipe = validate({
        "model": {"path": args.model_dir, "dtype": "bfloat16" if cuda else "float32", "attn_implementation": "sdpa",
                  "min_pixels": 3136, "max_pixels": args.max_pixels},
        "data": {"datasets": [{"name": "bench", "kind": "rows_jsonl", "path": str(rows)}],
                 "templates": {"classification": PROMPT}},
        "rewards": [{"name": "classification_accuracy"}],
        "grpo": {"per_device_train_batch_size": args.prompts * args.generations, "num_generations": args.generations,
                 "max_completion_length": args.new_tokens, "max_steps": total_steps(args), "beta": 0.0},
        "rollout": {"backend": "vllm" if cuda else "transformers", "vllm_mode": "colocate",
                    "gpu_memory_utilization": args.vllm_memory, "max_model_length": args.max_model_length},
        # the completion log written at every step (measured per logged step; by default it logs every 50)
        "output": {"dir": str(Path(args.work) / "rft_C"), "log_completions_every": args.log_completions_every,
                   "report_to": ["tensorboard"] if args.log_completions_every else []},
        "speed": speed_options(args.speed),
    })
    timer = PhaseTimer(profile_step=total_steps(args) if args.profile else None)
    timer.install()
    with PeakMemory() as memory:
        train(recipe, overwrite=True)  # the benchmark's own scratch run, replaced each time
    return {**timer.report(), "peak_gpu_gib": memory.peak / 2**30}


# --------------------------------------------------------------------------- the table


def mfu(result: dict, params: int, peak_tflops: float | None) -> float | None:
    if not peak_tflops or not result.get("s_per_step"):
        return None
    flops = 6 * params * result["train_tokens"] + 2 * params * result["generated_tokens"]
    return flops / (result["s_per_step"] * peak_tflops * 1e12)


def table(results: dict[str, dict], params: int, peak: float | None) -> str:
    head = ["mode", "s/step", "gen tok/s", "MFU", "peak GiB", *PHASES, "vision tower s (images)"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for mode, r in results.items():
        if "error" in r:
            lines.append(f"{mode} | failed: {r['error'][:80]}")
            continue
        s = r["s_per_step"]
        m = mfu(r, params, peak)
        cells = [mode, f"{s:.2f}" if s else "-", f"{r['generated_tokens'] / s:.0f}" if s else "-",
                 f"{m:.1%}" if m is not None else "-", f"{r['peak_gpu_gib']:.1f}",
                 *(f"{r['phases'][p]:.2f}" for p in PHASES),
                 f"{r.get('vision_tower_s', 0):.2f} ({r.get('vision_tower_images', 0):.0f})"]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="A,B,C")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--max-pixels", type=int, default=401_408)
    p.add_argument("--vllm-memory", type=float, default=0.35)
    # 2048: TRL 1.16 + vLLM 0.25 expand each image twice in (B)'s prompts (391 + 390 image tokens, docs/gpu.md);
    # at 1024 vLLM would cut (B)'s completions short of 256 tokens
    p.add_argument("--max-model-length", type=int, default=2048)
    p.add_argument("--profile", action="store_true",
                   help="run one more step under torch.profiler (left out of the medians); its table goes to the JSON")
    p.add_argument("--tiny", action="store_true", help="a tiny config of the same shape (checks the harness)")
    p.add_argument("--work", default="/tmp/rft_grpo_bench")
    p.add_argument("--out", default="bench/grpo_throughput.json")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print one table from the JSON files of earlier runs "
                   "(modes run one per command on a machine with a per-command time limit)")
    p.add_argument("--speed", nargs="*", default=[], metavar="NAME=BOOL",
                   help="(C): switch rft's speed options (recipe section speed:), e.g. reuse_training_logprobs=false")
    p.add_argument("--log-completions-every", type=int, default=1, metavar="N",
                   help="(C): write the completion log every N steps (output.log_completions_every; 0: never)")
    p.add_argument("--label", help="the row name of a single mode's result (default: its letter), e.g. 'C no reuse'")
    p.add_argument("--plot", metavar="PNG", help="also draw each mode's step as a bar split by phase")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one mode in this process
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.work)
    if args.label and "," in args.modes:
        raise SystemExit("--label names the result of one mode: give --modes one letter")
    if args.merge:
        reports = [json.loads(Path(f).read_text()) for f in args.merge]
        results = {mode: r for report in reports for mode, r in report["results"].items()}
        # one MFU denominator for all modes: the highest bf16 peak measured among the runs (the measurement
        # varies by a few percent from one process to the next; the highest gives the most conservative MFU)
        print_report(results, reports[0]["params"], max(r["bf16_peak_tflops"] or 0 for r in reports) or None, args.plot)
        return
    if args.child:
        result = run_rft(args) if args.child == "C" else run_trl(args.child, args)
        if int(os.environ.get("RANK", "0")) == 0:
            (work / f"result_{args.child}.json").write_text(json.dumps(result))
            if result.get("profile_table"):
                print(result["profile_table"], flush=True)
        return
    work.mkdir(parents=True, exist_ok=True)
    model_dir = build_model_dir(work / ("model_tiny" if args.tiny else "model_3b"), args.tiny, args.max_pixels)
    n_images = args.prompts * (total_steps(args) + 1)
    images = work / "images.json"
    images.write_text(json.dumps(build_images(work / "images", n_images, (640, 480))))
    from transformers import AutoConfig, AutoModelForImageTextToText

    with torch.device("meta"):
        params = sum(t.numel() for t in AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(model_dir)).parameters())
    peak = bf16_peak_tflops()
    results = {}
    for mode in args.modes.split(","):
        (work / f"result_{mode}.json").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29533",
               __file__, "--child", mode, "--model-dir", str(model_dir), "--images", str(images), "--work", str(work),
               *sys.argv[1:]]
        print(f"== ({mode})", " ".join(cmd[6:9]), flush=True)
        log_file = work / f"log_{mode}.txt"
        with log_file.open("w") as log:  # streamed: a run stopped by a time limit still leaves its log
            subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        result_file = work / f"result_{mode}.json"
        name = args.label or mode
        results[name] = json.loads(result_file.read_text()) if result_file.is_file() else {"error": log_file.read_text()[-2000:]}
        print(table({name: results[name]}, params, peak).splitlines()[-1], flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "params": params, "bf16_peak_tflops": peak, "tiny": args.tiny, "settings": vars(args), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print_report(results, params, peak, args.plot)


def plot_phases(results: dict[str, dict], path: Path) -> Path | None:
    """Seconds per step of each mode as a bar stacked by phase (the table's split), written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = {m: r for m, r in results.items() if r.get("s_per_step")}
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.5 * len(done)), dpi=110)
    modes = list(done)[::-1]  # (A) on top
    left = [0.0] * len(modes)
    for phase in PHASES:
        widths = [done[m]["phases"][phase] for m in modes]
        ax.barh(modes, widths, left=left, label=phase.replace("_", " "))
        left = [a + b for a, b in zip(left, widths)]
    rest = [done[m]["s_per_step"] - total for m, total in zip(modes, left)]  # optimizer step, logging, waits
    ax.barh(modes, [max(0.0, r) for r in rest], left=left, color="lightgrey", label="rest of the step")
    for i, m in enumerate(modes):
        ax.text(done[m]["s_per_step"], i, f"  {done[m]['s_per_step']:.1f} s", va="center")
    ax.set_xlabel("seconds per GRPO step (median)")
    ax.set_xlim(0, max(r["s_per_step"] for r in done.values()) * 1.15)
    ax.legend(fontsize=7, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def print_report(results: dict[str, dict], params: int, peak: float | None, plot: str | None = None) -> None:
    """The table, the speed ratios of (C), and with ``plot`` the phase split drawn to that PNG."""
    print(f"\nparameters {params / 1e9:.2f} B, measured bf16 peak {peak or 0:.0f} TFLOP/s\n")
    print(table(results, params, peak))
    for mode in ("A", "B"):
        if "C" in results and mode in results and results["C"].get("s_per_step") and results[mode].get("s_per_step"):
            print(f"(C) is {results[mode]['s_per_step'] / results['C']['s_per_step']:.2f}x faster per step than ({mode})")
    for mode, r in results.items():
        line = completion_log_line(r)
        if line:
            print(f"({mode}) {line}")
    if plot:
        print("phase split:", plot_phases(results, Path(plot)))


COMPLETION_LOG_DEFAULT_GPU = 50
"""``output.log_completions_every``'s default on GPUs."""


def completion_log_line(result: dict) -> str | None:
    """What the completion log costs per logged step, and per step at its default interval on GPUs."""
    logs = result.get("completion_log") or {}
    if not logs.get("logged_steps") or not result.get("s_per_step"):
        return None
    main, background = logs["training_thread_s"] or 0.0, logs["background_s"] or 0.0
    share = main / COMPLETION_LOG_DEFAULT_GPU / result["s_per_step"]
    return (f"completion log: {main * 1e3:.1f} ms on the training thread + {background * 1e3:.0f} ms in the background "
            f"per logged step ({logs['logged_steps']} logged); every {COMPLETION_LOG_DEFAULT_GPU} steps: {share:.4%} "
            f"of a step on the training thread")


if __name__ == "__main__":
    main()
