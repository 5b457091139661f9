#!/usr/bin/env bash
# Issue 17's speed grid on one H200: one row of bench/grpo_throughput.py per command, (B) TRL + vLLM colocate and
# (C) `rft train` on the same machine. Each command must end within the 10-minute limit (timeout LIMIT, 560 s).
# Usage: bench_grid.sh ROW [MODES] [more bench options]     MODES: B,C (default), B or C
# Writes $OUT/grid_ROW_MODES.json and $OUT/log_ROW_MODE.txt; then print the grid and its plots with
#   python bench/grpo_throughput.py --grid $OUT/grid_*.json --grid-plot $OUT/grid.png
#
# Expected time per command (estimates, not measurements: issue 7's standard run on one H200, docs/performance.md,
# B 30.2 s/step, C 6.2 s/step, scaled by the part of the step that grows; plus about 90 s per mode to start
# (imports, loading the model, vLLM's start and CUDA graphs) and, the first time per architecture, about 1 min
# (3B) or 2 min (7B) to build and save the random-weight model under /tmp/rft_grpo_bench):
#   standard          B,C  one command, ~7 min: B 5 steps x ~30 s + 90 s, C 5 x ~7 s + 90 s, model build 1 min
#   lora              B,C  one command, ~6-7 min: as standard, the backward pass of the frozen base no cheaper in
#                          activations, no weight gradients or Adam states of the base (B and C each <= standard)
#   large_images      B    ~7-9 min, --steps 4: 4x the image tokens; (B)'s vision tower (11 s of its 30 s step)
#                          grows at least 4x and its language tokens 2.8x: ~90-100 s/step
#                     C    ~3-4 min: ~12-15 s/step (language tokens 2.8x; the deduplicated tower 16 images a step)
#   long_completions  B    ~5-6 min: generation ~4x (2.1 -> ~9 s), language tokens 2.2x: ~50 s/step
#                     C    ~3 min: ~15 s/step
#   gen16             B    ~6-7 min: twice the sequences and (B)'s images: ~60 s/step
#                     C    ~3 min: ~11 s/step (twice the sequences; still 8 distinct images a step)
#   7b                B    ~5-6 min if it fits (~45 s/step); it may not: 7B weights, gradients and Adam states
#                          (~66 GB in bf16) plus vLLM's 0.35 of the GPU (~49 GB) plus activations near 141 GB.
#                          An out-of-memory failure is recorded and the grid shows it (then (C) alone)
#                     C    ~4-5 min with the 7B build: ~14 s/step
# A row of two commands gives two JSON files; --grid joins them by row name.
set -uo pipefail
row="$1"; shift
modes="B,C"
if [[ $# -gt 0 && "$1" != -* ]]; then modes="$1"; shift; fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
work=/tmp/rft_grpo_bench
name="grid_${row}_${modes/,/}"
timeout "${LIMIT:-560}" python bench/grpo_throughput.py --row "$row" --modes "$modes" --work "$work" \
    --out "$OUT/$name.json" "$@"
echo "exit $?"
for mode in ${modes//,/ }; do
    cp "$work/log_$mode.txt" "$OUT/log_${row}_$mode.txt" 2>/dev/null
    grep -E "Error|error|Traceback" "$work/log_$mode.txt" | tail -5
done
