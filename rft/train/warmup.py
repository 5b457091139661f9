"""A short supervised warm-up before GRPO: teacher forcing on reference answers.

A model trained from scratch never writes ``<answer>…</answer>`` by chance, so GRPO would see
only zero rewards. A few supervised steps teach the format; ``format_only`` (default) shuffles the
targets among samples of the same task so the warm-up teaches nothing about the right answer.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict

import torch
from accelerate import PartialState

from rft.data.answers import reference_answer
from rft.data.images import open_image
from rft.recipe.schema import WarmupSection

log = logging.getLogger(__name__)


def warmup_targets(rows: list[dict], format_only: bool, rng: random.Random) -> list[str]:
    """One target answer per row: its own reference answer, or (``format_only``) another row's of the same task."""
    answers = [reference_answer(r) for r in rows]
    if not format_only:
        return answers
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_task[r["task"]].append(i)
    shuffled = list(answers)
    for idx in by_task.values():
        donors = list(idx)
        rng.shuffle(donors)
        for i, j in zip(idx, donors):
            shuffled[i] = answers[j]
    return shuffled


def batch_inputs(processor, rows: list[dict], targets: list[str]) -> dict[str, torch.Tensor]:
    """Processor inputs for prompt + target, with labels only on the target's tokens (and the end token)."""
    tokenizer = processor.tokenizer
    end = tokenizer.eos_token or ""
    prompts = [processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in rows]
    texts = [p + t + end for p, t in zip(prompts, targets)]
    images = [[open_image(r["image"])] for r in rows]
    inputs = processor(text=texts, images=images, padding=True, padding_side="right", return_tensors="pt")
    labels = torch.full_like(inputs["input_ids"], -100)
    lengths = inputs["attention_mask"].sum(dim=1)
    for i, target in enumerate(targets):
        n = len(tokenizer(target + end, add_special_tokens=False)["input_ids"])
        stop = int(lengths[i])
        labels[i, stop - n: stop] = inputs["input_ids"][i, stop - n: stop]
    inputs["labels"] = labels
    return inputs


def supervised_warmup(loaded, rows: list[dict], section: WarmupSection, seed: int, print_fn=print) -> list[float]:
    """Train ``loaded.model`` for ``section.steps`` supervised steps on ``rows``; returns the losses."""
    rng = random.Random(seed)
    targets = warmup_targets(rows, section.format_only, rng)
    model = loaded.model.to(PartialState().device)  # the trainer would move it there next anyway
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=section.learning_rate)
    losses, start = [], time.monotonic()
    order = list(range(len(rows)))
    for step in range(section.steps):
        batch = rng.sample(order, min(section.batch_size, len(order)))
        inputs = batch_inputs(loaded.processor, [rows[i] for i in batch], [targets[i] for i in batch])
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == section.steps - 1:
            print_fn(f"warm-up {step + 1:>4}/{section.steps}  loss {losses[-1]:.3f}  {time.monotonic() - start:.0f}s", flush=True)
    model.eval()
    return losses
