"""One frame through a backend: pack to planar float, pad or split into tiles, infer, merge, unpack.

Glossary (code name -> meaning / symbol):
    H, W         the frame size after the optional ``input_size`` resize (LR)
    PH, PW       the padded size: at least one tile; the pad is an edge replica, cropped after inference
    th, tw       tile size: the backend's fixed input shape, else th = ``tile`` rows by tw = ``tile_width``
                 columns, the whole frame width when that is None (capped by a profile max)
    o (overlap)  LR overlap between neighbouring tiles (feathered merge, see runtime/core/tiles.py)
    strips       the default tiles: ``tile`` rows of the full width. The Mamba scan runs row-major over the
                 whole frame, so a pixel's output depends on everything to its left in its row. Measured on
                 the shipped student (DIV2K mosaic, 480x270): cutting the frame on the left changes the output
                 by up to 8/255 from 8 to 128 LR px into the cut part and still 1.8/255 at 250 px, while a cut
                 above fades within a few rows (0.31/255 at 4 LR rows, under 0.09/255 past 8). At 1920x1080,
                 256x256 tiles (overlap 32) differ from the untiled result by up to 40/255; 64-row strips with
                 the outer quarter of each overlap discarded by 6, 1, 1 /255 at overlap 8, 16, 24 (a plain
                 feather over the whole overlap: 16, 8, 6). Memory is bounded by th x W
    N            tiles per frame (1 when the frame goes through in one call)
    s            the backend's scale; SR output (3, s*H, s*W) -> uint8 BGR (s*H, s*W, 3)
    FramePlan    how frames of one size go through: padding and the tile grid (computed once per size)
    Work         frames in flight: their model input (F*N, 3, th, tw) and, after inference, SR (F*N, 3, s*th, s*tw)
    fit          frames larger than the backend serves whole (a fixed shape, or a profile's max) are shrunk,
                 aspect kept, to the largest size it serves in one call (``fit_size``), by the C frame path's area
                 average (``framepath.downscale``), instead of being tiled: a 1280x720 camera on an engine with a
                 640x480 max runs at 640x360 and shows 2560x1440 at x4. Announced once per frame size (``log``)

The pipeline calls ``prepare`` / ``run`` / ``finish`` from three different threads; ``process`` does
all three for one frame. All pixel conversion and tiling goes through the C frame path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mambalitesr.errors import UserError
from mambalitesr.runtime.core import framepath as fp
from mambalitesr.runtime.core.inference import InferenceQueue
from mambalitesr.runtime.core.tiles import TileGrid


@dataclass(frozen=True)
class FramePlan:
    height: int
    width: int
    pad_h: int
    pad_w: int
    tile_h: int
    tile_w: int
    scale: int
    grid: TileGrid | None  # None: the padded frame is one call

    @property
    def tiles(self) -> int:
        return self.grid.count if self.grid is not None else 1

    @property
    def padded(self) -> bool:
        return (self.pad_h, self.pad_w) != (self.height, self.width)


def plan_frame(height: int, width: int, scale: int, fixed_hw=None, max_hw=None, tile: int | None = None,
               overlap: int = 16, min_hw=None, tile_width: int | None = None) -> FramePlan:
    """Padding and tiling for an (H, W) frame on a backend with the given fixed / max / min shape."""
    if fixed_hw:
        th, tw = fixed_hw
    else:
        th, tw = tile or height, tile_width or width
        if max_hw:
            th, tw = min(th, max_hw[0]), min(tw, max_hw[1])
        th, tw = min(th, height), min(tw, width)  # a dynamic backend takes a small frame as it is...
        if min_hw:
            th, tw = max(th, min_hw[0]), max(tw, min_hw[1])  # ...unless below its profile's minimum: pad
    pad_h, pad_w = max(height, th), max(width, tw)
    if (pad_h, pad_w) == (th, tw):
        return FramePlan(height, width, pad_h, pad_w, th, tw, scale, None)
    o = min(overlap, th - 1, tw - 1)
    if o < 0:
        raise UserError(f"tile overlap must be >= 0, got {overlap}")
    grid = TileGrid.plan(pad_h, pad_w, th, tw, o, scale)
    return FramePlan(height, width, pad_h, pad_w, th, tw, scale, grid)


@dataclass
class Work:
    frames: list  # frames.Frame, all of one size
    plan: FramePlan
    batch: np.ndarray  # (F*N, 3, th, tw) model input
    sr: np.ndarray | None = None  # (F*N, 3, s*th, s*tw) float32 after inference
    compute_s: float = 0.0  # backend time for the whole Work
    times: dict = field(default_factory=dict)  # stage -> seconds spent on this Work


def resize_frame(frame, size: tuple[int, int] | None):
    """(H, W, 3) uint8 -> (h, w, 3) at ``size`` = (w, h); area filter when shrinking."""
    if size is None or (frame.image.shape[1], frame.image.shape[0]) == tuple(size):
        return frame.image
    import cv2

    shrink = size[0] < frame.image.shape[1]
    return cv2.resize(frame.image, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def fit_size(height: int, width: int, limit_hw: tuple[int, int] | None) -> tuple[int, int]:
    """The largest (h, w) with the aspect of (height, width) inside ``limit_hw``; unchanged when it fits."""
    if limit_hw is None or (height <= limit_hw[0] and width <= limit_hw[1]):
        return height, width
    f = min(limit_hw[0] / height, limit_hw[1] / width)
    return max(1, int(height * f)), max(1, int(width * f))


def edge_pad(buf: np.ndarray, h: int, w: int) -> None:
    """Fill buf (3, PH, PW) outside [:h, :w] with the nearest edge pixel (in place)."""
    if buf.shape[1] > h:
        buf[:, h:, :w] = buf[:, h - 1 : h, :w]
    if buf.shape[2] > w:
        buf[:, :, w:] = buf[:, :, w - 1 : w]


class FrameProcessor:
    """Frames of any size through one backend; plans are cached per frame size."""

    def __init__(self, backend, tile: int | None = None, overlap: int = 16, input_size: tuple[int, int] | None = None,
                 tile_width: int | None = None, fit: bool = False, log=None):
        if tile is not None and tile < 8 and tile != 0:
            raise UserError(f"tile size {tile} is too small (at least 8, or 0 for whole frames)")
        if tile_width is not None and tile_width < 8 and tile_width != 0:
            raise UserError(f"tile width {tile_width} is too small (at least 8, or 0 for the full frame width)")
        if overlap < 0:
            raise UserError(f"tile overlap must be >= 0, got {overlap}")
        self.backend = backend
        self.tile = tile or None
        self.tile_width = tile_width or None
        self.overlap = overlap
        self.input_size = input_size
        self.fit = fit and input_size is None and self.tile is None and self.tile_width is None
        self.log = log
        self._plans: dict[tuple[int, int], FramePlan] = {}
        self._fits: dict[tuple[int, int], tuple[int, int]] = {}

    def plan(self, height: int, width: int) -> FramePlan:
        key = (height, width)
        if key not in self._plans:
            b = self.backend
            self._plans[key] = plan_frame(height, width, b.scale, b.fixed_hw, b.max_hw, self.tile, self.overlap,
                                          b.min_hw, self.tile_width)
        return self._plans[key]

    def frame_hw(self, frame) -> tuple[int, int]:
        """The (H, W) the model sees for ``frame``: --input-size, else the fitted size, else the frame's."""
        if self.input_size is not None:
            return self.input_size[1], self.input_size[0]
        if self.fit:
            return self._fit(frame.hw)
        return frame.hw

    def _fit(self, hw: tuple[int, int]) -> tuple[int, int]:
        if hw not in self._fits:
            b = self.backend
            fitted = fit_size(hw[0], hw[1], b.tile_limit)
            self._fits[hw] = fitted
            if fitted != hw and self.log is not None:
                what = (f"the model's fixed input {b.fixed_hw[1]}x{b.fixed_hw[0]}" if b.fixed_hw else
                        f"the backend's max input {b.max_hw[1]}x{b.max_hw[0]}")
                s = b.scale
                self.log(f"{hw[1]}x{hw[0]} frames exceed {what}: shrunk in the C frame path (area average) to "
                         f"{fitted[1]}x{fitted[0]}, the largest size it serves whole, so the output is "
                         f"{s * fitted[1]}x{s * fitted[0]} (x{s}); --input-size WxH picks another size, --tile N "
                         "tiles the full frame instead (with seams)")
        return self._fits[hw]

    def _pack_into(self, frame, dst: np.ndarray, h: int, w: int) -> None:
        """``frame`` as planar (3, h, w) into ``dst``: packed as it is, shrunk by the C area average, or
        (enlarging, --input-size only) resized by OpenCV first."""
        fh, fw = frame.hw
        if (fh, fw) == (h, w):
            fp.pack(frame.image, frame.fmt, out=dst)
        elif h <= fh and w <= fw:
            fp.downscale(fp.pack(frame.image, frame.fmt, dtype=np.float32), h, w, out=dst)
        else:
            fp.pack(resize_frame(frame, (w, h)), frame.fmt, out=dst)

    # -- stage 1: pack ------------------------------------------------------------------
    def prepare(self, frames: list) -> Work:
        h, w = self.frame_hw(frames[0])
        plan = self.plan(h, w)
        n = plan.tiles
        batch = np.empty((len(frames) * n, 3, plan.tile_h, plan.tile_w), dtype=self.backend.input_dtype)
        for k, frame in enumerate(frames):
            if self.frame_hw(frame) != (h, w):
                raise ValueError(f"frames of one Work must share a size: {self.frame_hw(frame)} != {(h, w)}")
            if plan.grid is None:
                self._pack_into(frame, batch[k][:, :h, :w], h, w)
                edge_pad(batch[k], h, w)
            else:
                planar = np.empty((3, plan.pad_h, plan.pad_w), dtype=batch.dtype)
                self._pack_into(frame, planar[:, :h, :w], h, w)
                edge_pad(planar, h, w)
                fp.split_tiles(planar, plan.grid, out=batch[k * n : (k + 1) * n])
        return Work(list(frames), plan, batch)

    # -- stage 2: infer (runtime/core/inference.py runs the calls; the pipeline overlaps Works) ---
    def chunks(self, work: Work) -> list[slice]:
        """Slices of work.batch that each fit one backend call."""
        limit = self.backend.batch_limit or len(work.batch)
        return [slice(i, min(i + limit, len(work.batch))) for i in range(0, len(work.batch), limit)]

    def chunk_input(self, work: Work, part: slice) -> np.ndarray:
        """The input of one call; a fixed-batch backend gets the last chunk padded with repeats."""
        x = work.batch[part]
        fixed = self.backend.fixed_batch
        if fixed and len(x) < fixed:
            x = np.concatenate([x, np.repeat(x[-1:], fixed - len(x), axis=0)])
        return x

    def store(self, work: Work, part: slice, out: np.ndarray, compute_s: float) -> None:
        """Put one call's output (B, 3, s*th, s*tw) float32 into work.sr (no copy when it is the whole batch)."""
        n = part.stop - part.start
        work.compute_s += compute_s
        if work.sr is None and n == len(work.batch) and out.dtype == np.float32:
            work.sr = out[:n]
            return
        if work.sr is None:
            p, s = work.plan, work.plan.scale
            work.sr = np.empty((len(work.batch), 3, s * p.tile_h, s * p.tile_w), dtype=np.float32)
        work.sr[part] = out[:n]

    def run(self, work: Work) -> Work:
        queue = InferenceQueue(self)
        queue.submit(work)
        queue.drain()
        return work

    # -- stage 3: merge and unpack ------------------------------------------------------
    def finish(self, work: Work, order: str = "bgr") -> list[np.ndarray]:
        """SR of each frame of ``work`` as uint8 (s*H, s*W, 3) in ``order``."""
        p, s, n = work.plan, work.plan.scale, work.plan.tiles
        outputs = []
        for k in range(len(work.frames)):
            if p.grid is None:
                sr = work.sr[k]  # (3, s*PH, s*PW)
            else:
                sr = fp.merge_tiles(work.sr[k * n : (k + 1) * n], p.grid)
            outputs.append(fp.unpack(sr[:, : s * p.height, : s * p.width], order=order))
        return outputs

    def process(self, frame, order: str = "bgr") -> np.ndarray:
        """One frame through all three stages (for callers without a pipeline)."""
        return self.finish(self.run(self.prepare([frame])), order)[0]

