"""The native C selective scan (models/csrc/selective_scan_cpu.c) through ctypes, on numpy arrays: no torch.

Glossary (code name -> paper symbol; shape letters):
    B  batch        D  scan channels (d_inner)     N  state size       L  tokens = H * W
    K  scan directions (1 or 4)                    G  groups sharing B_t / C_t
    NP N rounded up to the kernel's vector width (B_t, C_t are passed token-major, zero padded)
    u -> x_t, delta -> Delta_t, A -> A, B -> B_t, C -> C_t, D -> D, z -> gate

Same contract as :func:`mambalitesr.models.scan.selective_scan` (see its docstring):
    u (B, D, L), delta (B, K*D, L), A (K*D, N), B / C (B, N, L) or (B, G, N, L),
    D (K*D,), z (B, D, L), delta_bias (K*D,)  ->  y (B, D, L)

This module is the library's one binding: the params structs, loading with its ABI check, and the
forward pass on numpy arrays (``selective_scan_numpy``), which the runtime's ONNX Runtime kernel
calls. It imports no torch, not even lazily; the differentiable torch path (``scan_native``) builds
on it. The library is built at install (``pip install .``) as ``mambalitesr.models._scan_cpu``.
"""
from __future__ import annotations

import ctypes

import numpy as np

from mambalitesr.errors import MissingDependency
from mambalitesr.models import native_library

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


def _declare(lib: ctypes.CDLL) -> None:
    lib.selective_scan_chunk.restype = ctypes.c_int
    lib.selective_scan_lanes.restype = ctypes.c_int
    lib.selective_scan_fwd.argtypes = [ctypes.POINTER(_ScanParams)]
    lib.selective_scan_fwd.restype = ctypes.c_int
    lib.selective_scan_bwd.argtypes = [ctypes.POINTER(_ScanParams), ctypes.POINTER(_ScanGrads)]
    lib.selective_scan_bwd.restype = ctypes.c_int


LIBRARY = native_library.Library(_LIB_STEM, "native scan", "selective_scan_abi_version", _ABI_VERSION, _declare)


def load_library() -> ctypes.CDLL:
    """Load the kernel once; raise MissingDependency if it is not built or is stale."""
    return LIBRARY.load()


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
