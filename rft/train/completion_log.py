"""Completions with their images, where people look.

Reward bugs show when one sees what the model wrote about which image. Every ``output.log_completions_every``
steps (default: every logging step on the CPU, every 50 steps on GPUs), a few sampled completions per task
of the batch being trained go to ``<output.dir>/completions/step_N.jsonl`` (prompt, completion, each
reward, the weighted reward, the advantage, the ground truth and, for box tasks, the boxes read from the
answer in original-image pixels) and ``step_N/*.png`` (the image the model saw, ground truth green,
predictions red); with ``tensorboard`` in ``output.report_to`` to TensorBoard (images and text, under
``completions/``), with ``wandb`` to W&B (a table with the images).

Cheap on the training thread: it picks the samples and keeps references to the already decoded images
(:mod:`rft.data.image_cache`); parsing, drawing, encoding and writing happen on a background thread. A
step's log is skipped when two are still being written. With several processes, the first logs its
share of the batch.
"""

from __future__ import annotations

import json
import logging
import random
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

log = logging.getLogger(__name__)

PICTURE_SIDE = 448
"""Pictures are upscaled by whole factors until their longer side reaches about this many pixels."""
MAX_PENDING = 2


def log_interval(configured: int | None, logging_steps: int, cuda: bool) -> int:
    """Steps between completion logs: the recipe's, else every logging step on the CPU and 50 on GPUs (0: never)."""
    if configured is not None:
        return configured
    return 50 if cuda else max(1, int(logging_steps))


def completion_log(recipe, cuda: bool) -> CompletionLog | None:
    """The recipe's completion log (None when ``output.log_completions_every`` is 0)."""
    from rft.train.config import RFT_DEFAULTS

    out = recipe.output
    every = log_interval(out.log_completions_every, {**RFT_DEFAULTS, **recipe.grpo}["logging_steps"], cuda)
    if not every:
        return None
    return CompletionLog(out.dir, every, out.log_completions_per_task, [r.logged_name for r in recipe.rewards],
                         [r.weight for r in recipe.rewards], out.report_to, recipe.seed)


def prompt_text(prompt: Any) -> str:
    """The text parts of a conversational prompt (images left out), or the prompt itself."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for message in prompt or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)


class CompletionLog:
    """Writes sampled completions of a step (module docstring); :meth:`add` is called with each scored batch."""

    def __init__(self, out_dir: str | Path, every: int, per_task: int, reward_names: Sequence[str],
                 reward_weights: Sequence[float], report_to: Sequence[str] = (), seed: int = 0):
        self.dir = Path(out_dir) / "completions"
        self.every, self.per_task, self.seed = every, per_task, seed
        self.reward_names, self.reward_weights = list(reward_names), list(reward_weights)
        self.report_to = set(report_to)
        self.tensorboard_dir: Callable[[], str | None] = lambda: None
        """Where the run's TensorBoard events go (set once the trainer's TensorBoard callback exists)."""
        self._tensorboard = None
        self._last_interval: int | None = None
        self._pending: list[Future] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rft-completion-log")

    def follow_tensorboard(self, trainer) -> None:
        """Write TensorBoard entries where ``trainer``'s TensorBoard callback writes its scalars."""
        from transformers.integrations import TensorBoardCallback

        callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
        self.tensorboard_dir = lambda: getattr(callback, "logging_dir", None)

    def due(self, step: int) -> bool:
        """Whether ``step`` is the first logged one of its interval of ``every`` steps (1, every+1, ...)."""
        return bool(self.every) and (step - 1) // self.every != self._last_interval

    def add(self, step: int, rows: Sequence[dict], completions: Sequence[Any], rewards: torch.Tensor,
            advantages: torch.Tensor) -> None:
        """A scored batch (this process's rows, their completions, rewards ``(rows, reward functions)`` and
        advantages) of the generation that trains ``step``; logged if due, on the background thread."""
        if not self.due(step):
            return
        self._pending = [f for f in self._pending if not f.done()]
        if len(self._pending) >= MAX_PENDING:
            log.warning("completion log of step %d skipped: earlier ones are still being written", step)
            return
        self._last_interval = (step - 1) // self.every
        chosen = self.choose(rows, step)
        values, advantage = rewards[chosen].tolist(), advantages[chosen].tolist()
        records = [self._record(step, rows[i], completions[i], v, a) for i, v, a in zip(chosen, values, advantage)]
        future = self._pool.submit(self.write, step, records)
        future.add_done_callback(_report_failure)
        self._pending.append(future)

    def choose(self, rows: Sequence[dict], step: int) -> list[int]:
        """Up to ``per_task`` rows per task, of different prompts, at random (seeded by step)."""
        order = list(range(len(rows)))
        random.Random(f"{self.seed}:{step}").shuffle(order)
        counts: dict[str, int] = {}
        seen, chosen = set(), []
        for i in order:
            task, prompt = rows[i].get("task"), (rows[i].get("dataset"), rows[i].get("id"))
            if counts.get(task, 0) < self.per_task and prompt not in seen:
                counts[task] = counts.get(task, 0) + 1
                seen.add(prompt)
                chosen.append(i)
        return sorted(chosen, key=lambda i: (str(rows[i].get("task")), i))

    def _record(self, step: int, row: dict, completion: Any, values: list[float], advantage: float) -> dict:
        from rewards.inputs import completion_text
        from rft.data.build import trl_images

        named = {n: (None if v != v else v) for n, v in zip(self.reward_names, values)}  # NaN: does not apply
        applied = [(v, w) for v, w in zip(values, self.reward_weights) if v == v]
        return {
            "step": step, "task": row.get("task"), "dataset": row.get("dataset"), "id": row.get("id"),
            "prompt": prompt_text(row.get("prompt")), "completion": completion_text(completion),
            "rewards": named, "reward": sum(v * w for v, w in applied) if applied else None, "advantage": advantage,
            "solution": row.get("solution"), "image_size": row.get("image_size"), "coord_format": row.get("coord_format"),
            "model_image_size": row.get("model_image_size"),
            "_images": trl_images(row),  # the first is the one the boxes refer to; the others are drawn beside it
        }

    # ------------------------------------------------------------------ on the background thread

    def write(self, step: int, records: list[dict]) -> Path:
        """The step's JSONL file, pictures and logger entries."""
        from rewards.parsing import extract_answer
        from rft.eval.pictures import render_boxes

        folder = self.dir / f"step_{step}"
        folder.mkdir(parents=True, exist_ok=True)
        pictures = []
        for k, (record, boxes) in enumerate(zip(records, _boxes(records))):
            image, *others = record.pop("_images") or [None]
            record["solution"] = _json_or_text(record["solution"])
            if boxes is not None:
                record["boxes"] = boxes
            picture = None
            if image is not None:
                scale = max(1, round(PICTURE_SIDE / max(image.size)))
                title = (f"{record['id']}  reward {_number(record['reward'])}  advantage {_number(record['advantage'])}\n"
                         f"truth: {_truth(record['solution'])}  answer: {extract_answer(record['completion'])}")
                picture = render_boxes(image, *(boxes["truth"], boxes["predicted"]) if boxes else ([], []), title,
                                       scale, boxes_size=record["image_size"] if boxes else None, others=others)
                name = "".join(c if c.isalnum() else "_" for c in f"{k:02d}_{record['task']}_{record['id']}")[-80:]
                picture.save(folder / f"{name}.png")
                record["image"] = f"{folder.name}/{name}.png"
            pictures.append(picture)
        path = self.dir / f"step_{step}.jsonl"
        path.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
        if "tensorboard" in self.report_to or "all" in self.report_to:
            self._to_tensorboard(step, records, pictures)
        if "wandb" in self.report_to or "all" in self.report_to:
            self._to_wandb(step, records, pictures)
        return path

    def _to_tensorboard(self, step: int, records: list[dict], pictures: list) -> None:
        import numpy as np

        if self._tensorboard is None:
            log_dir = self.tensorboard_dir()
            if log_dir is None:
                return
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(log_dir=log_dir)
        for k, (record, picture) in enumerate(zip(records, pictures)):
            tag = f"completions/{record['task']}_{k}"
            if picture is not None:
                self._tensorboard.add_image(tag, np.asarray(picture), step, dataformats="HWC")
            self._tensorboard.add_text(tag, markdown(record), step)
        self._tensorboard.flush()

    def _to_wandb(self, step: int, records: list[dict], pictures: list) -> None:
        import wandb

        if wandb.run is None:
            return
        columns = ["step", "task", "id", "image", "prompt", "completion", *self.reward_names, "reward", "advantage"]
        data = [[step, r["task"], r["id"], wandb.Image(p) if p is not None else None, r["prompt"], r["completion"],
                 *(r["rewards"][n] for n in self.reward_names), r["reward"], r["advantage"]]
                for r, p in zip(records, pictures)]
        wandb.log({"completions": wandb.Table(columns=columns, data=data), "train/global_step": step})

    def close(self) -> None:
        """Wait for the logs still being written."""
        self._pool.shutdown(wait=True)
        if self._tensorboard is not None:
            self._tensorboard.close()


def markdown(record: dict) -> str:
    """A record as TensorBoard text: prompt, completion, rewards and advantage."""
    rewards = ", ".join(f"{n} {_number(v)}" for n, v in record["rewards"].items())
    return (f"**{record['dataset']} / {record['id']}** ({record['task']})  \nrewards: {rewards}; weighted "
            f"{_number(record['reward'])}; advantage {_number(record['advantage'])}\n\n**prompt**\n\n    "
            + record["prompt"].replace("\n", "\n    ") + "\n\n**completion**\n\n    " + record["completion"].replace("\n", "\n    "))


def _boxes(records: list[dict]) -> list[dict | None]:
    """For box tasks, ground-truth and predicted boxes in original-image pixels (rewards' own reading)."""
    from rft.eval.pictures import boxes_of
    from rewards.contract import BOX_TASKS

    index = [i for i, r in enumerate(records) if r["task"] in BOX_TASKS]
    out: list[dict | None] = [None] * len(records)
    for i, (truth, predicted) in zip(index, boxes_of([records[i] for i in index])):
        out[i] = {"truth": truth, "predicted": predicted}
    return out


def _truth(solution: Any) -> str:
    """The ground truth in a few words: the label, the tags or the number of boxes."""
    if not isinstance(solution, dict):
        return str(solution)
    if "label" in solution:
        return str(solution["label"])
    if "tags" in solution:
        return ", ".join(map(str, solution["tags"]))
    boxes = solution.get("boxes") or []
    labels = sorted({str(x) for x in solution.get("labels") or []})
    return f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}" + (f" ({', '.join(labels)})" if labels else "")


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _report_failure(future: Future) -> None:
    if future.exception() is not None:
        log.warning("writing the completion log failed: %r", future.exception())
