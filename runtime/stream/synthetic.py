"""A deterministic moving test pattern, live-paced or unpaced, that can simulate a camera disconnect.

Glossary (code name -> meaning):
    pattern(i)   frame i: colour gradient, a fine grid (detail for SR), a circle and a square moving
                 with i, and the text "frame i"; BGR uint8 (H, W, 3), a pure function of i
    fps          None: unpaced, frames are made as fast as they are taken and none is lost;
                 a number: live, frame i is due at t0 + i / fps whether or not anyone reads it
    drop_at      simulate unplugging when frame ``drop_at`` is due: ``read`` raises SourceLost and
                 ``open`` fails for ``gap_s`` seconds, then the pattern resumes (live: at the frame due now)
"""
from __future__ import annotations

import time

import numpy as np

from mambalitesr.errors import UserError
from mambalitesr.runtime.core.frames import Frame
from mambalitesr.runtime.stream.sources import Source, SourceLost, SourceUnavailable, size_fps


class SyntheticSource(Source):
    """A deterministic moving test pattern: colour gradient, fine grid, moving shapes, the frame number.

    ``fps`` None: finite-style, as fast as the pipeline takes frames, none lost (``frames`` caps it).
    ``fps`` given: live, frame i is due at t0 + i / fps whether or not anyone reads it.
    ``drop_at`` simulates a camera unplugged when frame ``drop_at`` is due: ``read`` raises SourceLost
    and ``open`` fails for ``gap_s`` seconds, then the pattern resumes (live: at the frame now due).
    """

    def __init__(self, width: int = 320, height: int = 180, fps: float | None = None, frames: int | None = None,
                 drop_at: int | None = None, gap_s: float = 0.5):
        if width < 16 or height < 16:
            raise UserError(f"synthetic source: {width}x{height} is too small (at least 16x16)")
        if fps is not None and fps <= 0:
            raise UserError(f"synthetic source: fps must be positive, got {fps}")
        self.width, self.height, self.fps, self.frames = int(width), int(height), fps, frames
        self.live = fps is not None
        self.drop_at, self.gap_s = drop_at, float(gap_s)
        self._next = 0
        self._t0: float | None = None
        self._offline_until = 0.0
        self._opened = False
        self._background = self._make_background()

    def _make_background(self) -> np.ndarray:
        h, w = self.height, self.width
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
        bg = np.empty((h, w, 3), dtype=np.uint8)
        bg[..., 0] = (255 - 0.5 * x - 0.3 * y).clip(0, 255).astype(np.uint8)  # B
        bg[..., 1] = (0.6 * y + 40).clip(0, 255).astype(np.uint8)  # G
        bg[..., 2] = (0.8 * x + 20).clip(0, 255).astype(np.uint8)  # R
        bg[::8, :, :] //= 2  # a fine grid: detail for the SR model to resolve
        bg[:, ::8, :] //= 2
        return bg

    def pattern(self, index: int) -> np.ndarray:
        """Frame ``index`` of the pattern, BGR uint8 (H, W, 3); a pure function of the index."""
        import cv2

        h, w = self.height, self.width
        img = self._background.copy()
        r = max(4, min(h, w) // 8)
        cx = int((index * 3) % (w + 2 * r)) - r
        cy = int(h / 2 + (h / 4) * np.sin(index / 15.0))
        cv2.circle(img, (cx, cy), r, (40, 40, 230), -1, cv2.LINE_AA)
        side = max(6, min(h, w) // 6)
        period = 2 * max(1, h - side)
        bounce = index * 2 % period
        top = bounce if bounce < period // 2 else period - bounce
        left = (w - side) * 2 // 3
        cv2.rectangle(img, (left, top), (left + side, top + side), (230, 200, 30), -1)
        scale = max(0.3, h / 360)
        cv2.putText(img, f"frame {index}", (4, max(12, int(24 * scale))), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
        return img

    def open(self) -> None:
        now = time.perf_counter()
        if now < self._offline_until:
            raise SourceUnavailable(f"synthetic camera offline (simulated disconnect, {self._offline_until - now:.2f} s left)")
        if self._t0 is None:
            self._t0 = now
        self._opened = True

    def read(self) -> Frame | None:
        if not self._opened:
            raise SourceLost("synthetic source read while closed")
        if self.frames is not None and self._next >= self.frames:
            return None
        if self.live:
            due = self._t0 + self._next / self.fps
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:  # behind schedule (we were away): a camera would have moved on to the frame due now
                self._next = max(self._next, int((time.perf_counter() - self._t0) * self.fps))
        if self.drop_at is not None and self._next >= self.drop_at:
            self.drop_at = None  # one simulated disconnect
            self._offline_until = time.perf_counter() + self.gap_s
            self._opened = False
            raise SourceLost(f"synthetic camera disconnected at frame {self._next} (simulated)")
        index = self._next
        self._next += 1
        return Frame(self.pattern(index), index, time.perf_counter(), "bgr")

    def close(self) -> None:
        self._opened = False

    def describe(self) -> str:
        pace = f"live at {self.fps:g} fps" if self.live else "unpaced (as fast as taken)"
        drop = f", disconnect at frame {self.drop_at} for {self.gap_s:g} s" if self.drop_at is not None else ""
        return f"synthetic {self.width}x{self.height}, {pace}{drop}"


def synthetic_source(rest: str) -> SyntheticSource:
    """``synthetic[:WxH][@FPS][:drop_at=N][:gap=S][:frames=N]`` (the text after "synthetic:")."""
    opts: dict = {}
    for part in [p for p in rest.split(":") if p]:
        if "=" in part:
            key, _, value = part.partition("=")
            try:
                if key == "drop_at":
                    opts["drop_at"] = int(value)
                elif key == "gap":
                    opts["gap_s"] = float(value)
                elif key == "frames":
                    opts["frames"] = int(value)
                else:
                    raise UserError(f"synthetic source: unknown option {key!r} (drop_at, gap, frames)")
            except ValueError:
                raise UserError(f"synthetic source: {part!r} needs a number") from None
        else:
            w, h, fps = size_fps(part, "synthetic source")
            if w:
                opts["width"], opts["height"] = w, h
            if fps:
                opts["fps"] = fps
    return SyntheticSource(**opts)
