"""ONNX Runtime kernel for the ``mambalitesr::SelectiveScan`` node, on the native CPU scan.

Glossary (code name -> paper symbol; shape letters):
    B batch, D scan channels, K directions, N d_state, H x W token grid, L = H * W
    u -> x_t, delta -> Delta_t (raw), A -> A, Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate

The node contract is in :mod:`mambalitesr.export.onnx_plugin_scan`. The kernel runs through
onnxruntime-extensions (a Python custom op, ``@onnx_op``) and computes with
:func:`mambalitesr.models.scan_native.selective_scan_numpy` (the C kernel; no torch).

Importing this module registers the kernel (the runtime relies on that); a session then needs
the extensions library registered in its options: :func:`session_options_with_custom_ops`, or
simply :func:`make_session`. A missing onnxruntime-extensions package or native scan library
raises :class:`~mambalitesr.errors.MissingDependency` at import.
"""
from __future__ import annotations

import numpy as np

from mambalitesr.errors import MissingDependency

OP_TYPE = "mambalitesr::SelectiveScan"  # onnxruntime-extensions reads the domain from the op type

_registered = False


def selective_scan_node(u, delta, A, Bm, Cm, Dskip, z, delta_bias, *, directions: int, d_state: int,
                        delta_softplus: int) -> np.ndarray:
    """The node on numpy arrays: u (B, D, H, W), delta (B, K*D, H, W), A (K*D, N), Bm / Cm (B, K, N, H, W),
    Dskip (K*D,), z (B, D, H, W), delta_bias (K*D,) -> y (B, D, H, W) float32."""
    from mambalitesr.models.scan_native import selective_scan_numpy

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


def register_custom_ops() -> None:
    """Register the kernel with onnxruntime-extensions, once per process."""
    global _registered
    if _registered:
        return
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError as exc:
        raise MissingDependency(
            f"the SelectiveScan node needs onnxruntime-extensions ({exc}): pip install onnxruntime-extensions"
        ) from None
    from mambalitesr.models.scan_native import load_library

    load_library()  # MissingDependency now, not a failure deep inside ONNX Runtime later

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


def session_options_with_custom_ops(base=None):
    """ONNX Runtime SessionOptions (``base`` or new) with the extensions library, which holds our kernel."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    register_custom_ops()
    so = base if base is not None else ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    return so


def make_session(path, providers=None):
    """An InferenceSession for ``path`` that can run SelectiveScan nodes (CPU by default)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=session_options_with_custom_ops(),
                                providers=list(providers or ["CPUExecutionProvider"]))


register_custom_ops()
