"""Does system shared memory pay for `--backend triton` on one host? Transport only, model excluded.

Glossary: lr (B, 3, h, w) float32 -> sr (B, 3, 4h, 4w) float32 through a real tritonserver (pytriton's) whose
model is a nearest-neighbour x4 in numpy (microseconds), so the round trip is the transport: gRPC messages
(``--backend triton``) against POSIX shared memory regions (``--triton-shm``), through the same TritonBackend.

Run:  python benchmarks/bench_triton_shm.py [--sizes 160x90,320x180,640x360] [--reps 20]
Prints the median and fastest round trip per size and mode, measured here when run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


class Nearest:
    """A stand-in 'backend' for the server: x4 nearest neighbour, no arithmetic to speak of."""

    def infer(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.repeat(4, axis=2).repeat(4, axis=3))  # (B, 3, 4h, 4w)


def main(argv=None) -> int:
    from mambalitesr.runtime.backends.triton_backend import TritonBackend
    from mambalitesr.runtime.serve.ports import free_port
    from mambalitesr.runtime.serve.pytriton_server import BatchCounter, ServeConfig, start

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="160x90,320x180,640x360")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    cfg = ServeConfig(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), queue_delay_us=0)
    triton = start(Nearest(), cfg, BatchCounter())
    try:
        url = f"127.0.0.1:{cfg.grpc_port}"
        print(f"{'size':>9} {'mode':>6} {'median ms':>10} {'fastest ms':>11}  (lr -> sr bytes)")
        for w, h in sizes:
            x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
            ref = None
            for shm in (False, True):
                with TritonBackend(url=url, shm=shm) as b:
                    b.load()
                    times = []
                    for _ in range(args.reps + 2):
                        t = time.perf_counter()
                        y = b.infer(x)
                        times.append(time.perf_counter() - t)
                    ref = y if ref is None else ref
                    assert np.array_equal(y, ref), "shared memory and gRPC disagree"
                    times = times[2:]  # the first calls register regions and warm the connection
                print(f"{w}x{h:<5} {'shm' if shm else 'grpc':>6} {statistics.median(times) * 1e3:10.2f} "
                      f"{min(times) * 1e3:11.2f}  ({x.nbytes / 2**20:.2f} -> {y.nbytes / 2**20:.2f} MiB)", flush=True)
    finally:
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
