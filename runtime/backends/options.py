"""Command-line options that choose and configure a backend, shared by ``upscale`` and ``camera``.

Glossary (code name -> meaning):
    --backend     torch | onnxruntime | tensorrt | triton, always named explicitly
    --model       registry name for torch (default mambalitesr_x4 with its shipped weights)
    --onnx        the exported model for onnxruntime;  --providers its execution providers
    --engine      the TensorRT engine;  --plugin the SelectiveScan plugin library
    --url         triton: HOST:PORT of a Triton server's gRPC endpoint; --triton-model, --triton-shm

An option that belongs to another backend is an error, not silently ignored.
"""
from __future__ import annotations

import argparse

from mambalitesr.errors import UserError

DEFAULT_MODEL = "mambalitesr_x4"
# option dest -> the backends it applies to
_OWNERS = {
    "model": ("torch",),
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


def add_backend_arguments(parser: argparse.ArgumentParser, choices: tuple[str, ...], default: str | None = None) -> None:
    """Add the backend options; without ``default`` the user must name the backend."""
    g = parser.add_argument_group("backend")
    g.add_argument("--backend", choices=choices, required=default is None, default=default,
                   help="inference backend" + (f" (default {default})" if default else " (required)"))
    g.add_argument("--model", default=None, help=f"torch: registry model name (default {DEFAULT_MODEL}; see `mambalitesr models`)")
    g.add_argument("--weights", default=None, help="torch: weights file (default: the model's shipped weights)")
    g.add_argument("--device", default=None, help="torch: cpu or cuda[:N] (default cpu)")
    g.add_argument("--precision", choices=("fp32", "fp16"), default=None, help="torch: arithmetic (fp16 needs CUDA)")
    g.add_argument("--scan-backend", choices=("native", "chunked"), default=None,
                   help="torch: selective scan (default native on the CPU, chunked on CUDA)")
    g.add_argument("--threads", type=int, default=None, help="torch/onnxruntime: CPU threads (default: all cores)")
    g.add_argument("--onnx", default=None, help="onnxruntime: the .onnx model (`mambalitesr export onnx`)")
    g.add_argument("--providers", default=None,
                   help="onnxruntime: comma-separated providers in priority order: cpu, cuda, tensorrt (default cpu)")
    if "tensorrt" in choices:
        g.add_argument("--engine", default=None, help="tensorrt: the serialized engine")
        g.add_argument("--plugin", default=None, help="tensorrt: the SelectiveScan plugin library (.so)")
        g.add_argument("--gpu", type=int, default=None, help="tensorrt: CUDA device index (default 0)")
    if "triton" in choices:
        g.add_argument("--url", default=None, metavar="HOST:PORT",
                       help="triton: the server's gRPC endpoint (default 127.0.0.1:8001, `mambalitesr serve`)")
        g.add_argument("--triton-model", default=None, help="triton: model name in the server (default mambalitesr)")
        g.add_argument("--triton-shm", choices=("auto", "on", "off"), default=None,
                       help="triton: frames through system shared memory; auto (default): when the --url is loopback")


def backend_options(args: argparse.Namespace) -> dict:
    """The keyword options of ``create_backend(args.backend, ...)``; UserError for options of another backend."""
    name = args.backend
    for dest, owners in _OWNERS.items():
        if getattr(args, dest, None) is not None and name not in owners:
            flag = "--" + dest.replace("_", "-")
            raise UserError(f"{flag} applies to --backend {' / '.join(owners)}, not {name}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if name == "torch":
        return {
            "model": args.model or DEFAULT_MODEL,
            "weights": args.weights,
            "device": args.device or "cpu",
            "precision": args.precision or "fp32",
            "scan_backend": args.scan_backend,
            "threads": args.threads,
        }
    if name == "onnxruntime":
        if not args.onnx:
            raise UserError("--backend onnxruntime needs --onnx FILE (make one with `mambalitesr export onnx`)")
        return {"onnx": args.onnx, "providers": args.providers, "threads": args.threads}
    if name == "tensorrt":
        if args.threads is not None:
            raise UserError("--threads applies to --backend torch / onnxruntime, not tensorrt")
        if not args.engine:
            raise UserError("--backend tensorrt needs --engine FILE (build one with `mambalitesr export engine`)")
        return {"engine": args.engine, "plugin": args.plugin, "device": args.gpu or 0}
    if name == "triton":
        if args.threads is not None:
            raise UserError("--threads applies to --backend torch / onnxruntime, not triton (the server owns the model)")
        return {"url": args.url or "127.0.0.1:8001", "model_name": args.triton_model or "mambalitesr",
                "shm": {"on": True, "off": False}.get(args.triton_shm)}
    raise UserError(f"unknown backend {name!r}")


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"size {text!r} must be WxH, e.g. 640x360") from None
    if w < 8 or h < 8:
        raise UserError(f"size {text!r} is too small (at least 8x8)")
    return w, h
