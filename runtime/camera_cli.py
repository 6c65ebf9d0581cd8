"""``mambalitesr camera``: super-resolve a live source and report FPS, latency per stage and watts.

Glossary (code name -> meaning):
    --source    csi:N | v4l2:/dev/videoN | file:PATH | images:DIR | synthetic[:WxH][@FPS][:drop_at=N]
                | rtsp://HOST/PATH | http://HOST/PATH (MJPEG), see runtime/stream/ip_camera.py
    --sink      window | file:PATH | images:DIR | null
    --frames N  stop after N frames reached the sink (a file or folder also ends at its end)
    summary     printed on stdout at the end, also after Ctrl-C (exit 130) or SIGTERM (exit 0);
                a second signal abandons the drain
"""
from __future__ import annotations

import json
import signal
import sys

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
                   "| rtsp://HOST/PATH | http://HOST/MJPEG (gst: prefix: GStreamer + nvv4l2decoder on a Jetson) (default synthetic)")
    p.add_argument("--sink", default="window", help="window | file:PATH | images:DIR | null (default window)")
    add_backend_arguments(p, ("torch", "onnxruntime", "tensorrt", "triton"))
    p.add_argument("--frames", type=int, default=None, help="stop after N frames out (default: until the end or Ctrl-C)")
    p.add_argument("--input-size", default=None, metavar="WxH", help="resize captured frames to WxH before SR")
    p.add_argument("--batch", type=int, default=1, help="frames per inference call (default 1)")
    p.add_argument("--tile", type=int, default=0,
                   help="LR tile height for large frames (default 0: whole frames unless the backend's shape is fixed)")
    p.add_argument("--tile-width", type=int, default=0,
                   help="LR tile width (default 0: the full frame width, strips; see `mambalitesr upscale --help`)")
    p.add_argument("--tile-overlap", type=int, default=16, help="LR overlap between tiles (default 16)")
    p.add_argument("--overlay", action="store_true", help="draw FPS, latency and watts onto the output")
    p.add_argument("--warmup", type=int, default=3, help="warm-up inferences before timing (default 3)")
    p.add_argument("--reconnect-timeout", type=float, default=30.0,
                   help="seconds to keep reconnecting a lost camera before giving up (default 30)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the summary as JSON")
    _add_power(p)
    p.set_defaults(func=run)


def _add_power(p) -> None:
    from mambalitesr.runtime.power import add_power_arguments

    add_power_arguments(p)


class _Signals:
    """First SIGINT/SIGTERM: graceful stop (drain, summary). Second: abort the drain."""

    def __init__(self, pipeline):
        self.pipeline, self.received = pipeline, None
        self.previous = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            print(f"camera: {name}: stopping, draining frames in flight (again to abandon)", file=sys.stderr, flush=True)
            self.pipeline.request_stop(f"{name}")
        else:
            self.pipeline.abort(f"{name} twice")


def run(args) -> int:
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.options import backend_options, parse_size
    from mambalitesr.runtime.stream.pipeline import Pipeline
    from mambalitesr.runtime.stream.power_link import open_power
    from mambalitesr.runtime.core.processing import FrameProcessor
    from mambalitesr.runtime.stream.registry import parse_sink, parse_source

    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be >= 1, got {args.frames}")
    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    if args.tile < 0 or args.tile_width < 0 or args.tile_overlap < 0:
        raise UserError("--tile, --tile-width and --tile-overlap must be >= 0")
    input_size = parse_size(args.input_size) if args.input_size else None
    options = backend_options(args)
    source = parse_source(args.source)
    sink = parse_sink(args.sink)
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
    signals = _Signals(pipeline)
    signals.install()
    try:
        pipeline.run()
    finally:
        signals.restore()
        backend.close()
        if pipeline.started:
            print(pipeline.stats.summary(), flush=True)
            if args.json:
                _write_json(args.json, pipeline.stats.to_dict())
    if signals.received == signal.SIGINT:
        return 128 + signal.SIGINT
    if signals.received == signal.SIGTERM:
        return 0
    return 1 if pipeline.failed else 0


def _write_json(path: str, data: dict) -> None:
    from mambalitesr.imageio import atomic_path

    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(_finite(data), indent=2, default=str) + "\n")
    except OSError as exc:
        raise UserError(f"{path}: could not write the JSON summary ({exc.strerror or exc})") from None


def _finite(value):
    """NaN (no measurement) -> null, so the file is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
