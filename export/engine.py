"""TensorRT engines from ONNX, with a JSON sidecar that ties each engine to what it was built with.

Glossary (code name -> meaning):
    engine        a serialized TensorRT plan (``.engine``): valid only for the TensorRT version, the GPU model
                  and the plugin library it was built with
    sidecar       ``<engine>.json`` written beside it: TensorRT version, GPU name and compute capability,
                  the platform (device-tree model string and nvpmodel power mode, see
                  ``mambalitesr.device_identity``), precision, I/O shapes and the optimisation profile, the
                  plugin library's version and sha256, the ONNX file's sha256 and the engine's own sha256
    profile       (min, opt, max) shape of the network's one dynamic input, e.g. B x 3 x H x W
    plugin        ``libmambalitesr_plugins.so``: the SelectiveScan IPluginV3 the ONNX nodes
                  ``mambalitesr::SelectiveScan`` are parsed into

``build_engine`` parses, builds and writes the engine and its sidecar atomically. The sidecar's format and
its checks live in :mod:`mambalitesr.formats` (plain Python, no TensorRT); the runtime loads engines with
:func:`mambalitesr.runtime.backends.engine_files.load_engine`, which refuses one whose sidecar does not match
the running TensorRT, GPU, device model and plugin library.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Sequence

from mambalitesr import __version__
from mambalitesr.device_identity import platform_identity
from mambalitesr.errors import UserError
from mambalitesr.formats import SIDECAR_FORMAT, SIDECAR_VERSION, sidecar_path
from mambalitesr.imageio import atomic_path
from mambalitesr.optional import find
from mambalitesr.trt_runtime import (
    PLUGIN_BUILD_HINT,
    PLUGIN_NAME,
    PLUGIN_VERSION,
    gpu_identity,
    import_tensorrt,
    load_plugin_library,
    plugin_library_version,
    sha256_file,
    trt_logger,
)

PLUGIN_OP = ("mambalitesr", "SelectiveScan")  # ONNX (domain, op_type) parsed into the plugin


Shape = tuple[int, ...]


def parse_shape(text: str | Sequence[int] | None, what: str = "shape") -> Shape | None:
    """"1x3x240x320" (or a sequence of ints) -> (1, 3, 240, 320); None stays None."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.lower().replace("*", "x").split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise UserError(f"{what} {text!r}: expected dimensions like 1x3x240x320") from None
    else:
        shape = tuple(int(d) for d in text)
    if not shape or any(d <= 0 for d in shape):
        raise UserError(f"{what} {text!r}: every dimension must be a positive integer")
    return shape


def resolve_profile(min_shape=None, opt_shape=None, max_shape=None) -> tuple[Shape, Shape, Shape] | None:
    """Fill the missing ends of a (min, opt, max) profile and check min <= opt <= max; None when none given."""
    lo, opt, hi = (parse_shape(s, n) for s, n in ((min_shape, "min shape"), (opt_shape, "opt shape"),
                                                  (max_shape, "max shape")))
    if lo is None and opt is None and hi is None:
        return None
    opt = opt or hi or lo
    lo, hi = lo or opt, hi or opt
    if not len(lo) == len(opt) == len(hi):
        raise UserError(f"min/opt/max shapes must have the same rank, got {lo}, {opt}, {hi}")
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise UserError(f"need min <= opt <= max in every dimension, got min {lo}, opt {opt}, max {hi}")
    return lo, opt, hi


def count_plugin_nodes(onnx_path: Path) -> int | None:
    """Number of mambalitesr::SelectiveScan nodes in the main graph; None when the onnx package is absent.

    UserError for a graph with other ``mambalitesr`` nodes (the fused form's MambaMixer): TensorRT has no
    plugin for them, and its parser would fail late with a less helpful message."""
    onnx = find("onnx")
    if onnx is None:
        return None
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a bad file
        raise UserError(f"{onnx_path}: not a readable ONNX model ({exc})") from None
    if not model.graph.node:  # protobuf reads an empty file as an empty model
        raise UserError(f"{onnx_path}: not a readable ONNX model (no graph: an empty or truncated file)")
    other = sorted({n.op_type for n in model.graph.node if n.domain == PLUGIN_OP[0] and n.op_type != PLUGIN_OP[1]})
    if other:
        raise UserError(f"{onnx_path} has mambalitesr::{', '.join(other)} nodes, which only ONNX Runtime's CPU "
                        "kernels run (the fused form); TensorRT builds engines from the plugin form: "
                        "`mambalitesr export onnx --scan plugin`")
    return sum(1 for n in model.graph.node if (n.domain, n.op_type) == PLUGIN_OP)


def make_sidecar(*, engine_path, engine_sha256, engine_bytes, tensorrt_version, gpu, precision, inputs, outputs,
                 profile, plugin, onnx_path, onnx_sha256, plugin_nodes, platform: dict | None = None) -> dict:
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "engine": {"file": Path(engine_path).name, "sha256": engine_sha256, "bytes": engine_bytes},
        "tensorrt_version": tensorrt_version,
        "gpu": dict(gpu),
        "platform": None if platform is None else dict(platform),
        "precision": precision,
        "inputs": inputs,
        "outputs": outputs,
        "profile": None if profile is None else {k: list(v) for k, v in zip(("min", "opt", "max"), profile)},
        "plugin": plugin,
        "onnx": {"file": str(onnx_path), "sha256": onnx_sha256, "selective_scan_nodes": plugin_nodes},
        "mambalitesr_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _plugin_record(plugin_lib: Path) -> dict:
    return {"name": PLUGIN_NAME, "version": PLUGIN_VERSION, "library_version": plugin_library_version(plugin_lib),
            "sha256": sha256_file(plugin_lib), "file": str(plugin_lib)}


def _set_profile(builder, network, config, profile) -> None:
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [t for t in inputs if any(d < 0 for d in t.shape)]
    if profile is None:
        if dynamic:
            names = ", ".join(f"{t.name} {tuple(t.shape)}" for t in dynamic)
            raise UserError(f"dynamic input shapes ({names}): pass --min-shape/--opt-shape/--max-shape")
        return
    targets = dynamic or inputs
    if len(targets) != 1:
        raise UserError(f"the shape profile applies to one input, but the network has {len(targets)} "
                        f"{'dynamic ' if dynamic else ''}inputs: {[t.name for t in targets]}")
    tensor = targets[0]
    declared = tuple(tensor.shape)
    for shape in profile:
        if len(shape) != len(declared) or any(d >= 0 and d != s for d, s in zip(declared, shape)):
            raise UserError(f"input {tensor.name} is {declared} (-1 = dynamic); shape {shape} does not fit it")
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(tensor.name, *profile)
    config.add_optimization_profile(opt_profile)


def build_engine(onnx_path, engine_path, fp16: bool = False, plugin_lib=None, min_shape=None, opt_shape=None,
                 max_shape=None, timing_cache=None, workspace_mb: int | None = None, verbose: bool = False,
                 tf32: bool = True) -> dict:
    """Parse ``onnx_path``, build a TensorRT engine on this GPU, write it and its sidecar; returns the sidecar.

    ``tf32=False`` keeps fp32 layers off TF32 tensor cores (TensorRT allows them by default on Ampere and newer,
    Orin included), for engines checked against PyTorch at fp32 accuracy.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: no such ONNX file")
    profile = resolve_profile(min_shape, opt_shape, max_shape)
    plugin_nodes = count_plugin_nodes(onnx_path)
    if plugin_nodes and plugin_lib is None:
        raise UserError(f"{onnx_path} has {plugin_nodes} mambalitesr::SelectiveScan nodes: pass --plugin "
                        f"libmambalitesr_plugins.so ({PLUGIN_BUILD_HINT})")
    trt = import_tensorrt()
    plugin = None
    if plugin_lib is not None:
        plugin_lib = Path(plugin_lib)
        load_plugin_library(trt, plugin_lib)
        plugin = _plugin_record(plugin_lib)
    gpu = gpu_identity()
    platform = platform_identity()

    logger = trt_logger(trt, verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT's ONNX parser failed:\n  {errors}")
    config = builder.create_builder_config()
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16:
        if not builder.platform_has_fast_fp16:
            raise UserError(f"--fp16: {gpu['name']} has no fast fp16; build an fp32 engine instead")
        config.set_flag(trt.BuilderFlag.FP16)
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    _set_profile(builder, network, config, profile)
    if timing_cache is not None:
        timing_cache = Path(timing_cache)
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    data = bytes(memoryview(serialized))
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))

    def io(tensors):
        return {t.name: {"shape": list(t.shape), "dtype": str(t.dtype)} for t in tensors}

    sidecar = make_sidecar(
        engine_path=engine_path, engine_sha256=hashlib.sha256(data).hexdigest(), engine_bytes=len(data),
        tensorrt_version=trt.__version__, gpu=gpu, platform=platform,
        precision="fp16" if fp16 else ("fp32" if tf32 else "fp32 (no TF32)"),
        inputs=io(network.get_input(i) for i in range(network.num_inputs)),
        outputs=io(network.get_output(i) for i in range(network.num_outputs)),
        profile=profile, plugin=plugin, onnx_path=onnx_path, onnx_sha256=sha256_file(onnx_path),
        plugin_nodes=plugin_nodes,
    )
    # The sidecar lands first; an engine without a matching sidecar is refused by the loader (sha256).
    try:
        with atomic_path(engine_path) as tmp_engine:
            tmp_engine.write_bytes(data)
            with atomic_path(sidecar_path(engine_path)) as tmp_sidecar:
                tmp_sidecar.write_text(json.dumps(sidecar, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"{engine_path}: could not write the engine ({exc.strerror or exc})") from None
    return sidecar
