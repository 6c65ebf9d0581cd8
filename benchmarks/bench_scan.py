"""Selective-scan benchmark: ref, chunked and native, forward and forward+backward, and the machine's limit.

Glossary: B batch, D scan channels, N state size, L tokens, K directions; a "state update" is one
h[n] = exp(Delta A[n]) h[n] + Delta B[n] x for one (b, k, d, n, t): B*K*D*N*L per forward call.
Throughput in updates/s counts the forward's updates for both the forward and the fwd+bwd
time (so fwd+bwd throughput reads "problem size per second of training step").

Run:  python benchmarks/bench_scan.py [--reps R] [--threads T]
Times are the fastest of R runs after a warm-up (on a shared machine the fastest is the one
least disturbed by other processes). `ref` loops over L in Python and its autograd costs
O(B D N L^2), so it is timed on a shorter L and extrapolated per token (said in the output),
which flatters it. Before timing, native is checked against chunked on the same inputs.

The machine limit: every state update is one exp and two FMAs per vector lane. A tiny C program,
compiled on the fly from the kernel's own source (its vexp and vector type), runs exactly that
with independent chains on all threads and no memory traffic; native's distance to it is printed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

CONFIGS = [  # (label, B, D, N, L, K, H, W)
    ("B=1 D=128 N=16 L=4096", 1, 128, 16, 4096, 1, None, None),
    ("B=16 D=64 N=16 L=2304 (training batch)", 16, 64, 16, 2304, 1, None, None),
    ("B=16 D=64 N=16 L=48x48 K=4 (cross-scan)", 16, 64, 16, 2304, 4, 48, 48),
]
REF_LENGTH = 256  # ref is timed on this L and extrapolated per token
TARGET_FWD, TARGET_FWD_BWD = 30.0, 10.0

PEAK_SOURCE = r"""
#include "selective_scan_cpu.c"
#include <stdio.h>
#include <time.h>
/* One exp and two FMAs per lane per update, CHAINS independent state vectors per thread. */
#define CHAINS 8
SCAN_CLONES static float run(long iters, float seed) {
    float dts[64];
    for (int i = 0; i < 64; i++) dts[i] = 0.01f * (i + 1) * seed;
    vf h[CHAINS], acc[CHAINS], Av[CHAINS], Bv[CHAINS], Cv[CHAINS];
    for (int j = 0; j < CHAINS; j++) {
        for (int l = 0; l < SCAN_LANES; l++) {
            Av[j][l] = -0.1f * (j * SCAN_LANES + l + 1);
            Bv[j][l] = 0.5f + 0.01f * l;
            Cv[j][l] = 0.25f - 0.01f * l;
        }
        h[j] = acc[j] = Av[j] - Av[j];
    }
    for (long i = 0; i < iters; i++) {
        const float dt = dts[i & 63];
        for (int j = 0; j < CHAINS; j++) {
            h[j] = vexp(dt * Av[j]) * h[j] + dt * Bv[j];
            acc[j] += Cv[j] * h[j];
        }
    }
    float s = 0.0f;
    for (int j = 0; j < CHAINS; j++)
        for (int l = 0; l < SCAN_LANES; l++) s += acc[j][l];
    return s;
}
int main(int argc, char **argv) {
    const int threads = atoi(argv[1]);
    const long iters = 4000000;
    double best = 1e30;
    float sink = 0.0f;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += run(iters, 1.0f + 1e-3f * rep);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
        if (s < best) best = s;
    }
    printf("%.6g %g\n", (double)threads * iters * CHAINS * SCAN_LANES / best, (double)sink);
    return 0;
}
"""


def measure_peak(threads: int) -> tuple[float | None, str]:
    """(updates/s, how): the exp+2 FMA microbenchmark, or None with the reason it could not run."""
    from mambalitesr.models import scan_native

    csrc = os.path.join(os.path.dirname(os.path.abspath(scan_native.__file__)), "csrc")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None or not os.path.isfile(os.path.join(csrc, "selective_scan_cpu.c")):
        return None, "no C compiler or kernel source found"
    flags = ["-O3", "-std=c11", "-fopenmp", "-ffast-math", "-fno-finite-math-only"]
    import platform

    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-march=x86-64-v2")  # the kernel's flags; its AVX2 clone is picked at run time
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "peak.c"), os.path.join(tmp, "peak")
        with open(src, "w") as f:
            f.write(PEAK_SOURCE)
        build = subprocess.run([cc, *flags, "-I", csrc, src, "-o", exe, "-lm"], capture_output=True, text=True)
        if build.returncode != 0:
            return None, f"microbenchmark did not compile: {build.stderr.strip()[:200]}"
        out = subprocess.run([exe, str(threads)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), f"measured: vexp + 2 FMA on {threads} threads, 8 chains x 8 lanes, no memory traffic"


def make_inputs(B, D, N, L, K, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    bc = (B, K, N, L) if K == 4 else (B, N, L)
    return [
        torch.randn(B, D, L, generator=g),
        torch.randn(B, K * D, L, generator=g) * 0.5 - 1.0,
        -torch.rand(K * D, N, generator=g) * 2 - 0.05,
        torch.randn(bc, generator=g),
        torch.randn(bc, generator=g),
        torch.randn(K * D, generator=g),
        torch.randn(B, D, L, generator=g),
        torch.randn(K * D, generator=g) * 0.5,
    ]


def fastest(fn, reps: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def time_backend(backend, tensors, K, H, W, reps):
    """(forward seconds, forward+backward seconds) of one call."""
    import torch

    from mambalitesr.models.scan import selective_scan

    kw = dict(delta_softplus=True, directions=K, height=H, width=W, backend=backend)

    def fwd():
        with torch.no_grad():
            selective_scan(*tensors, **kw)

    leaves = [t.clone().requires_grad_() for t in tensors]

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        selective_scan(*leaves, **kw).sum().backward()

    return fastest(fwd, reps), fastest(fwd_bwd, reps)


def check_native(tensors, K, H, W) -> float:
    """Max |native - chunked| / max |chunked| of the forward (a benchmark of a wrong kernel is worthless)."""
    import torch

    from mambalitesr.models.scan import selective_scan

    kw = dict(delta_softplus=True, directions=K, height=H, width=W)
    with torch.no_grad():
        a = selective_scan(*tensors, backend="native", **kw)
        b = selective_scan(*tensors, backend="chunked", **kw)
    return float((a - b).abs().max() / b.abs().max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs of native (fastest kept); slow backends run 1")
    parser.add_argument("--threads", type=int, default=0, help="torch / kernel threads (default: all cores)")
    args = parser.parse_args(argv)

    import torch

    from mambalitesr.models import scan_native

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    scan_native.load_library()
    print(f"selective scan benchmark: {threads} threads, {os.cpu_count()} cores, torch {torch.__version__}")
    peak, how = measure_peak(threads)
    print(f"machine limit (exp + 2 FMA per update per lane): "
          + (f"{peak / 1e9:.2f} G updates/s ({how})" if peak else f"not measured ({how})"))
    print()
    header = f"{'config':<42} {'backend':<8} {'fwd ms':>10} {'fwd Gupd/s':>11} {'fwd+bwd ms':>11} {'f+b Gupd/s':>11}"
    print(header)
    print("-" * len(header))
    for label, B, D, N, L, K, H, W in CONFIGS:
        updates = B * K * D * N * L
        tensors = make_inputs(B, D, N, L, K)
        err = check_native(tensors, K, H, W)
        if err > 1e-5:
            print(f"{label}: native disagrees with chunked (max rel error {err:.2e}); not timing it")
            return 1
        results = {}
        results["native"] = time_backend("native", tensors, K, H, W, args.reps)
        if K == 1:
            results["chunked"] = time_backend("chunked", tensors, K, H, W, 1)
            short = make_inputs(B, D, N, REF_LENGTH, K)
            f, fb = time_backend("ref", short, K, H, W, 1)
            results["ref"] = (f * L / REF_LENGTH, fb * L / REF_LENGTH)
        for backend in ("ref", "chunked", "native"):
            if backend not in results:
                continue
            f, fb = results[backend]
            note = f"  (timed at L={REF_LENGTH}, x{L / REF_LENGTH:g} per token)" if backend == "ref" else ""
            print(f"{label:<42} {backend:<8} {f * 1e3:>10.1f} {updates / f / 1e9:>11.3f} {fb * 1e3:>11.1f} "
                  f"{updates / fb / 1e9:>11.3f}{note}")
        nf, nfb = results["native"]
        if "chunked" in results:
            cf, cfb = results["chunked"]
            print(f"{'':<42} native vs chunked: forward {cf / nf:.0f}x (target >= {TARGET_FWD:g}x: "
                  f"{'met' if cf / nf >= TARGET_FWD else 'NOT met'}), fwd+bwd {cfb / nfb:.0f}x "
                  f"(target >= {TARGET_FWD_BWD:g}x: {'met' if cfb / nfb >= TARGET_FWD_BWD else 'NOT met'})")
        else:
            print(f"{'':<42} (chunked and ref not timed for K=4: the same per-direction cost as K=1, x4)")
        if peak:
            print(f"{'':<42} native forward at {updates / nf / peak:.0%} of the machine limit, "
                  f"fwd+bwd {updates / nfb / peak:.0%}")
        print(f"{'':<42} native vs chunked forward max rel error {err:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
