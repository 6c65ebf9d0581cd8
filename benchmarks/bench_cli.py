"""``mambalitesr bench``: latency, power and quality numbers anyone can reproduce, one results file per device.

Glossary (subcommand -> what it measures):
    latency   every model x lane (backend / graph / precision) x input size x batch: p50/p90/p99, FPS,
              peak memory, max error against PyTorch fp32 (benchmarks/latency.py)
    power     the same runs with the telemetry reader on, after an idle baseline: watts above idle and
              joules per frame (benchmarks/power.py); null with the reason where there is no telemetry
    quality   PSNR-Y / SSIM-Y of bicubic, the models and any exported graph or engine on --data folders
    all       power (which includes latency) + quality into a fresh results file, then the report
    report    re-render <device>.md and the plots from <device>.json
    serve     N synthetic cameras against one `mambalitesr serve` vs N local models (benchmarks/bench_serve.py)

Every run merges its rows into ``<results-dir>/<device>.json`` (``all`` starts the file afresh), saving
after each measurement, then renders ``<device>.md`` and PNG plots from that JSON (benchmarks/report.py).
Imports nothing heavy at module level.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from mambalitesr import argtypes as t
from mambalitesr.errors import UserError

DEFAULT_MODELS = ("mambalitesr_x4",)  # the shipped student; the teacher only with --model dvmsr_x4=WEIGHTS
DEFAULT_SIZES = "160x90,320x180,640x360"
# The portable graph is one export (minutes of CPU) per size, and its unrolled chunked scan needs memory
# that grows fast with h x w on ONNX Runtime CPU: by default it runs at the smallest size only.
DEFAULT_PORTABLE_SIZES = "160x90"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark latency, power and quality into <results-dir>/<device>.json/.md",
        description="Reproducible benchmarks: one JSON row per measurement in <results-dir>/<device>.json, "
        "rendered to <device>.md and PNG plots from that JSON only.",
    )
    sub = parser.add_subparsers(dest="bench_command", metavar="WHAT")
    sub.required = True
    for name, help_text in (
        ("latency", "latency of every model on every backend, precision, input size and batch"),
        ("power", "the latency runs with power telemetry, above an idle baseline"),
        ("quality", "PSNR-Y / SSIM-Y of bicubic, the models and exported graphs on dataset folders"),
        ("all", "power (with latency) + quality into a fresh results file, then the report"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p)
        if name in ("latency", "power", "all"):
            _latency_options(p)
        if name in ("power", "all"):
            from mambalitesr.runtime.power import add_power_arguments

            add_power_arguments(p)
            p.add_argument("--idle-seconds", type=t.float_range(0.0, 3600.0), default=5.0, help="idle baseline length (default 5)")
        if name in ("quality", "all"):
            _quality_options(p, required=name == "quality")
        p.set_defaults(func=run)
    p = sub.add_parser(
        "peers", help="our models beside SAFMN, SPAN and FSRCNN (torch fp32 CPU, interleaved), with a quality chart",
        description="Time our models on their fastest scan beside the convolutional peers users compare them "
        "with (random weights; benchmarks/peer_arch.py), models interleaved call by "
        "call, into <results-dir>/peers/<device>.json/.md/.png.",
    )
    _common(p)
    p.add_argument("--peer", default="safmn,span,fsrcnn", help="comma-separated peers (default safmn,span,fsrcnn)")
    p.add_argument("--sizes", default="320x180,640x360", type=t.csv_of(t.size(), "sizes"),
                   help="input sizes WxH (default 320x180,640x360)")
    p.add_argument("--repeats", type=t.int_range(1, 1000), default=3, help="timed rounds after one warm-up round (default 3)")
    p.add_argument("--data", default=None, metavar="DIR", type=t.input_dir,
                   help="HR folder (e.g. Set5) to measure our models' PSNR-Y for the chart (default: none)")
    p.set_defaults(func=run_peers)
    from mambalitesr.benchmarks.bench_serve_cli import register_serve  # light: runs nothing at import

    register_serve(sub)
    p = sub.add_parser("report", help="re-render <device>.md and the plots from <device>.json")
    p.add_argument("--device", default=None, help="results file name (default: this machine's)")
    p.add_argument("--results-dir", default=None, metavar="DIR", type=t.output_dir,
                   help="default ~/.cache/mambalitesr/bench ($MAMBALITESR_HOME/bench or $XDG_CACHE_HOME/mambalitesr/bench)")
    p.set_defaults(func=run_report)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, metavar="NAME",
                   help="results file name, e.g. orin-nano (default: derived from this machine, e.g. cpu-x86_64-2core)")
    p.add_argument("--results-dir", default=None, metavar="DIR", type=t.output_dir,
                   help="where <device>.json/.md and the plots go (default ~/.cache/mambalitesr/bench, or "
                   "$MAMBALITESR_HOME/bench, $XDG_CACHE_HOME/mambalitesr/bench; the committed files of a checkout: "
                   "--results-dir benchmarks/results)")
    p.add_argument("--model", action="append", default=None, metavar="NAME[=WEIGHTS]",
                   help=f"registry model, with a weights file unless it ships one (repeat; default "
                        f"{' and '.join(DEFAULT_MODELS)}, the shipped student; add the teacher with "
                        "--model dvmsr_x4=PATH to the published DVMSR weights)")
    p.add_argument("--threads", type=t.threads, default=None, help="CPU threads for torch / onnxruntime (default: library default)")
    p.add_argument("--note", default=None, help="a sentence stored with the run and shown in the report (conditions)")


def _latency_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("latency")
    g.add_argument("--sizes", default=DEFAULT_SIZES, type=t.csv_of(t.size(), "sizes"), help=f"LR input sizes WxH, comma-separated (default {DEFAULT_SIZES})")
    g.add_argument("--batches", default="1,4", type=t.csv_of(t.int_range(1, 1024), "batches"), help="batch sizes, comma-separated (default 1,4)")
    g.add_argument("--backends", default="torch,onnxruntime,tensorrt",
                   help="backends to try (default all: those not available here get a skipped row with the reason)")
    g.add_argument("--onnx-graphs", default="plugin,fused,portable",
                   help="ONNX graph forms for onnxruntime: plugin (SelectiveScan nodes, dynamic shapes), fused "
                        "(MambaMixer nodes, dynamic shapes, CPU with the native kernels), portable (standard ops, one "
                        "export per size, batch 1); default all three")
    g.add_argument("--portable-sizes", default=DEFAULT_PORTABLE_SIZES, metavar="WxH,...|all", type=t.sizes_text,
                   help=f"sizes at which to export and run the portable graph, each a separate export taking "
                        f"minutes of CPU (default {DEFAULT_PORTABLE_SIZES}, where it is among --sizes; 'all': every size)")
    g.add_argument("--providers", action="append", default=None, metavar="LIST",
                   help="onnxruntime providers of one lane, e.g. cpu or cuda,cpu (repeat for more lanes; default "
                        "cpu and cuda,cpu: a provider this onnxruntime lacks gives a skipped row)")
    g.add_argument("--torch-device", default="cpu,cuda", metavar="LIST", type=t.csv_of(t.device, "devices"),
                   help="torch devices, comma-separated: cpu, cuda[:N] (default cpu,cuda: without CUDA the CUDA "
                        "lanes are skipped rows with the reason)")
    g.add_argument("--engine", action="append", default=[], metavar="MODEL=FILE",
                   help="TensorRT engine of a model (repeat, also for several engines of one model, e.g. fp16 "
                        "and fp32), e.g. mambalitesr_x4=/data/student_fp16.engine")
    g.add_argument("--plugin", default=None, metavar="FILE", type=t.input_file,
                   help="SelectiveScan plugin library for the engines")
    g.add_argument("--onnx-dir", default=None, metavar="DIR", type=t.output_dir,
                   help="keep exported ONNX graphs here and reuse them (default: a temporary folder, exported afresh)")
    it = p.add_argument_group("iterations (per measurement)")
    it.add_argument("--warmup", type=t.int_range(1, 1000), default=2, help="warm-up calls (default 2; fewer when one takes > 1 s)")
    it.add_argument("--min-iters", type=t.int_range(1, 10**6), default=10, help="timed calls at least (default 10) ...")
    it.add_argument("--min-seconds", type=t.float_range(0.0, 86400.0), default=2.0, help="... and at least this long (default 2)")
    it.add_argument("--max-iters", type=t.int_range(1, 10**6), default=200, help="timed calls at most (default 200)")
    it.add_argument("--max-seconds", type=t.float_range(0.0, 86400.0, lo_open=True), default=5.0,
                   help="stop after this long once --floor-iters calls are done (default 5): slow "
                        "configurations get fewer calls, and each row records its count")
    it.add_argument("--floor-iters", type=t.int_range(1, 10**6), default=1, help="timed calls never fewer than this (default 1)")
    it.add_argument("--skip-warmup-above", type=t.float_range(0.0, 86400.0, lo_open=True), default=5.0, metavar="SECONDS",
                   help="no warm-up for a shape whose one call, projected from the same (already warm) backend's "
                        "smaller shapes, takes longer than this (default 5): the row records warmup 0")


def _quality_options(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("quality")
    g.add_argument("--data", action="append", default=[], required=required, metavar="DIR", type=t.input_dir,
                   help="folder of HR images (repeat), e.g. Set5 and Set14" + ("" if required else
                   "; without it `all` measures no quality"))
    g.add_argument("--quality-onnx", action="append", default=[], metavar="FILE", type=t.input_file,
                   help="also score this exported ONNX graph (dynamic shapes: --scan plugin --dynamic)")
    g.add_argument("--quality-engine", action="append", default=[], metavar="FILE", type=t.input_file,
                   help="also score this TensorRT engine (with --plugin)")
    if not any(a.dest == "plugin" for a in p._actions):
        g.add_argument("--plugin", default=None, metavar="FILE", type=t.input_file,
                       help="SelectiveScan plugin library for engines")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


# ---------------------------------------------------------------- parsing helpers


def _csv(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{what}: give at least one value")
    return items


def _sizes(text: str, what: str) -> list[tuple[int, int]]:
    from mambalitesr.runtime.backends.options import parse_size

    return [(h, w) for w, h in (parse_size(t) for t in _csv(text, what))]


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text, what)]
    except ValueError:
        raise UserError(f"{what} {text!r}: expected integers, e.g. 1,4") from None
    if any(v < 1 for v in values):
        raise UserError(f"{what}: every value must be >= 1")
    return values


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = _csv(text, what)
    bad = [i for i in items if i not in allowed]
    if bad:
        raise UserError(f"{what}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    return items


def _models(args) -> list:
    from mambalitesr.benchmarks.latency_plan import ModelSpec

    specs = [ModelSpec.parse(t) for t in (args.model or DEFAULT_MODELS)]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"--model: a model is given twice ({', '.join(names)})")
    return [s.resolve() for s in specs]


def _engines(items: list[str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--engine {item!r}: expected MODEL=FILE")
        out.setdefault(name, []).append(Path(path))
    return out


def _command_line(argv_like: list[str]) -> str:
    return "mambalitesr bench " + " ".join(shlex.quote(a) for a in argv_like)


def _reconstruct(args) -> list[str]:
    """The options of this run as a command line (for the report's 'how to reproduce')."""
    out = [args.bench_command]
    skip = {"func", "command", "bench_command"}
    for key, value in vars(args).items():
        if key in skip or value is None or value is False or value == [] or value == "":
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


# ---------------------------------------------------------------- running


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _paths(args):
    from mambalitesr.benchmarks.results import (check_device_name, default_device_name, default_results_dir,
                                                results_paths)

    device = check_device_name(args.device or default_device_name())
    results_dir = Path(args.results_dir) if args.results_dir else default_results_dir()
    return device, results_dir, results_paths(results_dir, device)


def run_peers(args) -> int:
    from mambalitesr.benchmarks.peers import PEER_NAMES, run_peers as run

    if args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    peers = _choices(args.peer, PEER_NAMES, "--peer")
    models = [(m.name, str(m.weights) if m.weights else None) for m in _models(args)]
    data = Path(args.data) if args.data else None
    if data is not None and not data.is_dir():
        raise UserError(f"--data {data}: not a folder")
    device, results_dir, _ = _paths(args)
    result = run(models, peers, _sizes(args.sizes, "--sizes"), args.repeats, args.threads, data, results_dir,
                 device, args.note)
    for line in result["summary"]:
        print(line)
    print(f"wrote {results_dir / 'peers' / (device + '.json')} and .md")
    return 0


def run_report(args) -> int:
    from mambalitesr.benchmarks.report import write_report
    from mambalitesr.benchmarks.results import load_results

    device, results_dir, paths = _paths(args)
    results = load_results(paths["json"])
    if results.device != device:
        raise UserError(f"{paths['json']} holds device {results.device!r}, not {device!r}")
    write_report(results, results_dir)
    print(f"wrote {paths['md']} and its plots from {paths['json']}")
    return 0


def run(args) -> int:
    from mambalitesr.benchmarks.results import Results, load_results, machine_description, machine_line, save_results

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    what = args.bench_command
    device, results_dir, paths = _paths(args)
    models = _models(args)
    plan = _latency_plan(args, models) if what in ("latency", "power", "all") else None
    datasets = [Path(d) for d in getattr(args, "data", [])]
    if datasets:
        from mambalitesr.imageio import list_images
        from mambalitesr.models.evaluate import load_hr

        for d in datasets:  # a bad folder or image fails now, not after the latency runs as "skipped" rows
            for path in list_images(d):
                load_hr(path, _scale(models))

    started = datetime.now(timezone.utc).replace(microsecond=0)
    run_id = f"{what}-{started.strftime('%Y%m%dT%H%M%SZ')}"
    machine = machine_description()
    mline = machine_line(machine)
    results = Results(device=device) if what == "all" else load_results(paths["json"], device)
    if results.device != device:
        raise UserError(f"{paths['json']} holds device {results.device!r}, not {device!r}")
    results.machine = machine
    run_record = {"run_id": run_id, "command": _command_line(_reconstruct(args)),
                  "started": started.isoformat().replace("+00:00", "Z"), "wall_s": None}
    if args.note:
        run_record["note"] = args.note
    run_record["load_start"] = _loadavg()
    results.runs.append(run_record)
    wall_start, cpu_start = time.perf_counter(), time.process_time()

    def keep(row) -> None:
        results.merge([row])
        _prune_runs(results)
        save_results(results, paths["json"])

    _say(f"bench {what}: {device} ({mline}); results in {paths['json']}")
    power = None
    try:
        if what in ("power", "all"):
            from mambalitesr.benchmarks.power import MIN_POWER_SECONDS, PowerContext

            power = PowerContext.open(args.power, args.power_interval_ms, args.tegrastats_cmd, args.idle_seconds,
                                      say=_say)
            results.idle = power.idle_record()
            if power.monitor is not None and plan.policy.min_seconds < MIN_POWER_SECONDS:
                p = plan.policy
                plan.policy = dataclasses.replace(p, min_seconds=MIN_POWER_SECONDS,
                                                  max_seconds=max(p.max_seconds, MIN_POWER_SECONDS))
        if plan is not None:
            from mambalitesr.benchmarks.latency import run_latency

            run_latency(plan, run_id, mline, power=power, on_row=keep)
        if what in ("quality", "all") and datasets:
            from mambalitesr.benchmarks.quality import run_quality

            run_quality(_quality_entries(args, models), datasets, run_id, mline, scale=_scale(models),
                        threads=args.threads, progress=not args.no_progress, on_row=keep)
        elif what == "all":
            _say("bench all: no --data folders given, so no quality rows")
    finally:
        if power is not None:
            power.close()
    run_record["wall_s"] = round(time.perf_counter() - wall_start, 1)
    run_record["cpu_s"] = round(time.process_time() - cpu_start, 1)  # all threads of this process
    run_record["load_end"] = _loadavg()
    _prune_runs(results)
    save_results(results, paths["json"])
    from mambalitesr.benchmarks.report import speedup_summary, speedups, write_report

    write_report(results, results_dir)
    for lane, s in speedup_summary([p for p in speedups(results) if p["student"].run_id == run_id]).items():
        print(f"{lane}: student faster in {s['faster']} of {s['n']}, teacher/student p50 = {s['geomean']:.2f}x "
              f"(geometric mean; {s['min']:.2f}x .. {s['max']:.2f}x)")
    print(f"wrote {paths['json']}, {paths['md']} and plots in {run_record['wall_s'] / 60:.1f} min")
    return 0


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: how busy the machine was (other jobs slow every wall-clock figure)."""
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _prune_runs(results) -> None:
    """Keep the run records that rows still refer to (and the current one, last)."""
    used = {r.run_id for r in results.rows}
    current = results.runs[-1]["run_id"] if results.runs else None
    results.runs = [r for r in results.runs if r["run_id"] in used or r["run_id"] == current]


def _scale(models) -> int:
    scales = {int(m.config.scale) for m in models}
    if len(scales) != 1:
        raise UserError(f"quality compares models of one scale; these upscale x{sorted(scales)}")
    return scales.pop()


def _latency_plan(args, models):
    from mambalitesr.benchmarks.latency_plan import BACKENDS, DEFAULT_PROVIDERS, ONNX_GRAPHS, LatencyPlan
    from mambalitesr.benchmarks.timing import IterationPolicy

    sizes = _sizes(args.sizes, "--sizes")
    if args.portable_sizes == "all":
        portable = None
    else:
        portable = _sizes(args.portable_sizes, "--portable-sizes")
        if args.portable_sizes != DEFAULT_PORTABLE_SIZES and not set(portable) <= set(sizes):
            raise UserError("--portable-sizes must be a subset of --sizes (or 'all')")
    engines = _engines(args.engine)
    unknown = set(engines) - {m.name for m in models}
    if unknown:
        raise UserError(f"--engine for {', '.join(sorted(unknown))}, which is not among the --model list")
    policy = IterationPolicy(warmup=args.warmup, min_iters=args.min_iters, max_iters=args.max_iters,
                             min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                             floor_iters=args.floor_iters, skip_warmup_above=args.skip_warmup_above).check()
    return LatencyPlan(
        models=models, sizes=sizes, batches=_ints(args.batches, "--batches"),
        backends=_choices(args.backends, BACKENDS, "--backends"),
        onnx_graphs=_choices(args.onnx_graphs, ONNX_GRAPHS, "--onnx-graphs"),
        portable_sizes=portable, providers=args.providers or list(DEFAULT_PROVIDERS),
        torch_devices=_torch_devices(args.torch_device),
        threads=args.threads, engines=engines, plugin=Path(args.plugin) if args.plugin else None,
        onnx_dir=Path(args.onnx_dir) if args.onnx_dir else None, policy=policy,
    )


def _torch_devices(text: str) -> list[str]:
    devices = _csv(text, "--torch-device")
    bad = [d for d in devices if d != "cpu" and not (d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()))]
    if bad:
        raise UserError(f"--torch-device: unknown {', '.join(bad)}; use cpu, cuda or cuda:N")
    if len(set(devices)) != len(devices) or sum(d.startswith("cuda") for d in devices) > 1:
        raise UserError("--torch-device: give cpu and at most one CUDA device, each once")
    return devices


def _quality_entries(args, models) -> list:
    from mambalitesr.benchmarks.quality import Entry

    entries = [Entry("bicubic", "bicubic")] + [Entry("torch", m.name, model=m) for m in models]
    entries += [Entry("onnxruntime", Path(f).name, path=Path(f)) for f in args.quality_onnx]
    plugin = Path(args.plugin) if getattr(args, "plugin", None) else None
    entries += [Entry("tensorrt", Path(f).name, path=Path(f), plugin=plugin) for f in args.quality_engine]
    return entries
