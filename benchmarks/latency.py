"""Latency of every model on every available backend and precision, at each input size and batch.

Glossary (code name -> meaning / symbol):
    h x w, B        LR input height and width, batch; output (B, 3, s h, s w)
    lane            one way to run a model: backend + graph + precision (+ ORT providers), e.g.
                    torch / pytorch-native-scan / fp32, onnxruntime / onnx-plugin / fp32 on cpu
    graph           pytorch-native-scan (the C scan) or pytorch-chunked-scan (CUDA); onnx-portable
                    (standard operators, exported per h x w at B = 1); onnx-plugin (one SelectiveScan
                    node per mixer, dynamic B, h, w; the native kernel, or the onnxruntime-extensions one);
                    onnx-fused (one MambaMixer node per one-direction mixer, dynamic; the native kernel);
                    trt-engine (a TensorRT engine given with --engine)
    reference       the torch fp32 lane's output on the same input (its own max_abs_err is 0)
    IterationPolicy warm-up and stopping rule of one measurement (see ``time_calls``)
    t_i             wall time of timed call i (time.perf_counter), seconds
    p50/p90/p99     percentiles of t_i, linear between order statistics (numpy's default); with n < 100
                    calls p99 lies between the two slowest calls, so every row keeps its n
    fps             frames per second: B * n / sum(t_i)
    cpu_ms          process CPU time (all threads, time.process_time) per timed call: unlike wall time it
                    hardly grows when other jobs share the machine, so it is recorded beside it
    PeakRss         peak resident memory above the resident memory right before warm-up: Linux VmHWM
                    after resetting it through /proc/self/clear_refs
    MemoryGuard     a lane's measured peak MB per input pixel (h w B) at the sizes run so far; a larger
                    shape whose projected peak exceeds MemAvailable is skipped with both numbers, instead
                    of letting the kernel's OOM killer end the whole run
    CallRates       an open backend's slowest measured seconds per input pixel (h w B): a shape whose one
                    call it projects above ``skip_warmup_above`` runs without warm-up on that (already
                    warm) backend, and its row says warmup 0

A lane that cannot run here (no CUDA, no TensorRT, no engine) gives one ``skipped`` row with the
reason; a shape a lane cannot take gives a ``skipped`` row for that shape. Nothing is estimated.
"""
from __future__ import annotations

import gc
from typing import Callable

import numpy as np

from mambalitesr.benchmarks.lanes import Exporter, Lane, OnnxLane, TorchLane, say, bench_frames, make_lanes
from mambalitesr.benchmarks.latency_plan import LatencyPlan, ModelSpec
from mambalitesr.benchmarks.results import Row, RowCollector
from mambalitesr.benchmarks.timing import CallRates, MemoryGuard, PeakRss, Skip, time_calls
from mambalitesr.errors import UserError

NOT_MEASURED_POWER = "not measured: `bench latency` reads no power telemetry (use `bench power` or `bench all`)"


class ReferenceOutputs:
    """PyTorch fp32 output for the current (model, h, w, B): the torch fp32 lane's, else computed once."""

    def __init__(self, plan: LatencyPlan):
        self.plan = plan
        self._key = None
        self._out: np.ndarray | None = None
        self._backend = None
        self._backend_model: str | None = None

    def set(self, key, out: np.ndarray) -> None:
        self._key, self._out = key, out

    def get(self, key, model: ModelSpec, x: np.ndarray) -> np.ndarray:
        if self._key != key:
            if self._backend_model != model.name:
                from mambalitesr.runtime.backends import create_backend

                self._backend = create_backend("torch", model=model.name, weights=str(model.weights), device="cpu",
                                               precision="fp32", scan_backend="native", threads=self.plan.threads)
                self._backend_model = model.name
            self.set(key, self._backend.infer(x))
        return self._out


def _lane_row(lane: Lane, model: ModelSpec, run_id: str, machine: str, **extra) -> Row:
    return Row(kind="latency", variant=model.name, backend=lane.backend, graph=lane.graph, precision=lane.precision,
               providers=lane.providers, run_id=run_id, machine=machine, weights=model.weights.name,
               params=model.params, **extra)


def _return_freed_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise), so MemAvailable, which the
    MemoryGuard reads, sees what the closed sessions and dropped frames really left free."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim, the guard is only more cautious


def run_latency(plan: LatencyPlan, run_id: str, machine: str, power=None,
                on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Measure every (model, size, batch, lane) of ``plan``; rows in the order measured.

    ``power``: a benchmarks.power.PowerContext (``bench power``), or None (``bench latency``: power
    columns stay null with a note). ``on_row`` sees each row as soon as it exists (incremental saves).
    """
    plan.policy.check()
    emit = RowCollector(on_row)
    rows = emit.rows

    exporter = Exporter(plan.onnx_dir, trace_hw=min(plan.sizes, key=lambda hw: hw[0] * hw[1], default=None))
    # Every model's lanes are open together and the models take turns on each (size, batch, lane), so a
    # student / teacher pair is measured back to back, under the same load of a shared machine.
    lanes = {m.name: make_lanes(m, plan, exporter) for m in plan.models}
    refs = {m.name: ReferenceOutputs(plan) for m in plan.models}
    noted: set = set()
    guard, rates = MemoryGuard(), CallRates()
    try:
        for model in plan.models:
            for lane in lanes[model.name]:
                if lane.skip_reason:
                    emit(_lane_row(lane, model, run_id, machine, status="skipped", reason=lane.skip_reason))
        n_lanes = len(lanes[plan.models[0].name]) if plan.models else 0
        for hw in plan.sizes:
            for batch in plan.batches:
                x = bench_frames(hw, batch)
                for i in range(n_lanes):
                    for model in plan.models:
                        lane = lanes[model.name][i]
                        if lane.skip_reason:
                            continue
                        row = _try_measure(lane, model, hw, batch, x, refs[model.name], plan, run_id, machine,
                                           power, noted, guard, rates)
                        if row is not None:
                            if row.status == "ok":
                                guard.record((model.name, lane.label), hw, batch, row.peak_mem_mb)
                            emit(row)
                        if isinstance(lane, OnnxLane):
                            # ONNX Runtime's CPU arena keeps its peak until the session ends: one model's
                            # 640x360 x4 arena would otherwise starve the other model's turn on the same shape.
                            lane.close()
                            _return_freed_heap()
                for r in refs.values():
                    r.set(None, None)
                del x
                gc.collect()
                _return_freed_heap()
    finally:
        for model_lanes in lanes.values():
            for lane in model_lanes:
                lane.close()
        exporter.close()
    return rows


def _try_measure(lane: Lane, model: ModelSpec, hw, batch, x, refs: "ReferenceOutputs", plan: LatencyPlan,
                 run_id: str, machine: str, power, noted: set, guard: MemoryGuard, rates: CallRates) -> Row | None:
    """The row of one (lane, model, h x w, B): measured, or skipped / failed with the reason (None: said already)."""
    try:
        lane.check_shape(hw, batch)
        guard.check((model.name, lane.label), hw, batch)
        backend = lane.backend_for(hw)
        lane.check_shape(hw, batch)  # an engine's limits are known once it is open
    except Skip as exc:
        if isinstance(lane, OnnxLane) and lane.form == "portable" and batch != 1:
            if (model.name, lane.label, batch) in noted:  # one row says it for every size
                return None
            noted.add((model.name, lane.label, batch))
            return _lane_row(lane, model, run_id, machine, status="skipped", reason=str(exc), batch=batch)
        return _lane_row(lane, model, run_id, machine, status=exc.status, reason=str(exc), input_hw=list(hw),
                         batch=batch)
    except UserError as exc:  # MissingDependency included: the whole lane is out for this model
        lane.skip_reason = str(exc)
        return _lane_row(lane, model, run_id, machine, status="skipped", reason=str(exc))
    projected = rates.projected_s(backend, hw, batch)
    warm = projected is not None and projected > plan.policy.skip_warmup_above
    row = _measure(lane, backend, model, hw, batch, x, (model.name, hw, batch), refs, plan, run_id, machine, power,
                   warm)
    if row.status == "ok":
        rates.record(backend, hw, batch, row.mean_ms / 1e3)
    return row


def _measure(lane: Lane, backend, model: ModelSpec, hw, batch, x, key, refs: ReferenceOutputs, plan: LatencyPlan,
             run_id: str, machine: str, power, warm: bool = False) -> Row:
    gc.collect()
    try:
        with PeakRss() as mem:
            timing = time_calls(lambda: backend.infer(x), plan.policy, warm=warm)
    except UserError as exc:  # the backend refused this input (shape outside what it was built for)
        return _lane_row(lane, model, run_id, machine, status="skipped", reason=str(exc), input_hw=list(hw),
                         batch=batch)
    out = timing.last_output
    if isinstance(lane, TorchLane) and lane.precision == "fp32" and lane.device == "cpu":
        refs.set(key, out)
        err = 0.0
    else:
        ref = refs.get(key, model, x)
        err = float(np.max(np.abs(out - ref))) if out.shape == ref.shape else float("inf")
    if not np.isfinite(err):
        return _lane_row(lane, model, run_id, machine, status="failed", input_hw=list(hw), batch=batch,
                         reason=f"output {out.shape} is not finite or not the reference's shape {ref.shape}")
    power_fields = power.fields(timing, batch) if power is not None else {"power_note": NOT_MEASURED_POWER}
    threads = plan.threads
    if lane.backend == "torch" and threads is None:
        import torch

        threads = torch.get_num_threads()
    row = _lane_row(
        lane, model, run_id, machine, status="ok", input_hw=list(hw), batch=batch, warmup=timing.warmup,
        iterations=timing.iterations, p50_ms=timing.percentile_ms(50), p90_ms=timing.percentile_ms(90),
        p99_ms=timing.percentile_ms(99), mean_ms=float(np.mean(timing.times_s)) * 1e3, fps=timing.fps(batch),
        cpu_ms=timing.cpu_ms_per_call,
        peak_mem_mb=mem.peak_mb, mem_method=PeakRss.METHOD if mem.peak_mb is not None else mem.why,
        max_abs_err=err, threads=threads, **power_fields,
    )
    say(f"bench: {model.name} {lane.label} {hw[1]}x{hw[0]} B={batch}: p50 {row.p50_ms:.1f} ms, "
         f"{row.fps:.2f} fps, {row.iterations} iters, CPU {row.cpu_ms:.0f} ms/call, max err {err:.2e}")
    return row
