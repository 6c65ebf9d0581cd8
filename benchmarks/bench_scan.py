"""Selective-scan benchmark: ref, chunked and native, forward and forward+backward, and the machine's limit.

Glossary: B batch, D scan channels, N state size, L tokens, K directions; a "state update" is one
h[n] = exp(Delta A[n]) h[n] + Delta B[n] x for one (b, k, d, n, t): B*K*D*N*L per forward call.
Throughput in updates/s counts the forward's updates for both the forward and the fwd+bwd
time (so fwd+bwd throughput reads "problem size per second of training step").

Run:  python benchmarks/bench_scan.py [--reps R] [--threads T]

Each call is timed twice: wall time (the fastest of R runs after a warm-up) and the process's
CPU time (the least of R runs). On a shared machine the wall time mostly measures the
neighbours; CPU time does not, so speed-ups are given on both, and "idle Gupd/s" projects the
CPU-time throughput to all cores of an idle machine (updates / CPU-seconds x threads).
CPU time includes OpenMP's spin-waiting: torch's libgomp (which the kernel shares) lets idle
threads spin ~300k PAUSEs (milliseconds) before sleeping; OMP_WAIT_POLICY=passive leaves that out.

`ref` loops over L in Python and its autograd grows as O(B D N L^2) (each step's slice backward
touches the whole (B, D, N, L) tensor), so ref is timed on a short L and extrapolated per token,
a lower bound on its real cost, which the output says; its fwd+bwd is skipped for the training batch.
Before timing, native is checked against chunked on the same inputs.

The machine limit: every state update is one exp and two FMAs per vector lane. A tiny C program,
compiled on the fly from the kernel's own source (its vexp and vector type, with the kernel's
flags and AVX2 clone), runs exactly that with 8 independent chains and no memory traffic; its
CPU-time rate per core times the cores is the limit, and native's distance to it is printed.
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
    const long iters = 2000000;
    double best_wall = 1e30, best_cpu = 1e30;
    float sink = 0.0f;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec w0, w1, c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &w0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += run(iters, 1.0f + 1e-3f * rep);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        clock_gettime(CLOCK_MONOTONIC, &w1);
        const double w = (w1.tv_sec - w0.tv_sec) + 1e-9 * (w1.tv_nsec - w0.tv_nsec);
        const double c = (c1.tv_sec - c0.tv_sec) + 1e-9 * (c1.tv_nsec - c0.tv_nsec);
        if (w < best_wall) best_wall = w;
        if (c < best_cpu) best_cpu = c;
    }
    const double updates = (double)threads * iters * CHAINS * SCAN_LANES;
    /* per-core rate from CPU time, and the wall-clock rate on all threads */
    printf("%.6g %.6g %g\n", updates / best_cpu, updates / best_wall, (double)sink);
    return 0;
}
"""


def measure_peak(threads: int) -> tuple[float | None, float | None, str]:
    """(updates per CPU-second of one core, wall updates/s on all threads, how), or Nones and the reason."""
    from mambalitesr.models import scan_native

    csrc = os.path.join(os.path.dirname(os.path.abspath(scan_native.__file__)), "csrc")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None or not os.path.isfile(os.path.join(csrc, "selective_scan_cpu.c")):
        return None, None, "no C compiler or kernel source found"
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
            return None, None, f"microbenchmark did not compile: {build.stderr.strip()[:200]}"
        out = subprocess.run([exe, str(threads)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), f"vexp + 2 FMA, 8 chains x 8 lanes, no memory traffic, {threads} threads"


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


def fastest(fn, reps: int) -> tuple[float, float]:
    """(least wall seconds, least process CPU seconds) over reps runs after a warm-up."""
    fn()
    wall = cpu = float("inf")
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def time_backend(backend, tensors, K, H, W, reps, backward=True):
    """{"fwd": (wall, cpu), "fwd+bwd": (wall, cpu)} of one call."""
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

    result = {"fwd": fastest(fwd, reps)}
    if backward:
        result["fwd+bwd"] = fastest(fwd_bwd, reps)
    return result


def check_native(tensors, K, H, W) -> float:
    """Max |native - chunked| / max |chunked| of the forward (a benchmark of a wrong kernel is worthless)."""
    import torch

    from mambalitesr.models.scan import selective_scan

    kw = dict(delta_softplus=True, directions=K, height=H, width=W)
    with torch.no_grad():
        a = selective_scan(*tensors, backend="native", **kw)
        b = selective_scan(*tensors, backend="chunked", **kw)
    return float((a - b).abs().max() / b.abs().max())


REF_FWD_LENGTH, REF_BWD_LENGTH = 256, 64  # ref is timed on these L and extrapolated per token


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs of native (least kept); slow backends run 1")
    parser.add_argument("--threads", type=int, default=0, help="torch / kernel threads (default: all cores)")
    args = parser.parse_args(argv)

    import torch

    from mambalitesr.models import scan_native

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    scan_native.load_library()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"selective scan benchmark: {threads} threads on {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {load:.1f} at start, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}")
    per_core, peak_wall, how = measure_peak(threads)
    peak = per_core * threads if per_core else None
    if peak:
        print(f"machine limit (one exp + two FMAs per update per lane): {peak / 1e9:.2f} G updates/s on {threads} "
              f"cores ({per_core / 1e9:.2f} per core-second of CPU time; {peak_wall / 1e9:.2f} wall-clock now); "
              f"measured: {how}")
    else:
        print(f"machine limit not measured ({how})")
    print()
    cols = (f"{'config':<40} {'backend':<8} {'pass':<8} {'wall ms':>10} {'CPU ms':>10} {'Gupd/s':>8} "
            f"{'idle Gupd/s':>11}")
    print(cols)
    print("-" * len(cols))
    for label, B, D, N, L, K, H, W in CONFIGS:
        updates = B * K * D * N * L
        tensors = make_inputs(B, D, N, L, K)
        err = check_native(tensors, K, H, W)
        if err > 1e-5:
            print(f"{label}: native disagrees with chunked (max rel error {err:.2e}); not timing it")
            return 1
        results = {"native": time_backend("native", tensors, K, H, W, args.reps)}
        notes = {}
        if K == 1:
            results["chunked"] = time_backend("chunked", tensors, K, H, W, 1)
            ref = time_backend("ref", make_inputs(B, D, N, REF_FWD_LENGTH, K), K, H, W, 1, backward=False)
            results["ref"] = {"fwd": tuple(t * L / REF_FWD_LENGTH for t in ref["fwd"])}
            notes[("ref", "fwd")] = f"timed at L={REF_FWD_LENGTH}, scaled x{L / REF_FWD_LENGTH:g}"
            if B == 1:
                ref = time_backend("ref", make_inputs(B, D, N, REF_BWD_LENGTH, K), K, H, W, 1)
                results["ref"]["fwd+bwd"] = tuple(t * L / REF_BWD_LENGTH for t in ref["fwd+bwd"])
                notes[("ref", "fwd+bwd")] = f"timed at L={REF_BWD_LENGTH}, scaled x{L / REF_BWD_LENGTH:g}: lower bound"
            else:
                notes[("ref", "fwd+bwd")] = "skipped: its O(L^2) autograd takes many minutes at this size"
        for backend in ("ref", "chunked", "native"):
            for pass_ in ("fwd", "fwd+bwd"):
                note = notes.get((backend, pass_), "")
                if backend not in results:
                    continue
                if pass_ not in results[backend]:
                    print(f"{label:<40} {backend:<8} {pass_:<8} {'-':>10} {'-':>10} {'-':>8} {'-':>11}  {note}")
                    continue
                wall, cpu = results[backend][pass_]
                print(f"{label:<40} {backend:<8} {pass_:<8} {wall * 1e3:>10.1f} {cpu * 1e3:>10.1f} "
                      f"{updates / wall / 1e9:>8.3f} {updates / cpu * threads / 1e9:>11.3f}  {note}")
        native = results["native"]
        if "chunked" in results:
            for pass_, target in (("fwd", TARGET_FWD), ("fwd+bwd", TARGET_FWD_BWD)):
                (cw, cc), (nw, nc) = results["chunked"][pass_], native[pass_]
                ok = "met" if min(cw / nw, cc / nc) >= target else "NOT met"
                print(f"  native vs chunked {pass_}: {cw / nw:.0f}x wall, {cc / nc:.0f}x CPU time "
                      f"(target >= {target:g}x: {ok})")
        else:
            print("  (ref and chunked not timed for K=4: per direction the same work as K=1, and chunked needs"
                  " minutes here)")
        if peak:
            f_rate = updates / native["fwd"][1] * threads
            fb_rate = updates / native["fwd+bwd"][1] * threads
            print(f"  native at the machine limit (CPU time): forward {f_rate / peak:.0%}, "
                  f"fwd+bwd {fb_rate / peak:.0%}")
        print(f"  native vs chunked forward max rel error {err:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
