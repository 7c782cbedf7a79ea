#!/usr/bin/env bash
# rewind's own setup: takes a fresh Debian 12 machine from a clone to a built, tested rewind.
#
#   tools/setup.sh run [ARGS...]  install what is missing, build (Release), run the main job on its
#                                 built-in default: tools/main_job.sh trains a small Reformer on
#                                 the GCIDE dictionary and samples from it (ARGS go to rewind-train)
#   tools/setup.sh test           install, build, run the whole test suite with ctest, then build
#                                 the suite again with -DREWIND_SANITIZE=address,undefined and run it
#   tools/setup.sh build          install and build only
#   tools/setup.sh fuzz [SECONDS] install clang too, build the libFuzzer targets (ASan + UBSan) in
#                                 build-fuzz/ and fuzz the safetensors reader for SECONDS (default
#                                 60), starting from a corpus of valid files it generates
#
# It installs Debian packages with apt-get (as root, or through sudo) and downloads nothing else.
# Build dirs stay inside the checkout: build/ (Release), build-sanitize/ (ASan + UBSan, -O1) and
# build-fuzz/ (clang, libFuzzer; its corpus and any crashing inputs are kept there too).
# Environment: REWIND_JOBS (parallel jobs, default: nproc), REWIND_CMAKE_ARGS (extra configure
# arguments for every build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly BUILD_DIR="$ROOT/build"
readonly SANITIZE_DIR="$ROOT/build-sanitize"
readonly FUZZ_DIR="$ROOT/build-fuzz"
readonly JOBS="${REWIND_JOBS:-$(nproc)}"
# libdnnl-dev's CMake config requires OpenCL (a package it only recommends), so it is listed too.
# The data the tools train on comes from Debian too: dict-gcide (the GCIDE dictionary, the default
# text corpus, read gzip-compressed through zlib1g-dev) and dataset-fashion-mnist (the image task);
# gnuplot-nox draws rewind-ablate's plots.
readonly PACKAGES=(g++ cmake ninja-build libdnnl-dev ocl-icd-opencl-dev libfmt-dev doctest-dev
  libcli11-dev nlohmann-json3-dev zlib1g-dev dict-gcide dataset-fashion-mnist gnuplot-nox)
# Only for `fuzz`: clang with libFuzzer (in compiler-rt) and the OpenMP runtime clang links.
readonly FUZZ_PACKAGES=(clang libclang-rt-dev libomp-dev)

say() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'setup.sh: error: %s\n' "$*" >&2
  exit 1
}
usage() {
  sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# install_packages [extra packages...]: PACKAGES and the extra ones.
install_packages() {
  local wanted=("${PACKAGES[@]}" "$@") missing=() pkg
  for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    say "Debian packages: all present (${wanted[*]})"
    return
  fi
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: this script targets Debian 12; install them by hand"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "missing packages (${missing[*]}): run as root or install sudo"
    sudo=(sudo)
    [[ -t 0 ]] || sudo=(sudo -n) # no terminal to ask for a password on: fail instead of hanging
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
}

# configure DIR [cmake args...]
configure() {
  local dir="$1"
  shift
  local extra=()
  # REWIND_CMAKE_ARGS is split on whitespace on purpose (a list of -D flags).
  # shellcheck disable=SC2206
  [[ -n "${REWIND_CMAKE_ARGS:-}" ]] && extra=(${REWIND_CMAKE_ARGS})
  say "configuring $dir ($*)"
  cmake -S "$ROOT" -B "$dir" -G Ninja "$@" "${extra[@]}"
}

# configure_and_build DIR [cmake args...]
configure_and_build() {
  configure "$@"
  say "building $1 with $JOBS jobs"
  cmake --build "$1" --parallel "$JOBS"
}

build_release() {
  configure_and_build "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
}

# run_ctest DIR: prints ctest's summary; returns its status instead of exiting, so that a failing
# suite still lets the other one run.
run_ctest() {
  say "running the test suite in $1"
  local rc=0
  ctest --test-dir "$1" --output-on-failure --parallel "$JOBS" --timeout 900 || rc=$?
  return "$rc"
}

cmd_run() {
  install_packages
  build_release
  say "running the main job: tools/main_job.sh $*"
  "$ROOT/tools/main_job.sh" "$BUILD_DIR" "$@"
}

cmd_test() {
  local t0=$SECONDS t1 t2 release_rc=0 sanitize_rc=0
  install_packages
  build_release
  run_ctest "$BUILD_DIR" || release_rc=$?
  t1=$SECONDS

  # The sanitizer build: -O1 keeps it quick while the checks stay exact; CUDA is off because the
  # sanitizers instrument host C++ only. Tests that leak or hit undefined behaviour abort.
  configure_and_build "$SANITIZE_DIR" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
    -DREWIND_SANITIZE=address,undefined -DREWIND_CUDA=OFF
  export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:strict_string_checks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  run_ctest "$SANITIZE_DIR" || sanitize_rc=$?
  t2=$SECONDS

  say "summary"
  printf '  Release suite:                %s (%s, including the install and build)\n' \
    "$( ((release_rc == 0)) && echo passed || echo FAILED)" "$(elapsed $((t1 - t0)))"
  printf '  address,undefined sanitizers: %s (%s)\n' \
    "$( ((sanitize_rc == 0)) && echo passed || echo FAILED)" "$(elapsed $((t2 - t1)))"
  ((release_rc == 0 && sanitize_rc == 0)) || die "the test suite failed (see the output above)"
}

# cmd_fuzz [SECONDS]: libFuzzer on the safetensors reader. A crash stops it with the input saved
# as build-fuzz/crash-* (rerun: build-fuzz/tests/fuzz/fuzz_safetensors FILE).
cmd_fuzz() {
  local seconds="${1:-60}"
  [[ "$seconds" =~ ^[0-9]+$ ]] || die "fuzz takes a number of seconds (got '$seconds')"
  install_packages "${FUZZ_PACKAGES[@]}"
  # CUDA, tools and install rules are not needed; the suites are configured but not built.
  configure "$FUZZ_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DREWIND_FUZZ=ON -DREWIND_SANITIZE=address,undefined -DREWIND_CUDA=OFF \
    -DREWIND_BUILD_TOOLS=OFF -DREWIND_INSTALL=OFF
  say "building the fuzz targets with $JOBS jobs"
  cmake --build "$FUZZ_DIR" --parallel "$JOBS" --target fuzz_safetensors fuzz_safetensors_seeds
  local corpus="$FUZZ_DIR/corpus/safetensors"
  "$FUZZ_DIR/tests/fuzz/fuzz_safetensors_seeds" "$corpus"
  say "fuzzing the safetensors reader for ${seconds}s (corpus: $corpus)"
  # One OpenMP thread: inputs are tiny, and threads would only add noise to the exec rate.
  OMP_NUM_THREADS=1 "$FUZZ_DIR/tests/fuzz/fuzz_safetensors" -max_total_time="$seconds" \
    -timeout=10 -max_len=4096 -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/" \
    -dict="$ROOT/tests/fuzz/safetensors.dict" "$corpus" ||
    die "the fuzzer found a failing input (saved under $FUZZ_DIR/, see the report above)"
}

main() {
  local cmd="${1:-}"
  (($# > 0)) && shift
  case "$cmd" in
    run) cmd_run "$@" ;;
    test)
      (($# == 0)) || die "test takes no arguments"
      cmd_test
      ;;
    build)
      install_packages
      build_release
      ;;
    fuzz)
      (($# <= 1)) || die "fuzz takes at most one argument (seconds)"
      cmd_fuzz "$@"
      ;;
    -h | --help | help)
      usage
      ;;
    *)
      usage >&2
      die "expected a command: run, test, build or fuzz"
      ;;
  esac
}

main "$@"
