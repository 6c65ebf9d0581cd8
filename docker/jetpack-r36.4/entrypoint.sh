#!/usr/bin/env bash
# Container start on the Jetson: build the fp16 and fp32 TensorRT engines from the shipped ONNX model on this
# device (once per TensorRT version, board, power mode and plugin; kept in $MAMBALITESR_DATA/engines), then run
# the camera demo with the TensorRT backend and jtop power. The package and the SelectiveScan plugin were
# built into the image (Dockerfile); the model is shipped, so nothing is exported here and no torch is needed.
# Arguments are passed to `mambalitesr camera`; a first argument that is not an option (e.g. `bash`) is run
# instead (`mambalitesr` works there too).
#
# Settings (environment):
#   MAMBALITESR_DATA          /data             engine cache and timing cache (a mounted volume)
#   MAMBALITESR_PRECISIONS    "fp16 fp32"       engines to build; the first one runs the demo
#   MAMBALITESR_MIN_SHAPE / _OPT_SHAPE / _MAX_SHAPE   engine profile (B x 3 x H x W), default
#                             1x3x64x64 / 1x3x180x320 / 1x3x270x480: LR frames up to 480x270 (1080p out)
#   MAMBALITESR_INPUT_SIZE    320x180           camera frames (1280x720 from a CSI camera) are scaled to this
#                             LR size (W x H), inside the profile, so each is served whole: 1280x720 out
#   MAMBALITESR_SOURCE        csi:0             camera source (v4l2:/dev/video0, file:PATH, synthetic)
#   MAMBALITESR_SINK          window if $DISPLAY is set, else the web viewer http://0.0.0.0:8080
#   MAMBALITESR_POWER         jtop              power telemetry (jtop, tegrastats, auto, none)
#   MAMBALITESR_REBUILD       0                 1: rebuild the engines
#   MAMBALITESR_DRY_RUN       0                 1: run every step that needs no GPU, print the others (check.sh)
#   MAMBALITESR_ONNX          the shipped model, $MAMBALITESR_SRC/models/weights/mambalitesr_x4.onnx (plugin
#                             form, dynamic H and W); another ONNX file of the same form may be named here
#   MAMBALITESR_SRC           /opt/mambalitesr  the repository copy (the ONNX model and plan.py are read there)
#   MAMBALITESR_PLUGIN        /opt/mambalitesr-plugin/libmambalitesr_plugins.so   built into the image
set -euo pipefail

SRC="${MAMBALITESR_SRC:-/opt/mambalitesr}"
DATA="${MAMBALITESR_DATA:-/data}"
PLUGIN="${MAMBALITESR_PLUGIN:-/opt/mambalitesr-plugin/libmambalitesr_plugins.so}"
ONNX="${MAMBALITESR_ONNX:-$SRC/models/weights/mambalitesr_x4.onnx}"
PLAN="$SRC/docker/jetpack-r36.4/plan.py"
PRECISIONS="${MAMBALITESR_PRECISIONS:-fp16 fp32}"
MIN_SHAPE="${MAMBALITESR_MIN_SHAPE:-1x3x64x64}"
OPT_SHAPE="${MAMBALITESR_OPT_SHAPE:-1x3x180x320}"
MAX_SHAPE="${MAMBALITESR_MAX_SHAPE:-1x3x270x480}"
INPUT_SIZE="${MAMBALITESR_INPUT_SIZE:-320x180}"
REBUILD="${MAMBALITESR_REBUILD:-0}"
DRY_RUN="${MAMBALITESR_DRY_RUN:-0}"

step() { echo "[entrypoint] $*"; }
fail() { echo "[entrypoint] error: $*" >&2; exit 1; }
# A step that needs the GPU (or the device): run it, or print it in a dry run.
# A dry run still parses a `mambalitesr ...` command with the CLI's own parser (the options must exist).
STAND_INS=""
gpu_step() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '[entrypoint] dry-run, would run:'
    printf ' %q' "$@"
    printf '\n'
    if [[ "$1" == mambalitesr ]]; then
      # The CLI checks at parse time that --engine and --plugin files exist; a dry run has built neither, so
      # empty stand-ins (in a temporary folder, never in the engine cache) take their place for the parse.
      local args=() prev="" arg
      for arg in "${@:2}"; do
        if [[ ( "$prev" == --engine || "$prev" == --plugin ) && ! -e "$arg" ]]; then
          [[ -n "$STAND_INS" ]] || STAND_INS="$(mktemp -d "${TMPDIR:-/tmp}/mambalitesr-dry-run.XXXXXX")"
          arg="$STAND_INS/$(basename "$arg")"
          : >"$arg"
        fi
        args+=("$arg")
        prev="$arg"
      done
      python3 -c 'import sys; from mambalitesr.cli import build_parser; build_parser().parse_args(sys.argv[1:])' \
        "${args[@]}" || fail "mambalitesr does not accept: $*"
    fi
    return 0
  fi
  "$@"
}

if [[ $# -gt 0 && "$1" != -* ]]; then
  exec "$@"
fi

# 1. Settings and the plan: the profile must fit the shipped model's input dims, the camera frames the profile.
for precision in $PRECISIONS; do
  case "$precision" in
    fp16|fp32) ;;
    *) fail "MAMBALITESR_PRECISIONS: unknown precision $precision (fp16, fp32)" ;;
  esac
done
[[ -n "${PRECISIONS// /}" ]] || fail "MAMBALITESR_PRECISIONS is empty"
[[ -f "$ONNX" ]] || fail "$ONNX: the shipped ONNX model is missing from the image"
python3 "$PLAN" profile "$ONNX" "$MIN_SHAPE" "$OPT_SHAPE" "$MAX_SHAPE" "$INPUT_SIZE" \
  || fail "the engine profile does not fit $ONNX or the camera input size (see above)"

if [[ -n "${MAMBALITESR_SINK:-}" ]]; then
  SINK="$MAMBALITESR_SINK"
elif [[ -n "${DISPLAY:-}" ]]; then
  SINK=window
else
  SINK="http://0.0.0.0:8080"
  step "no DISPLAY: the demo is served by the web viewer at http://<this Jetson>:8080"
fi
POWER="${MAMBALITESR_POWER:-jtop}"
if [[ "$POWER" == jtop && ! -S /run/jtop.sock ]]; then
  step "warning: no jtop socket /run/jtop.sock (install jetson-stats on the host: sudo pip3 install -U" \
       "jetson-stats, then reboot); power from tegrastats instead"
  POWER=tegrastats
fi

# 2. Where this device's engines live: keyed by TensorRT version, board, power mode and plugin sha256.
[[ -f "$PLUGIN" || "$DRY_RUN" == 1 ]] || fail "$PLUGIN: the plugin library is missing from the image"
dry_flag=()
[[ "$DRY_RUN" == 1 ]] && dry_flag=(--dry-run)
KEY="$(python3 "$PLAN" cache-key "$PLUGIN" ${dry_flag[@]+"${dry_flag[@]}"})" || fail "could not identify this device"
ENGINES="$DATA/engines/$KEY"
step "engine cache $ENGINES"
if [[ "$DRY_RUN" != 1 ]]; then
  mkdir -p "$ENGINES" || fail "cannot create $ENGINES (mount a writable volume at $DATA)"
fi

# 3. Engines for this GPU, built at the first start (minutes); a sidecar that no longer matches means a rebuild.
engine_usable() {
  python3 - "$1" "$PLUGIN" <<'PY' 2>/dev/null
import sys
from mambalitesr.runtime.backends.engine_files import load_engine
load_engine(sys.argv[1], sys.argv[2])
PY
}
ENGINE=""
for precision in $PRECISIONS; do
  engine="$ENGINES/mambalitesr_x4_${precision}.engine"
  [[ -n "$ENGINE" ]] || ENGINE="$engine"
  if [[ "$DRY_RUN" != 1 && "$REBUILD" != 1 && -f "$engine" ]] && engine_usable "$engine"; then
    continue
  fi
  flags=()
  [[ "$precision" == fp16 ]] && flags=(--fp16)
  step "building $engine (first start: a few minutes)"
  gpu_step mambalitesr export engine "$ONNX" -o "$engine" --plugin "$PLUGIN" ${flags[@]+"${flags[@]}"} \
    --min-shape "$MIN_SHAPE" --opt-shape "$OPT_SHAPE" --max-shape "$MAX_SHAPE" \
    --timing-cache "$ENGINES/timing.cache" || fail "engine build failed"
done

# 4. The demo, in the foreground (exec: Ctrl-C and `docker stop` reach it).
step "camera demo with $ENGINE"
CAMERA=(mambalitesr camera --backend tensorrt --engine "$ENGINE" --plugin "$PLUGIN"
        --source "${MAMBALITESR_SOURCE:-csi:0}" --input-size "$INPUT_SIZE" --sink "$SINK" --power "$POWER" "$@")
if [[ "$DRY_RUN" == 1 ]]; then
  gpu_step "${CAMERA[@]}"
  [[ -z "$STAND_INS" ]] || rm -rf "$STAND_INS"
  step "dry run done"
  exit 0
fi
exec "${CAMERA[@]}"
