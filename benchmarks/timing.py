"""Measuring one call: the warm-up and stopping rule, wall and CPU time, peak memory, memory projection.

Glossary (code name -> meaning / symbol): see benchmarks/latency.py (IterationPolicy, t_i, p50/p90/p99,
cpu_ms, PeakRss, MemoryGuard, CallRates). ``Skip`` / ``ExportFailed`` carry the reason a lane or a shape gives
a ``skipped`` / ``failed`` row instead of figures.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mambalitesr.errors import UserError


@dataclass(frozen=True)
class IterationPolicy:
    """Stop timing when max_iters calls are done, or min_iters calls AND min_seconds have passed, or
    max_seconds have passed with at least floor_iters calls (slow configurations: fewer calls, recorded)."""

    warmup: int = 2
    warmup_seconds: float = 1.0  # warm-up stops after this long (at least one call)
    min_iters: int = 10
    max_iters: int = 200
    min_seconds: float = 2.0
    max_seconds: float = 5.0
    floor_iters: int = 1
    # A lane already warm from a smaller shape skips the warm-up of a shape whose one call is projected to
    # take longer than this: one-time costs are negligible there, and the warm-up would double the run.
    skip_warmup_above: float = 5.0

    def check(self) -> "IterationPolicy":
        if self.warmup < 1:
            raise UserError("--warmup must be at least 1 (the first call pays one-time costs)")
        if not 1 <= self.floor_iters <= self.min_iters <= self.max_iters:
            raise UserError(f"iterations must satisfy 1 <= --floor-iters ({self.floor_iters}) <= --min-iters "
                            f"({self.min_iters}) <= --max-iters ({self.max_iters})")
        if self.min_seconds < 0 or self.max_seconds < self.min_seconds:
            raise UserError(f"seconds must satisfy 0 <= --min-seconds ({self.min_seconds}) <= --max-seconds "
                            f"({self.max_seconds})")
        if not self.skip_warmup_above > 0:
            raise UserError(f"--skip-warmup-above must be > 0 seconds, got {self.skip_warmup_above}")
        return self


@dataclass(frozen=True)
class Timing:
    warmup: int
    times_s: tuple[float, ...]
    t0: float  # time.monotonic() at the first timed call (for power intervals)
    t1: float
    last_output: object  # output of the last call (for the error check)
    cpu_s: float = 0.0  # process CPU time over the timed calls

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_s / len(self.times_s) * 1e3

    @property
    def iterations(self) -> int:
        return len(self.times_s)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.times_s), q)) * 1e3

    def fps(self, batch: int) -> float:
        return batch * len(self.times_s) / sum(self.times_s)


def fastest_seconds(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """The fastest of ``repeats`` calls of ``fn`` on ``clock`` (wall by default; ``time.process_time`` for CPU
    seconds), after one untimed call that pays for workspaces, first-touch pages and lazy initialisation."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def time_calls(fn: Callable[[], object], policy: IterationPolicy, warm: bool = False) -> Timing:
    """Warm up ``fn``, then time it under ``policy``; returns the call times and the last call's output.

    ``warm``: no warm-up calls (the caller judged one-time costs negligible; the row records warmup 0).
    """
    out = None
    warm_start = time.perf_counter()
    done = 0
    while done < policy.warmup and not warm:
        out = fn()
        done += 1
        if time.perf_counter() - warm_start >= policy.warmup_seconds:
            break
    times: list[float] = []
    t0 = time.monotonic()
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        elapsed, n = time.perf_counter() - start, len(times)
        if n >= policy.max_iters or (n >= policy.min_iters and elapsed >= policy.min_seconds):
            break
        if n >= policy.floor_iters and elapsed >= policy.max_seconds:
            break
    cpu_s = time.process_time() - cpu_start
    return Timing(done, tuple(times), t0, time.monotonic(), out, cpu_s)


class PeakRss:
    """``with PeakRss() as m: ...`` then ``m.peak_mb`` (None, with ``m.why``, where it cannot be read)."""

    METHOD = "peak RSS above the RSS before warm-up (Linux VmHWM, reset via /proc/self/clear_refs)"

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self.why: str | None = None
        self._base_kb: int | None = None

    @staticmethod
    def _status_kb(name: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise OSError(f"no {name} in /proc/self/status")

    def __enter__(self) -> "PeakRss":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
            self._base_kb = self._status_kb("VmRSS")
        except (OSError, ValueError) as exc:
            self.why = f"not measured ({exc})"
        return self

    def __exit__(self, *exc) -> None:
        if self._base_kb is None:
            return
        try:
            self.peak_mb = max(0, self._status_kb("VmHWM") - self._base_kb) / 1024.0
        except (OSError, ValueError) as err:
            self.why = f"not measured ({err})"


def mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


class MemoryGuard:
    """Skip shapes whose peak memory, projected from the same lane's smaller shapes, would not fit."""

    HEADROOM = 0.8  # of MemAvailable

    def __init__(self) -> None:
        self._per_pixel: dict[tuple, float] = {}

    def record(self, key: tuple, hw, batch: int, peak_mb: float | None) -> None:
        if peak_mb is not None:
            rate = peak_mb / (hw[0] * hw[1] * batch)
            self._per_pixel[key] = max(rate, self._per_pixel.get(key, 0.0))

    def check(self, key: tuple, hw, batch: int) -> None:
        rate, avail = self._per_pixel.get(key), mem_available_mb()
        if rate is None or avail is None:
            return
        projected = rate * hw[0] * hw[1] * batch
        if projected > self.HEADROOM * avail:
            raise Skip(f"projected peak memory {projected / 1024:.1f} GiB (this lane's measured MB per input pixel "
                       f"at smaller shapes x {hw[1]}x{hw[0]}x{batch}) exceeds {self.HEADROOM:.0%} of the "
                       f"{avail / 1024:.1f} GiB available")


class CallRates:
    """Project one call's seconds on an open backend from its earlier (smaller) shapes."""

    def __init__(self) -> None:
        # backend -> s per pixel. Weak keys: holding the backends here kept every closed ONNX Runtime session (and
        # its CPU arena) alive for the whole run, about 19 GB by the end of `bench all` on this machine.
        self._per_pixel: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def record(self, backend, hw, batch: int, seconds: float) -> None:
        rate = seconds / (hw[0] * hw[1] * batch)
        self._per_pixel[backend] = max(rate, self._per_pixel.get(backend, 0.0))

    def projected_s(self, backend, hw, batch: int) -> float | None:
        """None: this backend has not run yet (it needs its warm-up)."""
        rate = self._per_pixel.get(backend)
        return None if rate is None else rate * hw[0] * hw[1] * batch


class Skip(Exception):
    """A lane or a shape that cannot run here; the message is the row's reason."""

    status = "skipped"


class ExportFailed(Skip):
    """The ONNX export (or its verification against PyTorch) failed: a ``failed`` row, not a skip."""

    status = "failed"
