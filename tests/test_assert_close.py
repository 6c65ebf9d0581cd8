"""The one dtype-aware comparison (mambalitesr.testing) fails where it must and names the error it found."""
from __future__ import annotations

import numpy as np
import pytest

from mambalitesr.testing import TOLERANCES, assert_close, compare


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_dtype_row_sets_the_bar(dtype):
    rtol = TOLERANCES[dtype]
    want = np.linspace(-2.0, 2.0, 101)
    assert_close(want + 0.9 * rtol * 2.0, want, dtype=dtype)  # within rtol of the output's size
    with pytest.raises(AssertionError, match=f"{dtype}, rtol={rtol:g}"):
        assert_close(want + 2.5 * rtol * 2.0, want, dtype=dtype)


def test_dtype_defaults_to_the_actual_arrays():
    want = np.ones(8, np.float64)
    got16 = (want + 5e-3).astype(np.float16)  # inside the float16 row, far outside the float32 one
    assert compare(got16, want).ok
    assert not compare(got16, want, dtype="float32").ok


def test_verdict_reports_the_errors():
    want = np.array([1.0, -4.0, 2.0])
    verdict = compare(want + np.array([0.0, 0.0, 1e-3]), want, dtype="float32")
    assert not verdict.ok and verdict.max_abs_error == pytest.approx(1e-3)
    assert verdict.scaled_error == pytest.approx(1e-3 / 4.0)
    assert "worst at (2,)" in verdict.reason


def test_shape_and_non_finite_values_fail():
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
