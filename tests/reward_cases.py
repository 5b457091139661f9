"""Shared helpers for reward tests: build TRL-style calls from per-sample dicts."""

import json

import numpy as np

from rewards.contract import from_image_pixels


def call(fn, completions, **sample_columns):
    """Call a reward with one set of sample columns repeated for every completion."""
    n = len(completions)
    return fn(completions, **{k: [v] * n for k, v in sample_columns.items()})


def det_answer(boxes_pixels, fmt="norm1000", image_size=(640, 480), model_image_size=None, label=None, conf=None,
               think="looking", rounding=False):
    """A think/answer completion giving ``boxes_pixels`` (original pixels) in the model's convention."""
    boxes = from_image_pixels(np.array(boxes_pixels, dtype=float).reshape(-1, 4), fmt, image_size, model_image_size)
    if rounding:
        boxes = np.round(boxes)
    items = []
    for b in boxes.tolist():
        item = {"bbox_2d": b}
        if label is not None:
            item["label"] = label
        if conf is not None:
            item["confidence"] = conf
        items.append(item)
    return f"<think>{think}</think><answer>{json.dumps(items)}</answer>"


def det_columns(gt_boxes, fmt="norm1000", image_size=(640, 480), model_image_size=None, labels=None, task="detection"):
    sol = {"boxes": gt_boxes, "labels": labels or ["cat"] * len(gt_boxes)}
    cols = {"task": task, "solution": json.dumps(sol), "image_size": list(image_size), "coord_format": fmt}
    if model_image_size is not None:
        cols["model_image_size"] = list(model_image_size)
    return cols
