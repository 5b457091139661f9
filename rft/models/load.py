"""Loading the policy and its processor, with a loud report when pretrained weights fail to load."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from rft.errors import RecipeError
from rft.models.parts import part_of
from rft.recipe.schema import ModelSection, TinyModel

log = logging.getLogger(__name__)


@dataclass
class WeightReport:
    """What ``from_pretrained`` could not fill from the checkpoint."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        lines = []
        for what, keys in (("missing (left at random initialisation)", self.missing),
                           ("mismatched in shape (re-initialised)", self.mismatched),
                           ("unexpected (in the checkpoint, unused)", self.unexpected)):
            if keys:
                per_part = Counter(part_of(k) for k in keys)
                parts = ", ".join(f"{p}: {n}" for p, n in sorted(per_part.items()))
                lines.append(f"{len(keys)} {what} [{parts}], e.g. {', '.join(keys[:3])}")
        return "\n  ".join(lines) if lines else "all weights loaded"


@dataclass
class LoadedModel:
    model: PreTrainedModel
    processor: ProcessorMixin
    family: str
    path: Path
    report: WeightReport

    @property
    def factor(self) -> int:
        """Image side multiple the processor uses: patch size x spatial merge size."""
        ip = self.processor.image_processor
        return int(getattr(ip, "patch_size", 14)) * int(getattr(ip, "merge_size", 2))


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def weight_report(info: dict[str, Any]) -> WeightReport:
    mismatched = [m[0] if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    return WeightReport(sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or []), mismatched)


def check_report(report: WeightReport, path: str | Path, allow: bool) -> None:
    """Stop the run when weights failed to load, unless the recipe allows it (then warn loudly)."""
    if report.ok:
        return
    message = f"pretrained weights of {path} did not load cleanly:\n  {report.summary()}"
    if not allow:
        raise RecipeError(message + "\nSet model.allow_missing_weights: true to train anyway.")
    log.warning("%s\n(model.allow_missing_weights is true: going on)", message)


def set_pixel_budget(processor: ProcessorMixin, min_pixels: int, max_pixels: int) -> None:
    """Make the processor resize images within the recipe's pixel budget (Qwen-style processors)."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    if isinstance(size, dict) and "longest_edge" in size:
        ip.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    elif getattr(size, "longest_edge", None) is not None:  # transformers 5 keeps it as a SizeDict, not a dict
        ip.size = type(size)(shortest_edge=min_pixels, longest_edge=max_pixels)


def tiny_model_path(tiny: TinyModel, work_dir: Path) -> Path:
    """``work_dir/tiny_model``, built there once for ``tiny`` (other ranks, resumes and ``rft serve`` reuse it)."""
    from rft.models.tiny import build_tiny_vlm

    path = work_dir / "tiny_model"
    stamp, spec = path / "rft_tiny.json", tiny.model_dump_json()
    if not (stamp.is_file() and stamp.read_text() == spec):
        build_tiny_vlm(tiny.family, path, **tiny.model_dump(exclude={"family"}))
        stamp.write_text(spec)
    return path


def load_model(section: ModelSection, work_dir: str | Path) -> LoadedModel:
    """The policy and processor a recipe names (a hub id, a folder, or a tiny model built on the spot)."""
    if section.tiny is not None:
        path = tiny_model_path(section.tiny, Path(work_dir))
    else:
        path = Path(section.path) if Path(section.path).exists() else section.path
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(section.dtype), "output_loading_info": True}
    if section.attn_implementation:
        kwargs["attn_implementation"] = section.attn_implementation
    try:
        model, info = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, SafetensorError) as exc:
        damaged = " (a weight file is damaged or incomplete)" if isinstance(exc, SafetensorError) else ""
        raise RecipeError(f"model.path: cannot load {str(path)!r}{damaged}: {exc}") from None
    report = weight_report(info)
    check_report(report, path, section.allow_missing_weights)
    set_pixel_budget(processor, section.min_pixels, section.max_pixels)
    return LoadedModel(model, processor, model.config.model_type, Path(str(path)), report)


def load_checkpoint(section: ModelSection, checkpoint: str | Path | None, work_dir: str | Path) -> LoadedModel:
    """A trained checkpoint as a plain model: a full model folder, or a LoRA adapter folder merged into
    its base (the folder its ``adapter_config.json`` records, e.g. a run's warmed-up weights, else the
    recipe's model). ``checkpoint=None`` loads the recipe's model."""
    if checkpoint is None:
        return load_model(section, work_dir)
    path = Path(checkpoint)
    if not path.is_dir():
        raise RecipeError(f"--model {checkpoint}: not a folder (a checkpoint-N, final or model folder)")
    adapter_config = path / "adapter_config.json"
    if not adapter_config.is_file():
        return load_model(section.model_copy(update={"path": str(path), "tiny": None}), work_dir)
    from peft import PeftModel

    from rft.models.lora import fingerprint_difference, read_base_record

    try:
        base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    except ValueError as exc:
        raise RecipeError(f"--model {checkpoint}: adapter_config.json is not valid JSON ({exc})") from None
    record = read_base_record(path)
    if base and Path(base).is_dir():
        section = section.model_copy(update={"path": base, "tiny": None})
    elif base and record is None and base != section.path:
        raise RecipeError(
            f"--model {checkpoint}: a LoRA adapter of {base!r}, which is not there, and without rft's record of its "
            f"base's weights to check the recipe's model ({section.path or 'model.tiny'}) against; set model.path to "
            "the adapter's base")
    loaded = load_model(section, work_dir)
    if record is not None:
        difference = fingerprint_difference(record["fingerprint"], record["dtype"], loaded.model)
        if difference:
            raise RecipeError(
                f"--model {checkpoint}: the LoRA adapter was trained on {record['base_model_name_or_path']!r}, but the "
                f"model loaded as its base, {str(loaded.path)!r}, is another model ({difference}); set model.path to "
                "the adapter's base")
    try:
        loaded.model = PeftModel.from_pretrained(loaded.model, str(path)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()
        raise RecipeError(f"--model {checkpoint}: the LoRA adapter does not fit the model {str(loaded.path)!r} "
                          f"({type(exc).__name__}: {' '.join(first[:3])[:500]})") from None
    return loaded


def export_model(section: ModelSection, checkpoint: str | Path, out: str | Path) -> Path:
    """Write a checkpoint (adapters merged) as a Hugging Face model folder with its processor, which
    ``from_pretrained``, vLLM and ``rft eval --model`` load as they are."""
    out = Path(out)
    loaded = load_checkpoint(section, checkpoint, out.parent / f".{out.name}_work")
    loaded.model.save_pretrained(out)
    loaded.processor.save_pretrained(out)
    return out
