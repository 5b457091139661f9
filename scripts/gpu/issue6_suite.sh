#!/usr/bin/env bash
# The GPU proofs of issue 6 on a machine with two GPUs (nvidia-h200-x2), in parts of under 10 minutes:
#   bash scripts/gpu/issue6_suite.sh a   # vLLM prompt/log-prob checks, colocate fp32, LoRA+vLLM, ZeRO-3+vLLM (checkpoint -> rft eval),
#                                        # ZeRO-2; server mode with WITH_SERVER=1
#   bash scripts/gpu/issue6_suite.sh b   # ZeRO-2 and ZeRO-3 without vLLM (+ rft eval --gpus 1|2 of it), ZeRO-2 with vLLM, sleep mode
#   bash scripts/gpu/issue6_suite.sh c   # encoder-cache check (rft vs TRL's reset), LoRA with the vision tower, LoRA under ZeRO-3
#   bash scripts/gpu/issue6_suite.sh d   # one GPU: LoRA with the vision tower, a colocate run over four epochs (part c's one-GPU runs)
#   bash scripts/gpu/issue6_suite.sh f   # one GPU: ZeRO-3 (one process) + vLLM colocate -> checkpoint -> rft eval, rft export, vLLM loads it;
#                                        # the encoder-cache check on that trained model
#   bash scripts/gpu/issue6_suite.sh g   # one GPU: the same with LoRA (the adapter merged by rft eval and rft export)
#   bash scripts/gpu/issue6_suite.sh e   # two GPUs: `rft serve` on GPU 1, training on GPU 0 over four epochs of 16 images
#                                        # (images come back after updates: checks the server's encoder-cache reset)
# Prerequisite: trl/vllm/deepspeed in /tmp/site (../shared/gpu/README.md). Small results under $OUT
# (default outputs/gpu); run folders under /tmp/rft_gpu_runs. A part starts no new run after DEADLINE s (default 470).
set -uo pipefail
export OUT="${OUT:-outputs/gpu}" PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
mkdir -p "$OUT"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, vllm, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'vllm', vllm.__version__, 'deepspeed', deepspeed.__version__)" >> "$OUT/gpu.txt" 2>&1
date -u +%FT%TZ >> "$OUT/gpu.txt"
T=scripts/gpu/train_tiny.sh
start=$SECONDS
time_left() { (( SECONDS - start < ${DEADLINE:-470} )) || { echo "skipped $1: past the deadline" | tee -a "$OUT/skipped.txt"; return 1; }; }
check() {  # check NAME PORT ARGS...
  local name=$1 port=$2; shift 2
  timeout 150 torchrun --nproc_per_node 1 --master_port "$port" scripts/gpu/vllm_logprobs_check.py --out "$OUT/check_$name.json" \
    --work "/tmp/check_$name" "$@" > "$OUT/check_$name.log" 2>&1; echo "check $name exit $?"
}
tiny=(--set model.tiny.family=qwen2_5_vl --set model.tiny.hidden_size=128 --set model.tiny.num_heads=2)
server_run() {  # server_run NAME SERVER_LIMIT TRAIN_LIMIT [--set ...]: `rft serve` on GPU 1, `rft train` on GPU 0, fp32
  local name=$1 server_limit=$2 train_limit=$3; shift 3
  local s="$OUT/$name"; mkdir -p "$s"
  local common=("${tiny[@]}" --set model.dtype=float32 --set rollout.backend=vllm --set rollout.vllm_mode=server
                --set rollout.max_model_length=1024 --set output.dir="/tmp/rft_gpu_runs/$name" "$@")
  CUDA_VISIBLE_DEVICES=1 timeout "$server_limit" python -m rft.cli serve recipes/demo.yaml "${common[@]}" > "$s/server.log" 2>&1 &
  for _ in $(seq 90); do curl -sf localhost:8000/health > /dev/null && break; sleep 1; done
  echo "server health: $(curl -s -o /dev/null -w '%{http_code}' localhost:8000/health)" | tee -a "$s/server.log"
  CUDA_VISIBLE_DEVICES=0 LIMIT="$train_limit" bash $T "$name" "${common[@]}"
  pkill -f "vllm.entrypoints"; sleep 1
}
checkpoint_to_vllm() {  # checkpoint_to_vllm NAME PORT: rft eval, rft export and the vLLM log-prob check of NAME's checkpoint-12
  local e="$OUT/$1" c="/tmp/rft_gpu_runs/$1/checkpoint-12" x="/tmp/rft_gpu_runs/$1_export"
  ls "$c" > "$e/checkpoint_files.txt" 2>&1
  timeout 90 python -m rft.cli eval recipes/demo.yaml --model "$c" --output-dir "/tmp/rft_gpu_runs/$1_eval" "${tiny[@]}" \
    --set model.dtype=bfloat16 --set 'eval.datasets[0].num_samples=64' > "$e/eval_checkpoint.log" 2>&1
  echo "rft eval of the checkpoint: exit $?" | tee -a "$e/eval_checkpoint.log"
  cp "/tmp/rft_gpu_runs/$1_eval/summary.txt" "$e/eval_summary.txt" 2>/dev/null
  timeout 90 python -m rft.cli export recipes/demo.yaml --model "$c" --out "$x" "${tiny[@]}" > "$e/export.log" 2>&1
  echo "rft export of the checkpoint: exit $?" | tee -a "$e/export.log"; ls "$x" >> "$e/export.log" 2>&1
  check "$1_export" "$2" --model "$x" --engine-dtype float32 --model-dtype float32
}
case "${1:-a}" in
a)
  CUDA_VISIBLE_DEVICES=0 check rft 29501 --engine-dtype float32 --model-dtype float32 &
  CUDA_VISIBLE_DEVICES=1 check trainer_without_ban 29502 --engine-dtype float32 --model-dtype float32 --trainer-without-ban &
  wait
  CUDA_VISIBLE_DEVICES=0 check expanded 29501 --engine-dtype float32 --model-dtype float32 --expanded &
  CUDA_VISIBLE_DEVICES=1 check engine_auto 29502 --engine-dtype auto --model-dtype float32 &
  wait
  CUDA_VISIBLE_DEVICES=0 PORT=29511 LIMIT=150 bash $T colocate_fp32 --set model.dtype=float32 --set rollout.backend=vllm \
    --set rollout.vllm_mode=colocate &
  CUDA_VISIBLE_DEVICES=1 PORT=29512 LIMIT=150 bash $T lora_vllm --set model.dtype=bfloat16 --set rollout.backend=vllm \
    --set rollout.vllm_mode=colocate --set model.lora.enabled=true --set grpo.learning_rate=1e-3 &
  wait
  if time_left zero3_vllm; then
    LIMIT=150 bash $T zero3_vllm --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=3 \
      --set rollout.backend=vllm --set rollout.vllm_mode=colocate --set output.save_steps=12
    e="$OUT/zero3_vllm"; c=/tmp/rft_gpu_runs/zero3_vllm/checkpoint-12
    ls "$c" > "$e/checkpoint_files.txt" 2>&1
    CUDA_VISIBLE_DEVICES=0 timeout 60 python -m rft.cli eval recipes/demo.yaml --model "$c" --output-dir /tmp/rft_gpu_runs/zero3_eval \
      "${tiny[@]}" --set model.dtype=bfloat16 --set 'eval.datasets[0].num_samples=64' > "$e/eval_checkpoint.log" 2>&1
    echo "rft eval of the ZeRO-3 checkpoint: exit $?" | tee -a "$e/eval_checkpoint.log"
    cp /tmp/rft_gpu_runs/zero3_eval/summary.txt "$e/eval_summary.txt" 2>/dev/null
  fi
  time_left zero2 && LIMIT=110 bash $T zero2 --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=2
  [ -n "${WITH_SERVER:-}" ] && time_left server && server_run server 150 90
  ;;
b)
  LIMIT=120 bash $T zero2 --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=2
  time_left zero3 && LIMIT=120 bash $T zero3 --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=3
  if time_left eval_two_gpus; then  # rft eval on both GPUs of the ZeRO-3 run's final model: the same report as on one
    for n in 1 2; do
      timeout 120 python -m rft.cli eval recipes/demo.yaml --model /tmp/rft_gpu_runs/zero3/final --gpus $n "${tiny[@]}" \
        --set model.dtype=bfloat16 --set 'eval.datasets[0].num_samples=64' --set eval.batch_size=1 \
        --output-dir /tmp/rft_gpu_runs/eval_gpus$n > "$OUT/eval_gpus$n.log" 2>&1
      echo "rft eval --gpus $n: exit $?" | tee -a "$OUT/eval_gpus$n.log"; cp /tmp/rft_gpu_runs/eval_gpus$n/report.json "$OUT/eval_gpus$n.json"
    done
  fi
  time_left zero2_vllm && LIMIT=140 bash $T zero2_vllm --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=2 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate
  time_left colocate_bf16_sleep && CUDA_VISIBLE_DEVICES=0 PORT=29513 LIMIT=120 bash $T colocate_bf16_sleep --set model.dtype=bfloat16 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate --set rollout.enable_sleep_mode=true --set grpo.learning_rate=1e-4
  ;;
c)
  CUDA_VISIBLE_DEVICES=0 check sync_rft 29501 --engine-dtype float32 --model-dtype float32 --perturb visual &
  CUDA_VISIBLE_DEVICES=1 check sync_trl 29502 --engine-dtype float32 --model-dtype float32 --perturb visual --keep-encoder-cache &
  wait
  CUDA_VISIBLE_DEVICES=0 PORT=29514 LIMIT=150 bash $T lora_vision_vllm --set model.dtype=bfloat16 --set rollout.backend=vllm \
    --set rollout.vllm_mode=colocate --set model.lora.enabled=true --set model.lora.include_vision=true --set grpo.learning_rate=1e-3 &
  CUDA_VISIBLE_DEVICES=1 PORT=29515 LIMIT=150 bash $T colocate_two_epochs --set model.dtype=float32 --set rollout.backend=vllm \
    --set rollout.vllm_mode=colocate --set 'data.datasets[0].num_samples=16' --set grpo.max_steps=8 &
  wait
  time_left zero3_lora_vllm && LIMIT=150 bash $T zero3_lora_vllm --gpus 2 --set model.dtype=bfloat16 --set distributed.zero_stage=3 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate --set model.lora.enabled=true
  ;;
d)
  PORT=29514 LIMIT=150 bash $T lora_vision_vllm --set model.dtype=bfloat16 --set rollout.backend=vllm \
    --set rollout.vllm_mode=colocate --set model.lora.enabled=true --set model.lora.include_vision=true --set grpo.learning_rate=1e-3
  time_left colocate_two_epochs && PORT=29515 LIMIT=150 bash $T colocate_two_epochs --set model.dtype=float32 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate --set 'data.datasets[0].num_samples=16' --set grpo.max_steps=8
  ;;
f)
  PORT=29516 LIMIT=170 bash $T zero3_vllm_1gpu --set model.dtype=bfloat16 --set distributed.zero_stage=3 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate --set output.save_steps=12
  time_left checkpoint_to_vllm && checkpoint_to_vllm zero3_vllm_1gpu 29517
  # the encoder-cache check on a trained model (a random one's near-uniform output hides mismatches)
  x=/tmp/rft_gpu_runs/zero3_vllm_1gpu_export
  time_left sync_trained && check sync_trained_rft 29520 --model "$x" --perturb visual
  time_left sync_trained && check sync_trained_trl 29521 --model "$x" --perturb visual --keep-encoder-cache
  ;;
g)
  PORT=29518 LIMIT=170 bash $T zero3_lora_vllm_1gpu --set model.dtype=bfloat16 --set distributed.zero_stage=3 \
    --set rollout.backend=vllm --set rollout.vllm_mode=colocate --set model.lora.enabled=true --set grpo.learning_rate=1e-3 \
    --set output.save_steps=12
  time_left checkpoint_to_vllm && checkpoint_to_vllm zero3_lora_vllm_1gpu 29519
  ;;
e)
  server_run server_two_epochs 200 150 --set 'data.datasets[0].num_samples=16' --set grpo.max_steps=8
  grep -c "reset_encoder_cache" "$OUT/server_two_epochs/server.log" | sed 's/^/encoder-cache resets logged by the server: /' \
    | tee -a "$OUT/server_two_epochs/server.log"
  ;;
*) sed -n '2,14p' "$0"; exit 2 ;;
esac
for f in "$OUT"/check_*.json "$OUT"/*/summary.json; do [ -f "$f" ] && cat "$f"; done
