#!/usr/bin/env bash
# Issue 7 on the GPU machine: one mode of bench/grpo_throughput.py per command (each must end within the
# 10-minute limit; the model built under /tmp/rft_grpo_bench is reused while the machine stays warm).
# Usage: bench_grpo.sh MODE [more bench options]   e.g. bench_grpo.sh C --profile
#        NAME=C_no_reuse bash bench_grpo.sh C --label "C no reuse" --speed reuse_training_logprobs=false
# Writes $OUT/NAME.json (the bench's JSON; NAME defaults to MODE) and $OUT/log_NAME.txt.
set -uo pipefail
mode="$1"; shift; name="${NAME:-$mode}"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
work=/tmp/rft_grpo_bench
timeout "${LIMIT:-560}" python bench/grpo_throughput.py --modes "$mode" --work "$work" --out "$OUT/$name.json" "$@"
echo "exit $?"
cp "$work/log_$mode.txt" "$OUT/log_$name.txt" 2>/dev/null
grep -E "Error|error|Traceback" "$work/log_$mode.txt" | tail -5
