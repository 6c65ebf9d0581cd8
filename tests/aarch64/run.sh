#!/usr/bin/env bash
# aarch64 truth without a Jetson: cross-compile the C kernels (the CPU selective scan, the fused mixer and the
# frame path, with
# the frame path's __fp16 rows that only an aarch64 build compiles) with Debian's gcc-aarch64-linux-gnu, run
# their self-test drivers under qemu-user, and compare every result with the same drivers built natively.
#
#   tests/aarch64/run.sh          exit 0 all match, 1 a self-check or a comparison failed, 2 tools missing
#
# Each driver (tests/aarch64/*_selftest.c) checks itself (the scan against a double-precision loop, the frame
# path's hardware float16 rows against the portable ones, bit for bit) and writes its results; the aarch64
# build then reruns and compares record by record within the tolerances the driver names (dump.h).
# Compiler flags are setup.py's C_FLAGS (read from it), so the kernels build as the package builds them.
#
# Environment: MAMBALITESR_CSRC_ROOT  folder holding models/csrc and runtime/csrc (default: this repository;
#              the tests point it at mutated copies), AARCH64_WORK (default: a temporary folder, removed),
#              AARCH64_ONLY=scan|mixer|framepath (default all).
# Needs gcc, aarch64-linux-gnu-gcc and qemu-aarch64; installs gcc-aarch64-linux-gnu and qemu-user with apt-get
# when they are missing and apt-get is usable (root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROOT="$(cd "${MAMBALITESR_CSRC_ROOT:-$REPO}" && pwd)"
SYSROOT=/usr/aarch64-linux-gnu

need_tools() {
  command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null && [[ -d "$SYSROOT/lib" ]]
}
if ! need_tools; then
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    echo "run.sh: installing gcc-aarch64-linux-gnu qemu-user (Debian packages)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user; } \
      >/dev/null || { echo "run.sh: apt-get install gcc-aarch64-linux-gnu qemu-user failed" >&2; exit 2; }
  fi
  need_tools || { echo "run.sh: missing aarch64-linux-gnu-gcc or qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu qemu-user)" >&2; exit 2; }
fi
command -v gcc >/dev/null || { echo "run.sh: gcc not found" >&2; exit 2; }

# setup.py's flags; -march=x86-64-v2 only for the native x86 build, as setup.py does.
read -r -a FLAGS <<<"$(python3 - "$REPO/setup.py" <<'PY'
import ast, re, sys
text = open(sys.argv[1]).read()
m = re.search(r"^C_FLAGS\s*=\s*(\[.*?\])", text, re.M | re.S)
print(" ".join(f for f in ast.literal_eval(m.group(1)) if not f.startswith("-march")))
PY
)"
(( ${#FLAGS[@]} > 0 )) || { echo "run.sh: could not read C_FLAGS = [...] from $REPO/setup.py" >&2; exit 2; }
NATIVE_FLAGS=("${FLAGS[@]}")
[[ "$(uname -m)" == x86_64 ]] && NATIVE_FLAGS+=(-march=x86-64-v2)
WARN=(-Wall -Wextra -Wno-psabi)

WORK="${AARCH64_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mambalitesr-aarch64.XXXXXX")}"
[[ -n "${AARCH64_WORK:-}" ]] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

STATUS=0
run_driver() {  # name, kernel source, include dir
  local name="$1" src="$2" inc="$3"
  echo "== $name: $(aarch64-linux-gnu-gcc -dumpfullversion) (aarch64) vs $(gcc -dumpfullversion) ($(uname -m)); flags ${FLAGS[*]}"
  gcc "${NATIVE_FLAGS[@]}" "${WARN[@]}" -I"$inc" -I"$HERE" "$HERE/${name}_selftest.c" "$src" -o "$WORK/$name.native" -lm
  aarch64-linux-gnu-gcc "${FLAGS[@]}" "${WARN[@]}" -I"$inc" -I"$HERE" "$HERE/${name}_selftest.c" "$src" \
    -o "$WORK/$name.aarch64" -lm
  file_arch="$(od -An -tx1 -j18 -N2 "$WORK/$name.aarch64" | tr -d ' ')"
  [[ "$file_arch" == "b700" ]] || { echo "run.sh: $WORK/$name.aarch64 is not an aarch64 ELF (e_machine $file_arch)"; exit 1; }
  if ! "$WORK/$name.native" --write "$WORK/$name.native.bin" >"$WORK/$name.native.log"; then
    cat "$WORK/$name.native.log"
    echo "run.sh: FAIL: $name's native ($(uname -m)) self-test"
    STATUS=1
    return
  fi
  tail -n 1 "$WORK/$name.native.log" | sed "s/^/native: /"
  if ! QEMU_LD_PREFIX="$SYSROOT" qemu-aarch64 "$WORK/$name.aarch64" --compare "$WORK/$name.native.bin" \
      >"$WORK/$name.aarch64.log" 2>&1; then
    cat "$WORK/$name.aarch64.log"
    echo "run.sh: FAIL: $name under qemu-aarch64 differs from $(uname -m) or failed its self-checks"
    STATUS=1
    return
  fi
  grep -E "float16 rows in hardware|worst relative error" "$WORK/$name.aarch64.log" | sed "s/^/aarch64: /" || true
  tail -n 1 "$WORK/$name.aarch64.log" | sed "s/^/aarch64: /"
}

# The frame path's __fp16 rows must be compiled in: check the aarch64 object uses half-precision conversions.
if [[ "${AARCH64_ONLY:-framepath}" == framepath ]]; then
  aarch64-linux-gnu-gcc "${FLAGS[@]}" -c "$ROOT/runtime/csrc/framepath.c" -o "$WORK/framepath.aarch64.o"
  aarch64-linux-gnu-objdump -d "$WORK/framepath.aarch64.o" >"$WORK/framepath.aarch64.dis"  # a file: grep -q + pipefail
  if ! grep -qE "fcvt[[:space:]]+(h[0-9]+|s[0-9]+, h[0-9]+)|fcvt[ln]2?[[:space:]]+v[0-9]+\.[48][hs]" "$WORK/framepath.aarch64.dis"; then
    echo "run.sh: FAIL: the aarch64 framepath object has no float16 conversion instructions (__fp16 path missing)"
    STATUS=1
  fi
fi

ONLY="${AARCH64_ONLY:-}"
[[ -z "$ONLY" || "$ONLY" == scan ]] && run_driver scan "$ROOT/models/csrc/selective_scan_cpu.c" "$ROOT/models/csrc"
[[ -z "$ONLY" || "$ONLY" == mixer ]] && run_driver mixer "$ROOT/models/csrc/mixer_cpu.c" "$ROOT/models/csrc"
[[ -z "$ONLY" || "$ONLY" == framepath ]] && run_driver framepath "$ROOT/runtime/csrc/framepath.c" "$ROOT/runtime/csrc"

if [[ "$STATUS" == 0 ]]; then
  echo "run.sh: aarch64 (qemu) matches $(uname -m) for the scan, the fused mixer and the frame path"
fi
exit "$STATUS"
