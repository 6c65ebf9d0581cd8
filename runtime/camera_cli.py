"""``mambalitesr camera``: super-resolve a live source and report FPS, latency per stage and watts.

Glossary (code name -> meaning):
    --source    csi:N | v4l2:/dev/videoN | file:PATH | images:DIR | synthetic[:WxH][@FPS][:drop_at=N]
                | rtsp://HOST/PATH | http://HOST/PATH (MJPEG), see runtime/stream/ip_camera.py
    --sink      auto (default: the window where this OpenCV has a GUI and a display, else the web viewer at
                http://localhost:8080 when aiohttp is installed, else an error naming the choices) | window |
                http://HOST:PORT | file:PATH | images:DIR | null
    fit         frames larger than the engine or graph serves whole are shrunk to the largest size it serves
                (aspect kept, C frame path), announced once; --input-size or --tile choose otherwise
    --frames N  stop after N frames reached the sink (a file or folder also ends at its end)
    summary     printed on stdout at the end, also after Ctrl-C (exit 130) or SIGTERM (exit 0);
                a second signal abandons the drain
"""
from __future__ import annotations

import json
import signal
import sys

from mambalitesr import argtypes
from mambalitesr.errors import MissingDependency, UserError

AUTO_SINK = "auto"
WEB_SINK = "http://localhost:8080"


def choose_sink(spec: str):
    """(sink, note): the sink ``spec`` names, or for ``auto`` one that can open here, with why it was chosen.

    Never a default that cannot open: the window only where OpenCV has a GUI build and a display, else the
    web viewer where aiohttp is installed, else MissingDependency naming every choice.
    """
    from mambalitesr.runtime.backends.options import installed
    from mambalitesr.runtime.stream.registry import parse_sink

    if spec != AUTO_SINK:
        return parse_sink(spec), ""
    try:
        return parse_sink("window"), "auto: OpenCV has a GUI and a display"
    except MissingDependency as exc:
        no_window = str(exc)
    if installed("aiohttp"):
        return parse_sink(WEB_SINK), f"auto: no window ({no_window}); open {WEB_SINK} in a browser"
    raise MissingDependency(
        f"no sink can open here by default: {no_window}; and the web viewer needs aiohttp "
        "(pip install 'mambalitesr[web]'). Choose --sink http://localhost:8080 (with the web extra), "
        "file:out.mp4, images:DIR or null"
    )


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
                   "| rtsp://HOST/PATH | http://HOST/MJPEG (gst: prefix: GStreamer + nvv4l2decoder on a Jetson) (default synthetic)")
    p.add_argument("--sink", default=AUTO_SINK,
                   help="auto | window | http://HOST:PORT (web viewer) | file:PATH | images:DIR | null (default auto: "
                   "the window where OpenCV has a GUI and a display, else the web viewer when aiohttp is installed)")
    add_backend_arguments(p, ("torch", "onnxruntime", "tensorrt", "triton"))
    p.add_argument("--frames", type=argtypes.positive_int, default=None, help="stop after N frames out (default: until the end or Ctrl-C)")
    p.add_argument("--input-size", type=argtypes.size(), default=None, metavar="WxH",
                   help="resize captured frames to WxH before SR (default: as captured, or, when larger than the "
                   "engine or graph serves whole, shrunk to the largest size it serves, aspect kept)")
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


def announce_forced_tiles(processor) -> None:
    """--tile on a fixed-shape graph tiles each larger frame: say so, with the seam spread measured on the
    synthetic test pattern (2.5 x 2.5 tiles) before the pipeline starts, while the backend is idle."""
    backend = processor.backend
    if backend.fixed_hw is None or processor.fit:
        return
    from mambalitesr.runtime.core.seams import seam_spread
    from mambalitesr.runtime.stream.synthetic import SyntheticSource

    th, tw = backend.fixed_hw
    pattern = SyntheticSource(width=max(16, 2 * tw + tw // 2), height=max(16, 2 * th + th // 2)).pattern(0)
    worst, mean = seam_spread(processor, pattern[..., ::-1].copy())  # BGR -> RGB
    print(f"camera: the model's input is fixed at {tw}x{th} and tiling was asked for: larger frames are cut into "
          f"{tw}x{th} tiles, with seams; on the synthetic test pattern two tilings offset by half a tile differ by "
          f"up to {worst:.0f}/255 (mean {mean:.2f}/255). Without --tile the frames are shrunk to {tw}x{th} instead",
          file=sys.stderr, flush=True)


def run(args) -> int:
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.options import backend_options
    from mambalitesr.runtime.stream.pipeline import Pipeline
    from mambalitesr.runtime.stream.power_link import open_power
    from mambalitesr.runtime.core.processing import FrameProcessor
    from mambalitesr.runtime.stream.registry import parse_source

    input_size = args.input_size
    options = backend_options(args)
    source = parse_source(args.source)
    if hasattr(source, "allow_truncated"):
        source.allow_truncated = args.allow_truncated
    sink, sink_note = choose_sink(args.sink)
    _check_outputs(args, sink)
    backend = create_backend(args.backend, **options)
    power = open_power(args.power, args.power_interval_ms, args.tegrastats_cmd)
    processor = FrameProcessor(backend, tile=args.tile or None, overlap=args.tile_overlap, input_size=input_size,
                               tile_width=args.tile_width or None, fit=True,
                               log=lambda msg: print(f"camera: {msg}", file=sys.stderr, flush=True))
    announce_forced_tiles(processor)
    pipeline = Pipeline(
        source, processor, sink, batch=args.batch, max_frames=args.frames, overlay=args.overlay, power=power,
        warmup=args.warmup, reconnect_timeout=args.reconnect_timeout,
    )
    print(f"camera: source {source.describe()}", file=sys.stderr)
    print(f"camera: backend {backend.describe()}", file=sys.stderr)
    print(f"camera: sink {sink.describe()}{f' ({sink_note})' if sink_note else ''}; power {power.describe()}",
          file=sys.stderr, flush=True)
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
