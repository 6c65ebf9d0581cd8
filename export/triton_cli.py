"""``mambalitesr export triton``: a Triton model repository and a DeepStream nvinfer config for the student.

Glossary (option -> meaning):
    -o REPO          the repository folder to write (see mambalitesr.export.triton_repo for its layout)
    --onnx FILE      a plugin-form ``--dynamic`` graph to copy in; default: the model's shipped graph
                     (models/weights/<model>.onnx), else exported now (plugin scan, dynamic)
    --engine FILE    a TensorRT engine built from that graph on the serving GPU, copied to <name>_trt/1/model.plan
    --plugin LIB     libmambalitesr_plugins.so, copied to plugins/
    --sources N      RTSP cameras in the DeepStream app example

Imports nothing heavy at module level.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mambalitesr import argtypes as t

DEFAULT_MODEL = "mambalitesr_x4"


def register_triton(export_subparsers) -> None:
    p = export_subparsers.add_parser(
        "triton", help="write a Triton model repository (TensorRT, ONNX Runtime, Python) and a DeepStream config",
        description="Write a Triton Inference Server model repository for the student: a tensorrt_plan model, "
        "an onnxruntime model of the plugin-form ONNX graph, and a python-backend model for CPU-only servers, all "
        "with dynamic batching and dynamic h/w; plus a DeepStream nvinfer config and an N-RTSP-camera app config. "
        "GPU-only files (engine, plugin library) are copied in when given, else the README says how to build them.",
    )
    p.add_argument("-o", "--output", required=True, metavar="REPO", type=t.output_dir_text, help="repository folder to write")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registry model (default {DEFAULT_MODEL})")
    p.add_argument("--weights", default=None, metavar="PATH", type=t.input_file_text, help="weights (default: the model's shipped weights)")
    p.add_argument("--name", default="mambalitesr", help="prefix of the Triton model names (default mambalitesr)")
    p.add_argument("--onnx", default=None, metavar="FILE", type=t.input_file_text,
                   help="plugin-form --dynamic ONNX graph to copy (default: the model's shipped graph, else export one now)")
    p.add_argument("--engine", default=None, metavar="FILE", type=t.input_file_text, help="TensorRT engine to copy (built on the GPU)")
    p.add_argument("--plugin", default=None, metavar="LIB", type=t.input_file_text, help="SelectiveScan plugin library to copy")
    p.add_argument("--max-batch-size", type=t.int_range(1, 1024), default=8, help="Triton max_batch_size (default 8)")
    p.add_argument("--queue-delay-us", type=t.int_range(0, 10**7), default=2000,
                   help="dynamic batcher's max queue delay in microseconds (default 2000)")
    p.add_argument("--max-size", default="640x360", metavar="WxH", type=t.size_text,
                   help="largest input frame: the engine profile's max and DeepStream's network size (default 640x360)")
    p.add_argument("--sources", type=t.int_range(1, 256), default=4, help="RTSP cameras in the DeepStream app example (default 4)")
    p.add_argument("--force", action="store_true", help="replace REPO if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    from mambalitesr.errors import UserError
    from mambalitesr.export.triton_repo import TritonRepoConfig, write_repository
    from mambalitesr.models.registry import get_entry

    entry = get_entry(args.model)
    if args.queue_delay_us < 0:
        raise UserError(f"--queue-delay-us must be >= 0, got {args.queue_delay_us}")
    try:
        w, h = (int(v) for v in args.max_size.lower().split("x"))
    except ValueError:
        raise UserError(f"--max-size {args.max_size!r} must be WxH, e.g. 640x360") from None
    if w < 16 or h < 16:
        raise UserError(f"--max-size {args.max_size!r} is too small (at least 16x16)")
    out = Path(args.output)
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; choose a new folder or pass --force to replace it")
    with tempfile.TemporaryDirectory(prefix="mambalitesr-triton-") as tmp:
        onnx = args.onnx
        if onnx is None and args.weights is None:  # the graph the package ships for this model, if any
            import mambalitesr.models as models_pkg

            shipped = Path(models_pkg.__file__).parent / "weights" / f"{args.model}.onnx"
            onnx = shipped if shipped.is_file() else None
        if onnx is None:
            from mambalitesr.export.onnx_export import export_onnx

            onnx = Path(tmp) / "model.onnx"
            print(f"export triton: exporting {args.model} to ONNX (plugin scan, dynamic batch/h/w) ...", file=sys.stderr)
            export_onnx(args.model, args.weights, onnx, scan="plugin", dynamic=True)
        cfg = TritonRepoConfig(
            out=out, model=args.model, weights=args.weights, scale=entry.config.scale, name=args.name,
            max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us, onnx=Path(onnx),
            engine=Path(args.engine) if args.engine else None, plugin=Path(args.plugin) if args.plugin else None,
            max_hw=(h, w), sources=args.sources, force=args.force,
        )
        result = write_repository(cfg)
    missing = [what for what, ok in (("engine", result["engine"]), ("plugin library", result["plugin"]),
                                     ("server plugin library", result["server_plugin"])) if not ok]
    print(f"wrote {result['path']}: models {', '.join(result['models'])} + deepstream/"
          + (f"; to build on the GPU: {', '.join(missing)} (see {result['path']}/README.md)" if missing else ""))
    return 0
