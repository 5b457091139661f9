#!/usr/bin/env bash
# One GPU proof run: `rft train` on the demo recipe with a tiny random Qwen2.5-VL (hidden 128, 2 heads),
# 60 warm-up steps, then GRPO. Usage: train_tiny.sh NAME [rft train options and --set overrides ...]
# Env: OUT (results folder), CUDA_VISIBLE_DEVICES, LIMIT (seconds, default 200).
# Writes $OUT/NAME/{log.txt,metrics.json,reward_curve.png,memory.csv,summary.json}; the run folder itself
# (model, data, checkpoints) stays in ${RUNS:-/tmp/rft_gpu_runs}/NAME.
set -uo pipefail
name="$1"; shift
out="${OUT:-outputs/gpu}/$name"; run="${RUNS:-/tmp/rft_gpu_runs}/$name"; mkdir -p "$out" "$run"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 500 > "$out/memory.csv" &
smi=$!
start=$(date +%s)
launcher=(python -m rft.cli train)
if [[ " $* " != *" --gpus "* && " $* " == *"vllm_mode=colocate"* ]]; then
  launcher=(torchrun --nproc_per_node 1 --master_port "${PORT:-29511}" -m rft.cli train)  # TRL's colocate engine uses the external launcher
fi
timeout "${LIMIT:-200}" "${launcher[@]}" recipes/demo.yaml \
  --set model.tiny.family=qwen2_5_vl --set model.tiny.hidden_size=128 --set model.tiny.num_heads=2 \
  --set rollout.max_model_length=1024 --set warmup.steps=60 --set eval.every_steps=null \
  --set 'eval.datasets[0].num_samples=64' --set grpo.max_steps=12 --set output.dir="$run" "$@" > "$out/log.txt" 2>&1
rc=$?
kill $smi 2>/dev/null
echo "exit $rc, wall $(( $(date +%s) - start )) s" >> "$out/log.txt"
cp "$run/metrics.json" "$run/reward_curve.png" "$out/" 2>/dev/null
python3 scripts/gpu/summarize.py "$out" "$rc" "$(( $(date +%s) - start ))" "$*" | tee "$out/summary.json"
