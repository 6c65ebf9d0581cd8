#!/usr/bin/env bash
# GPU check of the CUDA selective scan (and of its TensorRT plugin where TensorRT is importable).
#
#   benchmarks/gpu_check.sh [--quick] [--no-trt] [--no-fast-exp]
#
# Needs: an NVIDIA GPU, python3 with torch built with CUDA (same CUDA major version as nvcc), nvcc.
# Also (unless --no-trt) TensorRT's Python bindings and headers, e.g. the container docker/x86-trt-25.01,
# and cmake: builds libmambalitesr_plugins.so and checks engines built from it; exits 2 naming what is missing. Set TENSORRT_INCLUDE_DIR when the headers are
# not in a standard place, GPU_CHECK_DIR to keep the build folder. Prints one "gpu_check:" summary line.
# --no-fast-exp skips the second kernel build with __expf decays (reported, never counted as a failure).
# Exit: 0 pass, 1 mismatch/failure, 2 missing environment, 124 over the time budget (GPU_CHECK_BUDGET_S, 420).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUDGET_S="${GPU_CHECK_BUDGET_S:-420}"
WITH_TRT=1
PY_ARGS=()
for arg in "$@"; do
  case "$arg" in
    --no-trt) WITH_TRT=0 ;;
    --quick) PY_ARGS+=(--quick) ;;
    --no-fast-exp) PY_ARGS+=(--no-fast-exp) ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $arg (use --quick, --no-trt, --no-fast-exp)" >&2; exit 2 ;;
  esac
done

die() { echo "gpu_check.sh: ENVIRONMENT: $*" >&2; echo "gpu_check: ENVIRONMENT, $*"; exit 2; }

command -v python3 >/dev/null || die "python3 not found"

# TensorRT first (before any GPU probing): its headers build the plugin, its Python bindings build and run
# the engines. Missing either is a missing environment (exit 2), never a silent skip; --no-trt opts out.
find_trt_headers() {
  local dir
  for dir in "${TENSORRT_INCLUDE_DIR:-}" "${TENSORRT_ROOT:+$TENSORRT_ROOT/include}" /usr/include/aarch64-linux-gnu \
             /usr/include/x86_64-linux-gnu /usr/local/tensorrt/include /usr/include; do
    [[ -n "$dir" && -f "$dir/NvInferRuntime.h" ]] && { echo "$dir"; return 0; }
  done
  return 1
}
if [[ "$WITH_TRT" == 1 ]]; then
  TENSORRT_INCLUDE_DIR="$(find_trt_headers)" || die "TensorRT headers (NvInferRuntime.h) not found in \
\$TENSORRT_INCLUDE_DIR, \$TENSORRT_ROOT/include or the standard folders: install libnvinfer-dev (JetPack) or use \
docker/x86-trt-25.01, or set TENSORRT_INCLUDE_DIR; --no-trt checks the CUDA kernel alone"
  python3 -c "import tensorrt" 2>/dev/null || die "TensorRT Python bindings not importable (import tensorrt): \
install python3-libnvinfer (JetPack) or use docker/x86-trt-25.01; --no-trt checks the CUDA kernel alone"
  export TENSORRT_INCLUDE_DIR
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || die "python3 has no torch with a usable CUDA GPU (pip install a CUDA build of torch==2.13.0)"
CUDA_HOME="${CUDA_HOME:-$(python3 -c 'from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or "")')}"
[[ -n "$CUDA_HOME" && -x "$CUDA_HOME/bin/nvcc" ]] || die "nvcc not found (set CUDA_HOME to the CUDA toolkit)"
export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

WORK="${GPU_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mambalitesr_gpu_check.XXXXXX")}"
mkdir -p "$WORK"
echo "gpu_check.sh: building in $WORK"

if [[ "$WITH_TRT" == 1 ]]; then
  command -v cmake >/dev/null || die "cmake not found (needed to build the plugin; or pass --no-trt)"
  ARCH="$(python3 -c 'import torch; print("".join(map(str, torch.cuda.get_device_capability())))')"
  echo "gpu_check.sh: TensorRT $(python3 -c 'import tensorrt; print(tensorrt.__version__)'); building the plugin for sm_$ARCH"
  CMAKE_ARGS=(-S "$REPO/export/plugins/selective_scan" -B "$WORK/plugin-build" -DCMAKE_BUILD_TYPE=Release
              "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" "-DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc")
  CMAKE_ARGS+=("-DTENSORRT_INCLUDE_DIR=$TENSORRT_INCLUDE_DIR")
  if ! cmake "${CMAKE_ARGS[@]}" >"$WORK/cmake-configure.log" 2>&1; then
    cat "$WORK/cmake-configure.log" >&2
    echo "gpu_check: FAIL, could not configure the plugin build (TensorRT headers? see above; --no-trt skips it)"
    exit 1
  fi
  if ! cmake --build "$WORK/plugin-build" -j "$(nproc)" >"$WORK/cmake-build.log" 2>&1; then
    tail -n 40 "$WORK/cmake-build.log" >&2
    echo "gpu_check: FAIL, the plugin did not build"
    exit 1
  fi
  PY_ARGS+=(--plugin-lib "$WORK/plugin-build/libmambalitesr_plugins.so")
fi

LEFT=$(( BUDGET_S - SECONDS ))
(( LEFT > 30 )) || { echo "gpu_check: FAIL, time budget spent before the checks started"; exit 124; }
set +e
timeout "$LEFT" python3 "$REPO/benchmarks/gpu_check.py" --build-dir "$WORK" ${PY_ARGS[@]+"${PY_ARGS[@]}"}
STATUS=$?
set -e
if [[ "$STATUS" == 124 ]]; then
  echo "gpu_check: FAIL, over the ${BUDGET_S} s budget (GPU_CHECK_BUDGET_S)"
fi
exit "$STATUS"
