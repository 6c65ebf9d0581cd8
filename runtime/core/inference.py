"""The one inference loop: chunk -> submit -> store, with up to ``depth`` backend calls in flight.

Glossary (code name -> meaning):
    Work          frames in flight (runtime/core/processing.py): the model input ``batch`` (F*N, 3, th, tw)
    part          a slice of ``work.batch`` that fits one backend call (``FrameProcessor.chunks``)
    in flight     submitted calls not yet waited for; with a backend whose ``max_in_flight`` > 1 (TensorRT)
                  call k+1 is submitted before call k is waited for, so its H2D copy overlaps k's compute
    depth         the most calls in flight (default: the backend's ``max_in_flight``)
    on_part       called after each stored call with its part (progress bars count tiles with it)
    on_done       called with (work, seconds from its first submit to its last store) once all its parts are stored

Every caller runs this loop: ``FrameProcessor.run`` (one Work, then drain), ``upscale_image`` (one band at a
time, tile by tile) and the pipeline's infer stage (Works from a queue, completing the oldest call when
nothing new can overlap with it).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable


class InferenceQueue:
    def __init__(self, processor, depth: int | None = None, on_part: Callable | None = None,
                 on_done: Callable | None = None):
        self.processor = processor
        self.backend = processor.backend
        self.depth = max(1, depth or self.backend.max_in_flight)
        self.on_part, self.on_done = on_part, on_done
        self._inflight: deque = deque()  # (work, part, pending)
        self._remaining: dict[int, int] = {}  # id(work) -> calls not yet stored
        self._started: dict[int, float] = {}  # id(work) -> perf_counter at its first submit

    @property
    def busy(self) -> bool:
        """Calls are in flight."""
        return bool(self._inflight)

    @property
    def full(self) -> bool:
        """No call can be submitted before the oldest one completes."""
        return len(self._inflight) >= self.depth

    def submit(self, work, parts: list[slice] | None = None) -> None:
        """Submit every part of ``work`` (default: ``processor.chunks(work)``), completing old calls to make room."""
        parts = self.processor.chunks(work) if parts is None else parts
        self._remaining[id(work)] = len(parts)
        self._started[id(work)] = time.perf_counter()
        for part in parts:
            while self.full:
                self.complete_oldest()
            pending = self.backend.submit(self.processor.chunk_input(work, part))
            self._inflight.append((work, part, pending))

    def complete_oldest(self):
        """Wait for the oldest call and store its output; returns its Work when that was its last call, else None."""
        work, part, pending = self._inflight.popleft()
        self.processor.store(work, part, pending.wait(), pending.compute_s)
        if self.on_part is not None:
            self.on_part(part)
        self._remaining[id(work)] -= 1
        if self._remaining[id(work)]:
            return None
        del self._remaining[id(work)]
        elapsed = time.perf_counter() - self._started.pop(id(work))
        if self.on_done is not None:
            self.on_done(work, elapsed)
        return work

    def drain(self) -> None:
        """Complete every call in flight."""
        while self._inflight:
            self.complete_oldest()
