"""Completions with their images (``output.log_completions_every``): what is picked, what is written
(JSONL, pictures with ground truth green and predictions red, TensorBoard, W&B), and when. The run
itself writing them is checked in tests/test_dynamic_sampling.py."""

import json
import sys
import types

import pytest
import torch
from PIL import Image

from rft.recipe import validate
from rft.train.completion_log import CompletionLog, completion_log, log_interval, markdown, prompt_text

GREEN, RED = (0, 200, 0), (230, 0, 0)


def test_interval_defaults_to_every_logging_step_on_the_cpu_and_50_on_gpus():
    assert log_interval(None, 1, cuda=False) == 1 and log_interval(None, 5, cuda=False) == 5
    assert log_interval(None, 1, cuda=True) == 50 and log_interval(7, 1, cuda=True) == 7 and log_interval(0, 1, False) == 0
    base = {"model": {"tiny": {}}, "data": {"datasets": [{"name": "a", "kind": "synthetic_shapes"}]}, "rewards": [{"name": "format"}]}
    assert completion_log(validate({**base, "output": {"log_completions_every": 0}}), cuda=False) is None
    made = completion_log(validate({**base, "grpo": {"logging_steps": 3}}), cuda=False)
    assert made.every == 3 and made.reward_names == ["format"]
    made.close()


def test_due_at_the_first_generation_of_each_interval(tmp_path):
    log = CompletionLog(tmp_path, every=50, per_task=1, reward_names=[], reward_weights=[])
    assert log.due(1) and log.due(50) and log.due(51)
    log._last_interval = 0  # step 1 was logged
    assert not log.due(2) and not log.due(50) and log.due(51) and log.due(120)
    assert not CompletionLog(tmp_path, every=0, per_task=1, reward_names=[], reward_weights=[]).due(1)


def row(i, task, dataset="d", image=None, boxes=((10, 10, 40, 30),)):
    solution = {"boxes": [list(b) for b in boxes], "labels": ["square"] * len(boxes)} if task == "detection" else {"label": "square"}
    return {"task": task, "dataset": dataset, "id": f"{dataset}{i}", "image": image,
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"find it {i}"}]}],
            "solution": json.dumps(solution), "image_size": [200, 100], "coord_format": "pixels", "model_image_size": [100, 50]}


def test_picks_a_few_completions_per_task_of_different_prompts(tmp_path):
    log = CompletionLog(tmp_path, every=1, per_task=2, reward_names=[], reward_weights=[])
    rows = [row(i // 4, "detection") for i in range(16)] + [row(i // 4, "classification", "c") for i in range(8)]
    chosen = log.choose(rows, step=3)
    assert [rows[i]["task"] for i in chosen] == ["classification"] * 2 + ["detection"] * 2
    assert len({rows[i]["id"] for i in chosen}) == 4 and chosen == log.choose(rows, step=3)
    log.close()


def test_writes_jsonl_pictures_and_tensorboard(tmp_path):
    image = Image.new("RGB", (100, 50), (255, 255, 255))  # the resized copy the model saw (original: 200 x 100)
    rows = [row(0, "detection", image=image)] * 2 + [row(1, "classification", "c", image=image)] * 2
    # the model answers in pixels of the resized image: [5, 5, 20, 15] is [10, 10, 40, 30] in the original
    boxes = '<answer>[{"bbox_2d": [30, 20, 45, 45], "label": "square"}]</answer>'
    completions = [boxes, boxes, "<answer>square</answer>", [{"role": "assistant", "content": "<answer>circle</answer>"}]]
    rewards = torch.tensor([[0.5, 1.0, float("nan")], [0.5, 1.0, float("nan")], [float("nan"), 1.0, 1.0], [float("nan"), 1.0, 0.0]])
    log = CompletionLog(tmp_path, every=1, per_task=2, reward_names=["iou", "format", "accuracy"], reward_weights=[1.0, 0.5, 1.0],
                        report_to=["tensorboard"])
    log.tensorboard_dir = lambda: str(tmp_path / "tb")
    log.add(4, rows, completions, rewards, torch.tensor([1.0, 1.0, 0.5, -0.5]))
    log.close()
    records = [json.loads(line) for line in (tmp_path / "completions" / "step_4.jsonl").read_text().splitlines()]
    assert len(records) == 2  # one prompt per task: the two rows of each task are one prompt's group
    classification, detection = records
    assert classification["completion"] in ("<answer>square</answer>", "<answer>circle</answer>")
    assert detection["prompt"] == "find it 0" and detection["solution"]["labels"] == ["square"]
    assert detection["rewards"] == {"iou": 0.5, "format": 1.0, "accuracy": None} and detection["reward"] == 1.0
    assert detection["advantage"] == 1.0 and detection["completion"] == boxes and detection["step"] == 4
    # read as the rewards read it: pixels of the 100 x 50 image the model saw, in original-image pixels
    assert detection["boxes"] == {"truth": [[10.0, 10.0, 40.0, 30.0]], "predicted": [[60.0, 40.0, 90.0, 90.0]]}
    picture = Image.open(tmp_path / "completions" / detection["image"]).convert("RGB")
    scale = picture.width // 100  # upscaled for viewing, boxes scaled from original pixels to the picture
    top = picture.height - 50 * scale  # the title's strip
    assert scale == 4 and 10 < top < 40
    assert picture.getpixel((5 * scale, top + 7 * scale)) == GREEN  # left edge of the ground truth: original x=10 -> 5
    assert picture.getpixel((30 * scale, top + 30 * scale)) == RED  # left edge of the prediction: original x=60 -> 30
    assert "boxes" not in classification and (tmp_path / "completions" / classification["image"]).is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert set(events.Tags()["images"]) == {"completions/classification_0", "completions/detection_1"}
    assert "completions/detection_1/text_summary" in events.Tags()["tensors"]


def test_a_row_with_several_images_is_drawn_with_each_beside_the_first(tmp_path):
    """A visual prompt's crop (a row's second image) appears to the right of the first, at its height; the
    boxes stay on the first image."""
    scene, crop = Image.new("RGB", (100, 50), (255, 255, 255)), Image.new("RGB", (20, 10), (0, 0, 255))
    two = {**row(0, "detection", image=scene), "images": [scene, crop]}
    boxes = '<answer>[{"bbox_2d": [30, 20, 45, 45], "label": "square"}]</answer>'
    log = CompletionLog(tmp_path, every=1, per_task=1, reward_names=["iou"], reward_weights=[1.0])
    log.add(1, [two, two], [boxes, boxes], torch.tensor([[0.5], [0.5]]), torch.tensor([0.0, 0.0]))
    log.close()
    record = json.loads((tmp_path / "completions" / "step_1.jsonl").read_text())
    picture = Image.open(tmp_path / "completions" / record["image"]).convert("RGB")
    scale = 4  # the first image upscaled as in the one-image picture; the crop scaled to its 200-pixel height
    assert picture.width == 100 * scale + 6 + 20 * (50 * scale // 10)
    top = picture.height - 50 * scale
    assert picture.getpixel((5 * scale, top + 7 * scale)) == GREEN  # boxes on the first image, where they were
    assert picture.getpixel((100 * scale + 6 + 10, top + 10)) == (0, 0, 255)  # then the crop
    assert picture.getpixel((100 * scale + 2, top + 10)) == (255, 255, 255)  # the gap between them


def test_wandb_gets_a_table_with_images(tmp_path, monkeypatch):
    logged = []
    wandb = types.SimpleNamespace(run=object(), log=logged.append, Image=lambda p: ("image", p.size),
                                  Table=lambda columns, data: {"columns": columns, "data": data})
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    image = Image.new("RGB", (32, 32))
    log = CompletionLog(tmp_path, every=1, per_task=1, reward_names=["format"], reward_weights=[1.0], report_to=["wandb"])
    log.add(1, [row(0, "classification", image=image)], ["<answer>a</answer>"], torch.tensor([[1.0]]), torch.tensor([0.0]))
    log.close()
    (entry,) = logged
    assert entry["train/global_step"] == 1 and entry["completions"]["columns"][:4] == ["step", "task", "id", "image"]
    assert entry["completions"]["data"][0][3][1][0] == 448 and entry["completions"]["data"][0][6] == 1.0


def test_prompt_and_markdown_text():
    prompt = [{"role": "system", "content": "be brief"},
              {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what shape?"}]}]
    assert prompt_text(prompt) == "be brief\nwhat shape?" and prompt_text("plain") == "plain"
    text = markdown({"dataset": "d", "id": "7", "task": "classification", "rewards": {"format": 1.0, "iou": None},
                     "reward": 1.0, "advantage": -0.25, "prompt": "a\nb", "completion": "<answer>x</answer>"})
    assert "format 1.000, iou n/a" in text and "advantage -0.250" in text and "    a\n    b" in text
