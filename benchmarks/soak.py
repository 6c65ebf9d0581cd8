"""Soak test: stream synthetic frames for N minutes and watch memory, file descriptors and threads for drift.

Glossary (code name -> meaning):
    sample        every ``--every`` seconds: RSS (VmRSS, KiB), open file descriptors (/proc/self/fd), OS
                  threads of the process (/proc/self/status Threads), Python threads, frames out, drops
    warm-up       the first ``--warmup-minutes``: allocators, caches and thread pools settle; excluded
    RSS drift     (median of the last 5 samples - median of the first 5 after warm-up) / the latter, in %
    slope         least-squares RSS growth after warm-up, MiB per hour; bytes/frame = RSS growth / frames
    FD / thread growth   last - first count after warm-up; any growth fails
    verdict       exit 0 when drift < ``--max-drift-pct`` and no FD or thread growth and frames kept
                  flowing; 1 otherwise; 2 for bad arguments

Usage (30 minutes on the tiny test network, null sink, at low priority next to other work)::

    nohup nice -n 10 python -m mambalitesr.benchmarks.soak --minutes 30 --csv soak.csv > soak.log 2>&1 &

The CSV is written as ``CSV.partial`` while the soak runs (a crash keeps the samples) and renamed at the end.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mambalitesr.errors import UserError

FIELDS = ("t_s", "rss_kib", "fds", "threads", "py_threads", "frames_out", "dropped")


@dataclass
class Sample:
    t_s: float
    rss_kib: int
    fds: int
    threads: int
    py_threads: int
    frames_out: int
    dropped: int


def process_figures() -> tuple[int, int, int]:
    """(VmRSS in KiB, open file descriptors, OS threads) of this process, from /proc (Linux)."""
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    threads = int(fields["Threads"])
    return rss_kib, len(os.listdir("/proc/self/fd")), threads


def judge(samples: list[Sample], warmup_s: float, max_drift_pct: float = 5.0) -> dict:
    """Drift figures after the warm-up and the list of failures (empty: pass)."""
    steady = [s for s in samples if s.t_s >= warmup_s]
    if len(steady) < 2:
        return {"failures": [f"only {len(steady)} sample(s) after the {warmup_s:g} s warm-up; run longer"]}
    k = min(5, max(1, len(steady) // 4))
    first = statistics.median(s.rss_kib for s in steady[:k])
    last = statistics.median(s.rss_kib for s in steady[-k:])
    t = [s.t_s for s in steady]
    r = [s.rss_kib for s in steady]
    t_mean, r_mean = statistics.fmean(t), statistics.fmean(r)
    var = sum((x - t_mean) ** 2 for x in t)
    slope_kib_s = sum((x - t_mean) * (y - r_mean) for x, y in zip(t, r)) / var if var > 0 else 0.0
    frames = steady[-1].frames_out - steady[0].frames_out
    result = {
        "samples": len(steady),
        "window_s": steady[-1].t_s - steady[0].t_s,
        "rss_first_mib": first / 1024,
        "rss_last_mib": last / 1024,
        "rss_max_mib": max(r) / 1024,
        "rss_drift_pct": 100.0 * (last - first) / first,
        "rss_slope_mib_per_h": slope_kib_s * 3600 / 1024,
        "bytes_per_frame": (steady[-1].rss_kib - steady[0].rss_kib) * 1024 / frames if frames else float("nan"),
        "fd_growth": steady[-1].fds - steady[0].fds,
        "fd_max_growth": max(s.fds for s in steady) - steady[0].fds,
        "thread_growth": steady[-1].threads - steady[0].threads,
        "thread_max_growth": max(s.threads for s in steady) - steady[0].threads,
        "frames_after_warmup": frames,
    }
    failures = []
    if abs(result["rss_drift_pct"]) >= max_drift_pct:
        failures.append(f"RSS drift {result['rss_drift_pct']:+.2f}% (limit {max_drift_pct:g}%)")
    if result["fd_growth"] > 0:
        failures.append(f"file descriptors grew by {result['fd_growth']}")
    if result["thread_growth"] > 0:
        failures.append(f"threads grew by {result['thread_growth']}")
    if frames <= 0:
        failures.append("no frames came out after the warm-up: the stream stalled")
    stalls = [b.t_s for a, b in zip(steady, steady[1:]) if b.frames_out == a.frames_out]
    if stalls:
        failures.append(f"no frame out between samples {len(stalls)} time(s) (first at t = {stalls[0]:.0f} s)")
    result["failures"] = failures
    return result


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m mambalitesr.benchmarks.soak",
                                description="Synthetic streaming for N minutes; RSS, FD and thread drift.")
    p.add_argument("--minutes", type=float, default=30.0, help="soak length (default 30)")
    p.add_argument("--warmup-minutes", type=float, default=2.0, help="excluded from the drift (default 2)")
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--model", default="test_x4", help="torch registry model (default test_x4)")
    p.add_argument("--onnx", default=None, help="use onnxruntime on this model instead of torch")
    p.add_argument("--size", default="160x90", help="synthetic frame WxH (default 160x90)")
    p.add_argument("--fps", type=float, default=15.0, help="live frame rate of the pattern (default 15)")
    p.add_argument("--threads", type=int, default=1, help="backend CPU threads (default 1)")
    p.add_argument("--max-drift-pct", type=float, default=5.0)
    p.add_argument("--csv", default="soak.csv", help="samples file (default soak.csv)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.every <= 0 or args.warmup_minutes < 0 or args.fps <= 0:
        raise UserError("--minutes, --every and --fps must be positive, --warmup-minutes >= 0")
    if args.warmup_minutes >= args.minutes:
        raise UserError("--warmup-minutes must be shorter than --minutes")
    return args


def soak(args, say=print) -> tuple[list[Sample], dict, object]:
    from mambalitesr.imageio import atomic_path
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.options import parse_size
    from mambalitesr.runtime.stream.pipeline import Pipeline
    from mambalitesr.runtime.core.processing import FrameProcessor
    from mambalitesr.runtime.stream.sinks import NullSink
    from mambalitesr.runtime.stream.synthetic import SyntheticSource

    w, h = parse_size(args.size)
    if args.onnx:
        backend = create_backend("onnxruntime", onnx=args.onnx, threads=args.threads)
    else:
        backend = create_backend("torch", model=args.model, threads=args.threads)
    pipeline = Pipeline(SyntheticSource(w, h, fps=args.fps), FrameProcessor(backend), NullSink(), warmup=3,
                        log=lambda m: say(f"soak: {m}"))
    say(f"soak: {args.minutes:g} min of {w}x{h} @ {args.fps:g} fps through {backend.describe()}, "
        f"sampling every {args.every:g} s")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run()
        except BaseException as exc:  # reported in the verdict, not as a thread traceback
            errors.append(exc)

    runner = threading.Thread(target=run, name="soak-pipeline", daemon=True)
    samples: list[Sample] = []
    csv_path = Path(args.csv)
    partial = csv_path.with_name(csv_path.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    runner.start()
    with open(partial, "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        next_at = t0
        while True:
            now = time.monotonic()
            if now >= next_at:
                rss, fds, threads = process_figures()
                stats = pipeline.stats
                s = Sample(round(now - t0, 2), rss, fds, threads, threading.active_count(), stats.frames_out,
                           stats.dropped)
                samples.append(s)
                writer.writerow(asdict(s))
                fh.flush()
                say(f"soak: t={s.t_s:7.0f} s  rss {rss / 1024:8.1f} MiB  fds {fds:3d}  threads {threads:3d}  "
                    f"frames {s.frames_out}  dropped {s.dropped}")
                next_at = max(next_at + args.every, now)  # after a stall, resume the cadence instead of bursting
            if now - t0 >= args.minutes * 60 or not runner.is_alive():
                break
            time.sleep(min(0.5, max(0.0, next_at - time.monotonic())))
    alive = runner.is_alive()
    pipeline.request_stop("soak: time up")
    runner.join(timeout=60)
    backend.close()
    with atomic_path(csv_path) as tmp:
        tmp.write_bytes(partial.read_bytes())
    partial.unlink()
    result = judge(samples, args.warmup_minutes * 60, args.max_drift_pct)
    if not alive:
        why = errors[0] if errors else pipeline.stats.stop_reason
        result["failures"].insert(0, f"the pipeline ended before the soak did ({why})")
    result["pipeline"] = pipeline.stats.summary()
    return samples, result, pipeline


def main(argv=None) -> int:
    try:
        args = _parse(argv)
        samples, result, _ = soak(args)
    except UserError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    print(result.pop("pipeline"))
    if "rss_drift_pct" in result:
        print(f"soak result over {result['window_s'] / 60:.1f} min after a {args.warmup_minutes:g} min warm-up "
              f"({result['samples']} samples, {result['frames_after_warmup']} frames):")
        print(f"  RSS {result['rss_first_mib']:.1f} -> {result['rss_last_mib']:.1f} MiB "
              f"(max {result['rss_max_mib']:.1f}): drift {result['rss_drift_pct']:+.2f}%, slope {result['rss_slope_mib_per_h']:+.2f} MiB/h, "
              f"{result['bytes_per_frame']:+.0f} B/frame")
        print(f"  file descriptors: growth {result['fd_growth']:+d} (max {result['fd_max_growth']:+d}); "
              f"threads: growth {result['thread_growth']:+d} (max {result['thread_max_growth']:+d})")
    print(f"  samples: {args.csv}")
    if result["failures"]:
        print("FAIL: " + "; ".join(result["failures"]))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
