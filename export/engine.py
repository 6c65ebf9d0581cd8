"""TensorRT engines from ONNX, with a JSON sidecar that ties each engine to what it was built with.

Glossary (code name -> meaning):
    engine        a serialized TensorRT plan (``.engine``): valid only for the TensorRT version, the GPU model
                  and the plugin library it was built with
    sidecar       ``<engine>.json`` written beside it: TensorRT version, GPU name and compute capability,
                  the platform (device-tree model string and nvpmodel power mode, see
                  ``mambalitesr.device_identity``), precision, I/O shapes and the optimisation profile, the plugin library's version and
                  sha256, the ONNX file's sha256 and the engine's own sha256
    profile       (min, opt, max) shape of the network's one dynamic input, e.g. B x 3 x H x W
    plugin        ``libmambalitesr_plugins.so``: the SelectiveScan IPluginV3 the ONNX nodes
                  ``mambalitesr::SelectiveScan`` are parsed into

``build_engine`` parses, builds and writes the engine and its sidecar atomically; ``load_engine`` refuses an
engine whose sidecar does not match the running TensorRT, GPU, device model and plugin library, then
deserializes it.
The checks themselves (:func:`check_sidecar`) are plain Python and need neither TensorRT nor a GPU.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

from mambalitesr import __version__
from mambalitesr.device_identity import check_platform, platform_identity
from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.export.trt_runtime import (
    PLUGIN_BUILD_HINT,
    PLUGIN_NAME,
    PLUGIN_VERSION,
    gpu_identity,
    import_tensorrt,
    load_plugin_library,
    plugin_library_version,
    sha256_file,
)
from mambalitesr.imageio import atomic_path

SIDECAR_FORMAT = "mambalitesr-engine-sidecar"
SIDECAR_VERSION = 1
PLUGIN_OP = ("mambalitesr", "SelectiveScan")  # ONNX (domain, op_type) parsed into the plugin

_runtimes: list = []  # TensorRT runtimes must outlive the engines they deserialized
_logger = None

Shape = tuple[int, ...]


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


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
    """Number of mambalitesr::SelectiveScan nodes in the main graph; None when the onnx package is absent."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a bad file
        raise UserError(f"{onnx_path}: not a readable ONNX model ({exc})") from None
    if not model.graph.node:  # protobuf reads an empty file as an empty model
        raise UserError(f"{onnx_path}: not a readable ONNX model (no graph: an empty or truncated file)")
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


def check_sidecar(sidecar: dict, *, tensorrt_version: str, gpu: dict, engine_sha256: str,
                  plugin_sha256: str | None, platform: dict | None = None) -> list[str]:
    """Every reason the engine described by ``sidecar`` must not be used here; empty when it may.

    ``platform`` is this machine's ``platform_identity()``; None skips the device-model check.
    """
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        return ["the sidecar is not a MambaLiteSR engine sidecar"]
    if sidecar.get("format_version") != SIDECAR_VERSION:
        return [f"sidecar format version {sidecar.get('format_version')!r}, this release reads {SIDECAR_VERSION}"]
    for key in ("engine", "tensorrt_version", "gpu", "plugin"):
        if key not in sidecar:
            return [f"the sidecar has no {key!r} entry"]
    problems = []
    if (sidecar["engine"] or {}).get("sha256") != engine_sha256:
        problems.append("the engine file is not the one its sidecar describes (sha256 differs): "
                        "it was rebuilt or copied without its sidecar")
    if sidecar["tensorrt_version"] != tensorrt_version:
        problems.append(f"built with TensorRT {sidecar['tensorrt_version']}, this is TensorRT {tensorrt_version}")
    built_gpu = sidecar["gpu"] or {}
    if built_gpu.get("compute_capability") != gpu.get("compute_capability") or built_gpu.get("name") != gpu.get("name"):
        problems.append(f"built for {built_gpu.get('name')} (compute capability {built_gpu.get('compute_capability')}), "
                        f"this GPU is {gpu.get('name')} (compute capability {gpu.get('compute_capability')})")
    if platform is not None:
        problems += check_platform(sidecar.get("platform"), platform)
    plugin = sidecar["plugin"]
    if plugin:
        if plugin_sha256 is None:
            problems.append(f"the engine uses the {PLUGIN_NAME} plugin: pass the plugin library it was built with "
                            f"(version {plugin.get('library_version')}, sha256 {str(plugin.get('sha256'))[:12]}...)")
        elif plugin.get("sha256") != plugin_sha256:
            problems.append(f"the plugin library differs from the one the engine was built with (sha256 "
                            f"{plugin_sha256[:12]}... here, {str(plugin.get('sha256'))[:12]}... at build time, "
                            f"library version {plugin.get('library_version')})")
    return problems


def _get_logger(trt, verbose: bool = False):
    global _logger
    if _logger is None:
        _logger = trt.Logger(trt.Logger.WARNING)
    _logger.min_severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
    return _logger


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

    logger = _get_logger(trt, verbose)
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
    # The sidecar lands first; an engine without a matching sidecar is refused by load_engine (sha256).
    try:
        with atomic_path(engine_path) as tmp_engine:
            tmp_engine.write_bytes(data)
            with atomic_path(sidecar_path(engine_path)) as tmp_sidecar:
                tmp_sidecar.write_text(json.dumps(sidecar, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"{engine_path}: could not write the engine ({exc.strerror or exc})") from None
    return sidecar


def read_sidecar(engine_path: str | os.PathLike) -> dict:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise UserError(f"{path}: no sidecar beside the engine; build engines with `mambalitesr export engine`, "
                        "which writes it")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable sidecar ({exc}); rebuild the engine") from None


def load_engine(engine_path, plugin_lib=None, *, plugin=None, device: int = 0):
    """Check ``<engine>.json`` against this TensorRT, GPU, device model and plugin library, then deserialize it.

    ``plugin`` is an alias of ``plugin_lib``. Returns the ``tensorrt.ICudaEngine``.
    """
    engine_path = Path(engine_path)
    plugin_lib = plugin_lib if plugin_lib is not None else plugin
    if not engine_path.is_file():
        raise UserError(f"{engine_path}: no such engine file")
    sidecar = read_sidecar(engine_path)
    trt = import_tensorrt()
    plugin_sha = None
    if plugin_lib is not None:
        plugin_lib = Path(plugin_lib)
        if not plugin_lib.is_file():
            raise MissingDependency(f"{plugin_lib}: SelectiveScan plugin library not found; {PLUGIN_BUILD_HINT}")
        plugin_sha = sha256_file(plugin_lib)
    data = engine_path.read_bytes()
    problems = check_sidecar(sidecar, tensorrt_version=trt.__version__, gpu=gpu_identity(device),
                             engine_sha256=hashlib.sha256(data).hexdigest(), plugin_sha256=plugin_sha,
                             platform=platform_identity())
    if problems:
        listed = "\n  - ".join(problems)
        raise UserError(f"{engine_path} cannot be used here:\n  - {listed}\nrebuild it on this device with "
                        f"`mambalitesr export engine MODEL.onnx -o {engine_path} --plugin LIB [--fp16]`")
    if plugin_lib is not None:
        load_plugin_library(trt, plugin_lib)
    runtime = trt.Runtime(_get_logger(trt))
    try:
        engine = runtime.deserialize_cuda_engine(data)
    except Exception as exc:  # the bindings raise on some corrupt plans instead of returning None
        raise UserError(f"{engine_path}: TensorRT could not deserialize the engine ({exc})") from None
    if engine is None:
        raise UserError(f"{engine_path}: TensorRT could not deserialize the engine (corrupt file, or built by "
                        "another TensorRT version; see the TensorRT log above)")
    _runtimes.append(runtime)
    return engine
