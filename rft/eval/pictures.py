"""Pictures of boxes on images: ground truth (green) and predictions (red), for ``rft eval`` and ``rft data``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from rewards.contract import REWARD_COLUMNS
from rft.data.images import open_image

GREEN, RED = (0, 200, 0), (230, 0, 0)


def picture_name(index: int, sample_id: str) -> str:
    """``NNN_<id>.png``, the id cut to its last 60 letters and digits (others as ``_``)."""
    return f"{index:03d}_{''.join(c if c.isalnum() else '_' for c in sample_id)[-60:]}.png"


GAP = 6
"""Pixels between the images of a row with several."""


def _rgb(image: Image.Image | str | Path) -> Image.Image:
    return open_image(image) if isinstance(image, (str, Path)) else image.convert("RGB")


def render_boxes(image: Image.Image | str, gt_boxes, pred_boxes, title: str, scale: int = 2,
                 boxes_size: Sequence[float] | None = None, others: Sequence[Image.Image | str] = ()) -> Image.Image:
    """The image (a PIL image or a file), upscaled ``scale`` x, with ground truth in green and predictions
    in red, under a white strip holding ``title`` (one or more lines), so the text hides nothing. Boxes are
    in pixels of an image of ``boxes_size`` ``[w, h]`` (the original image, where the picture is of the
    resized copy the model saw), by default of ``image`` itself. ``others``: a row's further images (a
    visual prompt's crop, say), in prompt order to the right of the first, at its height, without boxes."""
    image = _rgb(image)
    sx, sy = ((image.width / boxes_size[0], image.height / boxes_size[1]) if boxes_size else (1.0, 1.0))
    image = image.resize((image.width * scale, image.height * scale))
    draw = ImageDraw.Draw(image)
    for boxes, colour in ((gt_boxes, GREEN), (pred_boxes, RED)):
        for x1, y1, x2, y2 in boxes:
            draw.rectangle([x1 * sx * scale, y1 * sy * scale, x2 * sx * scale, y2 * sy * scale], outline=colour, width=2)
    if others:
        image = _side_by_side(image, [_rgb(o) for o in others])
    title = "\n".join(line[:80] for line in title.splitlines())
    strip = ImageDraw.Draw(image).multiline_textbbox((4, 4), title)[3] + 4
    picture = Image.new("RGB", (image.width, image.height + strip), (255, 255, 255))
    picture.paste(image, (0, strip))
    ImageDraw.Draw(picture).multiline_text((4, 4), title, fill=(0, 0, 0))
    return picture


def _side_by_side(first: Image.Image, others: list[Image.Image]) -> Image.Image:
    """``first``, then each of ``others`` scaled to its height, left to right on white."""
    scaled = [o.resize((max(1, round(o.width * first.height / o.height)), first.height)) for o in others]
    row = Image.new("RGB", (first.width + sum(GAP + o.width for o in scaled), first.height), (255, 255, 255))
    x = 0
    for part in (first, *scaled):
        row.paste(part, (x, 0))
        x += part.width + GAP
    return row


def boxes_of(samples: Sequence[dict]) -> list[tuple[list, list]]:
    """(ground-truth boxes, predicted boxes) of scored samples (dicts with ``completion`` and the reward
    columns ``task``, ``solution``, ``image_size``, ``coord_format``, ``model_image_size``), both in
    original-image pixels, the answers read as the rewards read them."""
    from rewards.inputs import iter_samples, read_box_answers

    if not samples:
        return []
    columns = {k: [s.get(k) for s in samples] for k in REWARD_COLUMNS}
    pairs = list(iter_samples([s["completion"] for s in samples], columns))
    answers = read_box_answers([text for text, _ in pairs], [sample for _, sample in pairs])
    return [(sample.gt_boxes.tolist(), answer.boxes.tolist()) for (_, sample), answer in zip(pairs, answers)]


def draw_boxes(image_path: str, gt_boxes, pred_boxes, title: str, out: Path, scale: int = 2,
               boxes_size: Sequence[float] | None = None, others: Sequence[str] = ()) -> Path:
    """:func:`render_boxes` saved to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    render_boxes(image_path, gt_boxes, pred_boxes, title, scale, boxes_size, others).save(out)
    return out
