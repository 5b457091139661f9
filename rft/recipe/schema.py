"""The recipe schema: one YAML file says everything about a run.

Every section is a pydantic model that forbids unknown keys, so a typo fails before anything
loads, with the YAML path of the field (see :mod:`rft.recipe.load`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from rewards.contract import COORD_FORMATS, MODEL_PARTS, TASKS
from rft.families import DEFAULT_TINY, TINY_NAMES

TaskName = Literal[TASKS]
DatasetKind = Literal[
    "coco", "image_folder", "classification_jsonl", "hf_classification", "grounding_jsonl", "tagging_jsonl",
    "visual_rft", "vlm_r1", "messages", "rows_jsonl", "synthetic_shapes",
]
COMMON_DATASET_FIELDS = ("name", "kind", "task", "weight", "rewards", "template", "limit", "options")
"""Fields of a dataset entry that every kind takes (``options`` are checked against the kind's loader)."""
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "coco": ("path", "image_dir", "negative_ratio", "categories", "seed"),
    "image_folder": ("path",),
    "classification_jsonl": ("path", "image_dir", "categories"),
    "hf_classification": ("path", "split", "image_column", "label_column"),
    "grounding_jsonl": ("path", "image_dir"),
    "tagging_jsonl": ("path", "image_dir"),
    "visual_rft": ("path", "image_dir", "split"),
    "vlm_r1": ("path", "image_dir"),
    "messages": ("path", "image_dir"),
    "rows_jsonl": ("path", "image_dir"),
    "synthetic_shapes": ("num_samples", "seed", "split", "negative_ratio"),
}
"""The other fields each kind's loader reads; a field set for a kind that does not read it is an error."""


# Upper bounds on sizes that allocate memory in proportion: a value such as 1e30 fails here, naming
# the field and the accepted range, instead of after memory has grown.
MAX_PIXELS = 100_000_000
MAX_SAMPLES = 10_000_000
MAX_STEPS = 100_000_000
MAX_BATCH = 65_536


def _low_below_high(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] < value[1]:
        raise ValueError(f"must be [low, high] with low < high, got {list(value)}")
    return value


Interval = Annotated[tuple[float, float], AfterValidator(_low_below_high)]
"""``[low, high]`` with low < high."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TinyModel(Section):
    """Build a small random-weight model from a config instead of loading one (demo, tests, the
    learning proof's base model). Defaults: the smallest (language hidden 64, vision hidden 32)."""

    family: Literal[TINY_NAMES] = DEFAULT_TINY
    seed: int = 0
    hidden_size: int = Field(64, gt=0, le=8192)
    num_layers: int = Field(2, gt=0, le=128)
    num_heads: int = Field(4, gt=0, le=256)
    intermediate_size: int | None = Field(None, gt=0, le=65_536)
    """The language model's MLP width (default: 2 x hidden_size)."""
    vision_hidden_size: int = Field(32, gt=0, le=8192)
    vision_depth: int = Field(2, gt=0, le=128)
    vision_num_heads: int = Field(2, gt=0, le=256)
    vision_intermediate_size: int | None = Field(None, gt=0, le=65_536)
    """The vision tower's MLP width (default: 2 x vision_hidden_size)."""
    rope_theta: float = Field(1_000_000.0, gt=0)
    """The language model's RoPE base (see rft.models.tiny.build_tiny_vlm)."""
    max_image_tokens: int = Field(16, gt=0, le=16_384)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModel:
        # rotary embeddings need an even head size (the vision tower's 2-D ones a multiple of 4)
        for hidden, heads, multiple, what in ((self.hidden_size, self.num_heads, 2, ""),
                                              (self.vision_hidden_size, self.vision_num_heads, 4, "vision_")):
            if hidden % heads or (hidden // heads) % multiple:
                raise ValueError(f"{what}hidden_size ({hidden}) must be {what}num_heads ({heads}) x a head size "
                                 f"divisible by {multiple}")
        return self


class Lora(Section):
    """LoRA adapters through peft; only the adapters (and parts left unfrozen) train."""

    enabled: bool = False
    r: int = Field(16, gt=0, le=65_536)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    include_vision: bool = False


class PartSettings(Section):
    """Per model part: freeze it, or train it with its own learning rate (None: ``grpo.learning_rate``)."""

    vision: bool = False
    projector: bool = False
    language: bool = False


class PartLearningRates(Section):
    vision: float | None = Field(None, gt=0)
    projector: float | None = Field(None, gt=0)
    language: float | None = Field(None, gt=0)


class ModelSection(Section):
    path: str | None = None
    tiny: TinyModel | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3"] | None = None
    coord_format: Literal[("auto", *COORD_FORMATS)] = "auto"
    min_pixels: int = Field(3136, gt=0, le=MAX_PIXELS)
    max_pixels: int = Field(401_408, gt=0, le=MAX_PIXELS)
    freeze: PartSettings = PartSettings(vision=True)
    learning_rates: PartLearningRates = PartLearningRates()
    lora: Lora = Lora()
    allow_missing_weights: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.path is None) == (self.tiny is None):
            raise ValueError("give exactly one of model.path (a hub id or local folder) and model.tiny")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is larger than max_pixels ({self.max_pixels})")
        if all(getattr(self.freeze, p) for p in MODEL_PARTS) and not self.lora.enabled:
            raise ValueError("every part is frozen (model.freeze) and LoRA is off: nothing would train")
        return self


class DatasetSpec(Section):
    """One dataset of the mixture; ``kind`` says how to read ``path``."""

    name: str
    kind: DatasetKind
    path: str | None = None
    image_dir: str | None = None
    task: TaskName | None = None
    weight: float = Field(1.0, gt=0)
    rewards: list[str] | None = None
    template: str | None = None
    limit: int | None = Field(None, gt=0)
    negative_ratio: float = Field(0.0, ge=0)
    categories: list[str] | None = None
    split: str = "train"
    image_column: str = "image"
    label_column: str = "label"
    num_samples: int = Field(64, gt=0, le=MAX_SAMPLES)
    seed: int = 0
    options: dict[str, Any] = {}
    """Extra options of the kind's loader (e.g. ``shapes``, ``colours``, ``scale`` for ``synthetic_shapes``)."""

    @model_validator(mode="after")
    def _path_needed(self) -> DatasetSpec:
        if self.kind != "synthetic_shapes" and not self.path:
            raise ValueError(f"dataset {self.name!r} of kind {self.kind!r} needs a path")
        unused = sorted(f for f in self.model_fields_set - set(COMMON_DATASET_FIELDS) - set(KIND_FIELDS[self.kind])
                        if getattr(self, f) != type(self).model_fields[f].default)  # a default written out changes nothing
        if unused:
            raise ValueError(f"dataset {self.name!r}: {', '.join(unused)} does not apply to kind {self.kind!r}, whose loader "
                             f"reads {', '.join(KIND_FIELDS[self.kind])} (and options)")
        if self.kind == "visual_rft" and self.split != "train" and str(self.path).endswith((".json", ".jsonl")):
            raise ValueError(f"dataset {self.name!r}: split applies to a Hugging Face dataset, not to the file {self.path}")
        if self.kind == "synthetic_shapes" and self.task is None:
            self.task = "classification"
        return self


class ScheduleStep(Section):
    dataset: str
    batches: int = Field(gt=0, le=MAX_STEPS)


class Replay(Section):
    """Mix a general dataset into every batch at ``ratio`` to protect general ability."""

    dataset: str
    ratio: float = Field(gt=0, lt=1)


class DataSection(Section):
    datasets: list[DatasetSpec] = Field(min_length=1)
    schedule: Literal["mix"] | list[ScheduleStep] = "mix"
    replay: Replay | None = None
    on_bad_image: Literal["error", "skip"] = "error"
    templates: dict[TaskName, str] = {}

    @model_validator(mode="after")
    def _names(self) -> DataSection:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        referenced = [s.dataset for s in self.schedule] if isinstance(self.schedule, list) else []
        referenced += [self.replay.dataset] if self.replay else []
        for name in referenced:
            if name not in names:
                raise ValueError(f"unknown dataset {name!r}; datasets: {names}")
        return self


class RewardSpec(Section):
    """A reward from the registry (name, ``module:function`` or ``file.py:function``)."""

    name: str
    weight: float = Field(1.0, ge=0)
    kwargs: dict[str, Any] = {}
    alias: str | None = None
    range: Interval | None = None

    @property
    def logged_name(self) -> str:
        """The reward's name in TRL's logs (``rewards/<name>/mean``): its alias, else its function's name."""
        return self.alias or self.name.rsplit(":", 1)[-1]


class RewardGuard(Section):
    """How reward failures (exceptions, non-finite values, time-outs) are handled."""

    fallback: float | None = None
    max_failure_rate: float = Field(0.1, ge=0, le=1)
    min_samples: int = Field(20, ge=1)
    timeout_s: float | None = Field(None, gt=0)


class RolloutSection(Section):
    backend: Literal["transformers", "vllm"] = "transformers"
    vllm_mode: Literal["colocate", "server"] = "colocate"
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    tensor_parallel_size: int = Field(1, gt=0)
    enable_sleep_mode: bool = False
    server_host: str = "0.0.0.0"
    server_port: int = 8000
    server_base_url: str | None = None
    max_model_length: int | None = Field(None, gt=0)


class DistributedSection(Section):
    zero_stage: Literal[0, 2, 3] = 0
    offload: bool = False
    gpus: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _offload_needs_zero3(self) -> DistributedSection:
        if self.offload and self.zero_stage != 3:
            raise ValueError("offload needs zero_stage: 3")
        return self


class SupervisedSection(Section):
    """Supervised training on reference answers (rft.train.supervised): AdamW, a learning-rate
    schedule (transformers' ``get_scheduler``) with linear warm-up over ``warmup_ratio`` of the steps."""

    steps: int = Field(0, ge=0, le=MAX_STEPS)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(8, gt=0, le=MAX_BATCH)
    lr_scheduler: Literal["constant", "cosine", "linear"] = "constant"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)


class WarmupSection(SupervisedSection):
    """A short supervised stage before GRPO (teaches a from-scratch model the answer format).

    With ``format_only`` the targets are reference answers of *other* samples of the same task, so
    the model learns how to answer but not what: everything it learns about the task is GRPO's.
    """

    format_only: bool = True


class SftSection(SupervisedSection):
    """``rft sft``: supervised fine-tuning on the training data's reference answers (in the model's
    own coordinate convention), held-out scores every ``eval.every_steps``, the model saved to
    ``<output.dir>/final``."""

    steps: int = Field(1000, gt=0, le=MAX_STEPS)
    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, gt=0, le=MAX_BATCH)
    lr_scheduler: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    max_seconds: float | None = Field(None, gt=0)
    """Stop after this much training time (held-out evaluation not counted), keeping what was reached."""
    log_every: int = Field(10, gt=0)


class EvalSection(Section):
    """Held-out evaluation: during training (``every_steps``) and by ``rft eval``."""

    datasets: list[DatasetSpec] = []
    every_steps: int | None = Field(None, gt=0)
    max_new_tokens: int = Field(64, gt=0, le=1_000_000)
    batch_size: int = Field(8, gt=0, le=MAX_BATCH)
    protocol: Literal["full", "visual_rft"] = "full"
    pictures: int = Field(8, ge=0)
    retention: list[DatasetSpec] = []
    """General held-out data on which ``rft eval`` compares the base model with the fine-tuned one."""


class SpeedSection(Section):
    """Optimisations that keep TRL's results (each has a CPU test of equal numerics); all on by default."""

    dedupe_images: bool = True
    """Encode each distinct image once per forward pass, not once per generation (rft.models.image_features)."""
    cache_frozen_image_features: bool = True
    """With the vision tower and projector frozen, encode each image once for all passes of a step
    (not under ZeRO-3, where every rank must run the tower's sharded parameters in step)."""
    batched_vision_attention: bool = True
    """Windowed vision attention (the families that have it): one SDPA call per window length, not one per window (rft.models.vision_attention)."""
    cache_decoded_images: bool = True
    """Decode each distinct image file once (GRPO fetches every prompt once per generation), keeping
    up to 1 GiB of decoded pixels across steps (rft.data.image_cache)."""
    reuse_training_logprobs: bool = True
    """vLLM runs: on on-policy batches, take TRL's importance-sampling ratio from the training forward's
    log-probs instead of an extra no-grad pass that computes the same values (rft.train.onpolicy_logps)."""


class SamplingSection(Section):
    """Dynamic sampling (online filtering): groups whose rewards teach GRPO nothing (all equal, so all
    advantages are zero) are dropped before the optimizer step and replaced by fresh prompts of the same
    dataset, generated in further rounds (rft.train.dynamic_sampling)."""

    filter: Literal["none", "zero_std"] = "none"
    """``zero_std``: drop a group whose ``metric`` is the same for every completion."""
    keep_band: Interval | None = None
    """Also drop a group whose mean ``metric`` lies outside ``[low, high]`` (e.g. ``[0.01, 0.99]``)."""
    metric: str = "total"
    """``total`` (the weighted sum the advantages are computed from) or one reward's name."""
    max_rounds: int = Field(3, ge=1, le=32)
    """Generation rounds per batch at most, the first included; slots still unfilled then keep their
    dropped group (no policy gradient; counted in ``dynamic_sampling/unfilled``)."""

    @model_validator(mode="after")
    def _band_needs_filter(self) -> SamplingSection:
        if self.keep_band is not None and self.filter == "none":
            raise ValueError("keep_band needs filter: zero_std")
        return self


class OutputSection(Section):
    dir: str = "outputs/run"
    max_nonfinite_steps: int = Field(3, ge=0)
    """Steps with a NaN/inf loss or gradient that are skipped before the run stops with a checkpoint."""
    report_to: list[str] = ["tensorboard"]
    save_steps: int | None = Field(None, gt=0)
    save_total_limit: int | None = Field(2, gt=0)
    log_completions_every: int | None = Field(None, ge=0)
    """Every N steps, a few completions per task with their image (boxes drawn), rewards and advantage go to
    ``<dir>/completions/`` and the loggers (None: every logging step on the CPU, every 50 on GPUs; 0: never)."""
    log_completions_per_task: int = Field(2, ge=1, le=64)
    """Completions logged per task (of different prompts, picked at random)."""


class Recipe(Section):
    """A whole run: model, data, rewards, GRPO settings, rollout engine, parallelism, output."""

    name: str = "run"
    seed: int = 0
    model: ModelSection
    data: DataSection
    rewards: list[RewardSpec] = Field(min_length=1)
    reward_guard: RewardGuard = RewardGuard()
    grpo: dict[str, Any] = {}
    rollout: RolloutSection = RolloutSection()
    distributed: DistributedSection = DistributedSection()
    warmup: WarmupSection = WarmupSection()
    sft: SftSection = SftSection()
    eval: EvalSection = EvalSection()
    speed: SpeedSection = SpeedSection()
    sampling: SamplingSection = SamplingSection()
    output: OutputSection = OutputSection()

    @model_validator(mode="after")
    def _across_sections(self) -> Recipe:
        shown = [r.alias or r.name.rsplit(":", 1)[-1] for r in self.rewards]
        for i, name in enumerate(shown):
            if name in shown[:i]:
                raise ValueError(
                    f"rewards[{i}] ({self.rewards[i].name}) is logged as {name!r}, like rewards[{shown.index(name)}]: "
                    "the same reward listed twice counts it twice and mixes their logs; remove one, or give one "
                    "an alias (rewards[i].alias) to score it twice with other options")
        replay = self.data.replay
        if replay and [d.name for d in self.data.datasets] == [replay.dataset]:
            raise ValueError(f"data.replay.dataset: {replay.dataset!r} is the only dataset; replay mixes a share of one "
                             "dataset into the batches of the others: add the dataset to train on, or remove data.replay")
        for field, specs in (("eval.datasets", self.eval.datasets), ("eval.retention", self.eval.retention)):
            names = [d.name for d in specs]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{field}: dataset names must be unique (scores are reported by dataset name); "
                                 f"{', '.join(map(repr, twice))} appears more than once")
        names = {r.alias or r.name for r in self.rewards}
        logged = {r.logged_name for r in self.rewards}
        for i, d in enumerate(self.data.datasets):
            for r in d.rewards or []:
                if r not in names | logged:
                    raise ValueError(f"data.datasets[{i}].rewards names {r!r}, which is not in rewards: {sorted(names)}")
        if self.sampling.metric != "total" and self.sampling.metric not in logged:
            raise ValueError(f"sampling.metric names {self.sampling.metric!r}, which is not a reward; use total or one "
                             f"of {sorted(logged)}")
        return self
