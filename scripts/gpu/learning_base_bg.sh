#!/usr/bin/env bash
# The learning proof's base part in the background, while the other wheel parts still travel (docs/learning.md):
# it needs trl, datasets, pycocotools and pydantic (all in the last, smallest wheel part), not vLLM.
#   bash scripts/gpu/learning_base_bg.sh site0 .devwheels/part-6      # receive that part, install it into /tmp/site0
#   bash scripts/gpu/learning_base_bg.sh start WORK [base options]    # e.g. start /tmp/learning --base-steps 1500
#   bash scripts/gpu/learning_base_bg.sh status WORK                  # the driver's last lines
#   bash scripts/gpu/learning_base_bg.sh wait WORK [SECONDS]          # until WORK/out/learning_base.json (default
#                                                                     # 560 s), then copy WORK/out/* to $OUT/NAME/
# Several bases can train at once, each in its own WORK (the GPU is far from full with one 32M model); the
# few-shot parts then take --work WORK. A process started with setsid outlives its command while the machine is warm.
set -uo pipefail
cmd="${1:?usage: learning_base_bg.sh site0 DIR | start WORK [options] | status WORK | wait WORK [SECONDS]}"; shift
case "$cmd" in
  site0)
    bash "$1/wheels.sh" receive "$1" && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target /tmp/site0 "$1"/*.whl && echo "installed $(ls "$1"/*.whl | wc -l) wheels into /tmp/site0" ;;
  start)
    work="$1"; shift; mkdir -p "$work"
    (RFT_SITE=/tmp/site0 OUT="$work/out" LEARNING_DIR="$work" setsid nohup bash scripts/gpu/learning_proof.sh base \
      --work "$work" "$@" > "$work/driver.log" 2>&1 < /dev/null &)
    sleep 5; echo "started the base part in $work (log: $work/driver.log)"; tail -3 "$work/driver.log" | cut -c1-200 ;;
  status)
    tail -4 "$1/driver.log" | cut -c1-300 ;;
  wait)
    work="$1"; limit="${2:-560}"; start=$SECONDS
    while [ ! -f "$work/out/learning_base.json" ] && [ $((SECONDS - start)) -lt "$limit" ]; do sleep 5; done
    tail -4 "$work/driver.log" | cut -c1-300
    [ -f "$work/out/learning_base.json" ] || { echo "base part not finished after $limit s"; exit 1; }
    mkdir -p "$OUT/$(basename "$work")" && cp "$work"/out/* "$OUT/$(basename "$work")/" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
