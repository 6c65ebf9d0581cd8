"""``mambalitesr export``: deployable forms of a trained network.

Glossary (subcommand / option -> meaning):
    onnx            an ONNX graph, verified in ONNX Runtime against PyTorch before it is written
    engine          a TensorRT engine built from such a graph on this GPU (export/engine_cli.py)
    triton          a Triton model repository + DeepStream config (export/triton_cli.py)
    --scan          plugin (default): one mambalitesr::SelectiveScan node per mixer (TensorRT plugin / the
                    runtime's ONNX Runtime kernel), dynamic batch, height and width unless --height/--width fix them;
                    fused: one mambalitesr::MambaMixer node per mixer, the whole mixer core on the runtime's native
                    ONNX Runtime CPU kernel (the fastest ONNX Runtime graph on a CPU; no TensorRT), dynamic like plugin;
                    portable: standard operators only, fixed input size, and costly to export (see its help)
    --dynamic       symbolic batch, height and width (plugin and fused forms; their default without --height/--width)

Imports nothing heavy at module level: torch and onnx load when a command runs.
"""
from __future__ import annotations

from mambalitesr import argtypes as t

DEFAULT_MODEL = "mambalitesr_x4"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model to ONNX or build a TensorRT engine",
        description="Export a trained network for deployment: `export onnx` writes a verified ONNX graph, "
        "`export engine` builds a TensorRT engine from one on this GPU.",
    )
    sub = parser.add_subparsers(dest="export_command", metavar="FORMAT")
    sub.required = True
    _register_onnx(sub)
    from mambalitesr.export.engine_cli import register_engine  # light: imports TensorRT only when run

    register_engine(sub)
    from mambalitesr.export.triton_cli import register_triton  # light: imports the exporter only when run

    register_triton(sub)


def _register_onnx(sub) -> None:
    p = sub.add_parser(
        "onnx", help="export an ONNX graph, verified in ONNX Runtime",
        description="Export a registry model to ONNX, check it (onnx.checker, shape inference, scan-form rules) "
        "and run it in ONNX Runtime against PyTorch on a real image or a test pattern; the file is written "
        "only when the max absolute error is within 1e-4 (fp32).",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registry model name (default {DEFAULT_MODEL}; "
                   "`mambalitesr models` lists them)")
    p.add_argument("--weights", default=None, metavar="PATH", type=t.input_file,
                   help="weights (.safetensors or .pth); default: the model's shipped weights")
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", type=t.output_file, help="ONNX file to write")
    p.add_argument("--scan", choices=("portable", "plugin", "fused"), default="plugin",
                   help="plugin (default): one SelectiveScan node per mixer, for the TensorRT plugin and ONNX Runtime "
                   "with this package's kernel; dynamic sizes, under a minute of CPU. fused: one MambaMixer node per "
                   "one-direction mixer, for ONNX Runtime on a CPU with this package's native kernel (about 1.3x "
                   "faster there than plugin; TensorRT cannot run it). portable: standard ONNX "
                   "operators only (any execution provider, TensorRT without the plugin), fixed size; its chunked scan "
                   "unrolls into thousands of nodes: the student at 320x180 took minutes and about 6 GB of memory to "
                   "export on a 2-core x86 CPU (issue 15), and the cost grows with height x width")
    p.add_argument("--height", type=t.side(8), default=None, metavar="H", help="fixed input height (portable default 180, "
                   "or the --verify-image height; plugin and fused default: dynamic)")
    p.add_argument("--width", type=t.side(8), default=None, metavar="W", help="fixed input width (portable default 320, "
                   "or the --verify-image width; plugin and fused default: dynamic)")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width (plugin and fused forms; "
                   "their default when no --height/--width is given)")
    p.add_argument("--opset", type=t.int_range(17, 23), default=17, help="ONNX opset (17..23, default 17)")
    p.add_argument("--verify-image", default=None, metavar="PATH", type=t.input_file,
                   help="image for the ONNX Runtime check (default: a deterministic test pattern)")
    t.add_overwrite(p)
    p.set_defaults(func=run_onnx)


def run_onnx(args) -> int:
    from mambalitesr.errors import UserError
    from mambalitesr.export.onnx_export import export_onnx
    from mambalitesr.models.registry import require_weights

    if args.height and args.width and args.height * args.width > t.MAX_PIXELS:
        raise UserError(f"--height {args.height} x --width {args.width} is over {t.MAX_PIXELS} pixels")
    t.check_new_output(args.output, args.overwrite, "the ONNX file")
    require_weights(args.model, args.weights)
    report = export_onnx(
        args.model, str(args.weights) if args.weights else None, str(args.output), scan=args.scan, height=args.height, width=args.width,
        dynamic=args.dynamic or None,
        opset=args.opset,
        verify_image=str(args.verify_image) if args.verify_image else None,
    )
    custom = {k.split("::")[1]: v for k, v in report.node_counts.items() if k.startswith("mambalitesr::")}
    shape = report.input_shape if isinstance(report.input_shape, str) else "x".join(map(str, report.input_shape))
    size = report.path.stat().st_size / 1e6
    print(f"wrote {report.path} ({size:.2f} MB; {args.model}, {report.scan} scan, opset {report.opset}, input {shape}, "
          f"{report.nodes} nodes{''.join(f', {v} {k}' for k, v in custom.items())}); export {report.export_seconds:.1f} s "
          f"(CPU {report.export_cpu_seconds:.1f} s), "
          f"verify {report.verify_seconds:.1f} s, max |ONNX Runtime - PyTorch| = {report.max_abs_error:.3g}")
    return 0
