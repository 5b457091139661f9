"""GRPO step throughput on a Qwen2.5-VL-3B architecture with random weights (issue 7), side by side:

  (A) TRL's GRPOTrainer with transformers generation (the way Visual-RFT trains)
  (B) TRL's GRPOTrainer with vLLM colocate (gpu_memory_utilization 0.35)
  (C) ``rft train`` with its best settings

Set-up (identical for all three): 8 prompts x 8 generations per step, one 640x480 image per prompt at a
pixel budget of 401,408 (391 image tokens), 256 new tokens, bf16, SDPA, gradient checkpointing, the same
parameters trained (the vision tower frozen, rft's default; ``--train-vision`` trains it in every mode); a
word-level tokenizer of the full 151,936-token vocabulary and synthetic images, built on the machine.
(Before 2026-12-03, (A) and (B) trained the vision tower and (C) did not: docs/performance.md.)
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
from typing import NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "Describe the objects in this image."
PHASES = ("generation", "weight_sync", "logprob_passes", "rewards", "other_scoring", "forward_backward")


# --------------------------------------------------------------------------- the set-up


ARCHS = ("3b", "7b")


def text_and_vision_sizes(arch: str, tiny: bool) -> tuple[dict, dict, bool]:
    """The language model's and vision tower's sizes of Qwen2.5-VL-``arch``, and whether the embeddings are tied.

    Tiny configs keep the shape (the GQA ratio, the untied embeddings of 7B, the vision tower's output feeding
    the language model's width) at a size that trains on a CPU in seconds."""
    if arch not in ARCHS:
        raise SystemExit(f"--arch {arch!r}: expected one of {', '.join(ARCHS)}")
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                  fullatt_block_indexes=[7, 15, 23, 31])
    if arch == "3b":  # Qwen2.5-VL-3B-Instruct (3.75 B parameters): GQA 16 / 2
        text = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                    num_key_value_heads=2)
        tiny_text = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1)
    else:  # Qwen2.5-VL-7B-Instruct (8.3 B parameters): GQA 28 / 4, untied lm_head; the same vision tower
        text = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                    num_key_value_heads=4)
        tiny_text = dict(hidden_size=224, intermediate_size=1184, num_hidden_layers=2, num_attention_heads=7,
                         num_key_value_heads=1)  # GQA 7 and intermediate / hidden 5.3, as in 7B
    if tiny:
        text = tiny_text
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1])
    vision["out_hidden_size"] = text["hidden_size"]
    return text, vision, arch == "3b"


def qwen25vl_config(arch: str = "3b", tiny: bool = False):
    """Qwen2.5-VL's architecture at size ``arch`` (3b, 7b), or a tiny one of the same shape."""
    from transformers import Qwen2_5_VLConfig

    specials = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
                "vision_end_token_id": 151653}
    text, vision, tied = text_and_vision_sizes(arch, tiny)
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    mrope = [16, 24, 24] if head_dim == 128 else [head_dim // 2 - 2 * (3 * head_dim // 16), 3 * head_dim // 16, 3 * head_dim // 16]
    text |= {"vocab_size": 151936, "max_position_embeddings": 32768, "bos_token_id": 151643, "eos_token_id": 151645,
             "pad_token_id": 151643, "tie_word_embeddings": tied,
             "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope}}
    vision |= {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "in_chans": 3}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tied, **specials)


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


def build_model_dir(out: Path, arch: str, tiny: bool, max_pixels: int) -> Path:
    """Random-weight model + processor saved to ``out`` (vLLM and ``rft train`` load it from there).

    The model is built once; the processor is saved again whenever the row's pixel budget differs from the
    saved one, since (A), (B) and vLLM read the budget from the folder (rft passes its recipe's)."""
    from transformers import AutoModelForImageTextToText, GenerationConfig

    if not (out / "config.json").is_file():
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(qwen25vl_config(arch, tiny), dtype=torch.bfloat16)
        model.generation_config = GenerationConfig(eos_token_id=151645, pad_token_id=151643)
        model.save_pretrained(out)
        del model
    if saved_max_pixels(out) != max_pixels:
        word_level_processor(max_pixels).save_pretrained(out)
    return out


def saved_max_pixels(model_dir: Path) -> int | None:
    """The pixel budget of the processor saved in ``model_dir`` (None: none saved)."""
    config = model_dir / "preprocessor_config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    return (data.get("size") or {}).get("longest_edge", data.get("max_pixels"))


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


# --------------------------------------------------------------------------- the grid's rows (issue 17)


class Row(NamedTuple):
    """One row of the speed grid: the settings that define it (the rest is the standard set-up)."""

    varies: str
    arch: str = "3b"
    lora: int = 0
    image_size: str = "640x480"
    max_pixels: int = 401_408
    new_tokens: int = 256
    generations: int = 8


ROWS = {
    "standard": Row("nothing: 640x480 images (391 image tokens), 256 new tokens, 8 generations, 3B"),
    # 1280x960 resizes to 1288x952 (34 x 46 = 1,564 image tokens): the budget must allow 1280 * 960 pixels
    "large_images": Row("1280x960 images", image_size="1280x960", max_pixels=1_228_800),
    "long_completions": Row("1,024 new tokens", new_tokens=1024),
    "gen16": Row("16 generations per prompt", generations=16),
    "7b": Row("the 7B architecture", arch="7b"),
    "lora": Row("LoRA r 64 on the language model", lora=64),
}
"""The grid's presets (``--row NAME``). Flags given explicitly win over a preset; the result then records the
row under its name plus the changed settings (e.g. ``long_completions+new_tokens=64``)."""

ROW_SETTINGS = tuple(name for name in Row._fields if name != "varies")


def parse_image_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480): width x height."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise SystemExit(f"--image-size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480")
    return int(width), int(height)


def image_tokens(image_size: str, max_pixels: int, min_pixels: int = 3136) -> int:
    """Image tokens per image as Qwen2.5-VL's image processor computes them for this size and pixel budget."""
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor(size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                      patch_size=14, merge_size=2, temporal_patch_size=2)
    grid = processor(images=[Image.new("RGB", parse_image_size(image_size))], return_tensors="pt")["image_grid_thw"]
    return int(grid.prod()) // 4  # 2 x 2 patches merge into one token


PROMPT_TEXT_TOKENS = 64
"""An upper bound on a prompt's text tokens around its image (chat template and question: about 20)."""


def max_model_length(tokens_per_image: int, new_tokens: int) -> int:
    """vLLM's ``max_model_len`` for (B) and (C): TRL 1.16 + vLLM 0.25 expand each image twice in (B)'s
    prompts (docs/gpu.md), so a prompt holds about 2 x image tokens + text, then the new tokens; rounded up
    to a multiple of 1,024 (the standard row gets the 2,048 of issue 7's runs)."""
    needed = 2 * tokens_per_image + PROMPT_TEXT_TOKENS + new_tokens
    return -(-needed // 1024) * 1024


TINY_TOKEN_DIVISOR = 8
"""``--tiny`` generates this many times fewer new tokens than the row (unless ``--new-tokens`` is given)."""


def resolve_row(args: argparse.Namespace) -> dict:
    """Fill the row-defined options left unset from ``--row``'s preset (default: standard), then the derived
    ones (``--max-model-length``, a tiny run's prompts); return the row record the result JSON carries."""
    preset = ROWS[args.row or "standard"]
    changed, tiny_note = [], None
    for name in ROW_SETTINGS:
        given = getattr(args, name)
        if given is None:
            setattr(args, name, getattr(preset, name))
        elif given != getattr(preset, name):
            changed.append(f"{name}={given}")
    if args.tiny and "new_tokens=" not in " ".join(changed):
        # the full vocabulary's logits (151,936 per token) dominate a tiny run on the CPU: an eighth of the
        # row's new tokens keeps the rows' ratios (long_completions 4x standard) at minutes per row
        tiny_note = f"tiny: new tokens {args.new_tokens} -> {args.new_tokens // TINY_TOKEN_DIVISOR} (1/{TINY_TOKEN_DIVISOR})"
        args.new_tokens //= TINY_TOKEN_DIVISOR
    parse_image_size(args.image_size)
    tokens = image_tokens(args.image_size, args.max_pixels)
    if args.max_model_length is None:
        args.max_model_length = max_model_length(tokens, args.new_tokens)
    if args.prompts is None:
        args.prompts = 1 if args.tiny else 8  # a tiny run keeps the row's generations, with fewer prompts
    name = (args.row or ("standard" if not changed else "custom")) + "".join(f"+{c}" for c in changed)
    return {"name": name, "varies": preset.varies if not changed else f"{preset.varies}; changed: {', '.join(changed)}",
            "arch": args.arch, "lora": args.lora, "image_size": args.image_size, "max_pixels": args.max_pixels,
            "image_tokens": tokens, "new_tokens": args.new_tokens, "generations": args.generations,
            "prompts": args.prompts, "max_model_length": args.max_model_length, "tiny": args.tiny, "tiny_note": tiny_note,
            "train_vision": args.train_vision}


def model_dir_name(arch: str, tiny: bool) -> str:
    """One model folder per architecture under ``--work``, so that the rows' models coexist."""
    return f"model_tiny_{arch}" if tiny else f"model_{arch}"


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
        self.trainable_params: int | None = None  # counted at the first step (LoRA: the adapters)

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
            if timer.trainable_params is None:
                timer.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
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
                "trainable_params": self.trainable_params, "profile_table": self.profile_table}


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


def trl_lora_config(model, r: int):
    """(A)/(B)'s LoRA (None when ``r`` is 0): the adapters rft's recipe ``model.lora: {enabled: true, r, alpha: 2r}``
    puts on the same model (its default target_modules, language model only, dropout 0.05; the projector, not
    frozen by default, trains in full), built by rft's own helpers so that both modes train the same weights."""
    if not r:
        return None
    from peft import LoraConfig

    from rft.models.lora import lora_targets, projector_modules
    from rft.recipe.schema import Lora

    lora = Lora(enabled=True, r=r, alpha=2 * r)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora_targets(model, lora),
                      modules_to_save=projector_modules(model) or None, task_type="CAUSAL_LM")


def train_like_rft(model, train_vision: bool) -> dict[str, int]:
    """(A)/(B) train what (C)'s recipe trains: rft's default freezes the vision tower (``model.freeze.vision``);
    returns the trainable parameters per part."""
    from rft.models.parts import freeze_parts

    return freeze_parts(model, [] if train_vision else ["vision"])


def run_trl(mode: str, args) -> dict:
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    from rft.models.vision_tokens import vision_token_ids

    cuda = torch.cuda.is_available()
    model = AutoModelForImageTextToText.from_pretrained(args.model_dir, dtype=torch.bfloat16 if cuda else torch.float32,
                                                        attn_implementation="sdpa")
    processor = AutoProcessor.from_pretrained(args.model_dir)
    train_like_rft(model, args.train_vision)
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
                              processing_class=processor, peft_config=trl_lora_config(model, args.lora))
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
                  "min_pixels": 3136, "max_pixels": args.max_pixels, "freeze": {"vision": not args.train_vision},
                  "lora": {"enabled": bool(args.lora), "r": args.lora or 16, "alpha": 2 * (args.lora or 16)}},
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


def failure(result: dict) -> str | None:
    """Why a mode has no s/step: ``out of memory``, ``failed`` (see its log), ``too few steps`` (it ran, but
    ``--steps`` left no step after the first to time), or None when it has one."""
    if result.get("s_per_step"):
        return None
    if "error" not in result:
        return "too few steps"
    error = result["error"]
    return "out of memory" if "out of memory" in error.lower() or "OutOfMemory" in error else "failed"


def table(results: dict[str, dict], params: int, peak: float | None) -> str:
    head = ["mode", "s/step", "gen tok/s", "MFU", "peak GiB", *PHASES, "vision tower s (images)"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for mode, r in results.items():
        if "error" in r:
            lines.append(f"{mode} | {failure(r)}: {r['error'][-80:]}")
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
    p.add_argument("--row", choices=list(ROWS), help="a row of issue 17's grid: presets the options below "
                   "(explicit ones win, and the row's recorded name then says what changed); default: standard")
    p.add_argument("--arch", choices=ARCHS, help="model architecture (row preset; standard: 3b)")
    p.add_argument("--train-vision", action="store_true",
                   help="train the vision tower in every mode (default: frozen in every mode, rft's default "
                        "model.freeze.vision, so that (A), (B) and (C) train the same parameters)")
    p.add_argument("--lora", type=int, metavar="R", help="LoRA rank on the language model, 0 = off (row preset)")
    p.add_argument("--image-size", metavar="WxH", help="synthetic image size (row preset; standard: 640x480)")
    p.add_argument("--prompts", type=int, help="prompts per step (default 8; with --tiny 1)")
    p.add_argument("--generations", type=int, help="generations per prompt (row preset; standard: 8)")
    p.add_argument("--new-tokens", type=int, help="new tokens per completion (row preset; standard: 256)")
    p.add_argument("--max-pixels", type=int, help="pixel budget per image (row preset; standard: 401,408)")
    p.add_argument("--vllm-memory", type=float, default=0.35)
    # default: TRL 1.16 + vLLM 0.25 expand each image twice in (B)'s prompts (391 + 390 image tokens, docs/gpu.md);
    # 2 x image tokens + text + new tokens, rounded up to 1,024s (2,048 for the standard row, as in issue 7)
    p.add_argument("--max-model-length", type=int, help="vLLM's max_model_len (default: from the row, see max_model_length)")
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
    p.add_argument("--grid", nargs="+", metavar="JSON", help="print issue 17's grid: one line per row from the JSON "
                   "files of earlier runs ((B) and (C) of a row in one file or in one each)")
    p.add_argument("--grid-plot", metavar="PNG", help="with --grid: draw s/step against image tokens and completion length")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one mode in this process
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.work)
    if args.label and "," in args.modes:
        raise SystemExit("--label names the result of one mode: give --modes one letter")
    if args.grid:
        print_grid([json.loads(Path(f).read_text()) for f in args.grid], args.grid_plot)
        return
    if args.merge:
        reports = [json.loads(Path(f).read_text()) for f in args.merge]
        results = {mode: r for report in reports for mode, r in report["results"].items()}
        print_report(results, reports[0]["params"], highest_peak(reports), args.plot)  # one MFU denominator for all
        return
    row = resolve_row(args)
    if args.child:
        result = run_rft(args) if args.child == "C" else run_trl(args.child, args)
        if int(os.environ.get("RANK", "0")) == 0:
            (work / f"result_{args.child}.json").write_text(json.dumps(result))
            if result.get("profile_table"):
                print(result["profile_table"], flush=True)
        return
    work.mkdir(parents=True, exist_ok=True)
    print(f"row {row['name']}: {row['varies']}; {row['image_tokens']} image tokens per image, {row['new_tokens']} new "
          f"tokens, {row['prompts']} prompts x {row['generations']} generations, arch {row['arch']}, LoRA r "
          f"{row['lora']}, max model length {row['max_model_length']}" + (" (tiny config)" if args.tiny else ""), flush=True)
    if row["tiny_note"]:
        print(row["tiny_note"], flush=True)
    model_dir = build_model_dir(work / model_dir_name(args.arch, args.tiny), args.arch, args.tiny, args.max_pixels)
    n_images = args.prompts * (total_steps(args) + 1)
    images = work / f"images_{args.image_size}.json"
    images.write_text(json.dumps(build_images(work / f"images_{args.image_size}", n_images, parse_image_size(args.image_size))))
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
              "params": params, "bf16_peak_tflops": peak, "tiny": args.tiny, "row": row, "settings": vars(args),
              "results": results}
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


# --------------------------------------------------------------------------- the grid (issue 17)

GRID_MODES = ("B", "C")
"""The grid compares TRL + vLLM colocate (B) with ``rft train`` (C), row by row."""


def highest_peak(reports: list[dict]) -> float | None:
    """The highest bf16 matmul peak measured among runs (TFLOP/s): the MFU denominator of results gathered from
    several runs (the measurement varies by a few percent between processes; the highest gives the most
    conservative MFU)."""
    return max((r.get("bf16_peak_tflops") or 0 for r in reports), default=0) or None


def grid_rows(reports: list[dict]) -> dict[str, dict]:
    """The reports' results gathered per row name, in the order of ROWS (then the others as they come):
    ``{name: {"row": settings, "params": N, "peak": TFLOP/s, "results": {mode: result}}}``."""
    rows: dict[str, dict] = {}
    for report in reports:
        settings = report.get("row") or {"name": "standard", "varies": ROWS["standard"].varies}
        entry = rows.setdefault(settings["name"], {"row": settings, "params": report["params"], "reports": [], "results": {}})
        entry["results"].update(report["results"])
        entry["reports"].append(report)
    for entry in rows.values():  # as --merge does: one MFU denominator per row
        entry["peak"] = highest_peak(entry.pop("reports"))
    order = {name: i for i, name in enumerate(ROWS)}
    return dict(sorted(rows.items(), key=lambda item: order.get(item[0].split("+")[0], len(order))))


def mode_cell(results: dict[str, dict], mode: str, key: str = "s_per_step", fmt: str = "{:.2f}") -> str:
    """One mode's value in the grid, or why it has none (not run, out of memory, failed)."""
    r = results.get(mode)
    if r is None:
        return "not run"
    why = failure(r)
    if why and (key == "s_per_step" or "error" in r):
        return why
    value = r.get(key)
    return fmt.format(value) if value is not None else "-"


def phase_split(result: dict) -> str:
    """A mode's step split by phase, as ``generation 1.5 / weight_sync 0.1 / ...`` (seconds)."""
    return " / ".join(f"{p.split('_')[0]} {result['phases'][p]:.2f}" for p in PHASES) if result.get("phases") else "-"


def ratio(results: dict[str, dict]) -> float | None:
    """(B) s/step / (C) s/step: how many times faster ``rft train`` takes a step; None when either failed."""
    b, c = (results.get(m, {}).get("s_per_step") for m in GRID_MODES)
    return b / c if b and c else None


def grid_table(rows: dict[str, dict]) -> str:
    """The grid as one markdown table, one line per row."""
    head = ["row", "varies", "image tokens", "new tokens", "(B) s/step", "(C) s/step", "B / C", "(C) MFU",
            "(B) peak GiB", "(C) peak GiB", "(C) phases (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, entry in rows.items():
        row, results = entry["row"], entry["results"]
        c = results.get("C", {})
        c_mfu = None if failure(c) else mfu(c, entry["params"], entry["peak"])
        r = ratio(results)
        cells = [name, row.get("varies", ""), str(row.get("image_tokens", "-")), str(row.get("new_tokens", "-")),
                 mode_cell(results, "B"), mode_cell(results, "C"), f"{r:.2f}x" if r else "-",
                 f"{c_mfu:.1%}" if c_mfu is not None else "-", mode_cell(results, "B", "peak_gpu_gib", "{:.1f}"),
                 mode_cell(results, "C", "peak_gpu_gib", "{:.1f}"), phase_split(c)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_grid(rows: dict[str, dict], path: Path) -> Path:
    """s/step of (B) and (C) against image tokens (rows standard, large_images) and against completion
    length (standard, long_completions), side by side; a mode's missing or failed points are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    panels = ((axes[0], ("standard", "large_images"), "image_tokens", "image tokens per image"),
              (axes[1], ("standard", "long_completions"), "new_tokens", "completion length (new tokens)"))
    for ax, names, key, label in panels:
        for mode, style in zip(GRID_MODES, ("o-", "s-")):
            points = sorted((rows[n]["row"][key], rows[n]["results"][mode]["s_per_step"]) for n in names
                            if n in rows and (rows[n]["results"].get(mode) or {}).get("s_per_step"))
            if points:
                ax.plot(*zip(*points), style, label=f"({mode})")
                for x, y in points:
                    ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per GRPO step (median)")
        ax.set_ylim(bottom=0)
        if ax.lines:
            ax.legend()
    axes[0].set_title("image size")
    axes[1].set_title("completion length")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def print_grid(reports: list[dict], plot: str | None = None) -> None:
    """Issue 17's grid from the result JSONs of its rows, and with ``plot`` its two growth plots."""
    rows = grid_rows(reports)
    devices = sorted({r.get("device", "?") for r in reports})
    print(f"\n{', '.join(devices)}; B / C = (B) s/step / (C) s/step\n")
    print(grid_table(rows))
    for name, entry in rows.items():
        for mode, r in entry["results"].items():
            if failure(r) and "error" in r:
                print(f"\n{name} ({mode}) {failure(r)}; end of its log:\n{r['error'][-300:]}")
    if plot:
        print("\ngrowth plots:", plot_grid(rows, Path(plot)))


if __name__ == "__main__":
    main()
