"""The pipeline's view of power telemetry: start, latest watts for the overlay, and a report at the end.

Glossary (code name -> meaning):
    PowerLink     wraps a runtime.power.PowerMonitor (or nothing) for one run: ``start`` marks the
                  interval's beginning, ``stop(frames)`` ends it and returns the figures as a dict
    report dict   {"source", "average_w", "energy_j", "j_per_frame", "samples", "text"} when measured,
                  {"error": why} when not ("power: unavailable" in the summary, never a made-up figure)
"""
from __future__ import annotations

import time

LATEST_REFRESH_S = 0.5


class PowerLink:
    def __init__(self, monitor=None, unavailable: str = ""):
        self.monitor = monitor
        self.unavailable = unavailable
        self._latest: float | None = None
        self._latest_at = 0.0

    def describe(self) -> str:
        return self.monitor.name if self.monitor is not None else f"unavailable ({self.unavailable})"

    def start(self) -> None:
        if self.monitor is not None:
            self.monitor.start()
            self.monitor.begin()

    def latest_watts(self) -> float | None:
        """The newest board power in W (refreshed at most every LATEST_REFRESH_S), None when unmeasured."""
        if self.monitor is None:
            return None
        now = time.monotonic()
        if now - self._latest_at > LATEST_REFRESH_S:
            self._latest_at = now
            samples = self.monitor.samples()
            last = next((s for s in reversed(samples) if s.total_mw is not None), None)
            self._latest = last.total_mw / 1000.0 if last is not None else None
        return self._latest

    def stop(self, frames: int | None = None) -> dict:
        if self.monitor is None:
            return {"error": self.unavailable}
        try:
            report = self.monitor.end(frames=frames)
        finally:
            self.monitor.stop()
        if report.energy_j is None:
            return {"error": report.summary()}
        return {
            "source": report.source,
            "average_w": report.avg_w,
            "energy_j": report.energy_j,
            "j_per_frame": report.j_per_frame,
            "samples": report.samples,
            "complete": report.complete,
            "text": report.summary(),
        }


def open_power(choice: str, interval_ms: int = 100, tegrastats_cmd: str | None = None) -> PowerLink:
    """``--power`` choice -> PowerLink; an explicit source that is missing raises MissingDependency."""
    from mambalitesr.runtime.power import PowerMonitor, open_power_source

    if choice == "none":
        return PowerLink(None, "--power none")
    source = open_power_source(choice, interval_ms=interval_ms, tegrastats_cmd=tegrastats_cmd)
    if source is None:
        return PowerLink(None, "no telemetry source found: not a Jetson (jtop, tegrastats) and no NVML GPU")
    return PowerLink(PowerMonitor(source, interval_ms=interval_ms))
