"""``mambalitesr camera``: super-resolve a live source and report FPS, latency per stage and watts.

Glossary (code name -> meaning):
    --source    csi:N | v4l2:/dev/videoN | file:PATH | images:DIR | synthetic[:WxH][@FPS][:drop_at=N]
    --sink      window | file:PATH | images:DIR | null
    --frames N  stop after N frames reached the sink (a file or folder also ends at its end)
    summary     printed on stdout at the end, also after Ctrl-C (exit 130) or SIGTERM (exit 0);
                a second signal abandons the drain
"""
from __future__ import annotations

import json
import signal
import sys

from mambalitesr import argtypes
from mambalitesr.errors import UserError


def register(subparsers) -> None:
    from mambalitesr.runtime.backends.options import add_backend_arguments

    p = subparsers.add_parser(
        "camera",
        help="live super-resolution of a camera, file or test pattern, with latency and power",
        description="Stream frames through capture -> preprocess -> infer -> postprocess -> sink (one thread each) "
        "and print frames, drops, FPS, latency p50/p99 per stage, watts and joules per frame at the end.",
    )
    p.add_argument("--source", default="synthetic",
                   help="csi:N | v4l2:/dev/videoN | file:PATH | images:DIR | synthetic[:WxH][@FPS][:drop_at=N][:gap=S] "
                   "(default synthetic)")
    p.add_argument("--sink", default="window", help="window | file:PATH | images:DIR | null (default window)")
    add_backend_arguments(p, ("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--frames", type=argtypes.positive_int, default=None, help="stop after N frames out (default: until the end or Ctrl-C)")
    p.add_argument("--input-size", type=argtypes.size(), default=None, metavar="WxH", help="resize captured frames to WxH before SR")
    p.add_argument("--batch", type=argtypes.int_range(1, 256), default=1, help="frames per inference call (default 1)")
    p.add_argument("--tile", type=argtypes.tile, default=0,
                   help="LR tile height for large frames (default 0: whole frames unless the backend's shape is fixed)")
    p.add_argument("--tile-width", type=argtypes.tile, default=0,
                   help="LR tile width (default 0: the full frame width, strips; see `mambalitesr upscale --help`)")
    p.add_argument("--tile-overlap", type=argtypes.int_range(0, argtypes.MAX_SIDE), default=16, help="LR overlap between tiles (default 16)")
    p.add_argument("--overlay", action="store_true", help="draw FPS, latency and watts onto the output")
    p.add_argument("--warmup", type=argtypes.int_range(0, 1000), default=3, help="warm-up inferences before timing (default 3)")
    p.add_argument("--reconnect-timeout", type=argtypes.nonneg_float, default=30.0,
                   help="seconds to keep reconnecting a lost camera before giving up (default 30)")
    p.add_argument("--json", type=argtypes.output_file, default=None, metavar="PATH",
                   help="also write the summary as JSON")
    argtypes.add_overwrite(p)
    p.add_argument("--allow-truncated", action="store_true",
                   help="file: source: a video with fewer frames than its header declares (cut short, damaged) is "
                   "a warning naming the missing frames, not an error")
    _add_power(p)
    p.set_defaults(func=run)


def _add_power(p) -> None:
    from mambalitesr.runtime.power import add_power_arguments

    add_power_arguments(p)


def run(args) -> int:
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.options import backend_options
    from mambalitesr.runtime.stream.pipeline import Pipeline
    from mambalitesr.runtime.stream.power_link import open_power
    from mambalitesr.runtime.core.processing import FrameProcessor
    from mambalitesr.runtime.stream.registry import parse_sink, parse_source

    input_size = args.input_size
    options = backend_options(args)
    source = parse_source(args.source)
    if hasattr(source, "allow_truncated"):
        source.allow_truncated = args.allow_truncated
    sink = parse_sink(args.sink)
    _check_outputs(args, sink)
    backend = create_backend(args.backend, **options)
    power = open_power(args.power, args.power_interval_ms, args.tegrastats_cmd)
    processor = FrameProcessor(backend, tile=args.tile or None, overlap=args.tile_overlap, input_size=input_size,
                               tile_width=args.tile_width or None)
    pipeline = Pipeline(
        source, processor, sink, batch=args.batch, max_frames=args.frames, overlay=args.overlay, power=power,
        warmup=args.warmup, reconnect_timeout=args.reconnect_timeout,
    )
    print(f"camera: source {source.describe()}", file=sys.stderr)
    print(f"camera: backend {backend.describe()}", file=sys.stderr)
    print(f"camera: sink {sink.describe()}; power {power.describe()}", file=sys.stderr, flush=True)
    from mambalitesr import stopping

    def first(name: str) -> None:
        print(f"camera: {name}: stopping, draining frames in flight (again to abandon)", file=sys.stderr, flush=True)
        pipeline.request_stop(name)

    try:
        with stopping.graceful(first, lambda name: pipeline.abort(f"{name} twice")):
            pipeline.run()
    finally:
        backend.close()
        if pipeline.started:
            print(pipeline.stats.summary(), flush=True)
            if args.json:
                _write_json(args.json, pipeline.stats.to_dict())
    received = stopping.received()
    if received == signal.SIGINT:
        return 128 + signal.SIGINT
    if received == signal.SIGTERM:
        return 0
    return 1 if pipeline.failed else 0


def _check_outputs(args, sink) -> None:
    """Refuse, before any work, to replace an existing output without --overwrite."""
    from mambalitesr.argtypes import check_new_output
    from mambalitesr.runtime.stream.sinks import ImageFolderSink, VideoFileSink

    if args.json:
        check_new_output(args.json, args.overwrite, "the JSON summary")
    if isinstance(sink, VideoFileSink):
        check_new_output(sink.path, args.overwrite, "the output video")
    if isinstance(sink, ImageFolderSink) and sink.folder.is_dir() and not args.overwrite:
        old = next(sink.folder.glob("frame_*.png"), None)
        if old is not None:
            raise UserError(f"{sink.folder}: holds frames of an earlier run ({old.name}, ...); pass --overwrite "
                            "to replace them, or choose another folder")


def _write_json(path: str, data: dict) -> None:
    from mambalitesr.imageio import write_bytes_atomic

    write_bytes_atomic(path, json.dumps(_finite(data), indent=2, default=str) + "\n")


def _finite(value):
    """NaN (no measurement) -> null, so the file is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
