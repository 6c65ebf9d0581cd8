"""Inference backends behind one interface, chosen explicitly by name.

Glossary (code name -> meaning / paper symbol):
    torch        PyTorch on the CPU (native C selective scan) or a CUDA device
    onnxruntime  an exported .onnx on the ONNX Runtime providers asked for (CPU, CUDA, TensorRT)
    tensorrt     a TensorRT 10 engine + the SelectiveScan plugin, pycuda buffers, double-buffered
    triton       a model in a Triton Inference Server (``mambalitesr serve``), over gRPC
    infer        (B, 3, h, w) float in [0, 1] -> (B, 3, s*h, s*w) float32, not clamped

``create_backend(name, **opts)`` builds the backend and loads it, so a backend that
cannot run here fails at once with a MissingDependency naming what is missing.
Nothing heavy is imported until a backend is created.
"""
from __future__ import annotations

import importlib

from mambalitesr.errors import UserError
from mambalitesr.runtime.backends.base import Backend, Pending  # noqa: F401

# name -> "module:Class"; imported on demand so that choosing one never imports the others.
BACKENDS = {
    "torch": "mambalitesr.runtime.backends.torch_backend:TorchBackend",
    "onnxruntime": "mambalitesr.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "mambalitesr.runtime.backends.tensorrt_backend:TensorRTBackend",
    "triton": "mambalitesr.runtime.backends.triton_backend:TritonBackend",
}


def backend_class(name: str) -> type[Backend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def create_backend(name: str, load: bool = True, **opts) -> Backend:
    """Build backend ``name`` with its options (see each class) and, unless ``load=False``, load it."""
    backend = backend_class(name)(**opts)
    if load:
        backend.load()
    return backend
