"""Run by tests/test_zero.py under ``torchrun --nproc_per_node 2``: rft's ZeRO helpers against the real
DeepSpeed objects, on DeepSpeed's CPU accelerator. Prints one ``ok`` line per check from process 0."""

import sys
from pathlib import Path

import torch


def check_process_state():
    """accelerate's state counts both processes, as DeepSpeed does, and the shm op is not built."""
    import deepspeed.comm
    import deepspeed.ops
    from accelerate.utils import DistributedType

    from rft.processes import process_state

    state = process_state(deepspeed=True)
    assert state.distributed_type == DistributedType.DEEPSPEED, state.distributed_type
    assert state.num_processes == deepspeed.comm.get_world_size() == 2
    assert deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] is False
    return state


def engine_for(model, optimizer=None):
    import deepspeed

    from rft.zero import deepspeed_config

    config = deepspeed_config(3, False, micro_batch=1, world_size=2, hidden_size=64, dtype=torch.float32, max_grad_norm=1.0)
    return deepspeed.initialize(model=model, optimizer=optimizer, config=config)[0]


def check_feature_cache(state, work: Path):
    """Process 0 finds its image in the cache while process 1 must encode a new one: both run the frozen
    ZeRO-3 tower (which gathers its parameters from both), and the features are the unsharded model's."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rft.models.image_features import FeatureCache, share_image_features
    from rft.models.tiny import build_tiny_vlm
    from rft.zero import zero3_sharded

    with state.main_process_first():
        if state.is_main_process:
            build_tiny_vlm("qwen3_vl", work / "m")  # deepstack features too
    model = AutoModelForImageTextToText.from_pretrained(work / "m")
    processor = AutoProcessor.from_pretrained(work / "m")
    images = [processor.image_processor(images=[Image.new("RGB", (56, 56), colour)], return_tensors="pt")
              for colour in ("red", "blue")]
    inner = model.model
    inner.visual.requires_grad_(False)
    with torch.no_grad():
        reference = [inner.get_image_features(i["pixel_values"], i["image_grid_thw"]) for i in images]
    engine = engine_for(model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3))
    assert zero3_sharded(inner.visual) and not zero3_sharded(torch.nn.Linear(2, 2))
    cache = FeatureCache()
    share_image_features(engine.module, dedupe=False, cache_frozen=True, cache=cache)
    wanted = [0, 0] if state.process_index == 0 else [0, 1]
    with torch.no_grad():
        for index in wanted:
            out = inner.get_image_features(images[index]["pixel_values"], images[index]["image_grid_thw"])
            torch.testing.assert_close(out.pooler_output[0], reference[index].pooler_output[0])
            torch.testing.assert_close(out.deepstack_features[0], reference[index].deepstack_features[0])
    assert (cache.hits, cache.misses) == ((1, 1) if state.process_index == 0 else (0, 2))


def check_nonfinite_step_skipped():
    """ZeRO-3 skips a step whose gradients are not finite, as accelerate's optimizer wrapper reports; the
    optimizer's groups hold this process's half of the values."""
    import deepspeed
    from accelerate.utils.deepspeed import DeepSpeedOptimizerWrapper

    from rft.zero import zero3_group_sizes

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    total = sum(p.numel() for p in model.parameters())
    engine = engine_for(model, torch.optim.AdamW(model.parameters(), lr=0.1))
    # accelerate's wrapper as the Trainer holds it (made without the Accelerator its __init__ asks for)
    wrapper = object.__new__(DeepSpeedOptimizerWrapper)
    wrapper.optimizer, wrapper.__has_overflow__ = engine.optimizer, True
    assert sum(zero3_group_sizes(wrapper)) in (total // 2, total // 2 + 1)
    for loss_factor in (1.0, float("nan")):
        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            before = [p.detach().clone() for p in model.parameters()]
        engine.backward(engine(torch.randn(1, 64)).sum() * loss_factor)
        engine.step()
        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
        assert wrapper.step_was_skipped == (not changed) == (loss_factor != 1.0)


def main(work: Path) -> None:
    state = check_process_state()
    checks = [("process state", lambda: None), ("feature cache", lambda: check_feature_cache(state, work)),
              ("non-finite step", check_nonfinite_step_skipped)]
    for name, check in checks:
        check()
        torch.distributed.barrier()  # both processes passed it
        if state.is_main_process:
            print(f"ok {name}", flush=True)
    from rft.processes import leave_process_group

    leave_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
