"""The C frame path's area downscale (mlsr_fp_area) against its numpy twin and OpenCV's INTER_AREA."""
from __future__ import annotations

import numpy as np
import pytest

from mambalitesr.runtime.core import framepath as fp
from mambalitesr.runtime.core import framepath_ref as ref

SIZES = [(720, 1280, 360, 640), (90, 160, 45, 80), (100, 130, 37, 61), (7, 9, 7, 9), (10, 10, 1, 1), (9, 31, 4, 30)]


@pytest.mark.parametrize("H, W, h, w", SIZES)
def test_area_downscale_matches_its_twin_and_opencv(H, W, h, w):
    import cv2

    x = np.random.default_rng(H * W).random((3, H, W), dtype=np.float32)
    got = fp.downscale(x, h, w)
    want = ref.downscale_ref(x, h, w)
    assert got.shape == (3, h, w) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    cv = cv2.resize(np.ascontiguousarray(x.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(got, cv.transpose(2, 0, 1), rtol=0, atol=1e-6)


def test_area_downscale_to_float16_and_into_a_batch_slot():
    x = np.random.default_rng(1).random((3, 45, 80), dtype=np.float32)
    batch = np.full((2, 3, 24, 40), np.float16(-1))
    fp.downscale(x, 20, 36, out=batch[1][:, :20, :36])
    want = ref.downscale_ref(x, 20, 36).astype(np.float16).astype(np.float32)
    ulp = np.spacing(np.float16(1)) / 2  # values in [0, 1): one float16 step at most
    assert np.abs(batch[1][:, :20, :36].astype(np.float32) - want).max() <= ulp
    assert (batch[1][:, 20:] == -1).all() and (batch[0] == -1).all()  # nothing written outside the slot


def test_area_downscale_keeps_a_constant_and_refuses_growing():
    x = np.full((3, 33, 47), 0.25, np.float32)
    assert np.array_equal(fp.downscale(x, 10, 13), np.full((3, 10, 13), 0.25, np.float32))
    with pytest.raises(ValueError, match="no larger than the source"):
        fp.downscale(x, 34, 47)
    with pytest.raises(ValueError, match="float32"):
        fp.downscale(x.astype(np.float64), 10, 10)
