"""One frame of our models on the token-major path (PyTorch layout moves + the native scan) and on the fused
channel-major path (the C mixer core), same process and input: CPU time of each and their largest difference.

Glossary (code name -> meaning):
    token path   MambaSR.forward_features: (B, L, C) tokens, torch LayerNorm / projections, the native C scan
    fused path   MambaSR.forward_features_channel_major: (B, C, L) throughout, the C mixer core and LayerNorm
    CPU s        process CPU time of one call (time.process_time), the smallest of --repeats calls: on a core
                 shared with other jobs it hardly depends on their load, unlike wall time

Usage: python -m mambalitesr.benchmarks.bench_fused_path [--size 320x180] [--teacher-weights PATH] [--repeats 2]
(one thread; pin it with taskset). Prints one line per model and path, then max |fused - token|.
"""
from __future__ import annotations

import argparse
import sys
import time

from mambalitesr.benchmarks.timing import fastest_seconds


def main(argv=None) -> int:
    import torch

    from mambalitesr.models.registry import create_model
    from mambalitesr.runtime.memory import keep_freed_memory

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="320x180", help="input WxH (default 320x180)")
    p.add_argument("--teacher-weights", default=None, help="also time dvmsr_x4 with these weights")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)
    keep_freed_memory()
    models = [("mambalitesr_x4", None)] + ([("dvmsr_x4", args.teacher_weights)] if args.teacher_weights else [])
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    for name, weights in models:
        model = create_model(name, weights=weights, scan_backend="native")
        with torch.inference_mode():
            token = model._upsample(x, model.forward_features(x)[0])
            fused = model(x)
            t_token = fastest_seconds(lambda: model._upsample(x, model.forward_features(x)[0]), args.repeats,
                                      time.process_time)
            t_fused = fastest_seconds(lambda: model(x), args.repeats, time.process_time)
        print(f"{name} {w}x{h}: token path {t_token:.3f} CPU s, fused path {t_fused:.3f} CPU s "
              f"({t_token / t_fused:.2f}x); max |fused - token| = {(fused - token).abs().max().item():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
