"""TensorRT plumbing shared by the engine builder (export), the engine loader (runtime) and the GPU check.

Glossary (code name -> meaning):
    trt             the ``tensorrt`` Python module (TensorRT 10: JetPack 6 ships 10.3)
    plugin library  ``libmambalitesr_plugins.so``: the IPluginV3 creator "SelectiveScan" v1 and its CUDA kernel
    registry        TensorRT's global plugin registry; ``load_library`` reads the library's ``getCreators``
    GPU identity    name and compute capability of a CUDA device, read from the driver (libcuda) with ctypes,
                    so no torch, pycuda or cuda-python is needed

It imports neither torch nor export or runtime code, so both layers may use it. Everything that needs
TensorRT or a GPU raises :class:`MissingDependency` naming what is missing and how
to get it; nothing falls back silently.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.optional import require

TRT_MISSING = "TensorRT Python bindings not found"
TRT_HOW_TO_GET = "on a Jetson install JetPack 6 (python3-libnvinfer) or use the container in docker/jetpack-r36.4"
PLUGIN_BUILD_HINT = (
    "build it with: cmake -S export/plugins/selective_scan -B build/plugins && cmake --build build/plugins"
)
PLUGIN_NAME, PLUGIN_VERSION = "SelectiveScan", "1"

_loaded_plugins: dict[str, object] = {}  # resolved library path -> registry handle (one load per process)
_logger = None


def import_tensorrt():
    """The ``tensorrt`` module (10 or newer), or MissingDependency with the install hint."""
    trt = require("tensorrt", TRT_MISSING, install=TRT_HOW_TO_GET)
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise MissingDependency(f"TensorRT {trt.__version__} found, but the SelectiveScan plugin (IPluginV3) needs "
                                "TensorRT 10 or newer (JetPack 6)")
    return trt


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plugin_library_version(path: str | os.PathLike) -> str:
    """MAMBALITESR_PLUGIN_VERSION compiled into the library (its ``mambalitesr_plugin_version`` symbol)."""
    path = Path(path)
    try:
        lib = ctypes.CDLL(str(path.resolve()))
        fn = lib.mambalitesr_plugin_version
    except OSError as exc:
        raise MissingDependency(f"{path}: cannot load the plugin library ({exc}); {PLUGIN_BUILD_HINT}") from None
    except AttributeError:
        raise UserError(f"{path}: not a MambaLiteSR plugin library (no mambalitesr_plugin_version)") from None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def load_plugin_library(trt, path: str | os.PathLike) -> None:
    """Register the library's plugin creators with TensorRT, once per process."""
    path = Path(path)
    if not path.is_file():
        raise MissingDependency(f"{path}: SelectiveScan plugin library not found; {PLUGIN_BUILD_HINT}")
    key = str(path.resolve())
    if key in _loaded_plugins:
        return
    registry = trt.get_plugin_registry()
    handle = registry.load_library(key)
    if handle is None:
        raise UserError(f"{path}: TensorRT could not load the plugin library (see the TensorRT log above; a "
                        f"{PLUGIN_NAME} v{PLUGIN_VERSION} creator may already be registered from another library)")
    if registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, "") is None:
        raise UserError(f"{path}: loaded, but no {PLUGIN_NAME} v{PLUGIN_VERSION} plugin creator was registered")
    _loaded_plugins[key] = handle  # only a library that registered the creator counts as loaded on the next call


class _CudaDriver:
    """The few CUDA driver calls needed to name a device; libcuda ships with every NVIDIA driver."""

    COMPUTE_CAPABILITY_MAJOR, COMPUTE_CAPABILITY_MINOR = 75, 76  # CUdevice_attribute values

    def __init__(self):
        for name in ("libcuda.so.1", "libcuda.so"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise MissingDependency("CUDA driver library libcuda.so.1 not found: this needs an NVIDIA GPU and its "
                                    "driver (on a Jetson, JetPack 6; in Docker, --runtime nvidia or --gpus all)")

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise MissingDependency(f"CUDA driver call {what} failed with CUresult {status} "
                                    "(100 = no CUDA device, 35 = driver too old for this CUDA)")


def gpu_identity(device: int = 0) -> dict:
    """{"name": ..., "compute_capability": "8.7"} of CUDA device ``device``."""
    drv = _CudaDriver()
    lib = drv.lib
    drv.check(lib.cuInit(0), "cuInit")
    dev = ctypes.c_int()
    drv.check(lib.cuDeviceGet(ctypes.byref(dev), int(device)), f"cuDeviceGet({device})")
    name = ctypes.create_string_buffer(256)
    drv.check(lib.cuDeviceGetName(name, len(name), dev), "cuDeviceGetName")
    major, minor = ctypes.c_int(), ctypes.c_int()
    drv.check(lib.cuDeviceGetAttribute(ctypes.byref(major), drv.COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute")
    drv.check(lib.cuDeviceGetAttribute(ctypes.byref(minor), drv.COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute")
    return {"name": name.value.decode(errors="replace"), "compute_capability": f"{major.value}.{minor.value}"}


def trt_logger(trt, verbose: bool = False):
    """The process's one TensorRT logger (builder and runtime share it), at WARNING or VERBOSE."""
    global _logger
    if _logger is None:
        _logger = trt.Logger(trt.Logger.WARNING)
    _logger.min_severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
    return _logger
