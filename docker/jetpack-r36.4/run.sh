#!/usr/bin/env bash
# Run the camera demo on the Jetson: docker/jetpack-r36.4/run.sh [mambalitesr camera options]
# Passes the cameras (/dev/video*), the Argus socket (CSI cameras), tegrastats and the jtop socket (power),
# the X display when there is one, every MAMBALITESR_* variable, the board's device-tree model and nvpmodel
# power mode (copied into the data folder: the container sees neither), and keeps the engines in
# ${MAMBALITESR_DATA_DIR:-~/.cache/mambalitesr} (mounted at /data) across runs.
# Another command instead of the demo: run.sh bash     (a shell where `mambalitesr` works)
set -euo pipefail
IMAGE="${IMAGE:-mambalitesr:jetpack-r36.4}"
DATA_DIR="${MAMBALITESR_DATA_DIR:-$HOME/.cache/mambalitesr}"
command -v docker >/dev/null || { echo "run.sh: docker not found" >&2; exit 2; }
mkdir -p "$DATA_DIR/host"

# The engine cache key and the sidecar check need the board model and power mode, which a container cannot
# read (/proc/device-tree is masked, nvpmodel is a host tool).
if [[ -r /proc/device-tree/model ]]; then
  cp /proc/device-tree/model "$DATA_DIR/host/device-tree-model"
else
  echo "run.sh: warning: no /proc/device-tree/model: is this a Jetson?" >&2
fi
if command -v nvpmodel >/dev/null; then
  nvpmodel -q >"$DATA_DIR/host/nvpmodel-q.txt" 2>&1 || echo "run.sh: warning: nvpmodel -q failed" >&2
fi

ARGS=(--rm --runtime nvidia --network host --ipc host -v "$DATA_DIR:/data"
      -e MAMBALITESR_DEVICE_TREE_MODEL=/data/host/device-tree-model -e MAMBALITESR_NVPMODEL_QUERY=/data/host/nvpmodel-q.txt)
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
  # The container's user is root: the X server must let local clients in (README: xhost +local:).
  if command -v xhost >/dev/null && ! xhost 2>/dev/null | grep -q "LOCAL:"; then
    echo "run.sh: warning: X refuses local clients; run 'xhost +local:' once per login for the window" >&2
  fi
fi
while IFS= read -r name; do
  ARGS+=(-e "$name")
done < <(compgen -e | grep '^MAMBALITESR_' || true)

exec docker run "${ARGS[@]}" "$IMAGE" "$@"
