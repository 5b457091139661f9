#!/usr/bin/env bash
# GPU proof: `rft train` with rollout.backend=vllm (colocate) on a tiny random Qwen2.5-VL, one GPU.
# Prerequisite on the GPU machine: trl/vllm/deepspeed installed into /tmp/site (../shared/gpu/README.md).
# Writes log, metrics.json and reward_curve.png to ${OUT:-outputs/gpu_vllm_colocate}.
set -euo pipefail
out="${OUT:-outputs/gpu_vllm_colocate}"; mkdir -p "$out"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
start=$(date +%s)
torchrun --nproc_per_node 1 -m rft.cli train recipes/demo.yaml \
  --set model.tiny.family=qwen2_5_vl --set model.tiny.hidden_size=128 --set model.tiny.num_heads=2 \
  --set model.dtype=float32 --set rollout.backend=vllm --set rollout.vllm_mode=colocate \
  --set rollout.gpu_memory_utilization=0.3 --set rollout.max_model_length=1024 \
  --set grpo.max_steps=30 --set warmup.steps=60 --set eval.every_steps=null \
  --set output.dir="$out/run" 2>&1 | tee "$out/log.txt"
echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/log.txt"
cp "$out/run/metrics.json" "$out/run/reward_curve.png" "$out/" 2>/dev/null || true
python3 -c "import torch; print('peak GPU memory GiB (this process):', torch.cuda.max_memory_allocated() / 2**30)" || true
