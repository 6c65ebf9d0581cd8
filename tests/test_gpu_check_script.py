"""benchmarks/gpu_check.sh says what is missing and exits 2 (missing environment), here without a GPU."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STANDARD = ("/usr/include/aarch64-linux-gnu", "/usr/include/x86_64-linux-gnu", "/usr/local/tensorrt/include",
            "/usr/include")


def run(env_over: dict, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("TENSORRT_INCLUDE_DIR", "TENSORRT_ROOT")}
    env.update(env_over)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(any(os.path.isfile(f"{d}/NvInferRuntime.h") for d in STANDARD),
                    reason="TensorRT headers are installed in a standard folder here")
def test_missing_tensorrt_headers_exit_2_naming_them(tmp_path):
    proc = run({"TENSORRT_INCLUDE_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "TensorRT headers (NvInferRuntime.h) not found" in proc.stdout
    assert "libnvinfer-dev" in proc.stdout and "--no-trt" in proc.stdout


def test_missing_tensorrt_bindings_exit_2_naming_them(tmp_path):
    (tmp_path / "NvInferRuntime.h").write_text("/* stand-in */\n")
    shim = tmp_path / "bin"
    shim.mkdir()
    # A python3 whose `import tensorrt` fails whatever is installed here.
    (shim / "python3").write_text('#!/bin/sh\ncase "$*" in *"import tensorrt"*) exit 1;; esac\nexit 0\n')
    (shim / "python3").chmod(0o755)
    proc = run({"TENSORRT_INCLUDE_DIR": str(tmp_path), "PATH": f"{shim}:{os.environ['PATH']}"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "TensorRT Python bindings not importable" in proc.stdout


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA toolkit) is not on PATH")
def test_cpu_emulation_dry_run_judges_by_the_one_table(tmp_path):
    """The check's own logic on the CPU emulation of the kernel bodies: every case passes the per-dtype table."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--cpu-emulation", "--quick",
                           "--build-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "gpu_check: PASS kernel 48 cases" in proc.stdout
    assert "(float32 rtol 1e-05)" in proc.stdout and "(float16 rtol 1e-02)" in proc.stdout
