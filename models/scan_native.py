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
    selective_scan_numpy    numpy float32 arrays, forward only (from ``scan_lib``, which never imports torch)

The kernel computes in fp32; other float dtypes are converted on the way in and y
comes back in the dtype of u. The reference twin is ``scan_ref.selective_scan_ref``
(with ``scan._multi_direction`` for K = 4); tests/test_scan_native.py compares them.
"""
from __future__ import annotations

import ctypes
from typing import Any

# The binding (params structs, loading, the numpy forward) lives in the torch-free scan_lib; names re-exported.
from mambalitesr.models.scan_lib import (  # noqa: F401
    _ScanGrads,
    _check_status,
    _make_params,
    _n_chunks,
    _padded_state,
    load_library,
    selective_scan_numpy,
)

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
