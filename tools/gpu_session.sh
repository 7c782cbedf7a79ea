#!/usr/bin/env bash
# The GPU session of issue 7 as one command, run ON the GPU machine from the repository root,
# with the bundle tools/gpu_pack.sh made (here, where the network and the compilers are):
#
#   run(command="bash tools/gpu_session.sh", carry=[".devcarry"], timeout_s=600)
#
# The machine (see the device tool's KINDS.md): one H100 or H200, CUDA 13 with compute-sanitizer in
# /usr/local/cuda/bin, python3 with PyTorch, no network. Nothing is installed from the network:
# the binaries and their libraries come unpacked from .devcarry/bundle.tar.xz, reformer-pytorch from
# .devcarry/wheels (into /tmp, on PYTHONPATH for the side-by-side step only).
#
# Every step runs under `timeout` with the budget below (seconds; --scale multiplies them); the
# budgets add up to 540 s, so the whole session fits one 10-minute call with time to spare:
#   preflight 20   unpack, GPU and driver, missing libraries, wheels, PyTorch's view of the GPU
#   tests     71   test_cuda (all, 35), the CUDA cases of test_core, test_nn, test_models, test_tools
#   memcheck  60   compute-sanitizer --tool memcheck over test_cuda
#   racecheck 40   compute-sanitizer --tool racecheck over test_cuda
#   cuda-ops  35   rewind-bench cuda-ops (matmul vs cuBLAS, bandwidth)
#   attention 100  rewind-bench attention --device cuda: full attention up to 32K, LSH with 1/2/4/8
#                  hashes at 1K..1M tokens (one call per series, 20 s each)
#   model     84   rewind-bench model --device cuda, Adam: lengths 4K..1M x depths 1, 6 (42 s each)
#                  The benchmarks get --time-budget = 3/4 of their step's budget: a series stops
#                  before a length that would overrun it (reported as "time budget"), and an OOM
#                  ends a series with an "OOM" row, so the rows measured before are kept.
#   side-by-side 130  tools/bench/side_by_side.py: reformer-pytorch vs rewind, 4K..64K x depths 1,
#                  6 (its --budget stops starting configurations at 3/4 of that)
# A step that runs out of time is killed and reported as TIMEOUT; the others still run. Where the
# summary shows TIMEOUTs or "time budget" rows, a second call can give one step more time:
#   run(command="bash tools/gpu_session.sh --steps side-by-side --scale 4", carry=[".devcarry"])
# (each call unpacks the bundle again: preflight always runs).
#
# What comes back in $OUT (the device tool returns at most 8 files): summary.md (every step, its
# status, time and key lines: doctest totals, sanitizer error summaries), benchmarks.md (every
# benchmark table), side_by_side.md / .json, results.tgz (every log and result file). They are
# rewritten after every step, so a session cut short still returns what was done.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: tools/gpu_session.sh [options]
  --steps LIST   comma-separated steps to run, in this order (default: all):
                 preflight,tests,memcheck,racecheck,cuda-ops,attention,model,side-by-side
                 (preflight always runs: the others need the unpacked bundle)
  --scale F      multiply every step's time budget by F (default 1)
  --bundle DIR   where gpu_pack.sh's output is (default: .devcarry)
  --out DIR      where the results go (default: $OUT, else ./gpu_session_out)
  --work DIR     scratch directory for the unpacked bundle and logs (default: /tmp/rewind_gpu)
  --dry-run      print the steps, their budgets and commands; run nothing
  -h, --help     this text
EOF
}

all_steps="preflight tests memcheck racecheck cuda-ops attention model side-by-side"
steps=$all_steps
scale=1
bundle=.devcarry
out=${OUT:-gpu_session_out}
work=/tmp/rewind_gpu
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$(echo "${2:?--steps needs a value}" | tr ',' ' '); shift 2 ;;
    --scale) scale=${2:?--scale needs a value}; shift 2 ;;
    --bundle) bundle=${2:?--bundle needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --work) work=${2:?--work needs a value}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_session.sh: error: unknown argument '$1'" >&2; usage >&2; exit 1 ;;
  esac
done
for s in $steps; do
  case " $all_steps " in
    *" $s "*) ;;
    *) echo "gpu_session.sh: error: --steps: unknown step '$s' (known: ${all_steps// /,})" >&2; exit 1 ;;
  esac
done
case " $steps " in *" preflight "*) ;; *) steps="preflight $steps" ;; esac
if ! awk -v f="$scale" 'BEGIN { exit !(f + 0 > 0) }'; then
  echo "gpu_session.sh: error: --scale $scale: expected a positive number" >&2
  exit 1
fi

results="$work/results"
pkg="$work/bundle"  # bin/ libexec/ lib/ after unpacking
site="$work/site"   # reformer-pytorch's wheels, installed
sanitizer=/usr/local/cuda/bin/compute-sanitizer
bench="$pkg/bin/rewind-bench"

# Seconds for a budget of $1 at --scale.
# At least 1 (timeout 0 would mean no limit).
budget() { awk -v b="$1" -v f="$scale" 'BEGIN { s = int(b * f + 0.5); printf "%d", s < 1 ? 1 : s }'; }
# rewind-bench's own --time-budget inside a step of budget $1: three quarters of it, so that the
# benchmark stops before its next row would overrun and still prints what it measured (process
# start, CUDA's initialisation and the output take the rest).
inner() { awk -v b="$(budget "$1")" 'BEGIN { printf "%d", b * 0.75 }'; }

summary_rows=()
total_budget=0

# run_step NAME BUDGET_S RESULT_FILE CMD...: runs CMD under timeout with stdout+stderr in
# $results/NAME.log, records status and time. RESULT_FILE (or -) is what the step writes.
run_step() {
  local name=$1 secs
  secs=$(budget "$2")
  local result=$3
  shift 3
  total_budget=$((total_budget + secs))
  if [ "$dry_run" = 1 ]; then
    printf '%-22s %4ss  %s\n' "$name" "$secs" "$*"
    return 0
  fi
  echo "gpu_session: $name (budget ${secs}s)" >&2
  local t0 t1 rc status
  t0=$(date +%s)
  # Through bash -c so that a step may be one of this script's (exported) functions.
  timeout -k 5 "$secs" bash -c '"$@"' "$name" "$@" >"$results/$name.log" 2>&1
  rc=$?
  t1=$(date +%s)
  case $rc in
    0) status=ok ;;
    124 | 137) status="TIMEOUT after ${secs}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  local key
  key=$(grep -h -E '^\[doctest\] (test cases|Status)|ERROR SUMMARY|error:|skipped: no GPU' \
    "$results/$name.log" 2>/dev/null | sort -u | head -4 | tr '\n' ';')
  # A failure with none of those lines: the log's last line says why.
  [ -z "$key" ] && [ "$status" != ok ] && key=$(tail -1 "$results/$name.log" 2>/dev/null | cut -c1-200)
  key=${key//|/\\|}
  summary_rows+=("| $name | $secs | $((t1 - t0)) | $status | ${key:--} | $result |")
  write_outputs
}

# summary.md, benchmarks.md, the side-by-side files and results.tgz into $out (after every step).
write_outputs() {
  mkdir -p "$out"
  {
    echo "# GPU session $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    [ -f "$results/gpu.txt" ] && sed 's/^/    /' "$results/gpu.txt" && echo
    [ -f "$pkg/manifest.txt" ] && head -6 "$pkg/manifest.txt" | sed 's/^/    /' && echo
    echo "| step | budget_s | took_s | status | key lines | result |"
    echo "|------|----------|--------|--------|-----------|--------|"
    printf '%s\n' "${summary_rows[@]}"
  } >"$out/summary.md"
  {
    for f in cuda_ops.md attention_full.md attention_lsh1.md attention_lsh2.md \
      attention_lsh4.md attention_lsh8.md model_depth1.md model_depth6.md side_by_side.md; do
      [ -s "$results/$f" ] && printf '\n## %s\n\n' "$f" && cat "$results/$f"
    done
  } >"$out/benchmarks.md"
  for f in side_by_side.md side_by_side.json; do
    [ -f "$results/$f" ] && cp "$results/$f" "$out/$f"
  done
  tar -C "$work" -czf "$out/results.tgz" results 2>/dev/null
}

preflight() {
  set -e
  rm -rf "$pkg" && mkdir -p "$pkg"
  # xz from tar, or Python's lzma where the image has no xz.
  if command -v xz >/dev/null; then
    tar -C "$pkg" -xJf "$bundle/bundle.tar.xz"
  else
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      "$bundle/bundle.tar.xz" "$pkg"
  fi
  cat "$pkg/manifest.txt"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    >"$results/gpu.txt" 2>&1 || echo "nvidia-smi failed: no GPU or no driver" >>"$results/gpu.txt"
  cat "$results/gpu.txt"
  # Libraries the binaries cannot find: look for them on the machine and hand their folders to
  # the wrappers (RW_LIB_PATH), never to Python (LD_LIBRARY_PATH would override PyTorch's own).
  local missing dirs=""
  missing=$(for b in "$pkg"/libexec/*; do
    LD_LIBRARY_PATH="$pkg/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib" ldd "$b"
  done | awk '/not found/ {print $1}' | sort -u)
  for lib in $missing; do
    local found
    found=$(find /usr /opt -name "$lib" 2>/dev/null | head -1)
    echo "missing $lib -> ${found:-NOT FOUND}"
    [ -n "$found" ] && dirs="$dirs:$(dirname "$found")"
  done
  echo "RW_LIB_PATH=${dirs#:}" >"$work/lib_path.env"
  # test_tools runs rewind-bench at the path compiled into it (a path of the packing machine:
  # linked here unless something is there already, such as that machine's own build).
  if [ -f "$pkg/exe_paths.txt" ]; then
    while IFS='=' read -r _ path; do
      if [ ! -e "$path" ]; then
        mkdir -p "$(dirname "$path")" && ln -s "$pkg/bin/$(basename "$path")" "$path"
      fi
      echo "test_tools' $(basename "$path"): $path -> $(readlink -f "$path")"
    done <"$pkg/exe_paths.txt"
  fi
  rm -rf "$site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
    "$bundle"/wheels/*.whl
  PYTHONPATH="$site" python3 -c 'import torch, reformer_pytorch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU VISIBLE TO TORCH"
print("torch", torch.__version__, "cuda", torch.version.cuda, gpu)'
  "$bench" --help >/dev/null
}

# A libexec binary with the wrappers' library path (compute-sanitizer runs it directly).
with_libs() {
  LD_LIBRARY_PATH="$pkg/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${RW_LIB_PATH:+:$RW_LIB_PATH}" "$@"
}

export pkg bundle results work site bench
export -f preflight with_libs

lsh_lengths=1024,4096,16384,65536,262144,1048576
full_lengths=1024,2048,4096,8192,16384,32768
model_lengths=4096,16384,65536,262144,1048576

mkdir -p "$results"
[ "$dry_run" = 1 ] || rm -f "$results"/*
for s in $steps; do
  case $s in
    preflight)
      run_step preflight 20 gpu.txt preflight
      if [ "$dry_run" = 0 ]; then
        # shellcheck disable=SC1091  # written by preflight
        [ -f "$work/lib_path.env" ] && . "$work/lib_path.env" && export RW_LIB_PATH
        if ! [ -x "$bench" ]; then
          echo "gpu_session.sh: preflight failed: see $results/preflight.log" >&2
          tail -20 "$results/preflight.log" >&2
          exit 1
        fi
      fi
      ;;
    tests)
      run_step test_cuda 35 - "$pkg/bin/test_cuda"
      run_step test_core_gpu 8 - "$pkg/bin/test_core" -sf='*test_devices*'
      run_step test_nn_gpu 8 - "$pkg/bin/test_nn" -sf='*safetensors*'
      run_step test_models_gpu 10 - "$pkg/bin/test_models" -tc='*cuda*,*gpu*'
      run_step test_tools_gpu 10 - "$pkg/bin/test_tools" -sf='*test_bench_device*'
      ;;
    memcheck)
      run_step memcheck 60 - with_libs "$sanitizer" --tool memcheck --error-exitcode 99 \
        --print-limit 20 "$pkg/libexec/test_cuda"
      ;;
    racecheck)
      run_step racecheck 40 - with_libs "$sanitizer" --tool racecheck --error-exitcode 99 \
        --print-limit 20 "$pkg/libexec/test_cuda"
      ;;
    cuda-ops)
      run_step cuda_ops 35 cuda_ops.md "$bench" cuda-ops --trials 3 --min-time 0.02 \
        --out "$results/cuda_ops.md"
      ;;
    attention)
      run_step attention_full 20 attention_full.md "$bench" attention --device cuda --kind full \
        --lengths "$full_lengths" --full-memory-cap-gb 40 --reps 3 --time-budget "$(inner 20)" \
        --out "$results/attention_full.md"
      for h in 1 2 4 8; do
        run_step "attention_lsh$h" 20 "attention_lsh$h.md" "$bench" attention --device cuda \
          --kind lsh --hashes "$h" --lengths "$lsh_lengths" --reps 2 --time-budget "$(inner 20)" \
          --out "$results/attention_lsh$h.md"
      done
      ;;
    model)
      for d in 1 6; do
        run_step "model_depth$d" 42 "model_depth$d.md" "$bench" model --device cuda \
          --optimizer adam --lengths "$model_lengths" --depths "$d" --reps 2 \
          --time-budget "$(inner 42)" --out "$results/model_depth$d.md"
      done
      ;;
    side-by-side)
      # The script's own --budget stops starting configurations in time to write its table.
      run_step side_by_side 130 side_by_side.md \
        env PYTHONPATH="$site" PYTHONUNBUFFERED=1 python3 tools/bench/side_by_side.py \
        --device cuda --rewind-bench "$bench" --lengths 4096,16384,65536 --depths 1,6 \
        --warmup 1 --reps 3 --timeout "$(budget 40)" --budget "$(inner 130)" \
        --out-prefix "$results/side_by_side"
      ;;
  esac
done

if [ "$dry_run" = 1 ]; then
  echo "total budget: ${total_budget}s (results into $out)"
  exit 0
fi
write_outputs
echo "gpu_session: done; $out holds:" >&2
ls -la "$out" >&2
cat "$out/summary.md"
