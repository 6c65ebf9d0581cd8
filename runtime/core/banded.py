"""Upscale an image of any size with memory bounded by one row of tiles, not by the whole SR frame in float.

Glossary (code name -> meaning / symbol):
    H, W, s        LR image size and scale; the result is uint8 (s*H, s*W, 3)
    th, tw, o      tile size and overlap (see runtime/core/tiles.py); tile row i starts at LR y0[i]
    band i         tile row i inferred and merged along x by the C frame path: float32 (3, s*th, s*PW)
    pending        the merged rows not final yet: SR rows [s*y0[i], s*(y0[i] + th)) after band i
    ratio_y        the running-mean ratios of the frame's grid (``TileGrid.ratios_y``): folding band i
                   into ``pending`` with pending + ratio_y[i] * (band - pending) is the same feathered
                   merge as ``framepath.merge_tiles`` on the whole grid (x first, then y, in order)

Rows above s*y0[i+1] are covered by no later tile, so they are converted to uint8 as soon as band i+1
arrives. Each band's LR rows are packed to planar float only when the band runs, so the float working
set is one LR band, two SR bands and one row of tiles, whatever the image height; only the uint8 input
and result scale with the image. The network sees one tile per call (the default strips are one tile
per band), so its working set is bounded by the tile: th x W for strips, th x tw for narrower tiles.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mambalitesr.runtime.core import framepath as fp
from mambalitesr.runtime.core.inference import InferenceQueue
from mambalitesr.runtime.core.processing import FrameProcessor, Work, edge_pad, resize_frame
from mambalitesr.runtime.core.tiles import TileGrid


def upscale_image(
    processor: FrameProcessor,
    frame,
    order: str = "rgb",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """One frame (frames.Frame) -> uint8 (s*H, s*W, 3) in ``order``; ``progress(n)`` after every n tiles."""
    h, w = processor.frame_hw(frame)
    plan = processor.plan(h, w)
    if plan.grid is None:
        out = processor.process(frame, order)
        if progress:
            progress(1)
        return out
    s, grid = plan.scale, plan.grid
    image = resize_frame(frame, processor.input_size)
    band_lr = np.empty((3, plan.tile_h, plan.pad_w), dtype=processor.backend.input_dtype)  # (3, th, PW) LR
    band_grid = TileGrid.plan(plan.tile_h, plan.pad_w, plan.tile_h, plan.tile_w, grid.overlap, s)
    assert band_grid.x0 == grid.x0  # one tile row of the frame grid
    result = np.empty((s * h, s * w, 3), dtype=np.uint8)
    # One call at a time: the network's working set stays one tile.
    calls = InferenceQueue(processor, depth=1, on_part=(lambda part: progress(part.stop - part.start)) if progress else None)

    def emit(rows: np.ndarray, r0: int) -> None:
        """Final SR rows [r0, r0 + len) of the padded frame -> uint8 rows of the result (crop the pad)."""
        r1 = min(r0 + rows.shape[1], s * h)
        if r1 > r0:
            fp.unpack(rows[:, : r1 - r0, : s * w], out=result[r0:r1], order=order)

    pending, p0 = None, 0
    for i, y in enumerate(grid.y0):
        rows = min(plan.tile_h, h - y)  # below h: the pad of a frame shorter than one tile
        fp.pack(image[y : y + rows], frame.fmt, out=band_lr[:, :rows, :w])
        edge_pad(band_lr, rows, w)
        tiles = fp.split_tiles(band_lr, band_grid)  # (n_x, 3, th, tw)
        work = Work([frame], plan, tiles)
        calls.submit(work, _calls(processor, work))
        calls.drain()
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


def _calls(processor: FrameProcessor, work: Work) -> list[slice]:
    """The backend calls of one band: one call for a strip; tile by tile (or by the backend's fixed batch)
    when the band holds several tiles, so that narrow tiles bound the network's working set too."""
    if len(work.batch) == 1:
        return processor.chunks(work)
    step = processor.backend.fixed_batch or 1
    return [slice(k, min(k + step, len(work.batch))) for k in range(0, len(work.batch), step)]
