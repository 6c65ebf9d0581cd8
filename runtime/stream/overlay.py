"""Live figures drawn onto the output frame (``--overlay``): FPS, end-to-end latency, watts.

Glossary (code name -> meaning):
    RateMeter    frames per second over a sliding window of the last ``window_s`` seconds
    draw_overlay writes text lines in the top-left corner on a dark box, in place, BGR uint8 (H, W, 3)
"""
from __future__ import annotations

from collections import deque

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 1.0):
        self.window_s = window_s
        self.times: deque[float] = deque()

    def tick(self, now: float) -> float:
        self.times.append(now)
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        if len(self.times) < 2:
            return float("nan")
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def overlay_lines(fps: float, latency_ms: float, watts: float | None) -> list[str]:
    power = f"{watts:.1f} W" if watts is not None else "power n/a"
    fps_text = f"{fps:.1f} fps" if fps == fps else "-- fps"  # NaN until two frames are in
    return [fps_text, f"{latency_ms:.0f} ms latency", power]


def draw_overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw ``lines`` top-left onto BGR uint8 ``image`` in place; the scale follows the frame height."""
    import cv2

    scale = max(0.4, image.shape[0] / 720)
    thickness = max(1, int(round(scale * 1.5)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(t, font, scale, thickness)[0] for t in lines]
    line_h = max(h for _, h in sizes) + int(10 * scale)
    width = max(w for w, _ in sizes) + int(16 * scale)
    box_h = line_h * len(lines) + int(8 * scale)
    roi = image[:box_h, :width]
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken, keeping the picture visible
    for i, text in enumerate(lines):
        y = int(6 * scale) + line_h * (i + 1) - int(6 * scale)
        cv2.putText(image, text, (int(8 * scale), y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image
