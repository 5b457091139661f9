"""GPU check: do vLLM's rollouts see the policy exactly as the trainer does?

Builds a tiny random Qwen2.5-VL, generates from one image prompt with vLLM the way TRL's colocate
mode does (prompt token ids from the trainer's processor + the PIL image, ``logprobs_mode=
processed_logprobs``, rft's vision-token ban), then recomputes the sampled tokens' log-probs with
the transformers model the way TRL's trainer does, and reports:

- image tokens in the trainer's prompt vs in the prompt vLLM ran (must be equal);
- max / mean |log-prob difference| per token and the sequence-level importance ratio TRL would
  compute (exp of the summed difference; ``sequence_mask`` zeroes sequences outside [1/3, 3]);
- the same after pushing changed weights into vLLM with TRL's sync call (names as TRL sends them).

Run with ``torchrun --nproc_per_node 1 scripts/gpu/vllm_logprobs_check.py --engine-dtype float32``
(TRL's colocate engine uses vLLM's external launcher). Prints one JSON line; writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw


def image() -> Image.Image:
    img = Image.new("RGB", (112, 112), "white")
    ImageDraw.Draw(img).ellipse((20, 30, 80, 90), fill="red")
    return img


def trainer_logps(model, processor, prompt_ids, multimodal, completions, temperature) -> list[list[float]]:
    """Per-token log-probs of each completion, as TRL's trainer computes them (logits / temperature)."""
    out = []
    for completion in completions:
        ids = torch.tensor([list(prompt_ids) + list(completion)], device=model.device)
        # mm_token_type_ids marks the image tokens; without it transformers 5 gives every token a 1-D
        # position instead of Qwen's 3-D M-RoPE (TRL extends it with zeros over the completion, as here).
        types = torch.nn.functional.pad(multimodal["mm_token_type_ids"], (0, len(completion)))
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **{**multimodal, "mm_token_type_ids": types}).logits
        logits = logits[0, len(prompt_ids) - 1 : -1].float() / temperature
        logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, len(prompt_ids):, None])[:, 0]
        out.append(logps.tolist())
    return out


def compare(vllm_logps, hf_logps) -> dict:
    diffs = [h - v for vs, hs in zip(vllm_logps, hf_logps) for v, h in zip(vs, hs)]
    seq = [sum(h - v for v, h in zip(vs, hs)) for vs, hs in zip(vllm_logps, hf_logps)]
    ratios = [math.exp(max(min(s, 50), -50)) for s in seq]
    return {
        "tokens": len(diffs), "max_abs_diff": max(abs(d) for d in diffs), "mean_abs_diff": sum(abs(d) for d in diffs) / len(diffs),
        "seq_ratio_mean": sum(ratios) / len(ratios), "seq_kept_by_sequence_mask": sum(1 / 3 <= r <= 3 for r in ratios) / len(ratios),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--engine-dtype", default="float32", help="dtype given to vllm.LLM ('auto' = TRL's default)")
    p.add_argument("--model-dtype", default="float32", help="dtype of the trainer's model")
    p.add_argument("--no-ban", action="store_true", help="sample without rft's vision-token logit bias")
    p.add_argument("--trainer-without-ban", action="store_true", help="trainer log-probs without rft's logit hook")
    p.add_argument("--keep-encoder-cache", action="store_true", help="after the weight push, reset only the "
                   "prefix cache, as TRL does (vLLM then serves image features computed with the old weights)")
    p.add_argument("--expanded", action="store_true", help="send prompts with expanded image tokens as TRL does, "
                   "without rft's collapsing engine (the mismatch rft fixes)")
    p.add_argument("--perturb", default="", help="only change parameters whose name contains this "
                   "(e.g. 'visual', 'language_model', 'embed_tokens'; default: all) before the sync check")
    p.add_argument("--model", default="", help="a model folder to check instead of a new tiny Qwen2.5-VL (e.g. what "
                   "`rft export` wrote from a ZeRO-3 or LoRA checkpoint): vLLM must load it and match the trainer's log-probs")
    p.add_argument("--out", default="vllm_logprobs_check.json")
    p.add_argument("--work", default="/tmp/vllm_check")
    args = p.parse_args()

    from transformers import AutoModelForImageTextToText, AutoProcessor
    from vllm import LLM, SamplingParams

    from rft.models.tiny import build_tiny_vlm
    from rft.models.vision_tokens import ban_in_logits, placeholder_token_ids, vision_token_ids
    from rft.recipe.schema import ModelSection
    from rft.rollout.engine import ColocatedEngine, engine_options

    if args.model:
        path = Path(args.model)
    else:
        path = build_tiny_vlm("qwen2_5_vl", Path(args.work) / "tiny", hidden_size=128, num_heads=2, max_image_tokens=64)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=getattr(torch, args.model_dtype)).cuda().eval()
    family = model.config.model_type
    size = processor.image_processor.size
    section = ModelSection(path=str(path), dtype=args.model_dtype, min_pixels=size.shortest_edge, max_pixels=size.longest_edge)
    options = engine_options(section, family)
    options["dtype"] = args.engine_dtype
    llm = LLM(model=str(path), gpu_memory_utilization=0.2, max_model_len=1024, enforce_eager=True, seed=0,
              distributed_executor_backend="external_launcher", logprobs_mode="processed_logprobs",
              max_num_batched_tokens=4096, **options)
    engine = ColocatedEngine(llm, set() if args.expanded else placeholder_token_ids(processor))

    conversation = [[{"role": "user", "content": [{"type": "image", "image": image()}, {"type": "text", "text": "What shape is this?"}]}]]
    tokenized = processor.apply_chat_template(conversation=conversation, add_generation_prompt=True, tokenize=True,
                                              return_dict=True, return_tensors="pt")
    prompt_ids = tokenized["input_ids"][0].tolist()
    multimodal = {k: tokenized[k].cuda() for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids")}
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    banned = vision_token_ids(processor.tokenizer, family)
    if not args.no_ban and not args.trainer_without_ban:
        ban_in_logits(model, banned)  # as rft train does
    temperature = 1.0
    params = SamplingParams(n=1, temperature=temperature, max_tokens=32, logprobs=0, seed=0,
                            logit_bias=None if args.no_ban else {i: -100.0 for i in banned})

    def rollouts():
        outputs = engine.generate([{"prompt_token_ids": prompt_ids, "multi_modal_data": {"image": image()}}] * 8,
                               sampling_params=params, use_tqdm=False)
        completions = [list(o.outputs[0].token_ids) for o in outputs]
        logps = [[next(iter(lp.values())).logprob for lp in o.outputs[0].logprobs] for o in outputs]
        return outputs, completions, logps

    outputs, completions, vllm_logps = rollouts()
    report = {
        "model": args.model or "new tiny qwen2_5_vl", "engine_dtype": args.engine_dtype, "model_dtype": args.model_dtype, "ban": not args.no_ban,
        "collapsed": not args.expanded, "trainer_ban": not (args.no_ban or args.trainer_without_ban),
        "image_tokens_trainer": prompt_ids.count(image_token),
        "image_tokens_vllm": list(outputs[0].prompt_token_ids).count(image_token),
        "prompt_len_trainer": len(prompt_ids), "prompt_len_vllm": len(outputs[0].prompt_token_ids),
        "banned_sampled": sum(t in banned for c in completions for t in c),
    }
    hf_logps = trainer_logps(model, processor, prompt_ids, multimodal, completions, temperature)
    report["before_sync"] = compare(vllm_logps, hf_logps)
    report["first_sequence"] = [[t, round(v, 4), round(h, 4)] for t, v, h in zip(completions[0], vllm_logps[0], hf_logps[0])]
    # Change the trainer's weights and push them the way TRL's colocate sync does.
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if args.perturb in name:
                param.add_(torch.randn_like(param) * 0.05)
    runner_model = llm.llm_engine.model_executor.driver_worker.model_runner.model
    for name, param in model.named_parameters():
        runner_model.load_weights([(name.replace("_checkpoint_wrapped_module.", ""), param.data)])
    if args.keep_encoder_cache:
        llm.reset_prefix_cache()  # what TRL 1.16 does after a sync: the encoder cache keeps the old image features
    else:
        engine.reset_prefix_cache()  # rft's engine: prefix and encoder cache
    report["encoder_cache_resets"] = engine.encoder_cache_resets
    _, completions, vllm_logps = rollouts()
    report["perturbed"] = args.perturb or "all"
    report["after_sync"] = compare(vllm_logps, trainer_logps(model, processor, prompt_ids, multimodal, completions, temperature))
    line = json.dumps(report)
    print("RESULT", line, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
