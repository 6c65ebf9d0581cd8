"""ONNX Runtime kernels for the ``mambalitesr`` custom domain: SelectiveScan and MambaMixer on the native C code.

Glossary (code name -> paper symbol; shape letters):
    B batch, D scan channels, K directions, N d_state, H x W token grid, L = H * W
    u -> x_t, delta -> Delta_t (raw), A -> A, Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate
    kernel        the code ONNX Runtime calls for a ``mambalitesr::SelectiveScan`` node
    session_options   ORT SessionOptions with the kernels registered; what every session that runs a
                  plugin-form graph needs (the onnxruntime backend, and export's verification, which
                  finds this function through the ``mambalitesr.onnxruntime_kernels`` entry point
                  instead of importing the runtime)

The node contracts (inputs, attributes) are the ones export writes:
    SelectiveScan (export/onnx_plugin_scan.py, the plugin form): u (B, D, H, W), delta (B, K*D, H, W),
        A (K*D, N), Bm / Cm (B, K, N, H, W), Dskip (K*D,), z (B, D, H, W), delta_bias (K*D,);
        attributes directions, d_state, delta_softplus -> y (B, D, H, W)
    MambaMixer (export/onnx_mixer_node.py, the fused form): the whole one-direction mixer core,
        a (B, Ci, H, W) and the mixer's weights -> y (B, Co, H, W); native kernel only

Two kernels, chosen by ``session_options(kernels=...)``:
    native  ``mambalitesr.runtime._ort_scan``: a C custom-op library on ONNX Runtime's C API
            (runtime/csrc/ort_register.c and the op files beside it, built at install when ONNX Runtime's
            header can be had); ONNX Runtime calls the C code directly, no Python in the loop. The default
            when built; it has both ops.
    python  onnxruntime-extensions (a Python custom op, ``@onnx_op``) computing with
            :func:`mambalitesr.models.scan_lib.selective_scan_numpy` (numpy plus the C scan through ctypes).
            SelectiveScan only. Used when the native library was not built, and said so in ``provider()``;
            a graph with MambaMixer nodes is then refused by ``check_ops``, naming the fix.
Nothing here imports torch. A kernel that cannot be registered raises MissingDependency naming the fix,
never a failure deep inside ONNX Runtime later.
"""
from __future__ import annotations

import os

import numpy as np

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.models import native_library
from mambalitesr.optional import require

DOMAIN = "mambalitesr"
OP_TYPE = f"{DOMAIN}::SelectiveScan"  # onnxruntime-extensions reads the domain from the op type
MIXER_OP_TYPE = f"{DOMAIN}::MambaMixer"
OPS = {"native": (OP_TYPE, MIXER_OP_TYPE), "python": (OP_TYPE,)}  # what each kernel library runs
KERNELS = ("auto", "native", "python")
THREADS_KEY = "mambalitesr.scan_threads"  # session config entry read by the native kernel (RegisterCustomOps)
_NATIVE_STEM, _NATIVE_ABI = "_ort_scan", 2  # MLSR_ORT_ABI_VERSION in ort_register.c
NATIVE_PROVIDER = "the native C kernel (ONNX Runtime C API)"
# why the native library can be missing, and the fix (every message about a missing native kernel ends with it)
NOT_BUILT_FIX = "no ONNX Runtime C header at install: install libonnxruntime-dev or set ORT_INCLUDE_DIR, then reinstall"
PYTHON_PROVIDER = "onnxruntime-extensions (Python kernel on the native C scan)"

_registered = False


def selective_scan_node(u, delta, A, Bm, Cm, Dskip, z, delta_bias, *, directions: int, d_state: int,
                        delta_softplus: int) -> np.ndarray:
    """The node on numpy arrays (shapes in the module docstring) -> y (B, D, H, W) float32."""
    from mambalitesr.models.scan_lib import selective_scan_numpy

    if u.ndim != 4 or Bm.ndim != 5 or Cm.ndim != 5:
        raise ValueError(f"SelectiveScan: u must be (B, D, H, W) and Bm / Cm (B, K, N, H, W); "
                         f"got u {u.shape}, Bm {Bm.shape}, Cm {Cm.shape}")
    batch, channels, height, width = u.shape
    if A.ndim != 2 or A.shape[1] != d_state or Bm.shape[1] != directions:
        raise ValueError(f"SelectiveScan: attributes directions={directions}, d_state={d_state} do not fit "
                         f"A {A.shape} and Bm {Bm.shape}")
    length = height * width

    def tokens(t):  # (..., H, W) -> (..., L)
        return t.reshape(*t.shape[:-2], length)

    y = selective_scan_numpy(
        tokens(u), tokens(delta), A, tokens(Bm), tokens(Cm), Dskip, tokens(z), delta_bias, bool(delta_softplus),
        directions=int(directions), height=height, width=width,
    )  # (B, D, L)
    return y.reshape(batch, channels, height, width)


def register_kernels() -> None:
    """Register the kernels with onnxruntime-extensions, once per process."""
    global _registered
    if _registered:
        return
    extensions = require("onnxruntime_extensions", f"the {OP_TYPE} node needs onnxruntime-extensions",
                         extra="onnxruntime")
    PyCustomOpDef, onnx_op = extensions.PyCustomOpDef, extensions.onnx_op
    from mambalitesr.models.scan_lib import load_library

    load_library()  # MissingDependency now: the scan library is not built or is stale

    @onnx_op(
        op_type=OP_TYPE,
        inputs=[PyCustomOpDef.dt_float] * 8,
        outputs=[PyCustomOpDef.dt_float],
        attrs={"directions": PyCustomOpDef.dt_int64, "d_state": PyCustomOpDef.dt_int64,
               "delta_softplus": PyCustomOpDef.dt_int64},
    )
    def selective_scan(u, delta, A, Bm, Cm, Dskip, z, delta_bias, **attrs):
        return selective_scan_node(u, delta, A, Bm, Cm, Dskip, z, delta_bias, **attrs)

    _registered = True


def native_library_path() -> str | None:
    """The built native kernel library (``mambalitesr.runtime._ort_scan``), or None when it was not built."""
    return native_library.library_path(_NATIVE_STEM, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _checked_native_path() -> str:
    path = native_library_path()
    if path is None:
        raise MissingDependency(
            f"the native ONNX Runtime kernel (mambalitesr.runtime._ort_scan) was not built ({NOT_BUILT_FIX})")
    native_library.open_library(path, "native ONNX Runtime kernel", "mambalitesr_ort_abi_version", _NATIVE_ABI)
    return path


def resolve_kernels(kernels: str = "auto") -> str:
    """``native`` or ``python``: the kernel ``kernels`` (one of KERNELS) names here; auto prefers native."""
    if kernels not in KERNELS:
        raise UserError(f"ONNX Runtime kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    if kernels == "auto":
        return "native" if native_library_path() is not None else "python"
    return kernels


def check_ops(op_types, kernels: str = "auto") -> None:
    """Raise MissingDependency when a ``domain::op`` in ``op_types`` has no kernel in the library ``kernels`` picks."""
    chosen = resolve_kernels(kernels)
    missing = sorted(op for op in op_types if op.startswith(f"{DOMAIN}::") and op not in OPS[chosen])
    if not missing:
        return
    if chosen == "python" and all(op in OPS["native"] for op in missing):
        why = f"the native kernel library was not built ({NOT_BUILT_FIX})" if kernels == "auto" else (
            "kernels='python' was asked for")
        raise MissingDependency(f"{', '.join(missing)} runs only on the native ONNX Runtime kernel, and {why}; or "
                                "export the model with --scan plugin, whose SelectiveScan nodes the Python kernel runs")
    raise MissingDependency(f"{', '.join(missing)}: no kernel in this package (its kernels: {', '.join(OPS['native'])})")


def provider(kernels: str = "auto") -> str:
    """What runs the SelectiveScan nodes, in words (backends print it)."""
    if resolve_kernels(kernels) == "native":
        return NATIVE_PROVIDER
    why = "" if kernels == "python" else "; the native kernel was not built (no ONNX Runtime C header at install)"
    return PYTHON_PROVIDER + why


def session_options(base=None, *, threads: int | None = None, kernels: str = "auto"):
    """ORT SessionOptions (``base``, or new) that can run ``mambalitesr`` nodes.

    threads: the scan's OpenMP threads in the native kernel (None: the OpenMP default, as the session's own
    operators use all cores by default); kernels: one of KERNELS.
    """
    ort = require("onnxruntime", "running ONNX graphs needs onnxruntime", extra="onnxruntime")
    so = base if base is not None else ort.SessionOptions()
    if resolve_kernels(kernels) == "native":
        path = _checked_native_path()
        if threads:
            so.add_session_config_entry(THREADS_KEY, str(int(threads)))
        so.register_custom_ops_library(path)
        return so
    register_kernels()
    from onnxruntime_extensions import get_library_path

    so.register_custom_ops_library(get_library_path())
    return so


def make_session(path, providers=None, *, threads: int | None = None, kernels: str = "auto"):
    """An InferenceSession for ``path`` that can run SelectiveScan nodes (CPU by default)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=session_options(threads=threads, kernels=kernels),
                                providers=list(providers or ["CPUExecutionProvider"]))
