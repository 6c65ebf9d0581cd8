"""The selective scan as the plain sequential recurrence: the oracle every backend is checked against.

Glossary (code name -> paper symbol; shapes use these letters):
    B   batch                        L   sequence length (tokens, H * W)
    D   scan channels (d_inner)      N   state size (d_state)
    G   groups sharing B and C       u   input x_t
    delta  step size Delta_t         A   state matrix (diagonal, negative)
    B, C   input / output matrices   D   skip term
    z   gate (y * SiLU(z))           h   state h_t

    h_t = exp(Delta_t * A) * h_{t-1} + Delta_t * B_t * u_t,   h_{-1} = 0
    y_t = <C_t, h_t> + D * u_t
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for fp32 and narrower inputs, float64 for float64: the oracle is never less precise than its input."""
    return torch.promote_types(dtype, torch.float32)


def expand_groups(BC: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, N, L) or (B, G, N, L) -> (B, D, N, L): group g serves D/G consecutive channels."""
    if BC.dim() == 3:
        return BC.unsqueeze(1).expand(-1, channels, -1, -1)
    b, g, n, l = BC.shape
    return BC.unsqueeze(2).expand(b, g, channels // g, n, l).reshape(b, channels, n, l)


def prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool) -> torch.Tensor:
    """(B, D, L) -> (B, D, L) fp32 (float64 for float64): optional per-channel bias, then optional softplus."""
    delta = delta.to(compute_dtype(delta.dtype))
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def finish_output(
    y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """Add the skip term D * u and the gate SiLU(z); (B, D, L) -> (B, D, L) in the input dtype."""
    if D is not None:
        y = y + u.to(y.dtype) * D.to(y.dtype)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """One-direction selective scan, one token at a time.

    Args:
        u: (B, D, L)            delta: (B, D, L)          A: (D, N)
        B, C: (B, N, L) or (B, G, N, L)                    D: (D,)
        z: (B, D, L)            delta_bias: (D,)
    Returns:
        y: (B, D, L), the dtype of ``u``; the state is accumulated in fp32 (float64 for float64 input).
    """
    dtype = u.dtype
    acc = compute_dtype(dtype)
    channels = u.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)  # (B, D, L)
    uf = u.to(acc)
    Bf = expand_groups(B.to(acc), channels)  # (B, D, N, L)
    Cf = expand_groups(C.to(acc), channels)  # (B, D, N, L)
    decay = torch.exp(delta.to(acc).unsqueeze(2) * A.to(acc)[None, :, :, None])  # (B, D, N, L)
    drive = (delta * uf).unsqueeze(2) * Bf  # (B, D, N, L)
    h = torch.zeros_like(decay[..., 0])  # (B, D, N)
    ys = []
    for t in range(u.shape[-1]):
        h = decay[..., t] * h + drive[..., t]
        ys.append((h * Cf[..., t]).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=-1) if ys else uf.new_zeros(uf.shape)
    return finish_output(y, u, D, z, dtype)
