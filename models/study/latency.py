"""Size and CPU cost of one config: counted and analytic parameters, measured and analytic MACs, latency.

Glossary (code name -> paper symbol): |theta| params, MACs per frame (convs and matmuls, see
:mod:`mambalitesr.models.complexity`), scan_updates G M K D N L, latency_ms the median wall
CPU time (process time, all threads) of one forward pass at batch 1, H x W = 180 x 320 (a 320x180
frame), torch threads 1: on a machine shared with other jobs the CPU time is what a dedicated core
would take, where wall time also counts the waits for a core (kept as wall_ms, for the record).

The MACs are measured (torch's flop counter) on the warm-up pass, so the same forward serves
both; the timed passes run without the counter.
"""
from __future__ import annotations

import statistics
import time

from mambalitesr.models.config import SRConfig

LATENCY_HW = (180, 320)  # (H, W) of the latency input: a 320x180 frame


def measure_cost(cfg: SRConfig, runs: int = 3, backend: str = "native", hw: tuple[int, int] = LATENCY_HW) -> dict:
    """{params, analytic_params, macs, analytic_macs, scan_updates, latency_ms (CPU), latency_runs_ms, wall_ms}."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mambalitesr.models.complexity import analytic_macs, analytic_params, count_params, scan_updates
    from mambalitesr.models.network import MambaSR

    height, width = hw
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = MambaSR(cfg).set_scan_backend(backend).eval()
        x = torch.rand(1, 3, height, width)  # (1, 3, H, W)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as counter:
                model(x)
            times, walls = [], []
            for _ in range(runs):
                c0, t0 = time.process_time(), time.perf_counter()
                model(x)
                times.append(1000 * (time.process_time() - c0))
                walls.append(1000 * (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(threads)
    return {
        "params": count_params(model),
        "analytic_params": analytic_params(cfg),
        "macs": counter.get_total_flops() // 2,
        "analytic_macs": analytic_macs(cfg, height, width),
        "scan_updates": scan_updates(cfg, height, width),
        "latency_ms": statistics.median(times),
        "latency_runs_ms": times,
        "wall_ms": statistics.median(walls),
        "latency_backend": backend,
    }
