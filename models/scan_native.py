"""The selective scan on the native C kernel (models/csrc/selective_scan_cpu.c), via ctypes.

Glossary (code name -> paper symbol; shape letters):
    B  batch        D  scan channels (d_inner)     N  state size       L  tokens = H * W
    K  scan directions (1 or 4)                    G  groups sharing B_t / C_t
    u -> x_t, delta -> Delta_t, A -> A, B -> B_t, C -> C_t, D -> D, z -> gate

Same contract as :func:`mambalitesr.models.scan.selective_scan` (see its docstring):
    u (B, D, L), delta (B, K*D, L), A (K*D, N), B / C (B, N, L) or (B, G, N, L),
    D (K*D,), z (B, D, L), delta_bias (K*D,)  ->  y (B, D, L)

Two entry points:
    selective_scan_native   torch tensors, differentiable (u, delta, A, B, C, D, z, delta_bias)
    selective_scan_numpy    numpy float32 arrays, forward only, no torch import (the runtime)

The kernel computes in fp32; other float dtypes are converted on the way in and y
comes back in the dtype of u. The reference twin is ``scan_ref.selective_scan_ref``
(with ``scan._multi_direction`` for K = 4); tests/test_scan_native.py compares them.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from typing import Any

import numpy as np

from mambalitesr.errors import MissingDependency

_LIB_STEM = "_scan_cpu"
_ABI_VERSION = 3  # SCAN_ABI_VERSION in selective_scan_cpu.h
_STATUS = {1: "bad argument (shape, size or missing pointer)", 2: "out of memory"}

_F = ctypes.POINTER(ctypes.c_float)


class _ScanParams(ctypes.Structure):
    """Mirror of ScanParams in selective_scan_cpu.h (field order matters)."""

    _fields_ = [
        (name, ctypes.c_int64)
        for name in (
            "batch", "dim", "dstate", "length", "directions", "height", "width", "groups",
            "delta_softplus", "nthreads", "x_batch_stride", "x_dim_stride",
            "delta_batch_stride", "delta_dim_stride", "bc_batch_stride", "bc_group_stride", "bc_token_stride",
        )
    ] + [
        (name, ctypes.c_void_p)
        for name in ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias", "out", "y_pregate", "checkpoints")
    ]


class _ScanGrads(ctypes.Structure):
    """Mirror of ScanGrads in selective_scan_cpu.h."""

    _fields_ = [
        (name, ctypes.c_void_p)
        for name in ("dout", "du", "ddelta", "dB", "dC", "dz", "dA_part", "dD_part", "dbias_part")
    ]


_lib = None


def library_path() -> str | None:
    """The built kernel next to this file, or None when it has not been built."""
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, _LIB_STEM + suffix)
        if os.path.isfile(path):
            return path
    return None


def load_library() -> ctypes.CDLL:
    """Load the kernel once; raise MissingDependency if it is not built or is stale."""
    global _lib
    if _lib is not None:
        return _lib
    path = library_path()
    if path is None:
        raise MissingDependency("native scan library not built: run `pip install -e .`")
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise MissingDependency(f"native scan library {path} cannot be loaded ({exc}): run `pip install -e .`") from exc
    lib.selective_scan_abi_version.restype = ctypes.c_int
    if lib.selective_scan_abi_version() != _ABI_VERSION:
        raise MissingDependency(f"native scan library {path} is stale (ABI mismatch): run `pip install -e .`")
    lib.selective_scan_chunk.restype = ctypes.c_int
    lib.selective_scan_lanes.restype = ctypes.c_int
    lib.selective_scan_fwd.argtypes = [ctypes.POINTER(_ScanParams)]
    lib.selective_scan_fwd.restype = ctypes.c_int
    lib.selective_scan_bwd.argtypes = [ctypes.POINTER(_ScanParams), ctypes.POINTER(_ScanGrads)]
    lib.selective_scan_bwd.restype = ctypes.c_int
    _lib = lib
    return lib


def _check_status(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"native selective scan {what} failed: {_STATUS.get(status, status)}")


def _n_chunks(length: int) -> int:
    chunk = load_library().selective_scan_chunk()
    return -(-length // chunk)


def _padded_state(dstate: int) -> int:
    """NP: N rounded up to the kernel's vector width (the padding lanes of B_t, C_t are zero)."""
    lanes = load_library().selective_scan_lanes()
    return -(-dstate // lanes) * lanes


def _make_params(
    shape: tuple[int, int, int, int, int, int],
    ptrs: dict[str, int | None],
    directions: int,
    height: int | None,
    width: int | None,
    delta_softplus: bool,
    nthreads: int,
) -> _ScanParams:
    """shape = (B, D, N, L, G, K); every array contiguous, B / C token-major and padded (B, G, L, NP)."""
    batch, dim, dstate, length, groups, k = shape
    padded = _padded_state(dstate)
    p = _ScanParams(
        batch=batch, dim=dim, dstate=dstate, length=length, directions=directions,
        height=height or 0, width=width or 0, groups=groups, delta_softplus=int(bool(delta_softplus)),
        nthreads=nthreads, x_batch_stride=dim * length, x_dim_stride=length,
        delta_batch_stride=k * dim * length, delta_dim_stride=length,
        bc_batch_stride=groups * length * padded, bc_group_stride=length * padded, bc_token_stride=padded,
    )
    for name, ptr in ptrs.items():
        setattr(p, name, ptr or None)
    return p


# ---------------------------------------------------------------- numpy (runtime)


def _check_numpy_shapes(u, delta, A, B, C, D, z, delta_bias, directions, height, width) -> int:
    """Raise ValueError on a shape-contract break; return G."""
    if directions not in (1, 4):
        raise ValueError(f"directions must be 1 or 4, got {directions}")
    if u.ndim != 3:
        raise ValueError(f"u must be (B, D, L), got {u.shape}")
    batch, dim, length = u.shape
    kd, dstate = directions * dim, A.shape[-1]
    if delta.shape != (batch, kd, length):
        raise ValueError(f"delta must be (B, K*D, L) = {(batch, kd, length)}, got {delta.shape}")
    if A.shape != (kd, dstate):
        raise ValueError(f"A must be (K*D, N) = {(kd, dstate)}, got {A.shape}")
    groups = None
    for name, t in (("B", B), ("C", C)):
        g = 1 if (t.ndim == 3 and directions == 1) else (t.shape[1] if t.ndim == 4 else -1)
        want = (batch, dstate, length) if t.ndim == 3 else (batch, g, dstate, length)
        if g < 1 or t.shape != want or kd % g or (directions == 4 and g != 4) or groups not in (None, g):
            raise ValueError(f"{name} must be (B, N, L) or (B, G, N, L) with B={batch}, N={dstate}, L={length}; "
                             f"got {t.shape}")
        groups = g
    for name, t, want in (("D", D, (kd,)), ("delta_bias", delta_bias, (kd,)), ("z", z, (batch, dim, length))):
        if t is not None and t.shape != want:
            raise ValueError(f"{name} must be {want}, got {t.shape}")
    if directions == 4 and (height is None or width is None or height * width != length):
        raise ValueError(f"directions=4 needs height * width == L ({length}), got {height} x {width}")
    return groups


def selective_scan_numpy(
    u: np.ndarray,
    delta: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    D: np.ndarray | None = None,
    z: np.ndarray | None = None,
    delta_bias: np.ndarray | None = None,
    delta_softplus: bool = False,
    *,
    directions: int = 1,
    height: int | None = None,
    width: int | None = None,
    nthreads: int = 0,
) -> np.ndarray:
    """Forward only, on numpy arrays (converted to contiguous float32). Returns y (B, D, L) float32."""
    load_library()
    groups = _check_numpy_shapes(u, delta, A, B, C, D, z, delta_bias, directions, height, width)

    def f32(a):
        return None if a is None else np.ascontiguousarray(a, dtype=np.float32)

    def token_major(t):  # (B, N, L) or (B, G, N, L) -> (B, G, L, NP), zero padding
        t = t[:, None] if t.ndim == 3 else t
        out = np.zeros(t.shape[:2] + (t.shape[3], _padded_state(t.shape[2])), dtype=np.float32)
        out[..., : t.shape[2]] = np.swapaxes(t, -1, -2)
        return out

    arrays = {
        "u": f32(u), "delta": f32(delta), "A": f32(A), "Bm": token_major(B), "Cm": token_major(C),
        "Dskip": f32(D), "z": f32(z), "delta_bias": f32(delta_bias),
    }
    batch, dim, length = u.shape
    out = np.empty((batch, dim, length), dtype=np.float32)
    arrays["out"] = out
    ptrs = {k: (None if a is None else a.ctypes.data) for k, a in arrays.items()}
    shape = (batch, dim, A.shape[-1], length, groups, directions)
    params = _make_params(shape, ptrs, directions, height, width, delta_softplus, nthreads)
    if batch * dim * length:
        _check_status(load_library().selective_scan_fwd(ctypes.byref(params)), "forward")
    return out


# ---------------------------------------------------------------- torch (training)


def _torch_function():
    """The autograd Function, built on first use so importing this module needs no torch."""
    import torch

    def f32(t):
        return None if t is None else t.detach().to(torch.float32).contiguous()

    def token_major(t):  # (B, N, L) or (B, G, N, L) -> (B, G, L, NP), zero padding
        t = t.unsqueeze(1) if t.dim() == 3 else t
        out = t.new_zeros(t.shape[:2] + (t.shape[3], _padded_state(t.shape[2])), dtype=torch.float32)
        out[..., : t.shape[2]] = t.detach().transpose(-1, -2)
        return out

    def ptr(t):
        return None if t is None else t.data_ptr()

    class SelectiveScanNative(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, directions, height, width, grads):
            batch, dim, length = u.shape
            dstate = A.shape[-1]
            groups = 1 if B.dim() == 3 else B.shape[1]
            x = {"u": f32(u), "delta": f32(delta), "A": f32(A), "Bm": token_major(B), "Cm": token_major(C),
                 "Dskip": f32(D), "z": f32(z), "delta_bias": f32(delta_bias)}
            out = torch.empty(batch, dim, length, dtype=torch.float32)
            save = grads and any(ctx.needs_input_grad[:8])  # checkpoints only when a backward can follow
            y_pregate = torch.empty_like(out) if (save and z is not None) else None
            kd = directions * dim
            checkpoints = None
            if save:
                checkpoints = torch.empty(batch, kd, _n_chunks(length), _padded_state(dstate), dtype=torch.float32)
            shape = (batch, dim, dstate, length, groups, directions)
            ptrs = {k: ptr(v) for k, v in x.items()}
            ptrs.update(out=ptr(out), y_pregate=ptr(y_pregate), checkpoints=ptr(checkpoints))
            params = _make_params(shape, ptrs, directions, height, width, delta_softplus, torch.get_num_threads())
            if out.numel():
                _check_status(load_library().selective_scan_fwd(ctypes.byref(params)), "forward")
            if save:
                ctx.save_for_backward(*(x[k] for k in ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias")),
                                      y_pregate, checkpoints)
                ctx.meta = (shape, directions, height, width, delta_softplus, B.dim(),
                            [t.dtype if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)])
            return out.to(u.dtype)

        @staticmethod
        def backward(ctx, dout):
            u, delta, A, Bm, Cm, Dskip, z, delta_bias, y_pregate, checkpoints = ctx.saved_tensors
            shape, directions, height, width, delta_softplus, bc_dim, dtypes = ctx.meta
            batch, dim, dstate, length, groups, _ = shape
            kd = directions * dim
            dout = dout.to(torch.float32).contiguous()
            du, dz = torch.empty_like(u), (torch.empty_like(u) if z is not None else None)
            ddelta = torch.empty_like(delta)
            dB, dC = torch.empty_like(Bm), torch.empty_like(Cm)
            # The per-channel sums over B * L come back per batch in float64 (their terms cancel, so the
            # kernel accumulates them in double); the batch sum below stays in float64 and rounds once.
            dA_part = torch.empty(batch, kd, dstate, dtype=torch.float64)
            dD_part, dbias_part = (torch.empty(batch, kd, dtype=torch.float64) for _ in range(2))
            ptrs = {k: ptr(v) for k, v in (("u", u), ("delta", delta), ("A", A), ("Bm", Bm), ("Cm", Cm),
                                             ("Dskip", Dskip), ("z", z), ("delta_bias", delta_bias),
                                             ("y_pregate", y_pregate), ("checkpoints", checkpoints))}
            ptrs["out"] = ptr(dout)  # not written by the backward; the kernel only checks it is set
            params = _make_params(shape, ptrs, directions, height, width, delta_softplus, torch.get_num_threads())
            grads = _ScanGrads(dout=ptr(dout), du=ptr(du), ddelta=ptr(ddelta), dB=ptr(dB), dC=ptr(dC), dz=ptr(dz),
                               dA_part=ptr(dA_part), dD_part=ptr(dD_part), dbias_part=ptr(dbias_part))
            if dout.numel():
                _check_status(load_library().selective_scan_bwd(ctypes.byref(params), ctypes.byref(grads)),
                              "backward")
            else:
                for t in (du, ddelta, dB, dC, dA_part, dD_part, dbias_part, dz):
                    if t is not None:
                        t.zero_()

            def back(t):  # (B, G, L, NP) -> the caller's (B, N, L) or (B, G, N, L)
                t = t[..., :dstate].transpose(-1, -2)
                return t.squeeze(1) if bc_dim == 3 else t

            def batch_sum(t):  # rounded to fp32 like every other gradient of the kernel
                return t.sum(0).to(torch.float32)

            result = [du, ddelta, batch_sum(dA_part), back(dB), back(dC),
                      batch_sum(dD_part) if Dskip is not None else None, dz,
                      batch_sum(dbias_part) if delta_bias is not None else None]
            result = [None if (g is None or not need) else g.to(dt)
                      for g, need, dt in zip(result, ctx.needs_input_grad[:8], dtypes)]
            return (*result, None, None, None, None, None)

    return SelectiveScanNative


_function = None


def selective_scan_native(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus: bool = False,
    *, directions: int = 1, height: int | None = None, width: int | None = None,
) -> Any:
    """Differentiable selective scan on the C kernel; torch tensors in, y (B, D, L) in u's dtype out."""
    global _function
    load_library()
    if _function is None:
        _function = _torch_function()
    if directions == 4 and (height is None or width is None or height * width != u.shape[-1]):
        raise ValueError(f"directions=4 needs height * width == L ({u.shape[-1]}), got {height} x {width}")
    devices = {t.device.type for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if devices != {"cpu"}:
        raise ValueError(f"the native scan runs on CPU tensors; got {sorted(devices)} (use the chunked backend)")
    import torch

    grads = torch.is_grad_enabled()  # Function.forward always runs with grad mode off
    return _function.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, directions, height, width, grads)
