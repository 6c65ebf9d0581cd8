"""MATLAB-compatible bicubic ``imresize`` (antialiased), and the SR protocol's LR maker.

Glossary (code name -> paper symbol):
    scale       s    resize factor (output = ceil(input * s)); s < 1 shrinks
    cubic       k    Keys cubic convolution kernel, a = -0.5, support [-2, 2]
    kernel      h    k itself when s >= 1; s * k(s * x) (support 4 / s) when s < 1
    weights     W    (out, in) matrix per axis; row i holds the taps of output pixel i
    hr, lr      HR / LR images; lr = downsample(modcrop(hr, s), s) has shape HR / s

Why a matrix per axis: MATLAB's ``imresize`` is separable, with fixed taps per
output index along each axis, so one dense (out, in) matrix per axis turns the
resize into two matrix products (numpy or torch, batched for free). Boundary taps
that fall outside the image are mirrored half-sample symmetrically (edge pixel
repeated), as MATLAB does, and folded into the matrix.

This follows MATLAB's documented algorithm (``contributions`` in imresize.m):
    u     = i / s + 0.5 * (1 - 1 / s)           output i (1-based) -> input coordinate
    left  = floor(u - width / 2),  taps left .. left + ceil(width) + 1
    w_j   = h(u - j), normalised to sum to 1 per output pixel
and the axis with the smaller scale is resized first (height first on a tie).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

KERNEL_WIDTH = 4.0  # support of the Keys cubic, in input pixels (at s >= 1)


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with a = -0.5, as in MATLAB's imresize."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """0-based indices folded into [0, n) half-sample symmetrically: -1 -> 0, -2 -> 1, n -> n-1."""
    period = np.mod(index, 2 * n)
    return np.where(period < n, period, 2 * n - 1 - period)


def contributions(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Taps per output pixel: (weights, indices), both (out_len, P), indices 0-based and mirrored.

    Weights of each row sum to 1. Kept separate from ``weight_matrix`` so tests
    can check the taps against the kernel formula.
    """
    if in_len < 1 or out_len < 1:
        raise ValueError(f"resize lengths must be positive (got {in_len} -> {out_len})")
    shrink = scale < 1 and antialias
    width = KERNEL_WIDTH / scale if shrink else KERNEL_WIDTH
    out_index = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based, as MATLAB
    u = out_index / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    index = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # (out, P), 1-based
    dist = u[:, None] - index
    weights = scale * cubic(scale * dist) if shrink else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return weights, _mirror(index.astype(np.int64) - 1, in_len)


@lru_cache(maxsize=64)
def _matrix_cached(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    weights, index = contributions(in_len, out_len, scale, antialias)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], index.shape)
    np.add.at(matrix, (rows, index), weights)  # mirrored taps can land on the same pixel
    matrix.setflags(write=False)
    return matrix


def weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Dense (out_len, in_len) float64 resize matrix for one axis (cached, read-only)."""
    return _matrix_cached(int(in_len), int(out_len), float(scale), bool(antialias))


def _plan(in_hw: tuple[int, int], scale, out_shape) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output (H, W) and per-axis scale, MATLAB's rules: scale wins when given, else out/in."""
    if (scale is None) == (out_shape is None):
        raise ValueError("give exactly one of scale or out_shape")
    if scale is not None:
        scales = (float(scale), float(scale)) if np.isscalar(scale) else tuple(float(s) for s in scale)
        if len(scales) != 2 or min(scales) <= 0:
            raise ValueError(f"scale must be positive (got {scale})")
        out_hw = tuple(int(math.ceil(n * s)) for n, s in zip(in_hw, scales))
    else:
        out_hw = tuple(int(n) for n in out_shape[:2])
        if min(out_hw) < 1:
            raise ValueError(f"out_shape must be positive (got {out_shape})")
        scales = tuple(o / n for o, n in zip(out_hw, in_hw))
    return out_hw, scales


def _axis_order(scales: tuple[float, float]) -> tuple[int, int]:
    return (0, 1) if scales[0] <= scales[1] else (1, 0)


def imresize(img, scale=None, out_shape=None, antialias: bool = True):
    """Resize like MATLAB ``imresize(img, scale, 'bicubic')``, without rounding.

    img: numpy float (H, W) or (H, W, C) -> same layout, same dtype (computed in float64);
         torch floating tensor (..., H, W) -> same layout, dtype and device.
    scale: a number or (s_h, s_w); out_shape: (H_out, W_out). Give exactly one.
    Integer arrays are refused: round explicitly (``downsample``/``to_uint8``) so the
    8-bit step of the protocol is never implicit.
    """
    if _is_torch(img):
        return _imresize_torch(img, scale, out_shape, antialias)
    img = np.asarray(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"imresize takes float arrays (got {img.dtype}); for uint8 images use downsample/upsample")
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize takes (H, W) or (H, W, C) arrays (got shape {img.shape})")
    out_hw, scales = _plan(img.shape[:2], scale, out_shape)
    x = img.astype(np.float64, copy=False)
    for axis in _axis_order(scales):
        m = weight_matrix(x.shape[axis], out_hw[axis], scales[axis], antialias)
        x = np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(x).astype(img.dtype, copy=False)


def _is_torch(obj) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "dim")


def _imresize_torch(x, scale, out_shape, antialias: bool):
    import torch

    if not torch.is_floating_point(x):
        raise TypeError(f"imresize takes floating tensors (got {x.dtype})")
    if x.dim() < 2:
        raise ValueError(f"imresize takes (..., H, W) tensors (got shape {tuple(x.shape)})")
    out_hw, scales = _plan(tuple(x.shape[-2:]), scale, out_shape)
    for axis in _axis_order(scales):
        m = torch.tensor(weight_matrix(x.shape[-2 + axis], out_hw[axis], scales[axis], antialias),
                         dtype=x.dtype, device=x.device)
        x = torch.matmul(m, x) if axis == 0 else torch.matmul(x, m.T)  # (..., H', W) / (..., H, W')
    return x


def modcrop(img, scale: int):
    """Crop the bottom/right so height and width are multiples of ``scale`` ((H, W, ...) arrays)."""
    scale = int(scale)
    h, w = img.shape[0], img.shape[1]
    return img[: h - h % scale, : w - w % scale]


def to_uint8(x255: np.ndarray) -> np.ndarray:
    """Values on the 0..255 scale -> uint8: clip, then round half away from zero (MATLAB's im2uint8)."""
    return np.floor(np.clip(x255, 0.0, 255.0) + 0.5).astype(np.uint8)  # >= 0, so floor(x + .5) is MATLAB round


def _check_uint8_rgb(img: np.ndarray, what: str) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise TypeError(f"{what} must be a uint8 (H, W) or (H, W, C) numpy array")


def downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """HR uint8 (H, W[, C]) -> LR uint8 (H/s, W/s[, C]) as the standard SR protocol makes it.

    MATLAB ``imresize(hr, 1/s, 'bicubic')`` on a uint8 image: computed on the 0..255
    scale in float64 (the same as im2double, resize, im2uint8 up to float rounding),
    then rounded to 8 bits. The network sees ``lr / 255`` as float32.
    H and W must be multiples of ``scale`` (use ``modcrop``), so that s * LR == HR.
    """
    _check_uint8_rgb(hr, "hr")
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer (got {scale})")
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"HR size {hr.shape[1]}x{hr.shape[0]} is not a multiple of {scale}; modcrop it first")
    out_hw = (hr.shape[0] // scale, hr.shape[1] // scale)
    return to_uint8(imresize(hr.astype(np.float64), out_shape=out_hw))


def upsample(lr: np.ndarray, scale: int) -> np.ndarray:
    """LR uint8 -> bicubic SR uint8 (s*H, s*W[, C]): the protocol's bicubic baseline."""
    _check_uint8_rgb(lr, "lr")
    scale = int(scale)
    out_hw = (lr.shape[0] * scale, lr.shape[1] * scale)
    return to_uint8(imresize(lr.astype(np.float64), out_shape=out_hw))
