"""Loading what the export stage built: TensorRT engines (checked against their sidecar) and the plugin library.

Glossary (code name -> meaning):
    engine     a serialized TensorRT plan (``.engine``), valid only for the TensorRT version, the GPU model and
               the plugin library it was built with (``mambalitesr export engine`` builds it)
    sidecar    ``<engine>.json`` (format: :mod:`mambalitesr.formats`), checked before deserializing
    plugin     ``libmambalitesr_plugins.so``: registered with TensorRT before an engine that uses it is loaded

The runtime's one loading API: it reads files, never imports the export stage.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from mambalitesr.device_identity import platform_identity
from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.formats import check_sidecar, read_sidecar
from mambalitesr.trt_runtime import (
    PLUGIN_BUILD_HINT,
    gpu_identity,
    import_tensorrt,
    load_plugin_library,
    sha256_file,
    trt_logger,
)

__all__ = ["import_tensorrt", "load_engine", "load_plugin_library", "read_sidecar"]

_runtimes: list = []  # TensorRT runtimes must outlive the engines they deserialized


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
    runtime = trt.Runtime(trt_logger(trt))
    try:
        engine = runtime.deserialize_cuda_engine(data)
    except Exception as exc:  # the bindings raise on some corrupt plans instead of returning None
        raise UserError(f"{engine_path}: TensorRT could not deserialize the engine ({exc})") from None
    if engine is None:
        raise UserError(f"{engine_path}: TensorRT could not deserialize the engine (corrupt file, or built by "
                        "another TensorRT version; see the TensorRT log above)")
    _runtimes.append(runtime)
    return engine
