#!/usr/bin/env bash
# Run the camera demo on the Jetson: docker/jetpack-r36.4/run.sh [mambalitesr camera options]
# Passes the cameras (/dev/video*), the Argus socket (CSI cameras), tegrastats and the jtop socket (power),
# the X display when there is one, every MAMBALITESR_* variable, and keeps the plugin, ONNX model and engines
# in ${MAMBALITESR_DATA_DIR:-~/.cache/mambalitesr} (mounted at /data) across runs.
# Another command instead of the demo: run.sh bash
set -euo pipefail
IMAGE="${IMAGE:-mambalitesr:jetpack-r36.4}"
DATA_DIR="${MAMBALITESR_DATA_DIR:-$HOME/.cache/mambalitesr}"
command -v docker >/dev/null || { echo "run.sh: docker not found" >&2; exit 2; }
mkdir -p "$DATA_DIR"

ARGS=(--rm --runtime nvidia --network host --ipc host -v "$DATA_DIR:/data")
[[ -t 0 && -t 1 ]] && ARGS+=(-it)
found_camera=0
for dev in /dev/video*; do
  [[ -e "$dev" ]] || continue
  ARGS+=(--device "$dev")
  found_camera=1
done
[[ "$found_camera" == 1 ]] || echo "run.sh: no /dev/video* camera found (use --source synthetic or file:PATH)" >&2
[[ -S /tmp/argus_socket ]] && ARGS+=(-v /tmp/argus_socket:/tmp/argus_socket)
[[ -x /usr/bin/tegrastats ]] && ARGS+=(-v /usr/bin/tegrastats:/usr/bin/tegrastats:ro)
[[ -S /run/jtop.sock ]] && ARGS+=(-v /run/jtop.sock:/run/jtop.sock)
if [[ -n "${DISPLAY:-}" && -d /tmp/.X11-unix ]]; then
  ARGS+=(-e DISPLAY -v /tmp/.X11-unix:/tmp/.X11-unix)
fi
while IFS= read -r name; do
  ARGS+=(-e "$name")
done < <(compgen -e | grep '^MAMBALITESR_' || true)

exec docker run "${ARGS[@]}" "$IMAGE" "$@"
