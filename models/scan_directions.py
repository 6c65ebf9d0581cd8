"""Scan orders over an H x W token grid (the cross-scan of MambaIR's SS2D).

Tokens are stored row-major: token index i = h * W + w, L = H * W.
Direction k reads them in this order (sequence position p -> token index):

    k = 0  row-major              p -> p
    k = 1  column-major           p = w * H + h -> h * W + w
    k = 2  row-major, reversed    p -> L - 1 - p
    k = 3  column-major, reversed

``to_direction`` gathers a (B, C, L) tensor into direction k's order and
``from_direction`` puts it back; both are views/flips, never Python loops.
"""
from __future__ import annotations

import torch

DIRECTION_NAMES = ("row", "column", "row-reversed", "column-reversed")


def _transpose_grid(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(B, C, rows*cols) stored row-major -> (B, C, cols*rows) stored column-major."""
    b, c, _ = x.shape
    return x.reshape(b, c, rows, cols).transpose(2, 3).reshape(b, c, rows * cols)


def to_direction(x: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """(B, C, L) in row-major token order -> (B, C, L) in direction k's order."""
    if k in (1, 3):
        x = _transpose_grid(x, height, width)
    if k in (2, 3):
        x = x.flip(-1)
    return x


def from_direction(x: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`to_direction`: (B, C, L) in direction k's order -> row-major."""
    if k in (2, 3):
        x = x.flip(-1)
    if k in (1, 3):
        x = _transpose_grid(x, width, height)
    return x
