"""One dtype-aware ``assert_close`` for checking every backend against PyTorch fp32.

Tolerances follow the dtype under test (``TOLERANCES``, the one table): relative ``rtol`` plus an absolute
floor scaled to the reference's magnitude (``rtol * max|expected|``), so a value near zero is judged against
the size of the whole output, as accumulated fp32 error is.

``compare`` is the same judgement without raising, for check scripts that report every case
(``benchmarks/gpu_check.py``); ``assert_close`` raises on its verdict.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCES = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 2e-2}


@dataclass(frozen=True)
class Comparison:
    """The verdict of one comparison: ``ok``, the errors measured and, when not ok, why."""

    ok: bool
    dtype: str
    rtol: float
    atol: float
    max_abs_error: float
    scaled_error: float  # max |actual - expected| / max |expected|: the error in units of the output's size
    reason: str = ""


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor
        return x.detach().float().cpu().numpy() if str(x.dtype) == "torch.bfloat16" else x.detach().cpu().numpy()
    return np.asarray(x)


def _dtype_name(x) -> str:
    return str(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype).replace("torch.", "")


def compare(actual, expected, *, dtype=None, rtol: float | None = None, atol: float | None = None,
            what: str = "") -> Comparison:
    """Judge ``actual`` against ``expected`` with the tolerance of ``dtype`` (a name or a torch/numpy dtype;
    by default the dtype of ``actual``)."""
    name = _dtype_name(actual) if dtype is None else str(dtype).replace("torch.", "")
    rtol = TOLERANCES.get(name, 1e-5) if rtol is None else rtol
    a = _to_numpy(actual).astype(np.float64)
    e = _to_numpy(expected).astype(np.float64)
    if a.shape != e.shape:
        return Comparison(False, name, rtol, float("nan"), float("inf"), float("inf"),
                          f"{what} shape {a.shape} != expected {e.shape}")
    scale = float(np.abs(e).max()) if e.size else 0.0
    atol = rtol * max(scale, 1e-30) if atol is None else atol
    err = np.abs(a - e)
    max_abs = float(err.max()) if e.size else 0.0
    scaled = max_abs / max(scale, 1e-30)
    if not np.isfinite(a).all() and not np.array_equal(np.isfinite(a), np.isfinite(e)):
        return Comparison(False, name, rtol, atol, max_abs, scaled,
                          f"{what} has non-finite values where the reference has none")
    if e.size and not np.all(err <= atol + rtol * np.abs(e)):
        i = np.unravel_index(np.argmax(err - rtol * np.abs(e)), e.shape)
        return Comparison(False, name, rtol, atol, max_abs, scaled,
                          f"{what} not close ({name}, rtol={rtol:g}, atol={atol:.3g}): max abs error {max_abs:.3g}, "
                          f"max rel error {(err / np.maximum(np.abs(e), 1e-30)).max():.3g}, "
                          f"worst at {i}: {a[i]!r} vs {e[i]!r}")
    return Comparison(True, name, rtol, atol, max_abs, scaled)


def assert_close(actual, expected, *, dtype=None, rtol: float | None = None, atol: float | None = None,
                 what: str = "") -> None:
    """Raise AssertionError with the max absolute and relative error when ``actual`` strays from ``expected``."""
    verdict = compare(actual, expected, dtype=dtype, rtol=rtol, atol=atol, what=what)
    if not verdict.ok:
        raise AssertionError(verdict.reason)
