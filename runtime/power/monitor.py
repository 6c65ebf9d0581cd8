"""PowerMonitor: collects samples from a source in a background thread and reports marked intervals.

Glossary: source (a PowerSource or None for "unavailable"); [t0, t1] an interval marked with
begin() / end(); IntervalReport as in mambalitesr.runtime.power.energy.

If the source dies mid-run (tegrastats exits, the jtop service stops) the monitor records why,
the run goes on, and every later report and the summary say so. With no source at all, reports
say "not measured" rather than inventing a figure.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

from mambalitesr.runtime.power.energy import IntervalReport, report
from mambalitesr.runtime.power.sample import PowerSample, PowerSource


class PowerMonitor:
    def __init__(self, source: PowerSource | None, *, interval_ms: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.name = source.name if source is not None else "unavailable"
        self.interval_s = interval_ms / 1000
        # ends of an interval may be held this far past the nearest sample (see energy.py)
        self.hold_s = 2.5 * self.interval_s
        self._clock = clock
        self._samples: list[PowerSample] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self.lost: str | None = None  # why the source stopped early
        self.lost_at: float | None = None

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> "PowerMonitor":
        if self.source is not None and self._thread is None:
            self._thread = threading.Thread(target=self._collect, name=f"power-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.source is not None:
            self.source.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "PowerMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _collect(self) -> None:
        try:
            for sample in self.source.samples(self._stop):
                with self._cond:
                    self._samples.append(sample)
                    self._cond.notify_all()
        except Exception as exc:  # a reader bug or an OS error must not take the run down
            self.source.exit_reason = self.source.exit_reason or f"{type(exc).__name__}: {exc}"
        finally:
            with self._cond:
                if not self._stop.is_set():
                    self.lost = self.source.exit_reason or f"{self.name} stopped sending samples"
                    self.lost_at = self._clock()
                    # said when it happens: the summary of a days-long run comes only at its end
                    print(f"warning: power telemetry lost ({self.lost}); the run goes on unmeasured",
                          file=sys.stderr, flush=True)
                self._cond.notify_all()

    # ---- samples -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def latest_watts(self) -> float | None:
        """The most recent total power in W (for an on-screen overlay), None before the first sample."""
        with self._cond:
            for sample in reversed(self._samples):
                if sample.total_mw is not None:
                    return sample.total_mw / 1000.0
        return None

    def samples(self) -> list[PowerSample]:
        with self._cond:
            return list(self._samples)

    def wait_for_sample_after(self, t: float, timeout: float) -> bool:
        """Block until a sample later than t has arrived (the right end of an interval needs one)."""
        deadline = self._clock() + timeout
        with self._cond:
            while not (self._samples and self._samples[-1].t_monotonic > t):
                left = deadline - self._clock()
                if left <= 0 or not self.alive:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    # ---- intervals ---------------------------------------------------------------------------

    def begin(self) -> float:
        """Mark the start of a measured interval; returns its time."""
        self._t0 = self._clock()
        return self._t0

    def end(self, frames: int | None = None) -> IntervalReport:
        """Close the interval opened by begin() and report it (frames for J/frame)."""
        if self._t0 is None:
            raise RuntimeError("PowerMonitor.end() without begin()")
        t1 = self._clock()
        if self.source is not None:
            self.wait_for_sample_after(t1, timeout=3 * self.interval_s + 0.5)
        t0, self._t0 = self._t0, None
        return self.measure(t0, t1, frames)

    def measure(self, t0: float, t1: float, frames: int | None = None) -> IntervalReport:
        """Report [t0, t1] from the samples collected so far."""
        lost = self.lost if self.lost_at is not None and self.lost_at < t1 else None
        if self.source is None:
            lost = "no power telemetry on this machine"
        return report(self.samples(), t0, t1, source=self.name, hold_s=self.hold_s, frames=frames, telemetry_lost=lost)

    def summary(self) -> str:
        """One line on the telemetry itself: source, samples, and whether it died."""
        if self.source is None:
            return "power: not measured (no telemetry source)"
        n = len(self.samples())
        text = f"power: {n} samples from {self.name}"
        parser = getattr(self.source, "parser", None)
        if parser is not None and parser.malformed:
            text += f", {parser.malformed} malformed lines skipped (last: {parser.last_error})"
        if self.lost:
            text += f"; TELEMETRY LOST mid-run: {self.lost}"
        return text
