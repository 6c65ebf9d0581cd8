"""Per-stage timings of a streaming run and the summary printed at its end.

Glossary (code name -> meaning):
    stage          capture, preprocess, infer, postprocess, sink: one thread each
    stage time     seconds a stage spent on one frame (its own work, not the queue wait)
    end-to-end     from the moment a frame was captured to the moment the sink finished writing it
    compute_s      seconds the backend itself spent on a frame's inference (``Pending.compute_s``)
    backend fps    frames / sum(compute_s): what the backend alone sustains on the same frames
    pipeline fps   the steady output rate: (frames out - 1) / (last frame out - first frame out); the pipeline's
                   fill time (the first frame's latency) is in the end-to-end latency, not in this rate
    drop           a live frame discarded because a newer one arrived before it was taken (stale)
    gap            an interval with no camera: lost -> reconnected, with the back-off attempts it took
    J/frame        energy over the run (PowerMonitor) / frames out
    p50, p99       percentiles of each stage's per-frame times over the run, from a bounded reservoir
                   (runtime/stream/series.py): exact up to CAPACITY frames per series, a uniform sample of
                   the whole run beyond; counts, sums (backend fps) and maxima stay exact

Memory does not grow with the length of the run: every per-frame measurement is a ``Series``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from mambalitesr.runtime.stream.series import Series

STAGES = ("capture", "preprocess", "infer", "postprocess", "sink")


@dataclass
class Gap:
    """The camera went away after ``after_index`` and came back (or not) ``seconds`` later."""

    after_index: int
    lost_at: float
    back_at: float | None = None
    attempts: int = 0
    reason: str = ""

    @property
    def seconds(self) -> float:
        return (self.back_at if self.back_at is not None else time.perf_counter()) - self.lost_at

    def text(self) -> str:
        state = f"reconnected after {self.attempts} attempt(s)" if self.back_at is not None else "never came back"
        return f"after frame {self.after_index}: {self.seconds:.2f} s without frames ({self.reason}); {state}"


def percentile_ms(series: Series, q: float) -> float:
    return series.percentile(q) * 1000.0


@dataclass
class RunStats:
    """Everything one run measured; each stage adds to its own series (one writer per series)."""

    stage_s: dict[str, Series] = field(default_factory=lambda: {s: Series() for s in STAGES})
    end_to_end_s: Series = field(default_factory=Series)
    compute_s: Series = field(default_factory=Series)  # per frame
    captured: int = 0
    dropped: int = 0
    frames_out: int = 0
    gaps: list[Gap] = field(default_factory=list)
    first_capture: float | None = None
    first_out: float | None = None
    last_out: float | None = None
    stop_reason: str = ""
    power: dict | None = None  # filled at the end by PowerLink.stop: figures, or {"error": why}
    backend: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_drop(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def mark_out(self, t_capture: float, now: float) -> None:
        self.end_to_end_s.add(now - t_capture)
        self.frames_out += 1
        if self.first_out is None:
            self.first_out = now
        self.last_out = now

    @property
    def wall_s(self) -> float:
        if self.first_capture is None or self.last_out is None:
            return 0.0
        return self.last_out - self.first_capture

    @property
    def pipeline_fps(self) -> float:
        if self.frames_out < 2 or self.last_out <= self.first_out:
            return float("nan")
        return (self.frames_out - 1) / (self.last_out - self.first_out)

    @property
    def backend_fps(self) -> float:
        count, total, _ = self.compute_s.snapshot()
        return count / total if total > 0 else float("nan")

    def to_dict(self) -> dict:
        lat = {
            name: {"p50_ms": percentile_ms(v, 50), "p99_ms": percentile_ms(v, 99), "n": v.count}
            for name, v in list(self.stage_s.items()) + [("end_to_end", self.end_to_end_s)]
        }
        return {
            "backend": self.backend,
            "frames_out": self.frames_out,
            "captured": self.captured,
            "dropped": self.dropped,
            "gaps": [{"after_index": g.after_index, "seconds": g.seconds, "attempts": g.attempts,
                      "reconnected": g.back_at is not None, "reason": g.reason} for g in self.gaps],
            "wall_s": self.wall_s,
            # time.perf_counter() (CLOCK_MONOTONIC on Linux: one clock for every process of the host), so
            # runs in several processes can be placed on one time line
            "t_first_capture": self.first_capture,
            "t_last_out": self.last_out,
            "pipeline_fps": self.pipeline_fps,
            "backend_fps": self.backend_fps,
            "pipeline_vs_backend": self.pipeline_fps / self.backend_fps if self.compute_s.count else float("nan"),
            "latency": lat,
            "power": self.power,
            "joules_per_frame": (self.power or {}).get("j_per_frame"),
            "stop_reason": self.stop_reason,
        }

    def summary(self) -> str:
        d = self.to_dict()
        lines = [
            f"summary: {self.frames_out} frames out of {self.captured} captured, {self.dropped} dropped (stale), "
            f"{len(self.gaps)} camera gap(s)" + (f"; stopped: {self.stop_reason}" if self.stop_reason else ""),
        ]
        if self.backend:
            lines.append(f"  backend: {self.backend}")
        ratio = d["pipeline_vs_backend"]
        lines.append(
            f"  throughput: pipeline {self.pipeline_fps:.2f} fps (run {self.wall_s:.2f} s); backend alone "
            f"(infer only) {self.backend_fps:.2f} fps; pipeline/backend = {ratio * 100:.1f}%"
        )
        lines.append(f"  latency (ms)   {'p50':>9} {'p99':>9}")
        for name, v in d["latency"].items():
            lines.append(f"    {name:<12} {v['p50_ms']:9.2f} {v['p99_ms']:9.2f}")
        p = self.power or {}
        if p.get("average_w") is not None:
            lines.append(f"  {p['text']}")
        else:
            reason = p.get("error")
            lines.append("  power: unavailable" + (f" ({reason})" if reason else ""))
        for i, g in enumerate(self.gaps, 1):
            lines.append(f"  gap {i}: {g.text()}")
        return "\n".join(lines)
