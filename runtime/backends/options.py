"""Command-line options that choose and configure a backend, shared by ``upscale`` and ``camera``.

Glossary (code name -> meaning):
    --backend     torch | onnxruntime | tensorrt | triton | auto (default): the backend the other options name
                  (--onnx, --engine, --weights, --url, ...), else onnxruntime with the shipped graph when it is
                  installed, else torch when it is installed, else an error naming the extras (never torch where
                  torch is absent)
    --model       registry name (default mambalitesr_x4): torch builds it with its shipped weights, onnxruntime
                  runs its shipped ONNX graph (models/weights/<model>.onnx) unless --onnx names another
    --onnx        an exported model for onnxruntime;  --providers its execution providers
    --engine      the TensorRT engine;  --plugin the SelectiveScan plugin library
    --url         triton: HOST:PORT of a Triton server's gRPC endpoint; --triton-model, --triton-shm

An option that belongs to another backend is an error, not silently ignored.
"""
from __future__ import annotations

import argparse
import importlib.util

from mambalitesr import argtypes
from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.backends.shipped import DEFAULT_MODEL, shipped_onnx_path

AUTO = "auto"
# option dest -> the backends it applies to
_OWNERS = {
    "model": ("torch", "onnxruntime"),
    "weights": ("torch",),
    "device": ("torch",),
    "precision": ("torch",),
    "scan_backend": ("torch",),
    "onnx": ("onnxruntime",),
    "providers": ("onnxruntime",),
    "engine": ("tensorrt",),
    "plugin": ("tensorrt",),
    "gpu": ("tensorrt",),
    "url": ("triton",),
    "triton_model": ("triton",),
    "triton_shm": ("triton",),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (torch takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def default_backend(args: argparse.Namespace | None = None) -> str:
    """The backend ``--backend auto`` means for these options.

    Options that only one backend takes decide (--onnx/--providers: onnxruntime; --engine/--plugin/--gpu:
    tensorrt; --weights/--device/--precision/--scan-backend, or a --model without a shipped ONNX graph: torch).
    Otherwise onnxruntime (the shipped graph) when installed, else torch when installed, else MissingDependency;
    never torch where torch is absent.
    """
    given = {dest for dest in _OWNERS if args is not None and getattr(args, dest, None) is not None}
    if given & {"onnx", "providers"}:
        return "onnxruntime"
    if given & {"engine", "plugin", "gpu"}:
        return "tensorrt"
    if given & {"url", "triton_model", "triton_shm"}:
        return "triton"
    model = getattr(args, "model", None)
    wants_torch = sorted(given & {"weights", "device", "precision", "scan_backend"})
    if model is not None and not shipped_onnx_path(model).is_file():
        wants_torch.append(f"--model {model} (no shipped ONNX graph)")
    if wants_torch:
        if installed("torch"):
            return "torch"
        raise MissingDependency(
            f"{', '.join(w if w.startswith('--') else '--' + w.replace('_', '-') for w in wants_torch)} needs the "
            "torch backend, and torch is not installed: pip install 'mambalitesr[torch]' (for the CPU build, first "
            "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)"
        )
    if installed("onnxruntime"):
        return "onnxruntime"
    if installed("torch"):
        return "torch"
    raise MissingDependency(
        "no inference backend is installed: pip install 'mambalitesr[onnxruntime]' (the shipped ONNX graph on "
        "ONNX Runtime, no torch needed) or 'mambalitesr[torch]'; or name --backend tensorrt with an engine"
    )


def add_backend_arguments(parser: argparse.ArgumentParser, choices: tuple[str, ...]) -> None:
    """Add the backend options; ``--backend`` defaults to ``default_backend()`` when the command runs."""
    g = parser.add_argument_group("backend")
    g.add_argument("--backend", choices=choices + (AUTO,), default=AUTO,
                   help="inference backend (default auto: the backend the other options name; else onnxruntime "
                   "with the shipped graph when installed, else torch)")
    g.add_argument("--model", default=None, help=f"torch / onnxruntime: registry model name (default {DEFAULT_MODEL}; "
                   "see `mambalitesr models`); onnxruntime runs its shipped ONNX graph")
    g.add_argument("--weights", default=None, type=argtypes.input_file, help="torch: weights file (default: the model's shipped weights)")
    g.add_argument("--device", default=None, type=argtypes.device, help="torch: cpu or cuda[:N] (default cpu)")
    g.add_argument("--precision", choices=("fp32", "fp16"), default=None, help="torch: arithmetic (fp16 needs CUDA)")
    g.add_argument("--scan-backend", choices=("native", "chunked"), default=None,
                   help="torch: selective scan (default native on the CPU, chunked on CUDA)")
    g.add_argument("--threads", type=argtypes.threads, default=None, help="torch/onnxruntime: CPU threads (default: all cores)")
    g.add_argument("--onnx", default=None, type=argtypes.input_file, help="onnxruntime: an .onnx model (default: the shipped graph of --model; "
                   "make others with `mambalitesr export onnx`)")
    g.add_argument("--providers", default=None,
                   help="onnxruntime: comma-separated providers in priority order: cpu, cuda, tensorrt (default cpu)")
    if "tensorrt" in choices:
        g.add_argument("--engine", default=None, type=argtypes.input_file, help="tensorrt: the serialized engine")
        g.add_argument("--plugin", default=None, type=argtypes.input_file, help="tensorrt: the SelectiveScan plugin library (.so)")
        g.add_argument("--gpu", type=argtypes.int_range(0, 63), default=None, help="tensorrt: CUDA device index (default 0)")
    if "triton" in choices:
        g.add_argument("--url", default=None, metavar="HOST:PORT",
                       help="triton: the server's gRPC endpoint (default 127.0.0.1:8001, `mambalitesr serve`)")
        g.add_argument("--triton-model", default=None, help="triton: model name in the server (default mambalitesr)")
        g.add_argument("--triton-shm", choices=("auto", "on", "off"), default=None,
                       help="triton: frames through system shared memory; auto (default): when the --url is loopback")


def backend_options(args: argparse.Namespace) -> dict:
    """The keyword options of ``create_backend(args.backend, ...)``; UserError for options of another backend.

    Resolves ``--backend auto`` in place (``args.backend`` then names the backend chosen).
    """
    if args.backend == AUTO:
        args.backend = default_backend(args)
    name = args.backend
    for dest, owners in _OWNERS.items():
        if getattr(args, dest, None) is not None and name not in owners:
            flag = "--" + dest.replace("_", "-")
            raise UserError(f"{flag} applies to --backend {' / '.join(owners)}, not {name}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if name == "torch":  # a registry model without weights is refused by the torch backend as it loads
        return {
            "model": args.model or DEFAULT_MODEL,
            "weights": str(args.weights) if args.weights else None,
            "device": args.device or "cpu",
            "precision": args.precision or "fp32",
            "scan_backend": args.scan_backend,
            "threads": args.threads,
        }
    if name == "onnxruntime":
        if args.onnx and args.model:
            raise UserError("--onnx and --model both name the onnxruntime model; give one")
        return {"onnx": str(args.onnx) if args.onnx else None, "model": args.model, "providers": args.providers,
                "threads": args.threads}
    if name == "tensorrt":
        if args.threads is not None:
            raise UserError("--threads applies to --backend torch / onnxruntime, not tensorrt")
        if not args.engine:
            raise UserError("--backend tensorrt needs --engine FILE (build one with `mambalitesr export engine`)")
        return {"engine": str(args.engine), "plugin": str(args.plugin) if args.plugin else None, "device": args.gpu or 0}
    if name == "triton":
        if args.threads is not None:
            raise UserError("--threads applies to --backend torch / onnxruntime, not triton (the server owns the model)")
        return {"url": args.url or "127.0.0.1:8001", "model_name": args.triton_model or "mambalitesr",
                "shm": {"on": True, "off": False}.get(args.triton_shm)}
    raise UserError(f"unknown backend {name!r}")


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), each side in [8, argtypes.MAX_SIDE]; UserError otherwise."""
    try:
        return argtypes.parse_size(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None
