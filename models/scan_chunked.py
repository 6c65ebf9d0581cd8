"""The selective scan without a Python loop over L: a two-level chunked scan.

Glossary as in :mod:`mambalitesr.models.scan_ref` (B, D, N, L; u, delta, A, B, C, D, z).
T is the chunk length, Lc = ceil(L / T) the number of chunks.

The recurrence h_t = a_t * h_{t-1} + b_t (a_t = exp(Delta_t A) in (0, 1]) is an
associative scan over pairs (a, b) with (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2).

1. Local: every chunk is scanned independently by log2(T) doubling steps.
2. Carry: the chunks' end states are scanned the same way (log2(Lc) steps).
3. Fix-up: h_t += (product of a inside the chunk up to t) * carry into the chunk.

Only products of a in (0, 1] appear, and every exp is of a non-positive number,
never exp(cumsum) / exp(-cumsum), which overflows for long or steep sequences.
Shapes stay static (the sequence is padded to a multiple of T with a = 1, b = 0),
so the same code exports to ONNX with standard operators only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mambalitesr.models.scan_ref import expand_groups, finish_output, prepare_delta

DEFAULT_CHUNK = 64


def _shift(x: torch.Tensor, k: int, fill: float) -> torch.Tensor:
    """Shift right by k along the last axis, filling the first k entries."""
    return F.pad(x[..., :-k], (k, 0), value=fill)


def _doubling_scan(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of (a, b) pairs along the last axis in ceil(log2(n)) steps.

    Returns (prod of a up to t, h_t with h_{-1} = 0); both (..., n).
    """
    n = a.shape[-1]
    k = 1
    while k < n:  # log2(n) steps, independent of the data
        b = b + a * _shift(b, k, 0.0)
        a = a * _shift(a, k, 1.0)
        k *= 2
    return a, b


def linear_scan(a: torch.Tensor, b: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t along the last axis, h_{-1} = 0.  (..., L) -> (..., L)."""
    length = a.shape[-1]
    chunk = max(1, min(chunk, length))
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:
        a = F.pad(a, (0, pad), value=1.0)
        b = F.pad(b, (0, pad), value=0.0)
    a = a.reshape(*a.shape[:-1], n_chunks, chunk)  # (..., Lc, T)
    b = b.reshape(*b.shape[:-1], n_chunks, chunk)
    a_loc, h_loc = _doubling_scan(a, b)  # (..., Lc, T)
    _, h_end = _doubling_scan(a_loc[..., -1], h_loc[..., -1])  # (..., Lc)
    carry_in = _shift(h_end, 1, 0.0)  # state entering each chunk
    h = h_loc + a_loc * carry_in.unsqueeze(-1)
    h = h.reshape(*h.shape[:-2], n_chunks * chunk)
    return h[..., :length] if pad else h


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """One-direction selective scan, same contract as ``selective_scan_ref``.

    Args:
        u: (B, D, L)            delta: (B, D, L)          A: (D, N)
        B, C: (B, N, L) or (B, G, N, L)                    D: (D,)
        z: (B, D, L)            delta_bias: (D,)
    Returns:
        y: (B, D, L) in the dtype of ``u``, accumulated in fp32.
    """
    dtype = u.dtype
    channels = u.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)  # (B, D, L)
    decay = torch.exp(delta.unsqueeze(2) * A.float()[None, :, :, None])  # (B, D, N, L), exp of <= 0
    drive = (delta * u.float()).unsqueeze(2) * expand_groups(B.float(), channels)  # (B, D, N, L)
    h = linear_scan(decay, drive, chunk)  # (B, D, N, L)
    y = (h * expand_groups(C.float(), channels)).sum(2)  # (B, D, L)
    return finish_output(y, u, D, z, dtype)
