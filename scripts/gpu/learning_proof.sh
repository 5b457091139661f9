#!/usr/bin/env bash
# Issue 14's learning proof on one GPU (docs/learning.md), one part per command, each under 9 minutes:
#   bash scripts/gpu/learning_proof.sh base   # base model on base categories (rft sft) -> /tmp/learning/base, bit-for-bit check, rft eval
#   bash scripts/gpu/learning_proof.sh n16    # from /tmp/learning/base, 16 novel images: SFT (GRPO's steps), GRPO (vLLM colocate),
#                                             # SFT (GRPO's training time), rft eval before/after each
#   bash scripts/gpu/learning_proof.sh n64    # the same with 64 images
# Run base first, then n16 / n64 on the same warm machine (the base model lives in /tmp/learning/base).
# Prerequisite: trl/vllm/deepspeed in /tmp/site (../shared/gpu/README.md). Results: $OUT/learning_PART.tgz (everything,
# unpack and run scripts/gpu/learning_table.py on it) and $OUT/learning_PART.json (the summary).
# Extra arguments go to scripts/gpu/learning_proof.py (e.g. --deadline 480).
set -uo pipefail
part="${1:?usage: learning_proof.sh base|n16|n64 [learning_proof.py options]}"; shift
# RFT_SITE: where trl/vllm/... were installed (default /tmp/site; a part started in the background while the
# other wheel parts still travel uses its own folder, which the later full install into /tmp/site leaves alone)
export PYTHONPATH="${RFT_SITE:-/tmp/site}:$PWD${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1 \
  CUBLAS_WORKSPACE_CONFIG=:4096:8 TOKENIZERS_PARALLELISM=false OUT="${OUT:-outputs/learning}"
exec python3 scripts/gpu/learning_proof.py "$part" "$@"
