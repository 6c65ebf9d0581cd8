"""RunStats over long runs: memory bounded by the reservoirs, exact counts and sums, percentile semantics."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from mambalitesr.runtime.stream.series import CAPACITY, Series
from mambalitesr.runtime.stream.stats import STAGES, RunStats


def _record(stats: RunStats, frames: int, batch: int, start: int) -> None:
    """What the pipeline records for ``frames`` frames, ``batch`` frames per call (values vary per batch)."""
    for b in range(start // batch, (start + frames) // batch):
        ms = 1e-3 * (1 + b % 50)  # 1..50 ms, uniform over batches
        for stage in STAGES:
            stats.stage_s[stage].add(ms, batch)
        stats.compute_s.add(ms, batch)
        stats.end_to_end_s.add(5 * ms, batch)


def test_run_stats_memory_stays_bounded_over_a_million_frames():
    stats = RunStats()
    tracemalloc.start()
    try:
        _record(stats, 200_000, 100, 0)  # every reservoir is full by now
        after_200k = tracemalloc.get_traced_memory()[0]
        _record(stats, 800_000, 100, 200_000)
        after_1m = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Per-frame lists would have grown by 800k frames * 7 series * 8+ bytes (45 MB and more).
    assert after_1m - after_200k < 16 * 1024, (after_200k, after_1m)
    series = [*stats.stage_s.values(), stats.end_to_end_s, stats.compute_s]
    assert all(s.count == 1_000_000 and s.nbytes == 8 * CAPACITY for s in series)
    d = stats.to_dict()
    assert d["latency"]["infer"]["n"] == 1_000_000
    assert d["backend_fps"] == pytest.approx(1 / 25.5e-3)  # exact: running count and sum
    # Uniform over 1..50 ms: the true median is 25.5 ms, the p99 50 ms (the sample estimates them).
    assert abs(d["latency"]["infer"]["p50_ms"] - 25.5) <= 1.5
    assert d["latency"]["infer"]["p99_ms"] == pytest.approx(50.0)
    assert stats.stage_s["infer"].max == pytest.approx(0.050)


def test_one_value_at_a_time_is_bounded_too():
    s = Series(capacity=1000)
    for i in range(100_000):
        s.add(float(i))
    kept = s.samples()
    assert s.count == 100_000 and len(kept) == 1000 and s.nbytes == 8000
    assert s.total == sum(range(100_000)) and s.min == 0 and s.max == 99_999
    # A uniform sample of 0..99999: its quartiles land near the true ones.
    assert np.percentile(kept, [25, 50, 75]) == pytest.approx([25_000, 50_000, 75_000], abs=4000)


def test_percentiles_are_exact_until_the_reservoir_is_full():
    values = np.random.default_rng(0).exponential(0.02, 3000)
    s = Series(capacity=4096)
    for v in values:
        s.add(v)
    for q in (50, 99):
        assert s.percentile(q) == np.percentile(values, q)
    assert s.mean == pytest.approx(values.mean())


def test_a_batch_counts_once_per_frame_and_nan_is_no_figure():
    s = Series(capacity=8)
    s.add(0.5, 3)
    assert s.count == 3 and s.total == 1.5 and list(s.samples()) == [0.5] * 3
    s.add(float("nan"))
    assert s.count == 4 and s.nonfinite == 1 and s.total == 1.5
    assert math.isnan(s.percentile(50)) and math.isnan(s.mean) and s.max == 0.5
    empty = Series()
    assert math.isnan(empty.percentile(50)) and math.isnan(empty.max) and math.isnan(empty.mean)


def test_summary_keeps_its_figures():
    stats = RunStats()
    _record(stats, 300, 3, 0)
    text = stats.summary()
    assert "p50" in text and "p99" in text and "end_to_end" in text
    assert stats.to_dict()["latency"]["sink"]["n"] == 300
