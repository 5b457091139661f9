#!/usr/bin/env bash
# One part of issue6_suite.sh with its results packed into a single $OUT/PART.tgz (the device machine
# sends back only a few files per command; a part writes dozens). Usage: DEADLINE=330 bash scripts/gpu/run_part.sh f
set -uo pipefail
part=$1; res=/tmp/res/$part; mkdir -p "$res" "$OUT"
OUT=$res DEADLINE=${DEADLINE:-330} bash scripts/gpu/issue6_suite.sh "$part" > "$res/stdout.txt" 2>&1
tail -c 3000 "$res/stdout.txt"
tar czf "$OUT/$part.tgz" -C /tmp/res "$part"
