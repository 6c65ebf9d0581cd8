"""``mambalitesr export``: deployable forms of a trained network.

Glossary (subcommand / option -> meaning):
    onnx            an ONNX graph, verified in ONNX Runtime against PyTorch before it is written
    engine          a TensorRT engine built from such a graph on this GPU (export/engine_cli.py)
    triton          a Triton model repository + DeepStream config (export/triton_cli.py)
    --scan          portable: standard operators only (fixed input size); plugin: one
                    mambalitesr::SelectiveScan node per mixer (TensorRT plugin / onnxruntime-extensions)
    --dynamic       symbolic batch, height and width (plugin form only)

Imports nothing heavy at module level: torch and onnx load when a command runs.
"""
from __future__ import annotations

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
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="weights (.safetensors or .pth); default: the model's shipped weights")
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="ONNX file to write")
    p.add_argument("--scan", choices=("portable", "plugin"), default="portable",
                   help="portable: standard ONNX operators (fixed size); plugin: one SelectiveScan node per mixer")
    p.add_argument("--height", type=int, default=None, metavar="H", help="fixed input height (default 180, "
                   "or the --verify-image height)")
    p.add_argument("--width", type=int, default=None, metavar="W", help="fixed input width (default 320, "
                   "or the --verify-image width)")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width (plugin form only)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17..23, default 17)")
    p.add_argument("--verify-image", default=None, metavar="PATH",
                   help="image for the ONNX Runtime check (default: a deterministic test pattern)")
    p.set_defaults(func=run_onnx)


def run_onnx(args) -> int:
    from mambalitesr.export.onnx_export import export_onnx

    report = export_onnx(
        args.model, args.weights, args.output, scan=args.scan, height=args.height, width=args.width,
        dynamic=args.dynamic, opset=args.opset, verify_image=args.verify_image,
    )
    scans = sum(v for k, v in report.node_counts.items() if k.endswith("SelectiveScan"))
    shape = report.input_shape if isinstance(report.input_shape, str) else "x".join(map(str, report.input_shape))
    print(f"wrote {report.path} ({args.model}, {report.scan} scan, opset {report.opset}, input {shape}, "
          f"{report.nodes} nodes{f', {scans} SelectiveScan' if scans else ''}); export {report.export_seconds:.1f} s "
          f"(CPU {report.export_cpu_seconds:.1f} s), "
          f"verify {report.verify_seconds:.1f} s, max |ONNX Runtime - PyTorch| = {report.max_abs_error:.3g}")
    return 0
