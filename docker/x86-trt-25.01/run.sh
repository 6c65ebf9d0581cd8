#!/usr/bin/env bash
# Run the GPU check (default) or another command in the x86-64 TensorRT image:
#   docker/x86-trt-25.01/run.sh                         -> benchmarks/gpu_check.sh
#   docker/x86-trt-25.01/run.sh benchmarks/gpu_check.sh --quick
#   docker/x86-trt-25.01/run.sh mambalitesr export engine /work/model.onnx -o /work/model.engine --plugin ...
# The current folder is mounted at /work.
set -euo pipefail
IMAGE="${IMAGE:-mambalitesr:x86-trt-25.01}"
command -v docker >/dev/null || { echo "run.sh: docker not found" >&2; exit 2; }
ARGS=(--rm --gpus all --ipc host -v "$PWD:/work")
[[ -t 0 && -t 1 ]] && ARGS+=(-it)
exec docker run "${ARGS[@]}" "$IMAGE" "$@"
