"""How much of a frame is the selective scan, and what teacher/student ratio a faster scan could reach.

Glossary (printed name -> meaning): frame = one forward pass of the model at the input size (torch, fp32, the
fastest scan backend, no grad); scans = the mixers' selective scans alone, each timed on its own through the
channel-major C scan (``mixer_scan_forward``: softplus of Delta, the recurrence h_t = exp(Delta_t A) h_{t-1} +
Delta_t B_t x_t, y_t = <C_t, h_t> + D x_t, and the SiLU(z_t) gate) on the mixer's shapes (D, N, L = H W) and
summed over the mixers; rest = frame - scans (convs, projections, conv1d, norms, upsampler). A state update is
one (d, n, t) step of the recurrence.

The teacher/student ratio of whole frames is a weighted mean of the ratio of the scans (set by the two models'
D: the scan does D N L updates per mixer) and the ratio of everything else (set mostly by the MACs). So a scan
made f times faster in both models moves the ratio to (T_rest + T_scans / f) / (S_rest + S_scans / f), and no
scan speed-up takes it past T_rest / S_rest. The script prints that curve, from measured parts.

Timing is value-independent (no branch depends on the data), so models without their weights are timed with
random ones (``--teacher`` names a registry model; the student loads its shipped weights when it has them).

Run:  python benchmarks/scan_share.py [--size 320x180] [--threads 1] [--reps 5]
"""
from __future__ import annotations

import argparse
import sys

from mambalitesr import argtypes as t
from mambalitesr.benchmarks.timing import fastest_seconds
from mambalitesr.errors import UserError

SPEEDUPS = (1.0, 2.0, 4.0, float("inf"))


def measure(name: str, width: int, height: int, reps: int) -> dict:
    """One model's frame, its scans alone and the rest, in seconds."""
    import numpy as np
    import torch

    from mambalitesr.models.mixer import MambaMixer
    from mambalitesr.models.mixer_native import selective_scan_channel_major
    from mambalitesr.models.registry import create_model, get_entry

    model = create_model(name, pretrained=get_entry(name).weights_path is not None).eval()
    lr = torch.rand(1, 3, height, width)
    with torch.no_grad():
        frame = fastest_seconds(lambda: model(lr), reps)
    mixers = [m for m in model.modules() if isinstance(m, MambaMixer)]
    if any(m.directions != 1 for m in mixers):
        raise SystemExit(f"{name}: the scan-alone timing covers one-direction mixers only")
    length, scans, updates = height * width, 0.0, 0
    rng = np.random.default_rng(0)
    for m in mixers:
        D, N = m.d_inner, m.d_state
        u, z = (rng.standard_normal((1, D, length), dtype=np.float32) for _ in range(2))
        delta = rng.standard_normal((1, D, length), dtype=np.float32) * 0.5 - 3.0  # softplus -> about 0.05
        A = -np.exp(m.A_log.detach().numpy().astype(np.float32))  # (D, N)
        Bm, Cm = (rng.standard_normal((1, N, length), dtype=np.float32) for _ in range(2))
        skip, bias = np.ones(D, np.float32), np.zeros(D, np.float32)
        scans += fastest_seconds(
            lambda: selective_scan_channel_major(u, delta, A, Bm, Cm, skip, z, bias, True, nthreads=1), reps
        )
        updates += D * N * length
    return {"name": name, "frame": frame, "scans": scans, "rest": frame - scans, "mixers": len(mixers),
            "updates": updates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default="mambalitesr_x4", help="registry model (default mambalitesr_x4)")
    parser.add_argument("--teacher", default="dvmsr_x4", help="registry model (default dvmsr_x4, random weights)")
    parser.add_argument("--size", default=(320, 180), type=t.size(), help="LR input WxH (default 320x180)")
    parser.add_argument("--threads", type=t.threads, default=1, help="torch threads (default 1; the scans run on one)")
    parser.add_argument("--reps", type=t.int_range(1, 1000), default=5,
                        help="timed runs per measurement, fastest kept (default 5)")
    args = parser.parse_args(argv)
    width, height = args.size

    import torch

    from mambalitesr.models.mixer_native import available

    if not available():
        print("scan_share: the native C scan is not built (pip install -e . builds it)", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    print(f"{width}x{height}, torch threads {args.threads}, fastest of {args.reps} runs after one warm-up")
    try:
        parts = [measure(name, width, height, args.reps) for name in (args.student, args.teacher)]
    except UserError as exc:  # an unknown model name, a weights file that does not fit
        print(f"scan_share: {exc}", file=sys.stderr)
        return 2
    for p in parts:
        print(f"{p['name']}: frame {p['frame'] * 1e3:.0f} ms = scans {p['scans'] * 1e3:.0f} ms "
              f"({p['mixers']} mixers, {p['updates'] / 1e9:.2f} G state updates, "
              f"{p['scans'] / p['updates'] * 1e9:.2f} ns each; {p['scans'] / p['frame']:.0%} of the frame) "
              f"+ rest {p['rest'] * 1e3:.0f} ms")
    stu, tea = parts
    print(f"{tea['name']} / {stu['name']}: frame {tea['frame'] / stu['frame']:.2f}, "
          f"scans {tea['scans'] / stu['scans']:.2f}, rest {tea['rest'] / stu['rest']:.2f}")
    for f in SPEEDUPS:
        ratio = (tea["rest"] + tea["scans"] / f) / (stu["rest"] + stu["scans"] / f)
        label = "scans free in both" if f == float("inf") else f"scans {f:g}x faster in both"
        print(f"  {label:<26} frame ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
