"""``selective_scan``: one entry point, several backends, chosen explicitly.

Glossary (code name -> paper symbol; shape letters):
    B  batch        D  scan channels (d_inner)      N  state size      L  tokens = H * W
    K  scan directions (1, or 4 for the cross-scan; see scan_directions)
    u -> x_t, delta -> Delta_t, A -> A, B -> B_t, C -> C_t, D -> D, z -> gate

Shape contract (the reference Mamba ``selective_scan_fn`` argument order):

    directions = 1:
        u (B, D, L), delta (B, D, L), A (D, N), B and C (B, N, L) or grouped (B, G, N, L),
        D (D,), z (B, D, L), delta_bias (D,)                          -> y (B, D, L)
    directions = 4 (tokens row-major on an H x W grid):
        u (B, D, L) shared by all directions, delta (B, K*D, L), A (K*D, N),
        B and C (B, K, N, L), D (K*D,), delta_bias (K*D,), z (B, D, L)
        Direction k scans u and its own delta_k, B_k, C_k in its order; the K
        outputs are put back in row-major order and summed; z gates the sum.
                                                                      -> y (B, D, L)

Every input is given in row-major token order. The state is accumulated in fp32;
y comes back in the dtype of u.

Backends:
    "ref"      the sequential recurrence (oracle; slow)
    "chunked"  two-level chunked scan in PyTorch, no loop over L (differentiable, exportable)
    "native"   the C kernel (mambalitesr.models.scan_native), fused directions and gate
    others     added by name with ``register_backend`` (export's "onnx_plugin": one ONNX node per scan)
"""
from __future__ import annotations

from typing import Callable

import torch

from mambalitesr.models.scan_chunked import selective_scan_chunked
from mambalitesr.models.scan_directions import from_direction, to_direction
from mambalitesr.models.scan_ref import selective_scan_ref

BACKENDS = ("ref", "chunked", "native")

# name -> a scan with selective_scan's full signature (it handles directions itself). Other layers add
# backends here by name (the export stage: its ONNX plugin node) instead of replacing this module's functions.
_REGISTERED: dict[str, Callable] = {}


def register_backend(name: str, scan: Callable) -> None:
    """Make ``scan`` (selective_scan's signature, without ``backend`` and ``check``) selectable as ``name``."""
    if name in BACKENDS:
        raise ValueError(f"scan backend {name!r} is built in")
    _REGISTERED[name] = scan


def _one_direction_backend(name: str) -> Callable:
    if name == "ref":
        return selective_scan_ref
    if name == "chunked":
        return selective_scan_chunked
    raise ValueError(f"unknown scan backend {name!r}; choose one of {BACKENDS}")


def check_shapes(u, delta, A, B, C, D, z, delta_bias, directions, height, width) -> None:
    """Raise ValueError naming the first argument that breaks the shape contract."""
    if directions not in (1, 4):
        raise ValueError(f"directions must be 1 or 4, got {directions}")
    if u.dim() != 3:
        raise ValueError(f"u must be (B, D, L), got {tuple(u.shape)}")
    batch, channels, length = u.shape
    kd = directions * channels
    n_state = A.shape[-1]
    if tuple(delta.shape) != (batch, kd, length):
        raise ValueError(f"delta must be (B, K*D, L) = {(batch, kd, length)}, got {tuple(delta.shape)}")
    if tuple(A.shape) != (kd, n_state):
        raise ValueError(f"A must be (K*D, N) = {(kd, n_state)}, got {tuple(A.shape)}")
    for name, t in (("B", B), ("C", C)):
        if directions == 1 and t.dim() == 3:
            ok = tuple(t.shape) == (batch, n_state, length)
        elif t.dim() == 4:
            groups = t.shape[1]
            ok = tuple(t.shape) == (batch, groups, n_state, length) and kd % groups == 0
            ok = ok and (directions == 1 or groups == directions)
        else:
            ok = False
        if not ok:
            want = "(B, N, L) or (B, G, N, L)" if directions == 1 else "(B, K, N, L)"
            raise ValueError(f"{name} must be {want} with B={batch}, N={n_state}, L={length}; got {tuple(t.shape)}")
    for name, t, want in (("D", D, (kd,)), ("delta_bias", delta_bias, (kd,)), ("z", z, (batch, channels, length))):
        if t is not None and tuple(t.shape) != want:
            raise ValueError(f"{name} must be {want}, got {tuple(t.shape)}")
    if directions == 4:
        if height is None or width is None or height * width != length:
            raise ValueError(f"directions=4 needs height * width == L ({length}), got {height} x {width}")


def _multi_direction(scan: Callable, u, delta, A, B, C, D, z, delta_bias, delta_softplus, height, width, **kw):
    """Cross-scan in PyTorch: gather each direction's order, scan all as groups, scatter back, sum."""
    K = B.shape[1]
    batch, channels, length = u.shape
    us = torch.cat([to_direction(u, k, height, width) for k in range(K)], 1)  # (B, K*D, L)
    ds = torch.cat([to_direction(delta[:, k * channels:(k + 1) * channels], k, height, width) for k in range(K)], 1)
    Bs = torch.stack([to_direction(B[:, k], k, height, width) for k in range(K)], 1)  # (B, K, N, L)
    Cs = torch.stack([to_direction(C[:, k], k, height, width) for k in range(K)], 1)
    ys = scan(us, ds, A, Bs, Cs, D, None, delta_bias, delta_softplus, **kw)  # (B, K*D, L)
    y = sum(from_direction(ys[:, k * channels:(k + 1) * channels].float(), k, height, width) for k in range(K))
    if z is not None:
        y = y * torch.nn.functional.silu(z.float())
    return y.to(u.dtype)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    directions: int = 1,
    height: int | None = None,
    width: int | None = None,
    backend: str = "chunked",
    check: bool = True,
) -> torch.Tensor:
    """Selective scan; see the module docstring for the shape contract. Returns y (B, D, L)."""
    if check:
        check_shapes(u, delta, A, B, C, D, z, delta_bias, directions, height, width)
    if backend in _REGISTERED:
        return _REGISTERED[backend](
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, directions=directions, height=height, width=width
        )
    if backend == "native":
        from mambalitesr.models.scan_native import selective_scan_native

        return selective_scan_native(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, directions=directions, height=height, width=width
        )
    scan = _one_direction_backend(backend)
    if directions == 1:
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return _multi_direction(scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus, height, width)
