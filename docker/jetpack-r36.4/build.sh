#!/usr/bin/env bash
# Build the Jetson image (run on the Jetson; elsewhere an arm64 build needs QEMU/binfmt).
#   docker/jetpack-r36.4/build.sh [extra docker build options]    image: ${IMAGE:-mambalitesr:jetpack-r36.4}
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${IMAGE:-mambalitesr:jetpack-r36.4}"
if [[ "$(uname -m)" != "aarch64" ]]; then
  echo "build.sh: warning: this is $(uname -m); the image is arm64 (L4T) and needs QEMU/binfmt here" >&2
fi
command -v docker >/dev/null || { echo "build.sh: docker not found" >&2; exit 2; }
# BuildKit reads docker/jetpack-r36.4/Dockerfile.dockerignore (the context is the whole repository).
DOCKER_BUILDKIT=1 docker build -f "$REPO/docker/jetpack-r36.4/Dockerfile" -t "$IMAGE" "$@" "$REPO"
