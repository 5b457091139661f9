#!/usr/bin/env bash
# Issue 16 on the GPU: rows with two images each (visual-prompt detection, the exemplar shown as a crop in a second
# image) through vLLM colocate rollouts, T-Rex2's 8:1 schedule with text-prompt detection rows (one image).
# A tiny random Qwen2.5-VL: this proves the mechanics (vLLM's limit_mm_per_prompt from the data, two images per
# prompt in generation and in the trainer's forward), not learning.
# Prerequisite: trl/vllm installed into /tmp/site (../shared/gpu/README.md). Writes to ${OUT:-outputs/gpu_multi_image}.
set -uo pipefail
out="${OUT:-outputs/gpu_multi_image}"; mkdir -p "$out"
export PYTHONPATH="${RFT_SITE:-/tmp/site}:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
start=$(date +%s)
torchrun --nproc_per_node 1 --master_port "${PORT:-29561}" -m rft.cli train recipes/visual_prompt_detection.yaml \
  --set data.datasets[0].options.exemplar=crop --set model.dtype=float32 ${BACKEND:---set rollout.backend=vllm --set rollout.vllm_mode=colocate} \
  --set rollout.gpu_memory_utilization=0.12 --set rollout.max_model_length=1024 \
  --set grpo.max_steps=${STEPS:-18} --set warmup.steps=${WARMUP:-30} --set eval.every_steps=9 --set eval.datasets[0].num_samples=16 \
  --set output.log_completions_every=9 --set output.dir="$out/run" "$@" > "$out/log.txt" 2>&1
rc=$?
echo "exit $rc; wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/log.txt"
grep -E -i "limit_mm|images per|Traceback|Error" "$out/log.txt" | head -20
cp "$out/run/metrics.json" "$out/run/reward_curve.png" "$out/" 2>/dev/null
python3 - "$out/run/metrics.json" <<'PY'
import json, math, sys
m = json.load(open(sys.argv[1]))
logged = [h for h in m.get("log_history", []) if "reward" in h]
print("steps logged:", len(logged), "rewards finite:", all(math.isfinite(h["reward"]) for h in logged))
for h in logged:
    print({k: round(v, 3) for k, v in h.items() if isinstance(v, float) and ("reward" in k or "ratio/mean" in k)})
PY
ls "$out/run/completions" 2>/dev/null | head
exit $rc
