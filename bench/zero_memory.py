"""Does ZeRO shard? Each process's memory for parameters + gradients + optimizer state, and the step time,
under DDP, ZeRO-2 and ZeRO-3 with two processes, for a Qwen2.5-VL of a few hundred million parameters
built from a config (random weights), trained with AdamW in fp32 on batches of one image and text.

Runs on CPUs (DeepSpeed's CPU accelerator over gloo, as ``rft train --gpus 2`` without GPUs) or GPUs.
Each setting is two ``torchrun`` processes; a process reports the growth of its peak resident memory over
what it held before the model was made (CPU), or its peak allocated GPU memory, and its mean step time.
ZeRO-3 builds the model partitioned (``deepspeed.zero.Init``, as transformers does under a ZeRO-3 config),
so no process ever holds all of it; DDP and ZeRO-2 keep whole weights on every process.

Run: ``python bench/zero_memory.py [--layers 16 --hidden 1024 --steps 4]`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"DDP": 0, "ZeRO-2": 2, "ZeRO-3": 3}


class PeakMemory:
    """This process's peak memory while the block runs, in GiB: allocated GPU memory, or on CPUs its resident
    memory sampled every millisecond (the maximum since the process began would also count model building)."""

    def __enter__(self):
        import threading

        import psutil
        import torch

        self.peak, self.cuda = 0.0, torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return self
        process, self.done = psutil.Process(), threading.Event()

        def sample():
            while not self.done.wait(0.001):
                self.peak = max(self.peak, process.memory_info().rss / 2**30)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            self.done.set()
            self.thread.join()


def memory_now_gib() -> float:
    import psutil
    import torch

    return torch.cuda.memory_allocated() / 2**30 if torch.cuda.is_available() else psutil.Process().memory_info().rss / 2**30


def batch(args: argparse.Namespace, device) -> dict:
    """``args.batch`` samples of one 112x112 image and about ``args.tokens`` words, labels on every token."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(Path(args.config).parent)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " ".join(["circle"] * args.tokens)}]}]
    text = processor.apply_chat_template(chat, tokenize=False)
    inputs = processor(text=[text] * args.batch, images=[[Image.new("RGB", (112, 112), "red")]] * args.batch,
                       return_tensors="pt")
    inputs["labels"] = inputs["input_ids"].clone()
    return {k: v.to(device) for k, v in inputs.items()}


def worker(args: argparse.Namespace) -> None:
    """One process of one setting: make the model, train ``args.steps`` steps, write its numbers."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from rft.processes import process_state

    state = process_state(deepspeed=args.stage > 0)
    if args.stage == 0 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = state.device
    before = memory_now_gib()
    config = AutoConfig.from_pretrained(args.config)
    torch.manual_seed(0)
    if args.stage:
        import deepspeed

        from rft.zero import deepspeed_config

        ds = deepspeed_config(args.stage, False, micro_batch=args.batch, world_size=state.num_processes,
                              hidden_size=config.text_config.hidden_size, dtype=torch.float32, max_grad_norm=1.0)
        if args.stage == 3 and args.live_parameters:
            ds["zero_optimization"].update(stage3_max_live_parameters=args.live_parameters,
                                           stage3_max_reuse_distance=args.live_parameters)
        from transformers.integrations import HfDeepSpeedConfig

        hf_ds = HfDeepSpeedConfig(ds)  # noqa: F841 (while it lives, transformers builds ZeRO-3 models partitioned)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
    else:
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).to(device)
        engine = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    parameters = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    inputs = batch(args, device)
    times = []
    with PeakMemory() as peak:
        for _ in range(args.steps):
            start = time.perf_counter()
            loss = engine(**inputs).loss
            if args.stage:
                engine.backward(loss)
                engine.step()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    result = {"rank": state.process_index, "parameters": parameters, "state_gib": peak.peak - before,
              "rest_gib": memory_now_gib() - before, "step_s": sum(times[1:]) / max(1, len(times) - 1), "loss": float(loss)}
    Path(args.out, f"{state.process_index}.json").write_text(json.dumps(result))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def run_setting(name: str, args: argparse.Namespace, config: Path, work: Path) -> list[dict]:
    out = work / name
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes),
           __file__, "--worker", "--stage", str(SETTINGS[name]), "--config", str(config), "--out", str(out),
           "--steps", str(args.steps), "--batch", str(args.batch), "--tokens", str(args.tokens),
           "--live-parameters", str(args.live_parameters)]
    print(f"{name}: {args.processes} processes ...", flush=True)
    # Freed tensors go back to the system at once (glibc would otherwise raise its mmap threshold after the first
    # large free and keep ZeRO-3's freed layer gathers in its heap, counted in the resident memory)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{name} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return [json.loads((out / f"{rank}.json").read_text()) for rank in range(args.processes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1280)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--live-parameters", type=float, default=2e7,
                        help="ZeRO-3's stage3_max_live_parameters and stage3_max_reuse_distance (rft/zero_configs/zero3.json "
                             "has 1e9, sized for billion-parameter models: a smaller model stays whole through the step); "
                             "0 keeps the config's")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from rft.models.tiny import build_tiny_vlm

    work = Path(tempfile.mkdtemp(prefix="rft_zero_memory_"))
    model_dir = build_tiny_vlm("qwen2_5_vl", work / "model", hidden_size=args.hidden, num_layers=args.layers,
                               num_heads=args.heads)
    (model_dir / "model.safetensors").unlink()  # the workers build it from the config alone
    results = {name: run_setting(name, args, model_dir / "config.json", work) for name in args.settings}
    parameters = next(iter(results.values()))[0]["parameters"]
    import torch

    where = "peak GPU memory allocated" if torch.cuda.is_available() else "peak resident memory growth"
    live = f"; ZeRO-3 keeps at most {args.live_parameters:.0e} gathered parameters live" if args.live_parameters else ""
    print(f"\n{parameters / 1e6:.0f}M parameters (fp32, AdamW: 16 bytes each = {16 * parameters / 2**30:.2f} GiB of "
          f"parameters + gradients + optimizer state), {args.processes} processes, batch {args.batch} x {args.tokens} tokens; "
          f"per process: {where}{live}\n")
    print("| setting | peak while training, process 0 / 1 (GiB) | vs DDP | held between steps, process 0 / 1 (GiB) | step (s) |")
    print("| --- | --- | --- | --- | --- |")
    ddp = max(r["state_gib"] for r in results.get("DDP", next(iter(results.values()))))

    def per_process(ranks: list[dict], key: str) -> str:
        return " / ".join(f"{r[key]:.2f}" for r in ranks)

    for name, ranks in results.items():
        ratio = max(r["state_gib"] for r in ranks) / ddp
        print(f"| {name} | {per_process(ranks, 'state_gib')} | {ratio:.2f} | {per_process(ranks, 'rest_gib')} | "
              f"{max(r['step_s'] for r in ranks):.2f} |")

if __name__ == "__main__":
    main()
