"""tests/aarch64/run.sh: the C kernels cross-built for aarch64 and run under qemu-user match the native build.

The script installs gcc-aarch64-linux-gnu and qemu-user from Debian when they are missing (as root with
apt-get); the tests are skipped only where neither the tools nor apt-get are available. Mutated copies of the
kernels prove the comparison fails when an aarch64 result is wrong while the native build stays right.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "aarch64" / "run.sh"
HAVE_TOOLS = bool(shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64"))
CAN_INSTALL = bool(shutil.which("apt-get")) and os.geteuid() == 0

pytestmark = pytest.mark.skipif(
    not (HAVE_TOOLS or CAN_INSTALL),
    reason="no aarch64-linux-gnu-gcc/qemu-aarch64 and no apt-get as root to install gcc-aarch64-linux-gnu qemu-user")


def run(root: Path | None = None, only: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if root is not None:
        env["MAMBALITESR_CSRC_ROOT"] = str(root)
    if only:
        env["AARCH64_ONLY"] = only
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=1800)


def mutated_copy(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    root = tmp_path / "src"
    for sub in ("models/csrc", "runtime/csrc"):
        shutil.copytree(REPO / sub, root / sub)
    path = root / rel
    text = path.read_text()
    assert text.count(old) == 1, f"{rel}: the mutation target {old!r} is gone; update this test"
    path.write_text(text.replace(old, new))
    return root


def test_kernels_match_on_aarch64():
    proc = run()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"aarch64: framepath self-test: abi \d+, float16 rows in hardware: yes", out), out
    assert "aarch64: mixer: 5 records, 0 failure(s)" in out
    assert "aarch64 (qemu) matches" in out


def test_wrong_fp16_rows_on_aarch64_fail(tmp_path):
    """The __fp16 row store (compiled only for aarch64) scaled by 1.001: the native build is untouched."""
    root = mutated_copy(tmp_path, "runtime/csrc/framepath.c", "h[x] = (__fp16)src[x];",
                        "h[x] = (__fp16)(src[x] * 1.001f);")
    proc = run(root, "framepath")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "native: framepath: 14 records, 0 failure(s)" in out
    assert "hardware and portable float16 rows differ" in out and "MISMATCH" in out


def wrong_on_aarch64(tmp_path: Path, rel: str, function: str, params: str) -> Path:
    """A copy whose public ``function`` is wrapped so that, on aarch64 only, one output value is off by 1e-3
    (the native build stays right)."""
    signature = f"int {function}(const {params} *p)"
    root = mutated_copy(tmp_path, rel, signature, f"static int {function}_real(const {params} *p)")
    kernel = root / rel
    kernel.write_text(kernel.read_text() + f"""
{signature} {{
    int rc = {function}_real(p);
#if defined(__aarch64__)
    if (rc == 0 && p->batch * p->dim * p->length > 0) p->out[7] += 1e-3f;
#endif
    return rc;
}}
""")
    return root


@pytest.mark.parametrize("only, rel, function, params, records, first_record", [
    ("scan", "models/csrc/selective_scan_cpu.c", "selective_scan_fwd", "ScanParams", 20, "fwd K=1"),
    ("mixer", "models/csrc/mixer_cpu.c", "mixer_scan_forward", "ChannelScanParams", 5, "channel scan N=5"),
])
def test_a_kernel_wrong_only_on_aarch64_fails(tmp_path, only, rel, function, params, records, first_record):
    proc = run(wrong_on_aarch64(tmp_path, rel, function, params), only)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"native: {only}: {records} records, 0 failure(s)" in out
    assert f"MISMATCH {first_record}" in out
