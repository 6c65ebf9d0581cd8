"""The student behind the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships.

Glossary (code name -> meaning / paper symbol):
    Triton          pytriton's handle on a real tritonserver process: HTTP + gRPC endpoints, the dynamic
                    batcher, health and statistics; our model runs in this Python process (pytriton's
                    proxy backend passes batches over shared memory)
    infer_fn        @batch callable: {"lr": (B, 3, h, w) float32} -> {"sr": (B, 3, s h, s w) float32}, where
                    B is the batch the server formed from one or more requests (same h, w)
    backend         one of our local backends (torch, onnxruntime) doing the arithmetic
    batch_sizes     B -> number of executions, counted here; the server's own count is in its inference
                    statistics (``/v2/models/NAME/stats``, ``batch_stats``)

The server binds ``host`` (127.0.0.1 by default) for HTTP and gRPC; ``/v2/health/live`` and
``/v2/health/ready`` answer as soon as the model is loaded.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mambalitesr.errors import MissingDependency, UserError

INPUT_NAME, OUTPUT_NAME = "lr", "sr"


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_name: str = "mambalitesr"
    max_batch_size: int = 8
    queue_delay_us: int = 2000  # the dynamic batcher waits at most this long to fill a batch
    log_verbose: int = 0


@dataclass
class BatchCounter:
    """B -> executions, as the model saw them (thread-safe)."""

    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, b: int) -> None:
        with self.lock:
            self.counts[b] += 1


LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Triton APIs pytriton guards with a random access token unless told otherwise. Model load/unload, tracing
# and log settings stay guarded; the statistics (batch sizes formed) are open; shared memory is open only
# on a loopback server, where it is the fast path for clients on this host and unreachable from elsewhere.
GUARDED = ["model-repository", "trace", "logging"]


def security(host: str, TritonSecurityConfig):
    guarded = list(GUARDED) + ([] if host in LOOPBACK else ["shared-memory"])
    return TritonSecurityConfig(restricted_endpoints=guarded)


def _pytriton():
    try:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as exc:
        raise MissingDependency(
            f"`mambalitesr serve` needs nvidia-pytriton, which ships tritonserver ({exc}): "
            "pip install 'mambalitesr[serve]'"
        ) from None
    return batch, DynamicBatcher, ModelConfig, Tensor, Triton, TritonConfig, TritonSecurityConfig


def _libpython_first() -> None:
    """Make pytriton's python-backend stub load this interpreter's libpython, not another 3.x of the system.

    The stub links ``libpython3.X.so.1.0`` by name and then imports this interpreter's standard library; a
    different patch release of libpython (Debian's 3.11.2 under a pyenv 3.11.7, say) fails inside
    multiprocessing. Putting this interpreter's LIBDIR first on LD_LIBRARY_PATH (inherited by tritonserver
    and its stubs) pairs them.
    """
    import os
    import sys
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR") or ""
    name = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    if os.path.isfile(os.path.join(libdir, name)):
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + paths)
        return
    import ctypes.util

    if ctypes.util.find_library(f"python{sys.version_info.major}.{sys.version_info.minor}") is None:
        raise MissingDependency(
            f"pytriton's tritonserver runs Python models through {name}, which this Python ({sys.executable}) "
            f"does not ship and the system lacks: apt-get install libpython{sys.version_info.major}."
            f"{sys.version_info.minor} (or use a Python built with --enable-shared)"
        )


def make_infer_fn(backend, counter: BatchCounter):
    batch_decorator = _pytriton()[0]

    @batch_decorator
    def infer_fn(**inputs: np.ndarray):
        x = inputs[INPUT_NAME]  # (B, 3, h, w) float32, B formed by the server's dynamic batcher
        counter.add(int(x.shape[0]))
        return {OUTPUT_NAME: backend.infer(x)}  # (B, 3, s h, s w)

    return infer_fn


def start(backend, cfg: ServeConfig, counter: BatchCounter):
    """Start tritonserver with the model bound and wait until it is ready; returns the pytriton handle."""
    _, DynamicBatcher, ModelConfig, Tensor, Triton, TritonConfig, TritonSecurityConfig = _pytriton()
    _libpython_first()
    tconf = TritonConfig(
        http_address=cfg.host, http_port=cfg.http_port, grpc_address=cfg.host, grpc_port=cfg.grpc_port,
        metrics_port=cfg.metrics_port, metrics_address=cfg.host, log_verbose=cfg.log_verbose,
    )
    triton = Triton(config=tconf, security_config=security(cfg.host, TritonSecurityConfig))
    try:
        triton.bind(
            model_name=cfg.model_name,
            infer_func=make_infer_fn(backend, counter),
            inputs=[Tensor(name=INPUT_NAME, dtype=np.float32, shape=(3, -1, -1))],
            outputs=[Tensor(name=OUTPUT_NAME, dtype=np.float32, shape=(3, -1, -1))],
            config=ModelConfig(max_batch_size=cfg.max_batch_size,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=cfg.queue_delay_us)),
            strict=True,
        )
        triton.run()  # starts tritonserver, loads the model, returns once it is ready
    except Exception as exc:
        triton.stop()
        raise UserError(f"tritonserver did not start: {exc}") from None
    return triton
