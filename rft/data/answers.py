"""The ground truth of a TRL row written as the answer a perfect model would give.

Used by the supervised warm-up and by tests: the rewards score these answers 1.
"""

from __future__ import annotations

import json

from rewards.contract import BOX_TASKS, VISUAL_PROMPT_DETECTION, from_image_pixels
from rewards.inputs import load_solution
from rft.data.exemplars import written

THINK = "<think>I look at the image.</think>"


def reference_answer(row: dict, think: str = THINK) -> str:
    """``<think>..</think><answer>..</answer>`` with the row's ground truth in its coordinate convention."""
    solution = load_solution(row["solution"])
    task = row["task"]
    if task in BOX_TASKS:
        boxes = from_image_pixels(solution.get("boxes") or [], row["coord_format"], row["image_size"],
                                  row.get("model_image_size"))
        # a visual prompt does not name the object, so its answer does not either
        named = task != VISUAL_PROMPT_DETECTION
        labels = (list(solution.get("labels") or []) if named else []) + [None] * len(boxes)
        items = [{"bbox_2d": written(b, row["coord_format"]), **({"label": lab} if lab else {})}
                 for b, lab in zip(boxes.tolist(), labels)]
        answer = json.dumps(items) if items else "No Objects"
    elif task == "classification":
        answer = solution["label"]
    elif task == "tagging":
        answer = ", ".join(solution.get("tags") or [])
    else:
        raise ValueError(f"no reference answer for task {task!r}")
    return f"{think}<answer>{answer}</answer>"
