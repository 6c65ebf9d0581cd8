"""``mambalitesr export engine``: build a TensorRT engine (and its sidecar) from an ONNX model on this GPU.

Glossary (option -> meaning):
    MODEL.onnx      from ``mambalitesr export onnx`` (``--scan plugin`` graphs need ``--plugin``)
    -o FILE.engine  the engine; ``FILE.engine.json`` is written beside it (see mambalitesr.export.engine)
    --plugin LIB    ``libmambalitesr_plugins.so`` built from export/plugins/selective_scan
    --min/--opt/--max-shape BxCxHxW   optimisation profile of the dynamic input (one end given = fixed)

Imports nothing heavy at module level: TensorRT loads when the command runs.
"""
from __future__ import annotations

from mambalitesr import argtypes as t


def register_engine(export_subparsers) -> None:
    """Add ``engine`` to the subparsers of the ``export`` command group."""
    p = export_subparsers.add_parser(
        "engine",
        help="build a TensorRT engine from an ONNX model on this GPU",
        description="Parse MODEL.onnx with TensorRT (loading the SelectiveScan plugin library when given), build "
        "an engine for this GPU and write it atomically with a JSON sidecar recording the TensorRT version, GPU, "
        "precision, shapes and plugin library, which `--backend tensorrt` checks before loading.",
    )
    p.add_argument("onnx", metavar="MODEL.onnx", type=t.input_file, help="the ONNX model")
    p.add_argument("-o", "--output", required=True, metavar="FILE.engine", type=t.output_file, help="engine file to write")
    p.add_argument("--fp16", action="store_true", help="allow fp16 kernels (default fp32)")
    p.add_argument("--plugin", default=None, metavar="LIB", type=t.input_file, help="SelectiveScan plugin library (.so)")
    p.add_argument("--min-shape", default=None, metavar="BxCxHxW", help="smallest input shape of the profile")
    p.add_argument("--opt-shape", default=None, metavar="BxCxHxW", help="shape TensorRT tunes for")
    p.add_argument("--max-shape", default=None, metavar="BxCxHxW", help="largest input shape of the profile")
    p.add_argument("--timing-cache", default=None, metavar="FILE", type=t.output_file, help="read and update this timing cache")
    p.add_argument("--workspace-mb", type=t.int_range(1, 1 << 20), default=None, metavar="MB",
                   help="cap TensorRT's builder workspace (default: TensorRT's own limit)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    t.add_overwrite(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mambalitesr.export.engine import build_engine, sidecar_path

    t.check_new_output(args.output, args.overwrite, "the engine")
    t.check_new_output(sidecar_path(args.output), args.overwrite, "the engine's sidecar")
    sidecar = build_engine(
        str(args.onnx), str(args.output), fp16=args.fp16, plugin_lib=str(args.plugin) if args.plugin else None, min_shape=args.min_shape,
        opt_shape=args.opt_shape, max_shape=args.max_shape, timing_cache=str(args.timing_cache) if args.timing_cache else None,
        workspace_mb=args.workspace_mb, verbose=args.verbose,
    )
    gpu = sidecar["gpu"]
    plugin = sidecar["plugin"]
    print(f"wrote {args.output} ({sidecar['engine']['bytes'] / 2**20:.1f} MiB, {sidecar['precision']}, "
          f"TensorRT {sidecar['tensorrt_version']}, {gpu['name']} sm_{gpu['compute_capability'].replace('.', '')}"
          f"{', plugin ' + plugin['library_version'] if plugin else ''}) and {sidecar_path(args.output)}")
    return 0
