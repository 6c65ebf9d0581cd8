"""Low-rank factorisation of a projection: W (out, in) ~= U (out, r) @ V (r, in).

Glossary: r = rank; ``down`` holds V (r, in), ``up`` holds U (out, r).
"""
from __future__ import annotations

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """y = up(down(x)), no bias: two thin matrices instead of one (out, in)."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)  # V: (r, in)
        self.up = nn.Linear(rank, out_features, bias=False)  # U: (out, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @property
    def weight(self) -> torch.Tensor:
        """The equivalent full matrix (out, in)."""
        return self.up.weight @ self.down.weight


def make_projection(in_features: int, out_features: int, rank: int | None) -> nn.Module:
    """A bias-free projection: full-rank nn.Linear when rank is None (or not smaller), else LowRankLinear."""
    if rank is None or rank >= min(in_features, out_features):
        return nn.Linear(in_features, out_features, bias=False)
    return LowRankLinear(in_features, out_features, rank)


@torch.no_grad()
def factorize(linear: nn.Linear, rank: int) -> LowRankLinear:
    """The best rank-r approximation of ``linear`` in Frobenius norm (truncated SVD, Eckart-Young).

    The singular values are split evenly between the two factors (sqrt on each side),
    which keeps their scales balanced for further training.
    """
    if linear.bias is not None:
        raise ValueError("factorize() takes a bias-free linear layer")
    weight = linear.weight.float()  # (out, in)
    U, S, Vh = torch.linalg.svd(weight, full_matrices=False)
    rank = min(rank, S.numel())
    root = S[:rank].sqrt()
    low = LowRankLinear(linear.in_features, linear.out_features, rank)
    low.up.weight.copy_(U[:, :rank] * root)  # (out, r)
    low.down.weight.copy_(root[:, None] * Vh[:rank])  # (r, in)
    return low.to(linear.weight.dtype)
