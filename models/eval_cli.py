"""``mambalitesr eval``: PSNR-Y / SSIM-Y of a model (or plain bicubic) on folders of HR images.

Glossary (code name -> paper symbol):
    scale       s        upscaling factor (the model's own unless --scale says otherwise)
    psnr_y      PSNR-Y   dB on BT.601 luma, s px shaved per border
    ssim_y      SSIM-Y   Gaussian-window SSIM on the same luma

The protocol itself lives in mambalitesr.models.evaluate; this module only
parses arguments, builds the model and prints/writes the results.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from mambalitesr import argtypes
from mambalitesr.errors import MissingDependency, UserError

DEFAULT_SCALE = 4


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="measure PSNR-Y / SSIM-Y on folders of HR images (standard SR protocol)",
        description=(
            "Standard SR protocol: crop each HR image to a multiple of the scale, make LR by MATLAB-style "
            "bicubic downsampling (rounded to 8 bits), upscale, round, and measure PSNR and SSIM on the "
            "BT.601 Y channel with the scale shaved from each border. Images are never split into tiles, "
            "so the scores are exactly those of the whole-image model."
        ),
    )
    p.add_argument("--model", required=True, help="model name from `mambalitesr models`, or 'bicubic'")
    p.add_argument("--weights", type=argtypes.input_file, help="weights file (default: the model's shipped weights, if any)")
    p.add_argument("--data", action="append", required=True, metavar="DIR", type=argtypes.input_dir,
                   help="folder of HR images (repeat for several datasets)")
    p.add_argument("--scale", type=argtypes.int_range(1, 8), help=f"upscaling factor (default: the model's; {DEFAULT_SCALE} for bicubic)")
    p.add_argument("--device", default="cpu", type=argtypes.device, help="torch device to run the model on (default: cpu)")
    p.add_argument("--scan-backend", default=None, choices=("chunked", "native", "ref"),
                   help="selective-scan implementation (default: the fastest available for --device: native "
                        "on the CPU when its C library is built, else chunked, pure PyTorch)")
    p.add_argument("--json", metavar="FILE", type=argtypes.output_file,
                   help="write the results as JSON (one object; a list of objects for several --data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    argtypes.add_overwrite(p)
    argtypes.add_image_limits(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mambalitesr.imageio import list_images, write_bytes_atomic
    from mambalitesr.models.evaluate import evaluate

    if args.json:
        argtypes.check_new_output(args.json, args.overwrite, "the JSON results file")
    for folder in args.data:
        list_images(folder)  # fail on a bad folder before spending time on a model
    upscaler, scale, name = _build(args)
    results = []
    for folder in args.data:
        result = evaluate(upscaler, folder, scale, progress=not args.no_progress, model_name=name)
        _print_table(result)
        results.append(result)
    if args.json:
        payload = results[0] if len(results) == 1 else results
        write_bytes_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 0


def _build(args: argparse.Namespace):
    """(upscaler, scale, display name) from --model / --weights / --scale / --device."""
    if args.scale is not None and args.scale < 1:
        raise UserError(f"--scale must be a positive integer (got {args.scale})")
    if args.model == "bicubic":
        if args.weights:
            raise UserError("--model bicubic takes no --weights")
        return "bicubic", args.scale or DEFAULT_SCALE, "bicubic"

    import torch

    from mambalitesr.models.evaluate import torch_upscaler
    from mambalitesr.models.registry import create_model, get_entry

    if args.weights is None and get_entry(args.model).weights_path is None:
        raise UserError(f"{args.model} ships no weights; give --weights FILE (a random network scores nothing)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingDependency(f"--device {args.device}: no CUDA device visible to torch; use --device cpu")
    from mambalitesr.models.scan import fastest_backend

    scan = args.scan_backend or fastest_backend(args.device)
    model = create_model(args.model, weights=args.weights, scan_backend=scan)
    print(f"{args.model}: scan backend {scan}{'' if args.scan_backend else ' (the fastest available)'}",
          file=sys.stderr)
    model_scale = int(model.config.scale)
    if args.scale is not None and args.scale != model_scale:
        raise UserError(f"{args.model} upscales x{model_scale}, but --scale {args.scale} was given")
    return torch_upscaler(model, args.device), model_scale, args.model


def _print_table(result: dict) -> None:
    rows = result["images"]
    width = max([len(r["name"]) for r in rows] + [len("mean")])
    print(f"{result['dataset']}  x{result['scale']}  {result['model']}")
    print(f"{'image':<{width}}  {'PSNR-Y':>8}  {'SSIM-Y':>7}")
    for r in rows:
        print(f"{r['name']:<{width}}  {_db(r['psnr_y'])}  {r['ssim_y']:7.4f}")
    print(f"{'mean':<{width}}  {_db(result['psnr_y'])}  {result['ssim_y']:7.4f}")
    print()


def _db(value: float) -> str:
    return f"{'inf':>8}" if math.isinf(value) else f"{value:8.3f}"
