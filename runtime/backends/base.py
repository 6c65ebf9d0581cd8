"""The one interface every inference backend implements.

Glossary (code name -> meaning / paper symbol):
    B, h, w        batch, input height and width of one inference call
    s (scale)      upscaling factor: ``infer`` maps (B, 3, h, w) -> (B, 3, s*h, s*w)
    input_shape    (B, 3, h, w) the backend accepts; ``None`` marks a dynamic dimension
    max_hw         the largest (h, w) one call takes (a TensorRT profile's max); larger frames are tiled
    min_hw         the smallest (h, w) one call takes (a profile's min); smaller frames are padded
    fixed_hw       the only (h, w) the backend takes, or ``None`` when spatial dims are dynamic
    precision      "fp32" or "fp16": the arithmetic the backend runs in
    input_dtype    numpy dtype ``infer`` feeds the model (float32 or float16; may differ from precision)
    Pending        an inference in flight (``submit``); ``wait`` returns its output

A backend is chosen explicitly (``create_backend("torch", ...)``); one that cannot
load raises :class:`~mambalitesr.errors.MissingDependency` naming what is missing.

``infer`` is synchronous. ``submit`` + ``Pending.wait`` let a backend overlap the
copy of batch k+1 with the compute of batch k (``max_in_flight`` > 1, TensorRT);
the default ``submit`` just runs ``infer``. ``Pending.compute_s`` is the time the
backend itself spent on that call, so a pipeline can report the backend's own
throughput next to its end-to-end throughput.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np

from mambalitesr.errors import UserError

PRECISIONS = ("fp32", "fp16")
NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16}


class Pending:
    """One submitted inference; ``wait()`` returns the output (B, 3, s*h, s*w) float32."""

    def __init__(self, output: np.ndarray | None = None, compute_s: float = 0.0):
        self._output = output
        self.compute_s = compute_s

    def wait(self) -> np.ndarray:
        return self._output


class Backend(ABC):
    """Load once, warm up, then ``infer`` planar float batches."""

    name = "backend"

    def __init__(self) -> None:
        self.precision = "fp32"
        self.input_dtype = np.float32
        self.scale: int | None = None
        self.input_shape: tuple = (None, 3, None, None)  # (B, 3, h, w); None = dynamic
        self.max_hw: tuple[int, int] | None = None
        self.max_batch: int | None = None  # the largest B one call takes; None = any
        self.min_hw: tuple[int, int] | None = None  # the smallest (h, w) one call takes (a profile's min)
        self.max_in_flight = 1
        self.loaded = False

    # -- to implement ---------------------------------------------------------------
    @abstractmethod
    def load(self) -> None:
        """Acquire the model and the device; raise MissingDependency naming what is missing."""

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, h, w) in ``input_dtype`` -> (B, 3, s*h, s*w) float32 (not clamped)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: what runs where, in which precision, with which shapes."""

    # -- shared ---------------------------------------------------------------------
    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    @property
    def fixed_batch(self) -> int | None:
        b = self.input_shape[0]
        return b if isinstance(b, int) else None

    @property
    def batch_limit(self) -> int | None:
        """The largest B one call takes (a fixed B, or a profile's max), or None when any B goes."""
        return self.fixed_batch or self.max_batch

    @property
    def tile_limit(self) -> tuple[int, int] | None:
        """The largest (h, w) one call accepts, or None when any size goes."""
        return self.fixed_hw or self.max_hw

    def output_shape(self, batch_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        b, c, h, w = batch_shape
        return (b, c, self.scale * h, self.scale * w)

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Validate (B, 3, h, w) against the input shape; cast to the input dtype (no copy when it matches)."""
        if not self.loaded:
            raise RuntimeError(f"{self.name} backend: load() first")
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise UserError(f"{self.name} backend: expected a (B, 3, h, w) batch, got {batch.shape}")
        for axis, (want, got) in enumerate(zip(self.input_shape, batch.shape)):
            if isinstance(want, int) and want != got:
                raise UserError(
                    f"{self.name} backend: input dim {axis} must be {want} (fixed in the model), got {got}; "
                    f"input shape is {self._shape_text(self.input_shape)}"
                )
        if self.max_hw is not None and (batch.shape[2] > self.max_hw[0] or batch.shape[3] > self.max_hw[1]):
            raise UserError(f"{self.name} backend: {batch.shape[2]}x{batch.shape[3]} exceeds the max {self.max_hw}")
        return np.ascontiguousarray(batch, dtype=self.input_dtype)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, h, w) float32/float16 in [0, 1] -> (B, 3, s*h, s*w) float32, not clamped."""
        return self._run(self.check_batch(batch))

    def submit(self, batch: np.ndarray) -> Pending:
        """Start an inference; the default runs it at once (synchronous backends)."""
        start = time.perf_counter()
        out = self.infer(batch)
        return Pending(out, time.perf_counter() - start)

    def warm_up(self, n: int = 3, hw: tuple[int, int] | None = None, batch: int = 1) -> float:
        """Run ``n`` inferences on a grey frame of (h, w) (default: the fixed shape or 64x64); returns seconds of the last."""
        h, w = hw or self.fixed_hw or (64, 64)
        b = self.fixed_batch or batch
        x = np.full((b, 3, h, w), 0.5, dtype=self.input_dtype)
        last = 0.0
        for _ in range(max(n, 0)):
            start = time.perf_counter()
            self.infer(x)
            last = time.perf_counter() - start
        return last

    def close(self) -> None:
        """Release the device; the default has nothing to release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _shape_text(shape) -> str:
        return "(" + ", ".join("?" if not isinstance(d, int) else str(d) for d in shape) + ")"

    def shapes_text(self) -> str:
        out = (self.input_shape[0], 3) + tuple(
            d * self.scale if isinstance(d, int) and self.scale else None for d in self.input_shape[2:]
        )
        return f"in {self._shape_text(self.input_shape)} -> out {self._shape_text(out)}"


def infer_scale(in_hw: tuple[int, int], out_hw: tuple[int, int], what: str) -> int:
    """The integer factor s with out = s * in, or a UserError saying the model is not an s-times upscaler."""
    sh, rh = divmod(out_hw[0], in_hw[0])
    sw, rw = divmod(out_hw[1], in_hw[1])
    if rh or rw or sh != sw or sh < 2:  # x1 would "succeed" and silently write unscaled copies
        raise UserError(f"{what}: output {out_hw} is not an integer multiple (scale >= 2) of input {in_hw}; "
                        "not an SR model?")
    return sh
