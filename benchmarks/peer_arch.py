"""Inference-form definitions of the peer SR networks we time beside ours (random weights; latency only).

Glossary (code name -> paper symbol):
    SAFMN   Sun et al., "Spatially-Adaptive Feature Modulation for Efficient Image Super-Resolution", ICCV 2023:
            dim C = 36, 8 AttBlocks (LayerNorm, SAFM with n_levels = 4 pooled depthwise branches, CCM with
            ffn_scale 2), conv + PixelShuffle upsampler (~240K parameters at x4)
    SPAN    Wan et al., "Swift Parameter-free Attention Network for Efficient Super-Resolution", CVPRW 2024:
            48 feature channels, 6 SPABs of three 3x3 convs with the parameter-free attention
            sigmoid(x) - 0.5, a 1x1 conv over 4 concatenated features, conv + PixelShuffle upsampler. Each
            Conv3XC is written in its deployed (re-parameterised) form, one 3x3 conv, as SPAN runs in inference
    FSRCNN  Dong, Loy, Tang, "Accelerating the Super-Resolution CNN", ECCV 2016 (d 56, s 12, m 4), on RGB

Why our own definitions: spandrel (the architecture library of chaiNNer and ComfyUI) imports torchvision,
and PyPI's torchvision wheels link libc10_cuda, which the CPU build of torch this project pins does not
have, so spandrel cannot be imported next to it. These follow the papers' published code layer for layer
(the latency depends on the layers and sizes, not on the weights).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------- SAFMN


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of (B, C, H, W) (SAFMN's channels_first LayerNorm, eps 1e-6)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim)), eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class _SAFM(nn.Module):
    def __init__(self, dim: int, n_levels: int = 4):
        super().__init__()
        self.n_levels = n_levels
        chunk = dim // n_levels
        self.mfr = nn.ModuleList(nn.Conv2d(chunk, chunk, 3, 1, 1, groups=chunk) for _ in range(n_levels))
        self.aggr = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()

    def forward(self, x):
        h, w = x.shape[-2:]
        parts = x.chunk(self.n_levels, dim=1)
        out = []
        for i, part in enumerate(parts):
            if i > 0:  # a coarser level: max-pool by 2^i, depthwise conv, nearest upsampling back
                s = F.adaptive_max_pool2d(part, (h // 2**i, w // 2**i))
                s = F.interpolate(self.mfr[i](s), size=(h, w), mode="nearest")
            else:
                s = self.mfr[i](part)
            out.append(s)
        return self.act(self.aggr(torch.cat(out, dim=1))) * x


class _AttBlock(nn.Module):
    def __init__(self, dim: int, ffn_scale: float):
        super().__init__()
        hidden = int(dim * ffn_scale)
        self.norm1, self.norm2 = _ChannelNorm(dim), _ChannelNorm(dim)
        self.safm = _SAFM(dim)
        self.ccm = nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x):
        x = self.safm(self.norm1(x)) + x
        return self.ccm(self.norm2(x)) + x


class SAFMN(nn.Module):
    def __init__(self, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2.0, scale: int = 4):
        super().__init__()
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1)
        self.feats = nn.Sequential(*[_AttBlock(dim, ffn_scale) for _ in range(n_blocks)])
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale**2, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x):
        x = self.to_feat(x)
        return self.to_img(self.feats(x) + x)


# ---------------------------------------------------------------- SPAN (deployed form)


class _SPAB(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1_r, self.c2_r, self.c3_r = (nn.Conv2d(c, c, 3, padding=1) for _ in range(3))

    def forward(self, x):
        out1 = self.c1_r(x)
        out2 = self.c2_r(F.silu(out1))
        out3 = self.c3_r(F.silu(out2))
        att = torch.sigmoid(out3) - 0.5  # the parameter-free attention
        return (out3 + x) * att, out1


class SPAN(nn.Module):
    def __init__(self, channels: int = 48, scale: int = 4, img_range: float = 255.0):
        super().__init__()
        self.img_range = img_range
        self.register_buffer("mean", torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1), persistent=False)
        self.conv_1 = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(_SPAB(channels) for _ in range(6))
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_cat = nn.Conv2d(channels * 4, channels, 1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        x = (x - self.mean) * self.img_range
        feat = self.conv_1(x)
        out, outs = feat, []
        for block in self.blocks:
            out, inner = block(out)
            outs.append((out, inner))
        out_b6 = self.conv_2(out)
        cat = torch.cat([feat, out_b6, outs[0][0], outs[5][1]], 1)  # as SPAN: block 1's output, block 6's first conv
        return self.upsampler(self.conv_cat(cat))


# ---------------------------------------------------------------- FSRCNN


def fsrcnn(scale: int = 4, d: int = 56, s: int = 12, m: int = 4) -> nn.Module:
    """5x5 feature conv, 1x1 shrink, m 3x3 maps, 1x1 expand (PReLU after each), 9x9 transposed conv."""
    layers = [nn.Conv2d(3, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
    for _ in range(m):
        layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
    layers += [nn.Conv2d(s, d, 1), nn.PReLU(d),
               nn.ConvTranspose2d(d, 3, 9, stride=scale, padding=4, output_padding=scale - 1)]
    return nn.Sequential(*layers)
