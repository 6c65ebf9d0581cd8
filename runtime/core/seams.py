"""How far apart the tiles of a fixed-shape graph put an image's seams: a figure measured, never assumed.

Glossary (code name -> meaning / symbol):
    th, tw        the graph's fixed LR input (tile) size;  s the scale
    seam spread   max and mean |difference| (in 1/255) between two tilings of one image whose tile grids are
                  offset by half a tile: a fixed-shape graph cannot run the whole image, so the seam error
                  against an untiled result cannot be computed; where two tilings that cut in different places
                  disagree, at least one of them is off by half that much, so the figure is the seams' scale
    seam crop     the top-left 2.5 x 2.5 tiles of the image (or all of it), so measuring costs a few tiles
"""
from __future__ import annotations

import numpy as np

from mambalitesr.runtime.core.banded import upscale_image
from mambalitesr.runtime.core.frames import Frame


def seam_crop(rgb: np.ndarray, tile_hw: tuple[int, int]) -> np.ndarray:
    th, tw = tile_hw
    return rgb[: min(rgb.shape[0], 2 * th + th // 2), : min(rgb.shape[1], 2 * tw + tw // 2)]


def seam_spread(processor, rgb) -> tuple[float, float]:
    """(max, mean) |difference| in 1/255 between two tilings of ``rgb`` offset by half a tile.

    A fixed-shape graph cannot run the whole image, so its seam error against an untiled result cannot be
    measured here; two tile grids that cut the image in different places can be compared, and where they
    disagree at least one of them is off by half that much: the figure is the scale of the seams.
    """
    th, tw = processor.backend.fixed_hw
    s = processor.backend.scale
    dy, dx = th // 2, tw // 2
    shifted = np.pad(rgb, ((dy, 0), (dx, 0), (0, 0)), mode="edge")
    a = upscale_image(processor, Frame(rgb, 0, 0.0, "rgb"), order="rgb").astype(np.int16)
    b = upscale_image(processor, Frame(shifted, 0, 0.0, "rgb"), order="rgb")[s * dy:, s * dx:].astype(np.int16)
    diff = np.abs(a - b)
    return float(diff.max()), float(diff.mean())
