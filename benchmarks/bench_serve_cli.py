"""``mambalitesr bench serve``: N synthetic cameras against one ``mambalitesr serve`` vs N local models.

Glossary: see mambalitesr.benchmarks.bench_serve. Imports nothing heavy at module level.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from mambalitesr import argtypes as t


def register_serve(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "serve", help="1, 2, 4, 8 synthetic cameras against one `mambalitesr serve` vs each with its own model",
        description="Start `mambalitesr serve` (real tritonserver on loopback), run N camera processes at once with "
        "--backend triton, then the same N cameras each with a local torch backend; report aggregate fps, "
        "p50/p99 latency, the batch sizes the server formed and frames sent == received. Writes "
        "<results-dir>/serve/<device>.json and .md.",
    )
    p.add_argument("--cameras", default="1,2,4,8", type=t.csv_of(t.int_range(1, 256), "counts"), help="camera counts to run (default 1,2,4,8)")
    p.add_argument("--frames", type=t.int_range(1, 10**6), default=40, help="frames per camera (default 40)")
    p.add_argument("--size", default="160x90", metavar="WxH", type=t.size_text, help="synthetic frame size (default 160x90)")
    p.add_argument("--max-batch-size", type=t.int_range(1, 1024), default=8, help="server's max batch (default 8)")
    p.add_argument("--queue-delay-us", type=t.int_range(0, 10**7), default=2000, help="dynamic batcher delay (default 2000)")
    p.add_argument("--threads", type=t.threads, default=1, help="torch threads of the server and of each local camera (default 1)")
    p.add_argument("--cpus", default=None, help="pin every process to these CPUs (taskset list, e.g. 0; default: "
                   "the CPUs this process may use)")
    p.add_argument("--no-local", action="store_true", help="skip the local-backend comparison")
    p.add_argument("--triton-shm", action="store_true", help="cameras pass frames through system shared memory "
                   "(default: gRPC messages, as from another host)")
    p.add_argument("--device", default=None, metavar="NAME", help="results file name (default: this machine's)")
    p.add_argument("--results-dir", default=None, metavar="DIR", type=t.output_dir_text,
                   help="default ~/.cache/mambalitesr/bench, like the other benches (the committed figures: "
                   "--results-dir benchmarks/results)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mambalitesr.benchmarks.bench_serve import ServeBenchConfig, run_bench, write_results
    from mambalitesr.benchmarks.results import check_device_name, default_device_name, default_results_dir
    from mambalitesr.errors import UserError
    from mambalitesr.runtime.backends.options import parse_size

    try:
        cameras = tuple(int(v) for v in args.cameras.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--cameras {args.cameras!r} must be counts separated by commas, e.g. 1,2,4,8") from None
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    cpus = args.cpus
    if cpus is None:
        cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    cfg = ServeBenchConfig(cameras=cameras, frames=args.frames, size=parse_size(args.size),
                           max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us, threads=args.threads,
                           cpus=cpus, local=not args.no_local, shm=args.triton_shm)
    device = check_device_name(args.device or default_device_name())
    results_dir = Path(args.results_dir) if args.results_dir else default_results_dir()
    command = "mambalitesr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else \
        f"mambalitesr bench serve --cameras {args.cameras} --frames {args.frames} --size {args.size}"
    result = run_bench(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    json_path, md_path = write_results(result, results_dir, device, command)
    print(f"wrote {json_path} and {md_path}")
    lost = [r for r in result["rows"] if not r["nothing_lost"]]
    if lost:
        raise UserError(f"frames were lost in {len(lost)} step(s): see {md_path}")
    return 0
