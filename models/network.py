"""The SR network family: shallow conv, residual groups of Mamba mixers, pixel-shuffle upsampler.

Glossary (code name -> paper symbol): see :mod:`mambalitesr.models.config`; F0 = conv_first output,
tokens (B, L, C) with L = H * W row-major (token index h * W + w).

The layout and parameter names follow DVMSR, so the teacher's published weights load with strict=True:
conv_first, patch_embed.norm, layers.{g}.residual_group.blocks.{b}.{norm, mixer}, layers.{g}.conv,
norm_f, conv_after_body, upsample.0.
"""
from __future__ import annotations

import torch
from torch import nn

from mambalitesr.models.config import DIV2K_MEAN, SRConfig
from mambalitesr.models.mixer import MambaMixer


class MixerBlock(nn.Module):
    """LayerNorm then mixer; no residual inside the block (as DVMSR: the group carries the residual)."""

    def __init__(self, cfg: SRConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.mixer = MambaMixer(cfg)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.mixer(self.norm(tokens), height, width)


class BlockStack(nn.Module):
    def __init__(self, cfg: SRConfig):
        super().__init__()
        self.blocks = nn.ModuleList(MixerBlock(cfg) for _ in range(cfg.mixers))


class ResidualGroup(nn.Module):
    """M mixer blocks, a 3x3 conv, and the group's residual: (B, L, C) -> (B, L, C)."""

    def __init__(self, cfg: SRConfig):
        super().__init__()
        self.residual_group = BlockStack(cfg)
        self.conv = nn.Conv2d(cfg.embed_dim, cfg.embed_dim, 3, padding=1)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        t = tokens
        for block in self.residual_group.blocks:
            t = block(t, height, width)
        grid = tokens_to_grid(t, height, width)  # (B, C, H, W)
        return grid_to_tokens(self.conv(grid)) + tokens


class PatchNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, C), row-major."""
    return x.flatten(2).transpose(1, 2)


def tokens_to_grid(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, L, C) -> (B, C, H, W)."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], height, width)


class MambaSR(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, sH, sW), not clamped."""

    def __init__(self, cfg: SRConfig):
        super().__init__()
        self.config = cfg
        C, s = cfg.embed_dim, cfg.scale
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(3, C, 3, padding=1)
        self.patch_embed = PatchNorm(C)
        self.layers = nn.ModuleList(ResidualGroup(cfg) for _ in range(cfg.groups))
        self.norm_f = nn.LayerNorm(C)
        self.conv_after_body = nn.Conv2d(C, C, 3, padding=1)
        self.upsample = nn.Sequential(nn.Conv2d(C, 3 * s * s, 3, padding=1), nn.PixelShuffle(s))
        if cfg.anchor_skip:  # start at nearest-neighbour upsampling: a near-zero residual
            with torch.no_grad():
                self.upsample[0].weight.mul_(0.01)
                self.upsample[0].bias.zero_()

    def set_scan_backend(self, backend: str) -> "MambaSR":
        """Choose the selective-scan backend of every mixer ("ref", "chunked", "native")."""
        for module in self.modules():
            if isinstance(module, MambaMixer):
                module.scan_backend = backend
        return self

    def set_graph_layout(self, layout: str) -> "MambaSR":
        """Choose the graph every mixer's forward runs ("tokens", "channel_major"; same math, other layouts)."""
        for module in self.modules():
            if isinstance(module, MambaMixer):
                module.graph_layout = layout
        return self

    @property
    def scan_backend(self) -> str:
        return next(m.scan_backend for m in self.modules() if isinstance(m, MambaMixer))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Body features (B, C, H, W) and each group's output tokens (B, L, C), for feature distillation."""
        height, width = x.shape[-2:]
        f0 = self.conv_first(x - self.mean)  # (B, C, H, W)
        t = self.patch_embed.norm(grid_to_tokens(f0))  # (B, L, C)
        group_outputs = []
        for layer in self.layers:
            t = layer(t, height, width)
            group_outputs.append(t)
        body = self.conv_after_body(tokens_to_grid(self.norm_f(t), height, width)) + f0
        return body, group_outputs

    def uses_fused_path(self, x: torch.Tensor) -> bool:
        """True when forward runs the channel-major fused path: scan backend "native", one direction,
        fp32 CPU input, no autograd (inference), not tracing or exporting."""
        return (
            self.config.directions == 1
            and self.scan_backend == "native"
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()
        )

    def forward_features_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """Body features (B, C, H, W) with every tensor in the grid's channel-major layout (B, C, L): the
        token <-> grid moves of ``forward_features`` become views, the LayerNorms run over dim 1 in C and the
        mixers run their fused C core. Inference only; ``forward_features`` is its reference twin."""
        from mambalitesr.models.mixer_native import channel_layernorm

        def norm(ln: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
            return channel_layernorm(t, ln.weight, ln.bias, ln.eps)

        batch, _, height, width = x.shape
        f0 = self.conv_first(x - self.mean)  # (B, C, H, W)
        channels = f0.shape[1]
        t = norm(self.patch_embed.norm, f0.reshape(batch, channels, -1))  # (B, C, L)
        for layer in self.layers:
            r = t
            for block in layer.residual_group.blocks:
                r = block.mixer.forward_channel_major(norm(block.norm, r))  # (B, C, L)
            t = layer.conv(r.view(batch, channels, height, width)).view(batch, channels, -1).add_(t)
        body = self.conv_after_body(norm(self.norm_f, t).view(batch, channels, height, width))
        return body.add_(f0)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """SR (B, 3, sH, sW); with ``return_features`` also each group's output tokens (for distillation)."""
        if not return_features and self.uses_fused_path(x):
            return self._upsample(x, self.forward_features_channel_major(x.contiguous()))
        body, group_outputs = self.forward_features(x)
        sr = self._upsample(x, body)
        return (sr, group_outputs) if return_features else sr

    def _upsample(self, x: torch.Tensor, body: torch.Tensor) -> torch.Tensor:
        if self.config.anchor_skip:
            conv, shuffle = self.upsample
            # Each colour's s^2 sub-pixel channels get that colour's LR value: nearest-neighbour upsampling.
            anchor = torch.repeat_interleave(x - self.mean, self.config.scale**2, dim=1)  # (B, 3 s^2, H, W)
            return shuffle(conv(body) + anchor) + self.mean
        return self.upsample(body) + self.mean
