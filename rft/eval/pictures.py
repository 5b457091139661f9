"""Pictures of boxes on images: ground truth (green) and predictions (red), for ``rft eval`` and ``rft data``."""

from __future__ import annotations

from pathlib import Path

from PIL import ImageDraw

from rft.data.images import open_image


def picture_name(index: int, sample_id: str) -> str:
    """``NNN_<id>.png``, the id cut to its last 60 letters and digits (others as ``_``)."""
    return f"{index:03d}_{''.join(c if c.isalnum() else '_' for c in sample_id)[-60:]}.png"


def draw_boxes(image_path: str, gt_boxes, pred_boxes, title: str, out: Path, scale: int = 2) -> Path:
    """Save the image (upscaled ``scale`` x) with ground truth in green and predictions in red."""
    image = open_image(image_path)
    image = image.resize((image.width * scale, image.height * scale))
    draw = ImageDraw.Draw(image)
    for boxes, colour in ((gt_boxes, (0, 200, 0)), (pred_boxes, (230, 0, 0))):
        for box in boxes:
            draw.rectangle([v * scale for v in box], outline=colour, width=2)
    draw.text((4, 4), title[:80], fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
