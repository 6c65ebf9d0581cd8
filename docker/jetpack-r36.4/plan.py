"""The Jetson container's start plan, the parts that need no GPU: run by entrypoint.sh and by check.sh.

Glossary (code name -> meaning):
    profile      TensorRT optimisation profile (min, opt, max) of the model's one input, B x 3 x H x W
    input size   W x H the camera frames are scaled to before SR (the C frame path downscales a 1280x720 CSI
                 frame to it): it must lie inside the profile, so every frame is served whole, never tiled
    cache key    folder name under $MAMBALITESR_DATA/engines: TensorRT version, device-tree model, nvpmodel
                 power mode and the plugin library's sha256; engines built under other values are not reused

    python3 plan.py profile ONNX MIN OPT MAX INPUT_WxH     exit 1 with one line per misfit
    python3 plan.py cache-key PLUGIN [--dry-run]            prints the key; --dry-run: unknown parts allowed
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

PLUGIN_OP = ("mambalitesr", "SelectiveScan")


def parse_dims(text: str, what: str) -> tuple[int, ...]:
    parts = text.lower().split("x")
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SystemExit(f"plan: {what} {text!r}: expected positive dimensions like 1x3x180x320")
    return tuple(int(p) for p in parts)


def onnx_inputs(path: Path) -> tuple[list[tuple[str, list]], int]:
    """[(name, dims)] of the graph inputs (an int per fixed dim, the symbol's name per dynamic one), plugin nodes."""
    try:
        import onnx
    except ImportError:
        raise SystemExit("plan: the onnx package is needed to read the model's input dims (pip install onnx)") from None
    if not path.is_file():
        raise SystemExit(f"plan: {path}: the shipped ONNX model is missing")
    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in value.type.tensor_type.shape.dim]
        inputs.append((value.name, dims))
    nodes = sum(1 for n in model.graph.node if (n.domain, n.op_type) == PLUGIN_OP)
    return inputs, nodes


def profile_problems(inputs, nodes, lo, opt, hi, input_wh) -> list[str]:
    problems = []
    if len(inputs) != 1:
        return [f"the model has {len(inputs)} inputs {[n for n, _ in inputs]}; the profile fits one"]
    name, dims = inputs[0]
    if nodes == 0:
        problems.append("the model has no mambalitesr::SelectiveScan node: the plugin form is expected "
                        "(mambalitesr export onnx --scan plugin --dynamic)")
    for label, shape in (("min", lo), ("opt", opt), ("max", hi)):
        if len(shape) != len(dims):
            problems.append(f"{label} shape {shape} has rank {len(shape)}, input {name} is {dims}")
            continue
        for axis, (want, have) in enumerate(zip(dims, shape)):
            if isinstance(want, int) and want > 0 and want != have:
                problems.append(f"{label} shape {shape}: axis {axis} of input {name} {dims} is fixed at {want}, "
                                f"not {have} (export the model with --dynamic)")
    if not problems and not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        problems.append(f"need min <= opt <= max in every axis, got {lo} {opt} {hi}")
    w, h = input_wh
    if len(hi) == 4 and not (lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
        problems.append(f"camera input size {w}x{h} lies outside the profile (H {lo[2]}..{hi[2]}, W {lo[3]}..{hi[3]}): "
                        "frames would be tiled; choose MAMBALITESR_INPUT_SIZE inside it")
    return problems


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def cache_key(plugin: Path, dry_run: bool) -> str:
    from mambalitesr.device_identity import device_model, power_mode

    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except ImportError:
        if not dry_run:
            raise SystemExit("plan: TensorRT's Python bindings are not importable (python3-libnvinfer)") from None
        trt_version = "unknown"
    model = device_model()
    if model is None and not dry_run:
        raise SystemExit("plan: /proc/device-tree/model is missing: this image runs on a Jetson")
    mode = power_mode()
    if plugin.is_file():
        plugin_sha = hashlib.sha256(plugin.read_bytes()).hexdigest()[:12]
    elif dry_run:
        plugin_sha = "unbuilt"
    else:
        raise SystemExit(f"plan: {plugin}: the plugin library is missing")
    mode_text = "unknown" if mode is None else mode["name"]
    return "_".join([f"trt-{slug(trt_version)}", slug(model or "unknown"), f"power-{slug(mode_text)}",
                     f"plugin-{plugin_sha}"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="plan.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("profile")
    p.add_argument("onnx", type=Path)
    p.add_argument("min")
    p.add_argument("opt")
    p.add_argument("max")
    p.add_argument("input_size")
    k = sub.add_parser("cache-key")
    k.add_argument("plugin", type=Path)
    k.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "cache-key":
        print(cache_key(args.plugin, args.dry_run))
        return 0
    lo, opt, hi = (parse_dims(s, n) for s, n in ((args.min, "min shape"), (args.opt, "opt shape"),
                                                  (args.max, "max shape")))
    w, h = parse_dims(args.input_size, "input size")  # W x H, as the camera's --input-size
    inputs, nodes = onnx_inputs(args.onnx)
    problems = profile_problems(inputs, nodes, lo, opt, hi, (w, h))
    for line in problems:
        print(f"plan: {args.onnx.name}: {line}", file=sys.stderr)
    if not problems:
        print(f"plan: {args.onnx.name} input {inputs[0][0]} {inputs[0][1]} ({nodes} SelectiveScan nodes) fits "
              f"profile {args.min} / {args.opt} / {args.max}; camera frames {w}x{h} are served whole")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
