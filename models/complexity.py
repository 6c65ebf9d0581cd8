"""Size and cost of a network: an exact analytic model, and the measured twins it is checked against.

Glossary (code name -> paper symbol): C embed_dim, G groups, M mixers per group, N d_state,
E expand, D = E C, R dt_rank, r rank (None = full), K directions, s scale, k d_conv,
H x W the LR input, L = H W tokens.

MACs count the multiply-accumulates of every convolution and matrix product (what
``torch.utils.flop_counter`` measures, halved). The selective scan's own work is
reported apart, as state updates K D N L (each an exp and two multiply-adds).
"""
from __future__ import annotations

import torch
from torch import nn

from mambalitesr.models.config import SRConfig


def _projection(n_in: int, n_out: int, rank: int | None) -> tuple[int, int]:
    """(weights, MACs per token) of a bias-free projection, low-rank when rank < min(n_in, n_out)."""
    if rank is None or rank >= min(n_in, n_out):
        return n_in * n_out, n_in * n_out
    return rank * (n_in + n_out), rank * (n_in + n_out)


def analytic_params(cfg: SRConfig) -> int:
    C, D, N, R, K, s, k = cfg.embed_dim, cfg.d_inner, cfg.d_state, cfg.dt_rank_, cfg.directions, cfg.scale, cfg.d_conv
    conv3 = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731 - 3x3 conv with bias
    mixer = (
        _projection(C, 2 * D, cfg.rank)[0]
        + D * k + D  # depthwise conv1d
        + K * (R + 2 * N) * D  # x_proj
        + K * D * R + K * D  # dt_proj and its bias
        + K * D * N + K * D  # A_log, D
        + _projection(D, C, cfg.rank)[0]
    )
    block = 2 * C + mixer
    group = cfg.mixers * block + conv3(C, C)
    return conv3(3, C) + 2 * C + cfg.groups * group + 2 * C + conv3(C, C) + conv3(C, 3 * s * s)


def analytic_macs(cfg: SRConfig, height: int, width: int) -> int:
    C, D, N, R, K, s, k = cfg.embed_dim, cfg.d_inner, cfg.d_state, cfg.dt_rank_, cfg.directions, cfg.scale, cfg.d_conv
    L = height * width
    mixer = (
        _projection(C, 2 * D, cfg.rank)[1] * L
        + D * k * (L + k - 1)  # causal conv1d is computed padded on both sides, then cropped
        + K * (R + 2 * N) * D * L
        + K * D * R * L
        + _projection(D, C, cfg.rank)[1] * L
    )
    group = cfg.mixers * mixer + 9 * C * C * L
    return 27 * C * L + cfg.groups * group + 9 * C * C * L + 9 * C * 3 * s * s * L


def scan_updates(cfg: SRConfig, height: int, width: int) -> int:
    """State updates of every selective scan in one forward pass: G M K D N L."""
    return cfg.groups * cfg.mixers * cfg.directions * cfg.d_inner * cfg.d_state * height * width


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure_macs(model: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of convs and matmuls in one forward pass at (1, 3, H, W), as counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, height, width)
    # The native backend's inference path runs most of each mixer in C, where torch counts nothing: count on
    # the PyTorch chunked scan (the same projections as torch ops) and put the model's choice back.
    backend = getattr(model, "scan_backend", None)
    if backend == "native":
        model.set_scan_backend("chunked")
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        if backend == "native":
            model.set_scan_backend(backend)
    return counter.get_total_flops() // 2
