"""Tile geometry for frames larger than the engine's fixed input shape, and the feathering weights.

Glossary (code name -> symbol):
    height, width    H, W    LR frame size
    tile_h, tile_w   th, tw  LR tile size (the engine's fixed input)
    overlap          o       requested LR overlap between neighbouring tiles
    scale            s       SR factor; an SR tile is (s*th, s*tw), the SR frame (s*H, s*W)
    y0, x0                   LR tile starts; tile k = i * n_x + j starts at (y0[i], x0[j])

Along each axis tiles start every t - o pixels and the last one is moved back onto the border,
so every tile is full size (its overlap with the previous one may then exceed o).

Feathering is separable: an SR tile's weight at (y, x) is wy_i(y) * wx_j(x). Along an axis, where a
tile overlaps a neighbour by O SR pixels (O = s * its LR overlap o'), the outer D = s * (o' // 4) SR
pixels next to the tile's edge get weight 0, the next O - 2D pixels ramp linearly up to 1 (sampled at
pixel centres), and the rest is 1; never at the frame border. So in a shared zone one tile's ramp
falls exactly where the other's rises (they add up to 1), and neither tile's outermost quarter of the
overlap counts at all: a network with a wide receptive field (the Mamba scan, the convolutions' zero
padding) is least like its untiled self right at a tile's edge, and there the other tile is used
instead. The weights are then normalised over the covering tiles, so they sum to 1 at every pixel,
also where three tiles meet; every pixel keeps a positive total weight (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def tile_starts(n: int, t: int, o: int) -> tuple[int, ...]:
    """LR starts of full-size tiles of length t covering [0, n) with overlap o, last on the border."""
    if t <= 0 or n <= 0:
        raise ValueError(f"sizes must be positive (frame {n}, tile {t})")
    if not 0 <= o < t:
        raise ValueError(f"overlap {o} must be in [0, tile size {t})")
    if n < t:
        raise ValueError(
            f"frame side {n} is smaller than the tile side {t}: pad or resize the frame to at least the engine shape"
        )
    step = t - o
    starts = list(range(0, n - t, step))
    starts.append(n - t)  # the last tile is aligned to the border
    return tuple(starts)


def edge_discard(o: int) -> int:
    """LR pixels at a tile's edge that get weight 0 for an LR overlap o with the neighbour there."""
    return o // 4


def _ramp(q: np.ndarray, overlap_lr: int, s: int) -> np.ndarray:
    """Raw weight at SR distance q from a shared edge: 0 over the discarded band, then linear to 1."""
    O, D = overlap_lr * s, edge_discard(overlap_lr) * s
    return np.clip((q - D) / (O - 2 * D), 0.0, 1.0)


def _raw_ramps(starts: tuple[int, ...], t: int, s: int) -> np.ndarray:
    """(K, t*s) raw weights: 0 on the discarded band of each shared edge, ramps, 1 inside."""
    T = t * s
    q = np.arange(T, dtype=np.float64) + 0.5  # pixel centres, local SR coordinate
    ramps = np.ones((len(starts), T))
    for i, a in enumerate(starts):
        if i > 0:
            left = starts[i - 1] + t - a  # LR overlap with the previous tile
            if left > 0:
                ramps[i] = np.minimum(ramps[i], _ramp(q, left, s))
        if i + 1 < len(starts):
            right = a + t - starts[i + 1]
            if right > 0:
                ramps[i] = np.minimum(ramps[i], _ramp(T - q, right, s))
    return ramps


def _place(starts: tuple[int, ...], t: int, s: int, n: int, local: np.ndarray) -> np.ndarray:
    """(K, t*s) local rows -> (K, n*s) on the SR axis, zero outside each tile."""
    out = np.zeros((len(starts), n * s))
    for i, a in enumerate(starts):
        out[i, a * s : (a + t) * s] = local[i]
    return out


def axis_weights(starts: tuple[int, ...], t: int, n: int, s: int) -> np.ndarray:
    """(K, t*s) normalised feathering weights of each tile, in tile-local SR coordinates (sum 1 per pixel)."""
    ramps = _raw_ramps(starts, t, s)
    total = _place(starts, t, s, n, ramps).sum(axis=0)  # (n*s,)
    if not (total > 0).all():  # cannot happen for starts from tile_starts; guards hand-made ones
        raise ValueError(f"tile starts {starts} (tile {t}) leave pixels with no positive weight")
    return np.stack([ramps[i] / total[a * s : (a + t) * s] for i, a in enumerate(starts)])


def axis_ratios(starts: tuple[int, ...], t: int, n: int, s: int) -> np.ndarray:
    """(K, t*s) float32 running-mean ratios: raw weight over the sum of raw weights of tiles 0..i.

    Folding tiles in order with out += ratio * (tile - out) gives the normalised weighted mean;
    the first tile with weight at a pixel has ratio exactly 1 (tiles before it there have ratio 0).
    """
    ramps = _raw_ramps(starts, t, s)
    cumulative = np.cumsum(_place(starts, t, s, n, ramps), axis=0)  # (K, n*s)
    ratios = np.zeros((len(starts), t * s))
    for i, a in enumerate(starts):
        c = cumulative[i, a * s : (a + t) * s]
        # 0 where no tile so far has weight (this one's discarded band before the next tile takes over):
        # the fold then leaves the pixel alone, and the first tile with weight lands with ratio 1.
        np.divide(ramps[i], c, out=ratios[i], where=c > 0)
    return ratios.astype(np.float32)


@dataclass(frozen=True, eq=False)
class TileGrid:
    """Where the tiles of one frame geometry lie, with their feathering tables (computed once)."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int
    scale: int
    y0: tuple[int, ...]
    x0: tuple[int, ...]

    @classmethod
    def plan(cls, height: int, width: int, tile_h: int, tile_w: int, overlap: int, scale: int = 1) -> "TileGrid":
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        return cls(
            height, width, tile_h, tile_w, overlap, scale,
            tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap),
        )

    @property
    def n_y(self) -> int:
        return len(self.y0)

    @property
    def n_x(self) -> int:
        return len(self.x0)

    @property
    def count(self) -> int:
        """N, the number of tiles (the batch size fed to the engine)."""
        return self.n_y * self.n_x

    @property
    def sr_shape(self) -> tuple[int, int]:
        return self.height * self.scale, self.width * self.scale

    def origin(self, k: int) -> tuple[int, int]:
        """LR (y, x) start of tile k."""
        return self.y0[k // self.n_x], self.x0[k % self.n_x]

    @cached_property
    def y0_array(self) -> np.ndarray:
        return np.ascontiguousarray(self.y0, dtype=np.int32)

    @cached_property
    def x0_array(self) -> np.ndarray:
        return np.ascontiguousarray(self.x0, dtype=np.int32)

    @cached_property
    def weights_y(self) -> np.ndarray:
        """(n_y, s*th) normalised weights along y."""
        return axis_weights(self.y0, self.tile_h, self.height, self.scale)

    @cached_property
    def weights_x(self) -> np.ndarray:
        """(n_x, s*tw) normalised weights along x."""
        return axis_weights(self.x0, self.tile_w, self.width, self.scale)

    @cached_property
    def ratios_y(self) -> np.ndarray:
        """(n_y, s*th) float32 running-mean ratios along y (for the C merge)."""
        return axis_ratios(self.y0, self.tile_h, self.height, self.scale)

    @cached_property
    def ratios_x(self) -> np.ndarray:
        """(n_x, s*tw) float32 running-mean ratios along x (for the C merge)."""
        return axis_ratios(self.x0, self.tile_w, self.width, self.scale)
