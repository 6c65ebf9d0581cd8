"""Losses: L1 to HR, output distillation, optional feature distillation.

Glossary (code name -> paper symbol):
    alpha a:  loss = a * L1(S, T) + (1 - a) * L1(S, HR)   (paper: a = 0.8)
    distance: the pixel distance in that sum, "l1" (default) or "l2" (mean squared error: the PSNR objective,
              for a short fine-tuning stage at the end of training)
    beta:     + beta * mean_g L1(P_g(F_S,g), F_T,g), F the group outputs (B, L, C), P_g a learned 1x1 projection C_S -> C_T
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


PIXEL_DISTANCES = {"l1": F.l1_loss, "l2": F.mse_loss}


def output_loss(student_sr: torch.Tensor, hr: torch.Tensor, teacher_sr: torch.Tensor | None, alpha: float,
                distance: str = "l1") -> torch.Tensor:
    """(B, 3, sH, sW) tensors -> scalar."""
    dist = PIXEL_DISTANCES[distance]
    loss_hr = dist(student_sr, hr)
    if teacher_sr is None or teacher_sr.numel() == 0:
        return loss_hr
    return alpha * dist(student_sr, teacher_sr) + (1.0 - alpha) * loss_hr


class FeatureProjector(nn.Module):
    """One learned 1x1 projection per group, from the student's C to the teacher's C."""

    def __init__(self, student_dim: int, teacher_dim: int, groups: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in range(groups))

    def forward(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
        """Lists of (B, L, C_S) and (B, L, C_T), matched group by group (evenly spaced when counts differ)."""
        picks = [round(i * (len(teacher_feats) - 1) / max(1, len(student_feats) - 1)) for i in range(len(student_feats))]
        losses = [F.l1_loss(p(f), teacher_feats[j]) for p, f, j in zip(self.proj, student_feats, picks)]
        return torch.stack(losses).mean()
