#!/usr/bin/env bash
# Container start on the Jetson: install the package, build the SelectiveScan plugin, export the ONNX model
# and build the TensorRT engines on this device (each step once; results kept in $MAMBALITESR_DATA), then run
# the camera demo with the TensorRT backend. Arguments are passed to `mambalitesr camera`; a first argument
# that is not an option (e.g. `bash`) is run instead.
#
# Settings (environment):
#   MAMBALITESR_DATA          /data            where the plugin build, model.onnx and engines are kept
#   MAMBALITESR_EXPORT_ARGS   ""               extra `mambalitesr export onnx` options (e.g. --model NAME)
#   MAMBALITESR_PRECISIONS    "fp16"           engines to build: any of fp16 fp32; the first one runs
#   MAMBALITESR_MIN_SHAPE / _OPT_SHAPE / _MAX_SHAPE   engine profile, default 1x3x64x64 / 1x3x240x320 / 1x3x480x640
#   MAMBALITESR_SOURCE        csi:0            camera source (v4l2:/dev/video0, file:PATH, synthetic)
#   MAMBALITESR_SINK          window           window | file:PATH | null
#   MAMBALITESR_REBUILD       0                1: rebuild plugin, ONNX and engines
set -euo pipefail

SRC=/opt/mambalitesr
DATA="${MAMBALITESR_DATA:-/data}"
PLUGIN_BUILD="$DATA/plugin-build"
PLUGIN="$PLUGIN_BUILD/libmambalitesr_plugins.so"
ONNX="$DATA/model.onnx"
PRECISIONS="${MAMBALITESR_PRECISIONS:-fp16}"
MIN_SHAPE="${MAMBALITESR_MIN_SHAPE:-1x3x64x64}"
OPT_SHAPE="${MAMBALITESR_OPT_SHAPE:-1x3x240x320}"
MAX_SHAPE="${MAMBALITESR_MAX_SHAPE:-1x3x480x640}"
REBUILD="${MAMBALITESR_REBUILD:-0}"

step() { echo "[entrypoint] $*"; }
fail() { echo "[entrypoint] error: $*" >&2; exit 1; }

if [[ $# -gt 0 && "$1" != -* ]]; then
  exec "$@"
fi
mkdir -p "$DATA" || fail "cannot create $DATA (mount a writable volume there)"

# 1. The package (dependencies are in the image; this builds its C kernels for this Python).
if ! python3 -c "import mambalitesr.models" 2>/dev/null || [[ "$REBUILD" == 1 ]]; then
  step "installing mambalitesr from $SRC"
  python3 -m pip install --quiet --no-deps --no-build-isolation -e "$SRC" || fail "pip install of $SRC failed"
fi

# 2. The plugin, compiled here for Orin (sm_87) with JetPack's CUDA 12.6 and TensorRT 10.3 headers.
if [[ ! -f "$PLUGIN" || "$REBUILD" == 1 ]]; then
  step "building the SelectiveScan plugin"
  cmake -S "$SRC/export/plugins/selective_scan" -B "$PLUGIN_BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=87 -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc || fail "cmake configure failed"
  cmake --build "$PLUGIN_BUILD" -j "$(nproc)" || fail "plugin build failed"
fi

# 3. The ONNX model with one mambalitesr::SelectiveScan node per mixer.
if [[ ! -f "$ONNX" || "$REBUILD" == 1 ]]; then
  step "exporting $ONNX"
  # shellcheck disable=SC2086  # MAMBALITESR_EXPORT_ARGS is a list of options
  mambalitesr export onnx --scan plugin -o "$ONNX" ${MAMBALITESR_EXPORT_ARGS:-} || fail "ONNX export failed"
fi

# 4. Engines for this GPU; an engine whose sidecar no longer matches (TensorRT, GPU, plugin) is rebuilt.
engine_usable() {
  python3 - "$1" "$PLUGIN" <<'PY' 2>/dev/null
import sys
from mambalitesr.runtime.backends.engine_files import load_engine
load_engine(sys.argv[1], sys.argv[2])
PY
}
ENGINE=""
for precision in $PRECISIONS; do
  engine="$DATA/model_${precision}.engine"
  [[ -n "$ENGINE" ]] || ENGINE="$engine"
  if [[ "$REBUILD" != 1 && -f "$engine" ]] && engine_usable "$engine"; then
    continue
  fi
  case "$precision" in
    fp16) flags=(--fp16) ;;
    fp32) flags=() ;;
    *) fail "MAMBALITESR_PRECISIONS: unknown precision $precision (fp16, fp32)" ;;
  esac
  step "building $engine"
  mambalitesr export engine "$ONNX" -o "$engine" --plugin "$PLUGIN" ${flags[@]+"${flags[@]}"} \
    --min-shape "$MIN_SHAPE" --opt-shape "$OPT_SHAPE" --max-shape "$MAX_SHAPE" \
    --timing-cache "$DATA/timing.cache" || fail "engine build failed"
done
[[ -n "$ENGINE" ]] || fail "MAMBALITESR_PRECISIONS is empty"

# 5. The demo.
step "camera demo with $ENGINE"
exec mambalitesr camera --backend tensorrt --engine "$ENGINE" --plugin "$PLUGIN" \
  --source "${MAMBALITESR_SOURCE:-csi:0}" --sink "${MAMBALITESR_SINK:-window}" "$@"
