"""One per-frame measurement of a run (a stage time, a latency), kept in bounded memory however long the run.

Glossary (code name -> meaning / symbol):
    n (count)      values recorded since the start of the run
    total          running sum of the finite values; ``nonfinite`` counts the NaN / inf ones apart
    R (capacity)   reservoir size: at most R float64 values are kept (8 R bytes), whatever n
    reservoir      a uniform random sample of all n values: value k (1-based) is kept with probability
                   min(1, R / k), replacing a uniformly chosen kept one (Algorithm R's distribution,
                   drawn with Li's Algorithm L, which skips ahead between replacements)
    percentile q   ``numpy.percentile`` (linear interpolation) over the reservoir. While n <= R the reservoir
                   holds every value, so p50 / p99 are exact; beyond, they are estimates over the whole run
                   (not a recent window): with R = 16384 the p99 is ranked among ~164 kept values above it
    min, max       exact over all n values, NaN ones skipped (a single outlier is never sampled away)

Percentiles that include a NaN value are NaN (as ``numpy.percentile``), so a lost measurement shows as
"no figure" rather than as a made-up one. The reservoir's random choices use a fixed seed: a run
replayed with the same values keeps the same sample.

One thread writes a series (its stage); readers on other threads (the live charts, the web summary) use
``snapshot`` and ``samples``, which take the same small lock, so count and total always agree.
"""
from __future__ import annotations

import math
import random
import threading

import numpy as np

CAPACITY = 16384  # 128 KiB of float64 per series; a run at 30 fps fills it after ~9 minutes
_FIRST_BLOCK = 256  # the reservoir grows by doubling up to CAPACITY, so short runs stay small


class Series:
    """Bounded record of one measurement: exact count, sum, min, max; percentiles from a reservoir."""

    def __init__(self, capacity: int = CAPACITY, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.count = 0
        self.total = 0.0
        self.nonfinite = 0
        self._min = math.inf
        self._max = -math.inf
        self._kept = np.empty(min(capacity, _FIRST_BLOCK), dtype=np.float64)
        self._rng = random.Random(seed)
        self._w = 0.0  # Algorithm L's running threshold, once the reservoir is full
        self._skip = 0  # values still to pass over before the next replacement
        self._lock = threading.Lock()

    def add(self, value: float, times: int = 1) -> None:
        """Record ``value`` ``times`` times (a batch's time counts once for each of its frames)."""
        value = float(value)
        if times < 1:
            return
        with self._lock:
            if math.isfinite(value):
                self.total += value * times
            else:
                self.nonfinite += times
            if value < self._min:
                self._min = value
            if value > self._max:
                self._max = value
            self._sample(value, times)
            self.count += times

    def _sample(self, value: float, times: int) -> None:
        """Reservoir update for ``times`` copies of ``value`` arriving after ``count`` values.

        Past the fill, Li's Algorithm L draws how many values to skip before the next replacement, so a
        value costs a counter decrement, and a long batch skips in one step; the sample is the same
        uniform one Algorithm R gives.
        """
        cap, n = self.capacity, self.count
        if n < cap:
            k = min(times, cap - n)
            if n + k > len(self._kept):
                grown = np.empty(min(cap, max(2 * len(self._kept), n + k)), dtype=np.float64)
                grown[:n] = self._kept[:n]
                self._kept = grown
            self._kept[n : n + k] = value
            times -= k
            if n + k == cap:
                self._w = self._uniform() ** (1.0 / cap)
                self._draw_skip()
        kept, random = self._kept, self._rng.random
        while times > 0:
            if self._skip >= times:
                self._skip -= times
                return
            times -= self._skip + 1
            kept[int(random() * cap)] = value
            self._w *= self._uniform() ** (1.0 / cap)
            self._draw_skip()

    def _uniform(self) -> float:
        return self._rng.random() or 5e-324  # (0, 1): log() needs a positive argument

    def _draw_skip(self) -> None:
        w = self._w if self._w < 1.0 else 1.0 - 2.0**-53
        self._skip = int(math.log(self._uniform()) / math.log1p(-w))

    def append(self, value: float) -> None:
        self.add(value)

    def extend(self, values) -> None:
        for value in values:
            self.add(value)

    def snapshot(self) -> tuple[int, float, int]:
        """(count, total, nonfinite) read together, for deltas between two reads."""
        with self._lock:
            return self.count, self.total, self.nonfinite

    def samples(self) -> np.ndarray:
        """A copy of the reservoir: every value while count <= capacity, else a uniform sample of them."""
        with self._lock:
            return self._kept[: min(self.count, self.capacity)].copy()

    def percentile(self, q: float) -> float:
        """The q-th percentile (seconds) over the reservoir; NaN when nothing was recorded."""
        kept = self.samples()
        return float(np.percentile(kept, q)) if len(kept) else float("nan")

    @property
    def min(self) -> float:
        """Smallest value recorded (NaN values are skipped); NaN when there is none."""
        return self._min if self._min <= self._max else float("nan")

    @property
    def max(self) -> float:
        """Largest value recorded (NaN values are skipped); NaN when there is none."""
        return self._max if self._min <= self._max else float("nan")

    @property
    def mean(self) -> float:
        """Mean of all values (NaN when none, or when any was NaN / inf)."""
        count, total, nonfinite = self.snapshot()
        return total / count if count and not nonfinite else float("nan")

    @property
    def nbytes(self) -> int:
        """Bytes held by the reservoir (bounded by 8 * capacity)."""
        return self._kept.nbytes

    def __repr__(self) -> str:
        return f"Series(count={self.count}, kept={min(self.count, self.capacity)}, capacity={self.capacity})"
