"""ONNX Runtime kernels for the ``mambalitesr`` custom domain: the SelectiveScan node on the native C scan.

Glossary (code name -> paper symbol; shape letters):
    B batch, D scan channels, K directions, N d_state, H x W token grid, L = H * W
    u -> x_t, delta -> Delta_t (raw), A -> A, Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate
    kernel        the code ONNX Runtime calls for a ``mambalitesr::SelectiveScan`` node
    session_options   ORT SessionOptions with the kernels registered; what every session that runs a
                  plugin-form graph needs (the onnxruntime backend, and export's verification, which
                  finds this function through the ``mambalitesr.onnxruntime_kernels`` entry point
                  instead of importing the runtime)

The node contract (inputs, attributes) is the one ``export/onnx_plugin_scan.py`` writes:
    u (B, D, H, W), delta (B, K*D, H, W), A (K*D, N), Bm / Cm (B, K, N, H, W), Dskip (K*D,),
    z (B, D, H, W), delta_bias (K*D,); attributes directions, d_state, delta_softplus -> y (B, D, H, W)

The kernel runs through onnxruntime-extensions (a Python custom op, ``@onnx_op``) and computes with
:func:`mambalitesr.models.scan_lib.selective_scan_numpy`: numpy plus the C scan library
(``mambalitesr.models._scan_cpu``, built at install) through ctypes. Nothing here imports torch.
A missing onnxruntime-extensions package or scan library raises MissingDependency when a kernel
is registered, never a failure deep inside ONNX Runtime later.
"""
from __future__ import annotations

import numpy as np

from mambalitesr.optional import require

DOMAIN = "mambalitesr"
OP_TYPE = f"{DOMAIN}::SelectiveScan"  # onnxruntime-extensions reads the domain from the op type
PROVIDER = "onnxruntime-extensions (Python kernel on the native C scan)"

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


def session_options(base=None):
    """ORT SessionOptions (``base``, or new) that can run ``mambalitesr`` nodes."""
    ort = require("onnxruntime", "running ONNX graphs needs onnxruntime", extra="onnxruntime")
    register_kernels()
    from onnxruntime_extensions import get_library_path

    so = base if base is not None else ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    return so


def make_session(path, providers=None):
    """An InferenceSession for ``path`` that can run SelectiveScan nodes (CPU by default)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=session_options(),
                                providers=list(providers or ["CPUExecutionProvider"]))
