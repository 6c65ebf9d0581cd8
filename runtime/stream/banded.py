"""Upscale an image of any size with memory bounded by one row of tiles, not by the whole SR frame in float.

Glossary (code name -> meaning / symbol):
    H, W, s        LR image size and scale; the result is uint8 (s*H, s*W, 3)
    th, tw, o      tile size and overlap (see runtime/tiles.py); tile row i starts at LR y0[i]
    band i         tile row i inferred and merged along x by the C frame path: float32 (3, s*th, s*PW)
    pending        the merged rows not final yet: SR rows [s*y0[i], s*(y0[i] + th)) after band i
    ratio_y        the running-mean ratios of the frame's grid (``TileGrid.ratios_y``): folding band i
                   into ``pending`` with pending + ratio_y[i] * (band - pending) is the same feathered
                   merge as ``framepath.merge_tiles`` on the whole grid (x first, then y, in order)

Rows above s*y0[i+1] are covered by no later tile, so they are converted to uint8 as soon as band i+1
arrives; the float working set is two bands and one row of tiles, whatever the image height.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mambalitesr.runtime import framepath as fp
from mambalitesr.runtime.stream.processing import FrameProcessor, Work, edge_pad, resize_frame
from mambalitesr.runtime.tiles import TileGrid


def upscale_image(
    processor: FrameProcessor,
    frame,
    order: str = "rgb",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """One frame (sources.Frame) -> uint8 (s*H, s*W, 3) in ``order``; ``progress(n)`` after every n tiles."""
    h, w = processor.frame_hw(frame)
    plan = processor.plan(h, w)
    if plan.grid is None:
        out = processor.process(frame, order)
        if progress:
            progress(1)
        return out
    s, grid = plan.scale, plan.grid
    image = resize_frame(frame, processor.input_size)
    planar = np.empty((3, plan.pad_h, plan.pad_w), dtype=processor.backend.input_dtype)  # (3, PH, PW) LR
    fp.pack(image, frame.fmt, out=planar[:, :h, :w])
    edge_pad(planar, h, w)
    band_grid = TileGrid.plan(plan.tile_h, plan.pad_w, plan.tile_h, plan.tile_w, grid.overlap, s)
    assert band_grid.x0 == grid.x0  # one tile row of the frame grid
    result = np.empty((s * h, s * w, 3), dtype=np.uint8)

    def emit(rows: np.ndarray, r0: int) -> None:
        """Final SR rows [r0, r0 + len) of the padded frame -> uint8 rows of the result (crop the pad)."""
        r1 = min(r0 + rows.shape[1], s * h)
        if r1 > r0:
            fp.unpack(rows[:, : r1 - r0, : s * w], out=result[r0:r1], order=order)

    pending, p0 = None, 0
    for i, y in enumerate(grid.y0):
        tiles = fp.split_tiles(planar[:, y : y + plan.tile_h], band_grid)  # (n_x, 3, th, tw)
        work = Work([frame], plan, tiles)
        for part in processor.chunks(work):
            pend = processor.backend.submit(processor.chunk_input(work, part))
            processor.store(work, part, pend.wait(), pend.compute_s)
            if progress:
                progress(part.stop - part.start)
        band = fp.merge_tiles(work.sr, band_grid)  # (3, s*th, s*PW)
        b0 = s * y
        if pending is not None:
            emit(pending[:, : b0 - p0], p0)
            old = pending[:, b0 - p0 :]  # rows [b0, p0 + s*th), all inside this band
            ratio = grid.ratios_y[i][: old.shape[1], None]  # (rows, 1)
            band[:, : old.shape[1]] = old + ratio * (band[:, : old.shape[1]] - old)
        pending, p0 = band, b0
    emit(pending, p0)
    return result
