"""``mambalitesr export engine``: build a TensorRT engine (and its sidecar) from an ONNX model on this GPU.

Glossary (option -> meaning):
    MODEL.onnx      from ``mambalitesr export onnx`` (``--scan plugin`` graphs need ``--plugin``)
    -o FILE.engine  the engine; ``FILE.engine.json`` is written beside it (see mambalitesr.export.engine)
    --plugin LIB    ``libmambalitesr_plugins.so`` built from export/plugins/selective_scan
    --min/--opt/--max-shape BxCxHxW   optimisation profile of the dynamic input (one end given = fixed)

Imports nothing heavy at module level: TensorRT loads when the command runs.
"""
from __future__ import annotations


def register_engine(export_subparsers) -> None:
    """Add ``engine`` to the subparsers of the ``export`` command group."""
    p = export_subparsers.add_parser(
        "engine",
        help="build a TensorRT engine from an ONNX model on this GPU",
        description="Parse MODEL.onnx with TensorRT (loading the SelectiveScan plugin library when given), build "
        "an engine for this GPU and write it atomically with a JSON sidecar recording the TensorRT version, GPU, "
        "precision, shapes and plugin library, which `--backend tensorrt` checks before loading.",
    )
    p.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX model")
    p.add_argument("-o", "--output", required=True, metavar="FILE.engine", help="engine file to write")
    p.add_argument("--fp16", action="store_true", help="allow fp16 kernels (default fp32)")
    p.add_argument("--plugin", default=None, metavar="LIB", help="SelectiveScan plugin library (.so)")
    p.add_argument("--min-shape", default=None, metavar="BxCxHxW", help="smallest input shape of the profile")
    p.add_argument("--opt-shape", default=None, metavar="BxCxHxW", help="shape TensorRT tunes for")
    p.add_argument("--max-shape", default=None, metavar="BxCxHxW", help="largest input shape of the profile")
    p.add_argument("--timing-cache", default=None, metavar="FILE", help="read and update this timing cache")
    p.add_argument("--workspace-mb", type=int, default=None, metavar="MB",
                   help="cap TensorRT's builder workspace (default: TensorRT's own limit)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    p.set_defaults(func=run)


def run(args) -> int:
    from mambalitesr.errors import UserError
    from mambalitesr.export.engine import build_engine, sidecar_path

    if args.workspace_mb is not None and args.workspace_mb <= 0:
        raise UserError("--workspace-mb must be positive")
    sidecar = build_engine(
        args.onnx, args.output, fp16=args.fp16, plugin_lib=args.plugin, min_shape=args.min_shape,
        opt_shape=args.opt_shape, max_shape=args.max_shape, timing_cache=args.timing_cache,
        workspace_mb=args.workspace_mb, verbose=args.verbose,
    )
    gpu = sidecar["gpu"]
    plugin = sidecar["plugin"]
    print(f"wrote {args.output} ({sidecar['engine']['bytes'] / 2**20:.1f} MiB, {sidecar['precision']}, "
          f"TensorRT {sidecar['tensorrt_version']}, {gpu['name']} sm_{gpu['compute_capability'].replace('.', '')}"
          f"{', plugin ' + plugin['library_version'] if plugin else ''}) and {sidecar_path(args.output)}")
    return 0
