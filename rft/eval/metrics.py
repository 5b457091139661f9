"""Metrics for users' own prediction files: COCO mAP, negatives, grounding, classification, tagging.

A *scored sample* is a dict with the TRL-row reward columns (:data:`rewards.contract.REWARD_COLUMNS`), an ``id``, optionally ``dataset``,
``query``, ``image`` or ``image_id``, and the model's raw ``completion``. Answers are read,
converted to original-image pixels and scored by the rewards' own code (:mod:`rewards`), so
a metric and its reward never disagree on what an answer says. A rate over no samples is NaN.

    from rft.eval.metrics import evaluate, load_predictions, summary_table
    print(summary_table(evaluate(load_predictions("predictions.jsonl"))))
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rewards.classification import score_classification
from rewards.grounding import score_grounding
from rewards.contract import BOX_TASKS, DETECTION_TASKS, REWARD_COLUMNS, TASKS
from rewards.inputs import Sample, iter_samples, load_solution, read_box_answers
from rewards.negative import score_negative_sample
from rewards.parsing import NONE_PHRASES, BoxAnswer, extract_answer, normalize_text, parse_list
from rewards.tagging import score_tagging
from rft.data.records import get_field, read_records
from rft.errors import DataError

Protocol = Literal["full", "visual_rft"]
PROTOCOLS: tuple[str, ...] = ("full", "visual_rft")
AGNOSTIC_CATEGORY = "object"
"""The category of detection samples that name none (no query category, no labels)."""


def _rate(count: float, total: int) -> float:
    return count / total if total else math.nan


def _name(sample: dict, index: int) -> str:
    return f"sample {sample['id']!r}" if sample.get("id") is not None else f"sample #{index}"


def _read(samples: Sequence[dict]) -> list[tuple[str, Sample]]:
    """(completion text, :class:`Sample`) per scored sample, as a reward would see them."""
    columns = {name: [s.get(name) for s in samples] for name in REWARD_COLUMNS}
    return list(iter_samples([s.get("completion") for s in samples], columns))


def _box_answers(samples: Sequence[dict], none_phrases: Sequence[str]) -> tuple[list[Sample], list[BoxAnswer]]:
    """Samples and their answers' boxes in original-image pixels (clipped, invalid ones counted)."""
    pairs = _read(samples)
    rows = [row for _, row in pairs]
    return rows, read_box_answers([text for text, _ in pairs], rows, none_phrases)


# ---------------------------------------------------------------------------------------------
# Detection: COCO mAP by pycocotools


def _quiet() -> contextlib.AbstractContextManager:
    return contextlib.redirect_stdout(io.StringIO())


def _category(sample: dict, row: Sample, index: int) -> str:
    """The asked category, else the one category the solution's labels name."""
    asked = (sample.get("query") or {}).get("category")
    if asked:
        return str(asked)
    labels = {str(label) for label in row.gt_labels if label is not None}
    if len(labels) > 1:
        raise DataError(f"{_name(sample, index)}: no query category and labels {sorted(labels)}; "
                        "detection metrics need one category per sample")
    return labels.pop() if labels else AGNOSTIC_CATEGORY


def _image_key(sample: dict, index: int) -> tuple[str, Any]:
    """What groups a sample's boxes with other samples' (COCO's image). A visual-prompt sample is a query of its
    own (its exemplars, not only its category, say what to find), so it is never grouped: two of one image and
    category, with different exemplars, are two evaluations."""
    if (sample.get("query") or {}).get("exemplars"):
        return "visual prompt", (sample.get("id"), index)
    for field in ("image_id", "image", "id"):
        if sample.get(field) is not None:
            return field, sample[field]
    raise DataError(f"sample #{index}: needs an image_id, image or id field to group detections by image")


def _boxes(boxes: np.ndarray, image_id: int, category_id: int, first_id: int) -> list[dict]:
    """COCO annotations (xywh) of (N, 4) x1, y1, x2, y2 pixel boxes."""
    anns = []
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = x2 - x1, y2 - y1
        anns.append({"id": first_id + k, "image_id": image_id, "category_id": category_id,
                     "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
    return anns


def _coco_datasets(samples: Sequence[dict], rows: Sequence[Sample], answers: Sequence[BoxAnswer]
                   ) -> tuple[dict, dict, dict[int, str]]:
    """The ground-truth and result datasets in COCO form, and category names by id.

    Images are numbered in order of first appearance (COCOeval breaks score ties across images
    by image id); each sample is one (image, category) pair. Results are laid out as
    ``COCO.loadRes`` would, which fails on an empty list: here no predictions simply score 0.
    """
    images: dict[tuple[str, Any], dict] = {}
    categories: dict[str, int] = {}
    asked: dict[tuple[int, int], str] = {}
    gts: list[dict] = []
    dets: list[dict] = []
    for i, (sample, row, answer) in enumerate(zip(samples, rows, answers)):
        width, height = row.image_size or (0, 0)
        image = images.setdefault(_image_key(sample, i), {"id": len(images) + 1, "width": width, "height": height})
        category_id = categories.setdefault(_category(sample, row, i), len(categories) + 1)
        pair = (image["id"], category_id)
        if pair in asked:
            raise DataError(f"{_name(sample, i)} and {asked[pair]} ask for the same category in the same image; "
                            "give them distinct image_id fields")
        asked[pair] = _name(sample, i)
        gts += _boxes(row.gt_boxes, *pair, len(gts) + 1)
        found = _boxes(answer.boxes, *pair, len(dets) + 1)
        for det, score in zip(found, answer.scores):
            det["score"] = 1.0 if score is None else score
        dets += found
    base = {"images": list(images.values()), "categories": [{"id": c, "name": n} for n, c in categories.items()]}
    return {**base, "annotations": gts}, {**base, "annotations": dets}, {c: n for n, c in categories.items()}


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def _per_category(evaluator: COCOeval, names: dict[int, str]) -> dict[str, float]:
    """AP@[.5:.95] of each category with ground truth (area "all", 100 detections)."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_category = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k]
        if (values > -1).any():
            per_category[names[category_id]] = float(values[values > -1].mean())
    return per_category


def detection_metrics(
    samples: Sequence[dict], *, protocol: Protocol = "full", none_phrases: Sequence[str] = NONE_PHRASES
) -> dict[str, Any]:
    """COCO mAP (pycocotools ``COCOeval``) of detection samples, one per (image, asked category).

    Predicted boxes count for the sample's asked category at their confidence (1.0 when none).
    ``protocol="full"`` evaluates every sample, so boxes on negatives (no ground truth) are false
    positives; ``"visual_rft"`` drops negatives. mAP is NaN when no sample has a ground-truth box.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    rows, answers = _box_answers(samples, none_phrases)
    if protocol == "visual_rft":
        kept = [i for i, row in enumerate(rows) if len(row.gt_boxes)]
        samples, rows, answers = ([seq[i] for i in kept] for seq in (samples, rows, answers))
    gt, dt, names = _coco_datasets(samples, rows, answers)
    report = {"mAP": math.nan, "AP50": math.nan, "AP75": math.nan, "per_category": {},
              "n_images": len(gt["images"]), "n_predictions": len(dt["annotations"]), "n_samples": len(samples)}
    if not gt["annotations"]:
        return report
    evaluator = COCOeval(_coco(gt), _coco(dt), "bbox")
    with _quiet():
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {**report, "mAP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2]),
            "per_category": _per_category(evaluator, names)}


# ---------------------------------------------------------------------------------------------
# Per-sample metrics


def negative_metrics(samples: Sequence[dict], none_phrases: Sequence[str] = NONE_PHRASES) -> dict[str, Any]:
    """On negatives (no ground-truth box): share answering "no object" and share giving any box;
    on positives: share wrongly answering "no object"."""
    rows, answers = _box_answers(samples, none_phrases)
    negatives = [a for row, a in zip(rows, answers) if len(row.gt_boxes) == 0]
    positives = [a for row, a in zip(rows, answers) if len(row.gt_boxes)]
    return {
        "negative_accuracy": _rate(sum(score_negative_sample(a, 0) for a in negatives), len(negatives)),
        "false_positive_rate": _rate(sum(a.n_pred > 0 for a in negatives), len(negatives)),
        "false_negative_rate": _rate(sum(a.says_none for a in positives), len(positives)),
        "n_negatives": len(negatives),
        "n_positives": len(positives),
    }


def grounding_metrics(samples: Sequence[dict], none_phrases: Sequence[str] = NONE_PHRASES) -> dict[str, Any]:
    """``acc@0.5``: IoU of the first predicted box with the first ground-truth box >= 0.5 (a
    negative is correct when the answer says none); ``mean_iou`` over positives."""
    rows, answers = _box_answers(samples, none_phrases)
    scores = [score_grounding(a, row.gt_boxes, "iou", "first") for row, a in zip(rows, answers)]
    ious = [s for s, row in zip(scores, rows) if len(row.gt_boxes)]
    return {
        "acc@0.5": _rate(sum(s >= 0.5 for s in scores), len(scores)),
        "mean_iou": _rate(sum(ious), len(ious)),
        "n": len(scores),
        "n_negatives": len(scores) - len(ious),
    }


def classification_metrics(samples: Sequence[dict], classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy by the reward's rules (:func:`rewards.classification.score_classification`).

    ``classes`` (all class names) defaults to each sample's ``query["classes"]``.
    """
    correct = [
        score_classification(extract_answer(text), row.solution,
                             classes if classes is not None else (sample.get("query") or {}).get("classes"))
        for sample, (text, row) in zip(samples, _read(samples))
    ]
    return {"accuracy": _rate(sum(correct), len(correct)), "n": len(correct)}


def tagging_metrics(samples: Sequence[dict]) -> dict[str, Any]:
    """Micro precision, recall and F1 over all tags, and the mean per-sample F1 (the reward)."""
    hits = predicted = true = 0
    f1s = []
    for text, row in _read(samples):
        answer, tags = extract_answer(text), row.solution.get("tags") or []
        said, truth = set(parse_list(answer)), {t for t in map(normalize_text, tags) if t}
        hits, predicted, true = hits + len(said & truth), predicted + len(said), true + len(truth)
        f1s.append(score_tagging(answer, tags))
    return {
        "precision": _rate(hits, predicted),
        "recall": _rate(hits, true),
        "f1": _rate(2 * hits, predicted + true),
        "mean_f1": _rate(sum(f1s), len(f1s)),
        "n": len(f1s),
    }


def parse_failures(samples: Sequence[dict], none_phrases: Sequence[str] = NONE_PHRASES) -> dict[str, int]:
    """Completions with no answer, box answers that did not parse, and unusable boxes in all."""
    pairs = _read(samples)
    box = [(text, row) for text, row in pairs if row.task in BOX_TASKS]
    answers = read_box_answers([text for text, _ in box], [row for _, row in box], none_phrases)
    return {
        "no_answer": sum(not extract_answer(text) for text, _ in pairs),
        "unparsed": sum(bool(extract_answer(text)) and not a.parsed for (text, _), a in zip(box, answers)),
        "invalid_boxes": sum(a.n_invalid for a in answers),
        "n": len(pairs),
    }


# ---------------------------------------------------------------------------------------------
# Reports


def _by_task(samples: Sequence[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for i, sample in enumerate(samples):
        task = sample.get("task")
        if task not in TASKS:
            raise DataError(f"{_name(sample, i)}: task must be one of {TASKS}, got {task!r}")
        groups.setdefault(task, []).append(sample)
    return groups


def evaluate(
    samples: Sequence[dict], *, protocol: Protocol = "full", classes: Sequence[str] | None = None,
    none_phrases: Sequence[str] = NONE_PHRASES,
) -> dict[str, Any]:
    """Every metric that applies, by task: only the sections of the tasks present are returned (each of
    :data:`~rewards.contract.DETECTION_TASKS` in its own section: ``detection``, ``visual_prompt_detection``)."""
    groups = _by_task(samples)
    box_samples = [s for task in BOX_TASKS for s in groups.get(task, [])]
    report: dict[str, Any] = {}
    for task in DETECTION_TASKS:
        if task in groups:
            report[task] = detection_metrics(groups[task], protocol=protocol, none_phrases=none_phrases)
    if box_samples:
        report["negatives"] = negative_metrics(box_samples, none_phrases)
    if "grounding" in groups:
        report["grounding"] = grounding_metrics(groups["grounding"], none_phrases)
    if "classification" in groups:
        report["classification"] = classification_metrics(groups["classification"], classes)
    if "tagging" in groups:
        report["tagging"] = tagging_metrics(groups["tagging"])
    report["parse_failures"] = parse_failures(samples, none_phrases)
    report["n"] = len(samples)
    return report


def _rows(report: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(section, metric, value) of each number in a report; per-category APs as ``AP <name>``."""
    for section, values in report.items():
        if not isinstance(values, dict):
            yield "", section, values
            continue
        for key, value in values.items():
            if isinstance(value, dict):
                yield from ((section, f"AP {name}", v) for name, v in value.items())
            else:
                yield section, key, value


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def summary_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table, one number a line (floats to 4 decimals)."""
    rows = [(section, metric, _format(value)) for section, metric, value in _rows(report)]
    header = ("section", "metric", "value")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(3)]
    lines = [f"{s:<{widths[0]}}  {m:<{widths[1]}}  {v:>{widths[2]}}" for s, m, v in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Files


def _check_sample(record: dict, where: str) -> dict:
    task = get_field(record, "task", str, where)
    if task not in TASKS:
        raise DataError(f"{where}: task must be one of {TASKS}, got {task!r}")
    get_field(record, "completion", (str, list), where)
    try:
        load_solution(get_field(record, "solution", (dict, str), where))
    except ValueError as exc:
        raise DataError(f"{where}: bad solution: {exc}") from None
    return record


def load_predictions(path: str | Path) -> list[dict]:
    """Scored samples from a JSONL file, one a line; errors name the file and line."""
    return [_check_sample(record, where) for _, where, record in read_records(path)]
