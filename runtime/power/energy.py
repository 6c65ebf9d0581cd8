"""Energy over an interval from power samples: the trapezoid rule, ends clipped by interpolation.

Glossary: P(t) total power in mW, linear between samples (t_i, P_i); [t0, t1] the measured
interval; E = integral of P over [t0, t1] in J; hold_s how far P may be held at the first or
last sample's value past the sampled span (a sample is only taken every interval, so a run
usually starts a little after one sample and ends a little before the next).

Parts of [t0, t1] farther than hold_s from any sample are not covered: the report then gives
the energy and average of the covered part and says how much is missing (`covered_s`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mambalitesr.runtime.power.sample import PowerSample


@dataclass(frozen=True)
class Integration:
    energy_j: float
    covered_s: float
    peak_mw: float
    samples_inside: int


def integrate(times: Sequence[float], mw: Sequence[float], t0: float, t1: float, hold_s: float = 0.0) -> Integration | None:
    """Trapezoid integral of P over [t0, t1] with P linear between samples; None without coverage."""
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(mw, dtype=np.float64)
    if t.size == 0 or t1 <= t0:
        return None
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    a, b = max(t0, t[0] - hold_s), min(t1, t[-1] + hold_s)
    if b <= a:
        return None
    inside = (t > a) & (t < b)
    pts = np.concatenate([[a], t[inside], [b]])
    vals = np.interp(pts, t, p)  # interpolated ends; held flat beyond the first/last sample
    energy_mws = float(np.sum((vals[1:] + vals[:-1]) * 0.5 * np.diff(pts)))
    return Integration(energy_mws / 1000.0, float(b - a), float(vals.max()), int(inside.sum()))


@dataclass(frozen=True)
class IntervalReport:
    """Power over one marked interval. energy_j and avg_w cover `covered_s` of `duration_s`;
    j_per_frame only when the interval is complete (fully covered, telemetry alive throughout)."""

    t0: float
    t1: float
    source: str
    samples: int
    covered_s: float
    energy_j: float | None
    avg_w: float | None
    peak_w: float | None
    frames: int | None = None
    rails_avg_w: dict[str, float] = field(default_factory=dict)
    telemetry_lost: str | None = None

    @property
    def duration_s(self) -> float:
        return self.t1 - self.t0

    @property
    def covered_all(self) -> bool:
        return self.energy_j is not None and self.covered_s >= self.duration_s - 1e-9

    @property
    def complete(self) -> bool:
        """The whole interval measured and the telemetry alive to its end."""
        return self.covered_all and self.telemetry_lost is None

    @property
    def j_per_frame(self) -> float | None:
        """Energy per frame; None unless the whole interval was measured and frames were counted."""
        if not self.complete or not self.frames:
            return None
        return self.energy_j / self.frames

    def summary(self) -> str:
        if self.energy_j is None:
            why = self.telemetry_lost or "no power samples in the interval"
            return f"power ({self.source}): not measured over {self.duration_s:.2f} s ({why})"
        text = (
            f"power ({self.source}): {self.avg_w:.2f} W average, {self.peak_w:.2f} W peak, "
            f"{self.energy_j:.2f} J over {self.covered_s:.2f} s ({self.samples} samples)"
        )
        if self.j_per_frame is not None:
            text += f", {self.j_per_frame * 1000:.1f} mJ/frame over {self.frames} frames"
        if not self.covered_all:
            text += f"; only {self.covered_s:.2f} of {self.duration_s:.2f} s covered"
        if self.telemetry_lost:
            text += f"; telemetry lost: {self.telemetry_lost}"
        if self.frames and not self.complete:
            text += "; no J/frame for a partly measured interval"
        return text


def report(
    samples: Sequence[PowerSample], t0: float, t1: float, *, source: str, hold_s: float,
    frames: int | None = None, telemetry_lost: str | None = None,
) -> IntervalReport:
    """IntervalReport of the samples' total power (and each rail's average) over [t0, t1]."""
    with_total = [s for s in samples if s.total_mw is not None]
    whole = integrate([s.t_monotonic for s in with_total], [s.total_mw for s in with_total], t0, t1, hold_s)
    rails_avg: dict[str, float] = {}
    for name in sorted({n for s in samples for n in s.rails}):
        having = [s for s in samples if name in s.rails]
        part = integrate([s.t_monotonic for s in having], [s.rails[name][0] for s in having], t0, t1, hold_s)
        if part is not None and part.covered_s > 0:
            rails_avg[name] = part.energy_j / part.covered_s
    if whole is None:
        return IntervalReport(t0, t1, source, 0, 0.0, None, None, None, frames, rails_avg, telemetry_lost)
    return IntervalReport(
        t0, t1, source, whole.samples_inside, whole.covered_s, whole.energy_j,
        whole.energy_j / whole.covered_s, whole.peak_mw / 1000.0, frames, rails_avg, telemetry_lost,
    )
