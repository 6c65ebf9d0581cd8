"""The fused mixer core on the native C kernel (models/csrc/mixer_cpu.c), via ctypes; inference only.

Glossary (code name -> paper symbol; shape letters):
    B batch, C embed_dim, D d_inner, N d_state, R dt_rank, L tokens = H * W (row-major), Kc d_conv
    xz        W_in u in channel-major rows: x = rows 0..D-1, z (the gate) = rows D..2D-1      (B, 2D, L)
    out       (<C_t, h_t> + D x'_t) * SiLU(z_t), channel-major, what W_out reads              (B, D, L)
    workspace scratch the kernel needs (independent of L and B), kept per thread and reused

From ``xz`` the kernel runs the causal depthwise conv1d + SiLU, x_proj, dt_proj + softplus, the
selective scan, the skip term and the gate, with no transposes between them (see mixer_cpu.h).
Its PyTorch reference twin is ``MambaMixer.forward`` on any scan backend; tests/test_mixer_native.py
compares them. ``channel_layernorm`` is LayerNorm over C of a channel-major (B, C, L) tensor.
"""
from __future__ import annotations

import ctypes
import threading

from mambalitesr.errors import MissingDependency
from mambalitesr.models import native_library

_LIB_STEM = "_mixer_cpu"
_ABI_VERSION = 4  # MIXER_ABI_VERSION in mixer_cpu.h
_STATUS = {1: "bad argument (size or missing pointer)", 2: "workspace too small"}


class MixerParams(ctypes.Structure):
    """Mirror of MixerParams in mixer_cpu.h (field order matters)."""

    _fields_ = [
        (name, ctypes.c_int64)
        for name in ("batch", "dim", "dstate", "dt_rank", "length", "d_conv", "in_dim", "out_dim", "nthreads",
                     "workspace_floats")
    ] + [
        (name, ctypes.c_void_p)
        for name in ("xz", "w_in", "w_out", "conv_w", "conv_b", "w_x", "w_dt", "dt_bias", "A", "Dskip", "out",
                     "workspace")
    ]


class ChannelScanParams(ctypes.Structure):
    """Mirror of ChannelScanParams in mixer_cpu.h."""

    _fields_ = [
        (name, ctypes.c_int64)
        for name in ("batch", "dim", "dstate", "length", "delta_softplus", "nthreads", "workspace_floats")
    ] + [
        (name, ctypes.c_void_p)
        for name in ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias", "out", "workspace")
    ]


def _declare(lib: ctypes.CDLL) -> None:
    lib.mixer_workspace_floats.restype = ctypes.c_int64
    lib.mixer_workspace_floats.argtypes = [ctypes.c_int64] * 6
    lib.mixer_forward.restype = ctypes.c_int
    lib.mixer_forward.argtypes = [ctypes.POINTER(MixerParams)]
    lib.mixer_scan_workspace_floats.restype = ctypes.c_int64
    lib.mixer_scan_workspace_floats.argtypes = [ctypes.c_int64] * 2
    lib.mixer_scan_forward.restype = ctypes.c_int
    lib.mixer_scan_forward.argtypes = [ctypes.POINTER(ChannelScanParams)]
    lib.channel_layernorm.restype = ctypes.c_int
    lib.channel_layernorm.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_float, ctypes.c_int64]
    lib.mixer_vector_width.restype = ctypes.c_int
    lib.mixer_vector_width.argtypes = []
    lib.mixer_use_width.restype = ctypes.c_int
    lib.mixer_use_width.argtypes = [ctypes.c_int]


LIBRARY = native_library.Library(_LIB_STEM, "native mixer", "mixer_abi_version", _ABI_VERSION, _declare)


def load_library() -> ctypes.CDLL:
    """Load the kernel once; raise MissingDependency if it is not built or is stale."""
    return LIBRARY.load()


def vector_width() -> int:
    """Floats per vector the kernel runs with: 16 (AVX-512), 8 (AVX2 + FMA) or 4 (SSE4.2, NEON)."""
    return load_library().mixer_vector_width()


def use_width(width: int) -> bool:
    """Run the kernel at ``width`` (4, 8 or 16; 0: the widest this CPU runs) from now on, in this process.

    False (nothing changed) when the CPU has no such width: wider vectors than the registers would run from
    the stack, which is why each instruction set has its own width (models/csrc/mixer_cpu_kernels.h).
    """
    return load_library().mixer_use_width(int(width)) != 0


def available() -> bool:
    """True when the library is built and current (the caller then may pick the fused path)."""
    try:
        load_library()
    except MissingDependency:
        return False
    return True


def check_status(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"native {what} failed: {_STATUS.get(status, status)}")


class Workspaces(threading.local):
    """One scratch buffer per calling thread, grown on demand and kept: later frames reuse its pages."""

    def __init__(self):
        self.buffer = None

    def get(self, floats: int, allocate):
        if self.buffer is None or _size(self.buffer) < floats:
            self.buffer = allocate(floats)
        return self.buffer


def _size(buffer) -> int:
    return buffer.numel() if hasattr(buffer, "numel") else buffer.size


WORKSPACES = Workspaces()
NUMPY_WORKSPACES = Workspaces()


def selective_scan_channel_major(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus: bool = False,
                                 *, nthreads: int = 0):
    """One-direction selective scan on numpy arrays in channel-major rows, forward only, no torch import.

    u, delta (raw), z: (B, D, L); A (D, N); B, C: (B, N, L) or (B, 1, N, L); D, delta_bias: (D,) or None.
    Returns y (B, D, L) float32. float32 C-contiguous inputs are read in place (no copies, no transposes);
    the reference twin is ``scan_ref.selective_scan_ref`` (tests/test_mixer_native.py).
    """
    import numpy as np

    lib = load_library()

    def f32(a):
        return None if a is None else np.ascontiguousarray(a, dtype=np.float32)

    u, delta, A, D, z, delta_bias = f32(u), f32(delta), f32(A), f32(D), f32(z), f32(delta_bias)
    B, C = (f32(t[:, 0] if t.ndim == 4 else t) for t in (B, C))
    if u.ndim != 3:
        raise ValueError(f"u must be (B, D, L), got {u.shape}")
    batch, dim, length = u.shape
    dstate = A.shape[-1]
    want = {"delta": (delta, (batch, dim, length)), "A": (A, (dim, dstate)), "B": (B, (batch, dstate, length)),
            "C": (C, (batch, dstate, length)), "D": (D, (dim,)), "z": (z, (batch, dim, length)),
            "delta_bias": (delta_bias, (dim,))}
    for name, (t, shape) in want.items():
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} must be {shape}, got {t.shape}")
    if not 1 <= dstate <= 64:
        raise ValueError(f"d_state must be in 1..64, got {dstate}")
    out = np.empty((batch, dim, length), dtype=np.float32)
    floats = lib.mixer_scan_workspace_floats(dim, dstate)
    ws = NUMPY_WORKSPACES.get(floats, lambda n: np.empty(n, dtype=np.float32))

    def ptr(a):
        return None if a is None else a.ctypes.data

    params = ChannelScanParams(batch=batch, dim=dim, dstate=dstate, length=length,
                               delta_softplus=int(bool(delta_softplus)), nthreads=nthreads, workspace_floats=ws.size,
                               u=ptr(u), delta=ptr(delta), A=ptr(A), Bm=ptr(B), Cm=ptr(C), Dskip=ptr(D), z=ptr(z),
                               delta_bias=ptr(delta_bias), out=ptr(out), workspace=ptr(ws))
    if out.size:
        check_status(lib.mixer_scan_forward(ctypes.byref(params)), "channel-major scan")
    return out


# ---------------------------------------------------------------- torch wrappers (inference)


def _ptr(t) -> int:
    return t.data_ptr()


def _f32(t):
    import torch

    return t.detach().to(torch.float32).contiguous()


def mixer_core(xz, *, conv_w, conv_b, w_x, w_dt, dt_bias, A, Dskip, dstate: int, w_in=None, w_out=None):
    """xz (B, 2D, L) fp32 contiguous -> (B, D, L): conv1d + SiLU, projections, scan, skip, gate.

    With ``w_in`` (2D, Ci), xz is the input a (B, Ci, L) and x, z = w_in a are formed inside the kernel;
    with ``w_out`` (Co, D) the result is w_out (gated y), (B, Co, L). conv_w (D, Kc), conv_b (D),
    w_x (R + 2N, D), w_dt (D, R), dt_bias (D), A (D, N), Dskip (D): fp32.
    """
    import torch

    lib = load_library()
    if xz.dtype != torch.float32 or xz.device.type != "cpu" or not xz.is_contiguous() or xz.dim() != 3:
        raise ValueError(f"xz must be a contiguous fp32 CPU (B, C, L) tensor, got {xz.dtype} {tuple(xz.shape)}")
    batch, rows, length = xz.shape
    dim = conv_b.shape[0]
    weights = {k: _f32(v) for k, v in (("conv_w", conv_w), ("conv_b", conv_b), ("w_x", w_x), ("w_dt", w_dt),
                                       ("dt_bias", dt_bias), ("A", A), ("Dskip", Dskip))}
    d_conv, dt_rank = weights["conv_w"].shape[-1], weights["w_dt"].shape[-1]
    in_dim, out_dim = (rows if w_in is not None else 0), (w_out.shape[0] if w_out is not None else 0)
    expect = {"conv_w": (dim, d_conv), "conv_b": (dim,), "w_x": (dt_rank + 2 * dstate, dim), "w_dt": (dim, dt_rank),
              "dt_bias": (dim,), "A": (dim, dstate), "Dskip": (dim,)}
    if w_in is not None:
        weights["w_in"], expect["w_in"] = _f32(w_in), (2 * dim, in_dim)
    elif rows != 2 * dim:
        raise ValueError(f"xz must have 2D = {2 * dim} rows, got {rows}")
    if w_out is not None:
        weights["w_out"], expect["w_out"] = _f32(w_out), (out_dim, dim)
    for name, shape in expect.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name} must be {shape}, got {tuple(weights[name].shape)}")
    out = torch.empty(batch, out_dim or dim, length, dtype=torch.float32)
    nthreads = torch.get_num_threads()
    floats = lib.mixer_workspace_floats(dim, dstate, dt_rank, in_dim, out_dim, nthreads)
    ws = WORKSPACES.get(floats, lambda n: torch.empty(n, dtype=torch.float32))
    params = MixerParams(batch=batch, dim=dim, dstate=dstate, dt_rank=dt_rank, length=length, d_conv=d_conv,
                         in_dim=in_dim, out_dim=out_dim, nthreads=nthreads, workspace_floats=ws.numel(),
                         xz=_ptr(xz), out=_ptr(out), workspace=_ptr(ws), **{k: _ptr(v) for k, v in weights.items()})
    if out.numel():
        check_status(lib.mixer_forward(ctypes.byref(params)), "mixer")
    return out


def channel_layernorm(x, weight, bias, eps: float, out=None):
    """LayerNorm over dim 1 of a contiguous fp32 (B, C, L) CPU tensor (torch's LayerNorm on (B, L, C))."""
    import torch

    if x.dtype != torch.float32 or not x.is_contiguous() or x.dim() != 3:
        raise ValueError(f"x must be a contiguous fp32 (B, C, L) tensor, got {x.dtype} {tuple(x.shape)}")
    batch, channels, length = x.shape
    w, b = _f32(weight), _f32(bias)
    if out is None:
        out = torch.empty_like(x)
    status = load_library().channel_layernorm(_ptr(x), _ptr(w), _ptr(b), _ptr(out), batch, channels, length,
                                              float(eps), torch.get_num_threads())
    check_status(status, "channel layernorm")
    return out
