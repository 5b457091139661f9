#!/usr/bin/env bash
# Issue 7 on the GPU machine: one mode of bench/grpo_throughput.py per command (each must end within the
# 10-minute limit; the model built under /tmp/rft_grpo_bench is reused while the machine stays warm).
# Usage: bench_grpo.sh MODE [more bench options]   e.g. bench_grpo.sh C --profile
# Writes $OUT/MODE.json (the bench's JSON) and $OUT/log_MODE.txt.
set -uo pipefail
mode="$1"; shift
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
work=/tmp/rft_grpo_bench
timeout "${LIMIT:-560}" python bench/grpo_throughput.py --modes "$mode" --work "$work" --out "$OUT/$mode.json" "$@"
echo "exit $?"
cp "$work/log_$mode.txt" "$OUT/" 2>/dev/null
grep -E "Error|error|Traceback" "$work/log_$mode.txt" | tail -5
