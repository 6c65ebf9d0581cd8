"""What flows through the frame path: a captured ``Frame`` and the ``Output`` a backend made of it.

Glossary (code name -> meaning):
    Frame       one picture: ``image`` uint8 (H, W, 3) in ``fmt`` ("bgr" or "rgb"), its ``index`` in the
                source's own numbering, ``t_capture`` (time.perf_counter when it was taken)
    Output      what reaches a sink: ``sr`` uint8 BGR (s*H, s*W, 3), the captured ``frame`` (for a
                bicubic comparison) and the frame ``index``
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 in ``fmt`` order
    index: int
    t_capture: float
    fmt: str = "bgr"

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


@dataclass
class Output:
    sr: np.ndarray  # (s*H, s*W, 3) uint8 BGR
    frame: Frame  # the captured input
    index: int
