#!/usr/bin/env bash
# Build the x86-64 TensorRT image:  docker/x86-trt-25.01/build.sh [extra docker build options]
# image: ${IMAGE:-mambalitesr:x86-trt-25.01}
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${IMAGE:-mambalitesr:x86-trt-25.01}"
command -v docker >/dev/null || { echo "build.sh: docker not found" >&2; exit 2; }
# BuildKit reads docker/x86-trt-25.01/Dockerfile.dockerignore (the context is the whole repository).
DOCKER_BUILDKIT=1 docker build -f "$REPO/docker/x86-trt-25.01/Dockerfile" -t "$IMAGE" "$@" "$REPO"
