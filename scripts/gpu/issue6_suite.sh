#!/usr/bin/env bash
# The GPU proofs of issue 6 on a machine with two GPUs (nvidia-h200-x2), in two parts of under 10 minutes:
#   bash scripts/gpu/issue6_suite.sh a   # vLLM log-prob/image-token check, colocate fp32/bf16+sleep, LoRA+vLLM, server mode
#   bash scripts/gpu/issue6_suite.sh b   # ZeRO-2 / ZeRO-3 on two GPUs, with and without vLLM colocate; ZeRO-3 checkpoint -> rft eval
# Prerequisite: trl/vllm/deepspeed in /tmp/site (../shared/gpu/README.md). Results under $OUT (default outputs/gpu).
set -uo pipefail
export OUT="${OUT:-outputs/gpu}" PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
mkdir -p "$OUT"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, vllm, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'vllm', vllm.__version__, 'deepspeed', deepspeed.__version__)" >> "$OUT/gpu.txt" 2>&1
date -u +%FT%TZ >> "$OUT/gpu.txt"
T=scripts/gpu/train_tiny.sh
check() {  # check NAME PORT ARGS...
  local name=$1 port=$2; shift 2
  timeout 150 torchrun --nproc_per_node 1 --master_port "$port" scripts/gpu/vllm_logprobs_check.py --out "$OUT/check_$name.json" \
    --work "/tmp/check_$name" "$@" > "$OUT/check_$name.log" 2>&1; echo "check $name exit $?"
}
case "${1:-a}" in
a)
  ( export CUDA_VISIBLE_DEVICES=0
    check fp32 29501 --engine-dtype float32 --model-dtype float32
    check auto_fp32 29501 --engine-dtype auto --model-dtype float32
    PORT=29511 LIMIT=170 bash $T colocate_fp32 --set model.dtype=float32 --set rollout.backend=vllm --set rollout.vllm_mode=colocate
    PORT=29511 LIMIT=150 bash $T lora_vllm --set model.dtype=bfloat16 --set rollout.backend=vllm --set rollout.vllm_mode=colocate \
      --set model.lora.enabled=true --set grpo.learning_rate=1e-3
  ) &
  ( export CUDA_VISIBLE_DEVICES=1
    check bf16 29502 --engine-dtype bfloat16 --model-dtype bfloat16
    check fp32_noban 29502 --engine-dtype float32 --model-dtype float32 --no-ban
    PORT=29512 LIMIT=170 bash $T colocate_bf16_sleep --set model.dtype=bfloat16 --set rollout.backend=vllm \
      --set rollout.vllm_mode=colocate --set rollout.enable_sleep_mode=true --set grpo.learning_rate=1e-4
  ) &
  wait
  # server mode: `rft serve` on GPU 1, training on GPU 0
  s="$OUT/server"; mkdir -p "$s"
  common=(--set model.tiny.family=qwen2_5_vl --set model.tiny.hidden_size=128 --set model.tiny.num_heads=2
          --set model.dtype=float32 --set rollout.backend=vllm --set rollout.vllm_mode=server
          --set rollout.max_model_length=1024 --set output.dir="$s/run")
  CUDA_VISIBLE_DEVICES=1 timeout 200 python -m rft.cli serve recipes/demo.yaml "${common[@]}" > "$s/server.log" 2>&1 &
  for _ in $(seq 90); do curl -sf localhost:8000/health > /dev/null && break; sleep 1; done
  echo "server health: $(curl -s -o /dev/null -w '%{http_code}' localhost:8000/health)" >> "$s/server.log"
  CUDA_VISIBLE_DEVICES=0 LIMIT=120 bash $T server "${common[@]}"
  pkill -f "vllm.entrypoints" ; sleep 2
  ;;
b)
  PORT=29521 LIMIT=130 bash $T zero2 --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=2
  PORT=29522 LIMIT=150 bash $T zero3_vllm --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=3 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate --set output.save_steps=20
  e="$OUT/zero3_vllm"
  timeout 90 python -m rft.cli eval recipes/demo.yaml --model "$e/run/checkpoint-20" --output-dir "$e/eval_checkpoint" \
    --set model.tiny.family=qwen2_5_vl --set model.tiny.hidden_size=128 --set model.tiny.num_heads=2 --set model.dtype=bfloat16 \
    > "$e/eval_checkpoint.log" 2>&1; echo "eval of the ZeRO-3 checkpoint: exit $?" | tee -a "$e/eval_checkpoint.log"
  PORT=29523 LIMIT=130 bash $T zero3 --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=3
  PORT=29524 LIMIT=150 bash $T zero2_vllm --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=2 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate
  ;;
esac
for f in "$OUT"/check_*.json "$OUT"/*/summary.json; do [ -f "$f" ] && cat "$f"; done
