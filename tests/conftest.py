"""Shared test fixtures: where ../shared lives, and markers for what cannot run here."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MAMBALITESR_SHARED", REPO.parent / "shared"))
TEACHER_WEIGHTS = SHARED / "weights" / "dvmsr_x4.pth"
SET5 = SHARED / "data" / "benchmark" / "Set5"
SET14 = SHARED / "data" / "benchmark" / "Set14"
TRAIN_DIR = SHARED / "data" / "train"

needs_shared = pytest.mark.skipif(not SET5.is_dir(), reason=f"shared data not found at {SHARED} (set MAMBALITESR_SHARED)")
needs_teacher = pytest.mark.skipif(not TEACHER_WEIGHTS.is_file(), reason=f"teacher weights not found at {TEACHER_WEIGHTS}")
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) not installed")


def _native_ort_kernels_built() -> bool:
    from mambalitesr.runtime.backends import ort_ops  # torch-free, cheap: it only looks for the library file

    return ort_ops.native_library_path() is not None


needs_native_ort = pytest.mark.skipif(not _native_ort_kernels_built(),
                                      reason="the native ONNX Runtime kernels were not built (no ONNX Runtime C "
                                             "header at install: install libonnxruntime-dev or set ORT_INCLUDE_DIR)")


def native_scan_available() -> bool:
    try:
        from mambalitesr.models import scan_native

        scan_native.load_library()
        return True
    except Exception:
        return False
