#!/usr/bin/env bash
# rewind's main job, on its built-in default: train a small Reformer language model on the default
# corpus (the GCIDE dictionary Debian ships) for a few minutes with rewind-train's progress bar,
# print the validation bits/byte, then sample a few lines from the checkpoint with rewind-generate.
#
#   tools/main_job.sh BUILD_DIR [rewind-train flags...]
#
# `tools/setup.sh run` calls it after building; extra flags go to rewind-train (e.g. --steps 50,
# --data my.txt). Each run gets a new directory runs/main-<UTC time>/ in the checkout, so nothing
# from an earlier run is overwritten; continue one with
#   BUILD_DIR/tools/train/rewind-train --out runs/main-... --resume
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
(($# >= 1)) || {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
readonly BUILD_DIR="$1"
shift
readonly TRAIN="$BUILD_DIR/tools/train/rewind-train"
readonly GENERATE="$BUILD_DIR/tools/generate/rewind-generate"
for tool in "$TRAIN" "$GENERATE"; do
  [[ -x "$tool" ]] || {
    printf 'main_job.sh: error: %s is missing (build first: tools/setup.sh build)\n' "$tool" >&2
    exit 1
  }
done

run_dir="${REWIND_RUN_DIR:-$ROOT/runs/main-$(date -u +%Y%m%d-%H%M%S)}"
printf '\n==> training a small Reformer (rewind-train --out %s %s)\n' "$run_dir" "$*"
"$TRAIN" --out "$run_dir" --length 256 --batch 8 --steps 1000 --warmup 100 --lr 2e-3 \
  --eval-every 250 --eval-batches 8 "$@"

printf '\n==> sampling from %s/checkpoint.safetensors\n' "$run_dir"
"$GENERATE" --checkpoint "$run_dir/checkpoint.safetensors" --samples 3 --length 240 \
  --temperature 0.8 --seed 1
