#!/usr/bin/env bash
# ../shared/gpu/wheels.sh pack keeps only the wheels named in its pins.txt, which lacks deepspeed, so the
# parts it makes carry no deepspeed. This builds the wheel (pure Python with DS_BUILD_OPS=0) and puts it
# into the smallest part. Run here, after `wheels.sh pack .devwheels`, with the project's venv active.
set -euo pipefail
dir="${1:-.devwheels}"
part=$(du -s "$dir"/part-* | sort -n | head -1 | cut -f2)
DS_BUILD_OPS=0 python -m pip wheel -q --no-deps --no-build-isolation -w "$part" deepspeed==0.19.8
ls "$part"/deepspeed-*.whl
