"""PyTorch backend: the registry model (or any given nn.Module) on the CPU or a CUDA device.

Glossary (code name -> meaning / paper symbol):
    model          registry name (``mambalitesr_x4``...), built by ``models.registry.create_model``
    module         an already built nn.Module (B, 3, h, w) -> (B, 3, s*h, s*w); bypasses the registry
    scan_backend   the selective scan implementation: "native" (C kernel, the CPU default) or "chunked"
                   (pure PyTorch, the CUDA default)
    s (scale)      from ``module.config.scale`` when the module has one, else measured on a probe input
    stream         on CUDA, a stream of our own: the legacy default stream (stream 0) serialises with every
                   other stream of the process (a TensorRT engine, the camera's copies), ours does not
"""
from __future__ import annotations

import numpy as np

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.backends.base import NUMPY_DTYPES, PRECISIONS, Backend, infer_scale
from mambalitesr.optional import TORCH_HINT, require
from mambalitesr.runtime.memory import keep_freed_memory


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        model: str = "mambalitesr_x4",
        weights: str | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        scan_backend: str | None = None,
        threads: int | None = None,
        module=None,
    ):
        super().__init__()
        if precision not in PRECISIONS:
            raise UserError(f"torch backend: precision must be one of {PRECISIONS}, got {precision!r}")
        self.model_name = model if module is None else type(module).__name__
        self.weights = weights
        self.device_name = device
        self.precision = precision
        self.scan_backend = scan_backend
        self.threads = threads
        self.module = module

    def load(self) -> None:
        torch = require("torch", "torch backend needs PyTorch", install=TORCH_HINT)
        self._torch = torch
        keep_freed_memory()  # frames reuse freed pages (runtime/memory.py): cost linear in pixels
        if self.device_name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise MissingDependency(
                    f"torch backend: device {self.device_name!r} requested but torch.cuda.is_available() is False "
                    f"(torch {torch.__version__} {'is a CPU-only build' if torch.version.cuda is None else 'finds no GPU'})"
                    "; use --device cpu, or install a CUDA build of torch"
                )
        elif self.device_name != "cpu":
            raise UserError(f"torch backend: device must be 'cpu' or 'cuda[:N]', got {self.device_name!r}")
        elif self.precision == "fp16":
            raise UserError("torch backend: fp16 runs on CUDA only; use --precision fp32 on the CPU")
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.device = torch.device(self.device_name)
        if self.module is None:
            if self.scan_backend is None:
                self.scan_backend = "native" if self.device.type == "cpu" else "chunked"
            from mambalitesr.models.registry import create_model, require_weights

            require_weights(self.model_name, self.weights)  # never a random network presented as a result
            self.module = create_model(self.model_name, weights=self.weights, scan_backend=self.scan_backend)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.input_dtype = NUMPY_DTYPES[self.precision]
        self.module = self.module.eval().to(self.device, dtype)
        # Not the legacy default stream: it waits for, and blocks, all other work on the device.
        self._stream = torch.cuda.Stream(device=self.device) if self.device.type == "cuda" else None
        self.loaded = True
        config = getattr(self.module, "config", None)
        if getattr(config, "scale", None):
            self.scale = int(config.scale)
        else:
            probe = np.full((1, 3, 16, 16), 0.5, dtype=self.input_dtype)
            out = self._run(probe)
            self.scale = infer_scale((16, 16), out.shape[2:], f"torch model {self.model_name}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        if self._stream is None:
            return self._forward(batch)
        with torch.cuda.stream(self._stream):  # the copies and the kernels queue on our stream
            out = self._forward(batch)
        self._stream.synchronize()
        return out

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(batch).to(self.device, non_blocking=False)  # (B, 3, h, w)
        with torch.inference_mode():
            y = self.module(x)  # (B, 3, s*h, s*w)
        return np.ascontiguousarray(y.float().cpu().numpy())

    def describe(self) -> str:
        scan = f", scan={self.scan_backend}" if self.scan_backend else ""
        threads = f", {self._torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        return (
            f"torch {self.model_name} on {self.device_name} ({self.precision}{scan}{threads}), "
            f"x{self.scale}, {self.shapes_text()}"
        )
