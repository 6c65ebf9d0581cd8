"""The one-direction mixer core as one call on the fused node's inputs, with its PyTorch reference.

Glossary (code name -> paper symbol; shape letters):
    B batch, C embed_dim, D d_inner, N d_state, R dt_rank, Kc d_conv, L = H * W tokens (row-major),
    Ci / Co the core's input / output channels
    a        V u for a low-rank W_in = U V (the thin first factor stays outside), else the tokens u   (B, Ci, L)
    w_in     U, or the full W_in (2D, Ci);  x, z = the two row blocks of w_in a                       (B, D, L)
    conv_w   the causal depthwise conv1d (D, Kc), conv_b its bias (D)
    w_x      W_x (R + 2N, D): Delta_low, B_t, C_t;  w_dt W_Delta (D, R), dt_bias its bias (D)
    A        A = -exp(A_log) (D, N);  Dskip  D (D)
    w_out    V of a low-rank W_out (its thin second factor stays outside), or the full W_out (Co, D)

    core = w_out ((<C_t, h_t> + D x'_t) * SiLU(z_t)),   x'_t = SiLU(conv1d(x)_t)         -> (B, Co, L)

This is the fused C core's contract (models/csrc/mixer_cpu.h, ``mixer_native.mixer_core`` with w_in and
w_out) and the ``mambalitesr::MambaMixer`` ONNX node's (export/onnx_mixer_node.py). ``MambaMixer`` in its
"fused_node" graph layout calls the core registered under its ``core_backend`` name: "reference" (below) by
default; other layers add theirs by name (the export stage: the ONNX node), as they add scan backends.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mambalitesr.models.scan import selective_scan

NODE_INPUTS = ("a", "w_in", "conv_w", "conv_b", "w_x", "w_dt", "dt_bias", "A", "Dskip", "w_out")


def fused_core_reference(a, w_in, conv_w, conv_b, w_x, w_dt, dt_bias, A, Dskip, w_out, *, height: int, width: int,
                         scan_backend: str = "chunked") -> torch.Tensor:
    """The core in plain torch operators (the reference twin of the C core and of the node): -> (B, Co, L)."""
    D, N, R, kc = conv_b.shape[0], A.shape[-1], w_dt.shape[-1], conv_w.shape[-1]
    xz = torch.matmul(w_in, a)  # (B, 2D, L)
    x, z = xz[:, :D], xz[:, D:]
    x = F.silu(F.conv1d(F.pad(x, (kc - 1, 0)), conv_w.unsqueeze(1), conv_b, groups=D))  # (B, D, L), causal
    dt_low, Bm, Cm = torch.split(torch.matmul(w_x, x), [R, N, N], dim=1)  # (B, R, L), (B, N, L) x2
    delta = torch.matmul(w_dt, dt_low)  # (B, D, L)
    y = selective_scan(x, delta, A, Bm, Cm, Dskip, z, dt_bias, True, height=height, width=width,
                       backend=scan_backend, check=False)  # (B, D, L)
    return torch.matmul(w_out, y)  # (B, Co, L)


_REGISTERED: dict[str, Callable] = {"reference": fused_core_reference}


def register_core(name: str, core: Callable) -> None:
    """Make ``core`` (fused_core_reference's signature, without ``scan_backend``) selectable as ``name``."""
    if name == "reference":
        raise ValueError("the core 'reference' is built in")
    _REGISTERED[name] = core


def fused_core(name: str) -> Callable:
    try:
        return _REGISTERED[name]
    except KeyError:
        raise ValueError(f"unknown mixer core {name!r}; registered: {', '.join(sorted(_REGISTERED))}") from None
