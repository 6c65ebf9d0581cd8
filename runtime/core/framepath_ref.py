"""Plain numpy twins of the C frame path (runtime/csrc/framepath.c), for the tests only.

Glossary (code name -> symbol):
    H, W     frame size;  C = 3 planes R, G, B
    Y, U, V  8-bit luma and chroma samples (BT.601 limited range)
    th, tw   LR tile size;  s scale;  N number of tiles
    scale, mean   out = rgb * scale - mean[c] (pack);  u8 = floor((x + mean[c]) * scale + 0.5) (unpack)

They follow the C arithmetic step by step in float32, so on x86 the float32 results agree to the
last bit; float16 results are the float32 ones rounded to nearest even (numpy's astype).
The product never falls back to these: the C library is required.
"""
from __future__ import annotations

import numpy as np

from mambalitesr.runtime.core.tiles import TileGrid

# BT.601 limited range -> RGB in [0, 255] (same constants as framepath.c)
K_Y, K_RV, K_GU, K_GV, K_BU = (np.float32(v) for v in (1.164383, 1.596027, 0.391762, 0.812968, 2.017232))


def _finish(rgb: list[np.ndarray], dtype, scale: float, mean) -> np.ndarray:
    """Three (H, W) float32 planes -> (3, H, W) dtype, scaled and mean-subtracted in float32."""
    planes = [p * np.float32(scale) - np.float32(m) for p, m in zip(rgb, mean)]
    with np.errstate(over="ignore"):  # beyond float16's range is infinity, as in C
        return np.stack(planes).astype(dtype)


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """(H, W) uint8 Y, U, V (chroma already upsampled) -> R, G, B (H, W) float32 in [0, 255]."""
    yt = K_Y * (y.astype(np.float32) - np.float32(16))
    du = u.astype(np.float32) - np.float32(128)
    dv = v.astype(np.float32) - np.float32(128)
    cr, cg, cb = K_RV * dv, -(K_GU * du + K_GV * dv), K_BU * du
    return [np.clip(yt + c, np.float32(0), np.float32(255)) for c in (cr, cg, cb)]


def pack_packed_ref(frame: np.ndarray, order: str, dtype=np.float32, scale=1 / 255, mean=(0.0, 0.0, 0.0)):
    """(H, W, 3) uint8 in `order` ("bgr" or "rgb") -> (3, H, W) planar R, G, B of dtype."""
    f = frame.astype(np.float32)
    r, b = (f[..., 2], f[..., 0]) if order == "bgr" else (f[..., 0], f[..., 2])
    return _finish([r, f[..., 1], b], dtype, scale, mean)


def pack_nv12_ref(y: np.ndarray, uv: np.ndarray, dtype=np.float32, scale=1 / 255, mean=(0.0, 0.0, 0.0)):
    """Y (H, W) uint8 and UV (ceil(H/2), ceil(W/2), 2) uint8 -> (3, H, W) planar R, G, B of dtype."""
    h, w = y.shape
    up = uv.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]  # nearest chroma: (y/2, x/2)
    return _finish(_yuv_to_rgb(y, up[..., 0], up[..., 1]), dtype, scale, mean)


def pack_yuyv_ref(frame: np.ndarray, dtype=np.float32, scale=1 / 255, mean=(0.0, 0.0, 0.0)):
    """(H, W, 2) uint8 YUYV (channel 0 = Y; channel 1 = U, V alternating), W even -> (3, H, W)."""
    y = frame[..., 0]
    u = frame[:, 0::2, 1].repeat(2, axis=1)
    v = frame[:, 1::2, 1].repeat(2, axis=1)
    return _finish(_yuv_to_rgb(y, u, v), dtype, scale, mean)


def unpack_ref(planar: np.ndarray, order: str = "bgr", scale=255.0, mean=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(3, H, W) float32/float16 R, G, B -> (H, W, 3) uint8 in `order`; +0.5-floor, clamped, NaN -> 0."""
    x = planar.astype(np.float32)
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    t = (x + m) * np.float32(scale)
    t = np.where(t >= 0, t, np.float32(0))  # NaN fails the test and becomes 0, as in C
    t = np.minimum(t, np.float32(255))
    u8 = np.floor(t + np.float32(0.5)).astype(np.uint8)  # (3, H, W)
    if order == "bgr":
        u8 = u8[::-1]
    return np.ascontiguousarray(u8.transpose(1, 2, 0))


def split_ref(planar: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(C, H, W) -> (N, C, th, tw) tiles in the order k = i * n_x + j."""
    return np.stack(
        [planar[:, y : y + grid.tile_h, x : x + grid.tile_w] for y in grid.y0 for x in grid.x0]
    )


def merge_ref(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(N, C, s*th, s*tw) SR tiles -> (C, s*H, s*W) float32: sum of wy_i * wx_j * tile_ij, in float64."""
    s, th, tw = grid.scale, grid.tile_h * grid.scale, grid.tile_w * grid.scale
    out = np.zeros((tiles.shape[1], *grid.sr_shape))
    for k in range(grid.count):
        i, j = divmod(k, grid.n_x)
        w = grid.weights_y[i][:, None] * grid.weights_x[j][None, :]  # (s*th, s*tw)
        y, x = grid.y0[i] * s, grid.x0[j] * s
        out[:, y : y + th, x : x + tw] += w * tiles[k].astype(np.float64)
    return out.astype(np.float32)


def area_weights_ref(src: int, dst: int) -> np.ndarray:
    """(dst, src) float64 matrix of the area average along one axis: row i spreads 1 over the source pixels
    under [i src/dst, (i+1) src/dst), each by the length it shares with that interval (rows sum to 1)."""
    r = src / dst
    m = np.zeros((dst, src))
    for i in range(dst):
        lo, hi = i * r, (i + 1) * r
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), src)):
            m[i, j] = (min(hi, j + 1) - max(lo, j)) / r
    return m


def downscale_ref(planar: np.ndarray, height: int, width: int, dtype=np.float32) -> np.ndarray:
    """(C, H, W) float32 -> (C, height, width) by area average, in float64, rounded to dtype once."""
    wy, wx = area_weights_ref(planar.shape[1], height), area_weights_ref(planar.shape[2], width)
    out = wy[None] @ planar.astype(np.float64) @ wx.T[None]  # (1, h, H) @ (C, H, W) @ (1, W, w)
    return out.astype(dtype)
