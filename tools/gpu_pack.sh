#!/usr/bin/env bash
# Builds rewind's CUDA binaries HERE (sm_90, the H100/H200) and packs what the GPU machine needs
# into the git-ignored .devcarry/, for the device tool's `carry`:
#   .devcarry/bundle.tar.xz   bin/      wrappers that set LD_LIBRARY_PATH and exec the real binary
#                             libexec/  the test binaries and rewind-bench (stripped)
#                             lib/      the shared libraries they need that a CUDA image lacks
#                                       (oneDNN, fmt, ...; not glibc/libstdc++, not CUDA's own)
#                             exe_paths.txt  where test_tools expects the tools (REWIND_*_EXE)
#                             manifest.txt   commit, date, build flags, sizes
#   .devcarry/wheels/         reformer-pytorch and the pure-Python packages it imports (pinned)
# The GPU machine has no network, the CUDA 13 runtime, cuBLAS and PyTorch; it runs
# tools/gpu_session.sh, which unpacks this. From a session with a GPU:
#   tools/gpu_pack.sh                      # here (minutes: a CUDA build on few cores)
#   run(command="bash tools/gpu_session.sh", carry=[".devcarry"], timeout_s=600)
#
# The binaries share most of their bytes (librewind and its kernels): one xz stream with a 64 MiB
# dictionary stores the second and later copies almost for free, which gzip cannot (the carry
# limit is 64 MiB for the working tree and the carried paths together).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: tools/gpu_pack.sh [options]
  --build-dir DIR   CUDA build directory (default: build-cuda; configured here if missing with
                    -DREWIND_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DREWIND_BUILD_TOOLS=ON)
  --tests "T ..."   test binaries to build and pack
                    (default: "test_cuda test_core test_nn test_models test_tools")
  --jobs N          ninja -j (default: 2)
  --no-build        pack what DIR already has (a missing binary is an error)
  --no-wheels       do not download the Python wheels (keep those already in OUT/wheels)
  --out DIR         where to write (default: .devcarry in the repository root)
  -h, --help        this text
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=build-cuda
tests="test_cuda test_core test_nn test_models test_tools"
jobs=2
do_build=1
do_wheels=1
out="$root/.devcarry"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=${2:?--build-dir needs a value}; shift 2 ;;
    --tests) tests=${2?--tests needs a value}; shift 2 ;;
    --jobs) jobs=${2:?--jobs needs a value}; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-wheels) do_wheels=0; shift ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_pack.sh: error: unknown argument '$1'" >&2; usage >&2; exit 1 ;;
  esac
done
case "$jobs" in '' | *[!0-9]*) echo "gpu_pack.sh: error: --jobs $jobs: not a number" >&2; exit 1 ;; esac
case "$build_dir" in /*) ;; *) build_dir="$root/$build_dir" ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The pure-Python packages reformer_pytorch 1.4.4 imports, at the versions side_by_side.py was
# tested with (einops, numpy and packaging are on the GPU image as well).
wheels=(reformer-pytorch==1.4.4 einops==0.8.2 axial-positional-embedding==0.3.12
  product-key-memory==0.3.0 local-attention==1.11.2 hyper-connections==0.4.11
  colt5-attention==0.11.2 torch-einops-utils==0.2.0)

if [ "$do_build" = 1 ]; then
  if [ ! -f "$build_dir/build.ninja" ]; then
    cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DREWIND_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DREWIND_BUILD_TOOLS=ON
  fi
  grep -q '^REWIND_CUDA:STRING=ON' "$build_dir/CMakeCache.txt" || {
    echo "gpu_pack.sh: error: $build_dir is not configured with -DREWIND_CUDA=ON" >&2
    exit 1
  }
  # shellcheck disable=SC2086  # the test list is meant to split into targets
  ninja -C "$build_dir" -j "$jobs" $tests rewind-bench
fi

stage=$(mktemp -d /tmp/gpu_pack.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/libexec" "$stage/lib"

binaries=()
for t in $tests; do binaries+=("$build_dir/tests/$t"); done
binaries+=("$build_dir/tools/bench/rewind-bench")
for b in "${binaries[@]}"; do
  [ -x "$b" ] || { echo "gpu_pack.sh: error: $b is missing (build it, or drop it from --tests)" >&2; exit 1; }
  name=$(basename "$b")
  strip --strip-unneeded -o "$stage/libexec/$name" "$b"
  # The wrapper: the bundle's libraries first, then CUDA's (the image keeps them in
  # /usr/local/cuda), then RW_LIB_PATH (what gpu_session.sh's preflight found for libraries still
  # missing), only for this process (PyTorch must not see oneDNN's libgomp or this zlib).
  cat >"$stage/bin/$name" <<EOF
#!/bin/sh
here=\$(dirname "\$(readlink -f "\$0")")
LD_LIBRARY_PATH="\$here/../lib:/usr/local/cuda/lib64:/usr/local/cuda/lib\${RW_LIB_PATH:+:\$RW_LIB_PATH}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
  exec "\$here/../libexec/$name" "\$@"
EOF
  chmod +x "$stage/bin/$name"
done

# Shared libraries: what ldd resolves outside glibc, the GCC runtime and the CUDA toolkit (the GPU
# image has those, newer); everything else is copied (oneDNN, fmt, OpenCL loader, libgomp, zlib).
for b in "${binaries[@]}"; do ldd "$b"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  while read -r lib; do
    base=$(basename "$lib")
    case "$base" in
      libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libstdc++.so* | \
        libgcc_s.so* | libcuda.so* | libcudart.so* | libcublas*.so* | libnvidia*) continue ;;
    esac
    case "$lib" in /usr/local/cuda* | */nvidia/*) continue ;; esac
    cp -L "$lib" "$stage/lib/$base"
  done

# test_tools runs the tools by the absolute paths compiled into it: gpu_session.sh links them to
# the bundle's wrappers (only rewind-bench is packed, so only its GPU cases can run there).
printf 'REWIND_BENCH_EXE=%s\n' "$build_dir/tools/bench/rewind-bench" >"$stage/exe_paths.txt"

{
  echo "commit: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "build dir: $build_dir"
  grep -E '^(CMAKE_BUILD_TYPE|CMAKE_CUDA_ARCHITECTURES|REWIND_CUDA):' "$build_dir/CMakeCache.txt" 2>/dev/null || true
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo none)"
  (cd "$stage" && ls -l libexec lib)
} >"$stage/manifest.txt"

rm -f "$out"/bundle.tgz "$out"/bundle.tar.xz  # the earlier session's format too
echo "gpu_pack.sh: compressing (xz -9, one thread: a few minutes)" >&2
tar -C "$stage" -cf - bin libexec lib manifest.txt exe_paths.txt |
  xz -9 -T1 >"$out/bundle.tar.xz.tmp"
mv "$out/bundle.tar.xz.tmp" "$out/bundle.tar.xz"

if [ "$do_wheels" = 1 ]; then
  mkdir -p "$out/wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$out/wheels" "${wheels[@]}"
fi

size=$(du -sb "$out" | cut -f1)
echo "gpu_pack.sh: $out holds $((size / 1048576)) MiB:" >&2
ls -la "$out" "$out/wheels" >&2 2>/dev/null || true
if [ "$size" -gt $((56 * 1048576)) ]; then
  echo "gpu_pack.sh: warning: over 56 MiB; with the working tree it may pass the device tool's" \
    "64 MiB carry limit: pack fewer --tests" >&2
fi
