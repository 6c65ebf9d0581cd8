"""Live figures for the charts, read from the pipeline's RunStats (never a second measurement of its own).

Glossary (code name -> meaning):
    point       one chart sample, taken by the sink thread at most every SAMPLE_S: ``t`` (s since the first
                frame out), ``fps`` (frames that reached the sink over the last FPS_WINDOW_S or more / that time;
                None for the first point), ``ms`` (per stage and end-to-end: mean of the values the RunStats
                series recorded since the previous point, from the change of their running count and sum;
                None when the stage recorded nothing, or recorded a NaN meanwhile), ``watts``
                (PowerLink.latest_watts; None when unmeasured), ``frames_out``, ``dropped``, ``index`` and
                ``seq`` (1, 2, ... for incremental polling)
    history     the last HISTORY points (a bounded deque)
    summary     RunStats.to_dict() and its text, plus the run's description; built by the sink thread
                every SUMMARY_CACHE_S while the run goes on (``summary_due``), so many viewers cost one
    LiveTelemetry    the pipeline side: takes the points, builds the summary
    TelemetryStore   a bounded point history (LiveTelemetry.history), and in the viewer process the copy
                     of the points and summary the sink sent over, answered to
                     ``/stats`` and ``/summary`` without touching the pipeline

RunStats keeps bounded series (runtime/stream/series.py), not per-frame lists: a point needs only each
series' (count, sum, NaN count) snapshot, so the telemetry holds three numbers per series whatever the
length of the run.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque

from mambalitesr.runtime.stream.stats import STAGES

SAMPLE_S = 0.25
FPS_WINDOW_S = 1.0
HISTORY = 480  # 2 minutes at SAMPLE_S
SUMMARY_CACHE_S = 1.0
SERIES = STAGES + ("end_to_end",)


def json_safe(value):
    """NaN and infinities (no measurement) -> None, so the JSON is strict and the page never sees NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class LiveTelemetry:
    def __init__(self, sample_s: float = SAMPLE_S, history: int = HISTORY):
        self.sample_s = sample_s
        self.pipeline = None
        self.history = TelemetryStore(sample_s, history)  # the same bounded store the viewer process keeps
        self._seen = {name: (0, 0.0, 0) for name in SERIES}  # (count, sum, NaN count) at the previous point
        self._t0: float | None = None
        self._last_sample = -math.inf
        self._frames = 0  # frames that reached the sink
        self._window: deque[tuple[float, int]] = deque()  # (time, frames) of recent points, for fps
        self._summary: float | None = None  # when the last summary was built
        self._summary_frames = 0  # frames out in it

    def watch(self, pipeline) -> None:
        self.pipeline = pipeline

    def _series(self) -> dict:
        stats = self.pipeline.stats
        return {**stats.stage_s, "end_to_end": stats.end_to_end_s}

    # -- sink thread ----------------------------------------------------------------------
    def tick(self, index: int, now: float | None = None) -> None:
        """One frame reached the sink; take a chart point when SAMPLE_S has passed."""
        now = time.perf_counter() if now is None else now
        self._frames += 1
        if self._t0 is None:
            self._t0 = now
        if now - self._last_sample < self.sample_s:
            return
        self._last_sample = now
        window = self._window
        window.append((now, self._frames))
        while len(window) > 2 and now - window[1][0] >= FPS_WINDOW_S:  # keep just over FPS_WINDOW_S
            window.popleft()
        (t_old, n_old) = window[0]
        fps = (self._frames - n_old) / (now - t_old) if now > t_old else None
        point = {"t": round(now - self._t0, 3), "fps": fps, "index": index, "ms": {}, "watts": None,
                 "frames_out": None, "dropped": None}
        if self.pipeline is not None:
            for name, series in self._series().items():
                count, total, nonfinite = series.snapshot()
                count0, total0, nonfinite0 = self._seen[name]
                self._seen[name] = count, total, nonfinite
                fresh = count > count0 and nonfinite == nonfinite0
                point["ms"][name] = 1000.0 * (total - total0) / (count - count0) if fresh else None
            stats = self.pipeline.stats
            point["frames_out"], point["dropped"] = stats.frames_out, stats.dropped
            latest_watts = getattr(self.pipeline.power, "latest_watts", None)  # what the overlay shows
            point["watts"] = latest_watts() if callable(latest_watts) else None
        point["seq"] = self.history.last_seq + 1
        self.history.add_points([json_safe(point)])

    @property
    def last_seq(self) -> int:
        return self.history.last_seq

    def points_after(self, seq: int) -> list[dict]:
        """The points taken after ``seq`` (oldest first; what the viewer process has not been sent)."""
        return self.history.after(seq)

    def summary_due(self, now: float | None = None) -> dict | None:
        """The run summary when SUMMARY_CACHE_S has passed since the last one, else None."""
        now = time.perf_counter() if now is None else now
        # the first frames out are sent at once: a summary with no frames in it says nothing
        if self._summary is not None and now - self._summary < SUMMARY_CACHE_S and self._summary_frames > 0:
            return None
        self._summary = now
        body = self.describe_run()
        self._summary_frames = (body.get("stats") or {}).get("frames_out", 0) or 0
        return body

    def stats(self, since: int = 0) -> dict:
        """The latest point and the history after ``since`` (a seq the page already has)."""
        return self.history.stats(since)

    def describe_run(self) -> dict:
        if self.pipeline is None:
            return {"stats": None, "text": "no pipeline attached"}
        p = self.pipeline
        plan = getattr(p, "plan", None)
        return json_safe({
            "source": p.source.describe(),
            "backend": p.backend.describe(),
            "power": p.power.describe() if p.power is not None and hasattr(p.power, "describe") else "none",
            "plan": None if plan is None else {"lr": [plan.height, plan.width], "tile": [plan.tile_h, plan.tile_w],
                                               "tiles": plan.tiles, "scale": plan.scale},
            "stats": p.stats.to_dict(),
            "text": p.stats.summary(),
        })


class TelemetryStore:
    """A bounded history of chart points and the latest summary: the pipeline side's own (LiveTelemetry.history)
    and the viewer process's copy of what the sink sent."""

    def __init__(self, sample_s: float = SAMPLE_S, history: int = HISTORY):
        self.sample_s = sample_s
        self._points: deque[dict] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._received: float | None = None  # when the newest point arrived
        self._summary: dict = {"stats": None, "text": "the run has not reported yet"}

    def add_points(self, points: list[dict]) -> None:
        with self._lock:
            last = self._points[-1]["seq"] if self._points else 0
            self._points.extend(p for p in points if p["seq"] > last)  # a resend after a full channel
            self._received = time.perf_counter()

    def set_summary(self, body: dict) -> None:
        self._summary = body

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._points[-1]["seq"] if self._points else 0

    def after(self, seq: int) -> list[dict]:
        """The points after ``seq``, oldest first."""
        with self._lock:
            return [p for p in self._points if p["seq"] > seq]

    def stats(self, since: int = 0) -> dict:
        """The latest point and the history after ``since`` (a seq the page already has)."""
        with self._lock:
            points = [p for p in self._points if p["seq"] > since]
            latest = self._points[-1] if self._points else None
        age = None if self._received is None else time.perf_counter() - self._received
        return {"latest": latest, "history": points, "series": list(SERIES), "sample_s": self.sample_s,
                "age_s": age}

    def summary(self, extra: dict) -> dict:
        return {**extra, **self._summary}
