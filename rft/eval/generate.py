"""Batched greedy generation for evaluation (transformers backend)."""

from __future__ import annotations

import json

import torch

from rewards.contract import REWARD_COLUMNS
from rft.data.build import trl_images
from rft.data.images import open_image


@torch.no_grad()
def generate_answers(model, processor, rows: list[dict], banned_ids: list[int], max_new_tokens: int = 64,
                     batch_size: int = 16) -> list[str]:
    """Greedy completions for TRL rows (``prompt`` + ``image``, or ``images``), in order."""
    tokenizer = processor.tokenizer
    was_training = model.training
    model.eval()
    answers: list[str] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start: start + batch_size]
        texts = [processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in chunk]
        images = [[open_image(path) for path in trl_images(r)] for r in chunk]
        inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt").to(model.device)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             suppress_tokens=banned_ids or None, pad_token_id=tokenizer.pad_token_id)
        answers += tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    model.train(was_training)
    return answers


def mean_reward(reward_fn, rows: list[dict], answers: list[str]) -> float:
    """Mean of a reward over the rows it applies to (NaN when it applies to none)."""
    columns = {k: [r.get(k) for r in rows] for k in (*REWARD_COLUMNS, "dataset")}
    values = [v for v in reward_fn(answers, **columns) if v is not None]
    return sum(values) / len(values) if values else float("nan")


SCORED_FIELDS = ("id", "dataset", *REWARD_COLUMNS, "image", "images", "query")


def scored_samples(rows: list[dict], answers: list[str]) -> list[dict]:
    """TRL rows with their answers as the scored samples of :mod:`rft.eval.metrics` (``query`` as a dict)."""
    samples = []
    for row, answer in zip(rows, answers):
        sample = {k: row[k] for k in SCORED_FIELDS if k in row}
        if isinstance(sample.get("query"), str):
            sample["query"] = json.loads(sample["query"])
        samples.append({**sample, "completion": answer})
    return samples
