"""`bench power`: the latency runs with the telemetry reader on, above an idle baseline taken first.

Glossary (code name -> meaning / symbol):
    P_idle        average board power (W) over ``idle_seconds`` with nothing running, measured first
    P(t)          board power from the source (jtop, tegrastats or NVML; see mambalitesr.runtime.power)
    [t0, t1]      the timed iterations of one measurement (warm-up excluded)
    avg / peak    mean and max of P(t) over [t0, t1], minus P_idle: ``watts_*_above_idle``
    E             energy over [t0, t1] (trapezoid rule); J/frame = E / (B * n); above idle:
                  (E - P_idle * (t1 - t0)) / (B * n)

Without a telemetry source every power column stays null and ``power_note`` says why (the sources
tried and what each lacked); nothing is estimated. A measurement shorter than the sampling interval
can be only partly covered: its J/frame is then null and the note says so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from mambalitesr.errors import MissingDependency

# a power run keeps each measurement at least this long, so that the sampler sees several samples
MIN_POWER_SECONDS = 3.0


def _open_source(choice: str, interval_ms: int, tegrastats_cmd: str | None):
    """(source or None, note): like ``--power auto`` in the runtime, but keeping every reason."""
    from mambalitesr.runtime.power import open_power_source

    if choice == "none":
        return None, "not measured: --power none"
    if choice != "auto":
        return open_power_source(choice, interval_ms=interval_ms, tegrastats_cmd=tegrastats_cmd), None
    reasons = []
    for kind in ("jtop", "tegrastats", "nvml"):
        try:
            return open_power_source(kind, interval_ms=interval_ms, tegrastats_cmd=tegrastats_cmd), None
        except MissingDependency as exc:
            reasons.append(f"{kind}: {exc}")
    return None, "not measured: no power telemetry on this machine (" + "; ".join(reasons) + ")"


@dataclass
class PowerContext:
    """The monitor of a power run and its idle baseline; ``fields`` gives a row's power columns."""

    monitor: object | None  # runtime.power.PowerMonitor
    source: str | None
    idle_w: float | None
    note: str | None  # why power is not measured (no source, or no idle baseline)
    idle_seconds: float = 0.0

    @classmethod
    def open(cls, choice: str = "auto", interval_ms: int = 100, tegrastats_cmd: str | None = None,
             idle_seconds: float = 5.0, say=print) -> "PowerContext":
        from mambalitesr.runtime.power import PowerMonitor

        source, note = _open_source(choice, interval_ms, tegrastats_cmd)
        if source is None:
            say(f"power: {note}")
            return cls(None, None, None, note)
        monitor = PowerMonitor(source, interval_ms=interval_ms).start()
        ctx = cls(monitor, monitor.name, None, None, idle_seconds)
        say(f"power: {monitor.name}; measuring the idle baseline for {idle_seconds:.0f} s")
        t0 = time.monotonic()
        time.sleep(idle_seconds)
        t1 = time.monotonic()
        monitor.wait_for_sample_after(t1, timeout=3 * monitor.interval_s + 0.5)
        idle = monitor.measure(t0, t1)
        if idle.avg_w is None or not idle.complete:
            ctx.note = f"not measured: no complete idle baseline ({idle.summary()})"
        else:
            ctx.idle_w = idle.avg_w
            say(f"power: idle baseline {idle.avg_w:.2f} W over {idle.duration_s:.1f} s")
        return ctx

    def idle_record(self) -> dict:
        if self.idle_w is None:
            return {"source": self.source, "note": self.note}
        return {"source": self.source, "idle_w": self.idle_w, "seconds": self.idle_seconds}

    def fields(self, timing, batch: int) -> dict:
        """Power columns of one measurement (timing: benchmarks.timing.Timing)."""
        if self.monitor is None or self.idle_w is None:
            return {"power_source": self.source, "power_note": self.note}
        m = self.monitor
        m.wait_for_sample_after(timing.t1, timeout=3 * m.interval_s + 0.5)
        rep = m.measure(timing.t0, timing.t1, frames=batch * timing.iterations)
        out = {"power_source": self.source, "idle_w": self.idle_w}
        if rep.avg_w is None:
            return {**out, "power_note": f"not measured: {rep.summary()}"}
        out["watts_avg_above_idle"] = rep.avg_w - self.idle_w
        out["watts_peak_above_idle"] = rep.peak_w - self.idle_w
        if rep.j_per_frame is not None:
            frames = batch * timing.iterations
            out["joules_per_frame"] = rep.j_per_frame
            out["joules_per_frame_above_idle"] = (rep.energy_j - self.idle_w * rep.covered_s) / frames
        else:
            out["power_note"] = rep.summary()
        return out

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
