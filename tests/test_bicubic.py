"""MATLAB-style bicubic resize: properties derived by hand from the kernel formula."""
import math

import numpy as np
import pytest
import torch

from mambalitesr.models.bicubic import (
    contributions,
    cubic,
    downsample,
    imresize,
    modcrop,
    to_uint8,
    upsample,
    weight_matrix,
)

# Antialiased x1/2 taps: h(x) = 0.5 * k(0.5 x) at distances 3.5, 2.5, 1.5, 0.5 (k(1.75) = -3/128,
# k(1.25) = -9/128, k(0.75) = 29/128, k(0.25) = 111/128), mirrored for -0.5 .. -3.5; they sum to 1.
HALF_TAPS = np.array([-3, -9, 29, 111, 111, 29, -9, -3], dtype=np.float64) / 256.0


def test_kernel_values_by_hand():
    x = np.array([0.0, 0.25, 0.5, 1.0, 1.25, 1.5, 2.0, 2.5, -0.5])
    expected = [1.0, 111 / 128, 0.5625, 0.0, -9 / 128, -0.0625, 0.0, 0.0, 0.5625]
    np.testing.assert_allclose(cubic(x), expected, atol=1e-15)


@pytest.mark.parametrize("n_in,n_out", [(16, 8), (17, 5), (7, 28), (10, 13), (1, 4), (33, 33)])
def test_weights_sum_to_one_and_indices_in_range(n_in, n_out):
    w, idx = contributions(n_in, n_out, n_out / n_in)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert idx.min() >= 0 and idx.max() < n_in
    np.testing.assert_allclose(weight_matrix(n_in, n_out, n_out / n_in).sum(axis=1), 1.0, atol=1e-12)


def test_downscale_by_two_matches_hand_computed_taps():
    x = np.arange(16, dtype=np.float64) ** 2 + np.sin(np.arange(16))  # not linear: the taps matter
    out = imresize(x[None, :], out_shape=(1, 8))[0]
    # interior output 4 (1-based): u = 4 / 0.5 + 0.5 * (1 - 2) = 7.5 -> 1-based taps 4..11, 0-based 3..10
    assert out[3] == pytest.approx(float(HALF_TAPS @ x[3:11]), abs=1e-12)
    # output 1: u = 1.5 -> 1-based taps -2..5, mirrored with the edge pixel repeated -> 0-based [2,1,0,0,1,2,3,4]
    assert out[0] == pytest.approx(float(HALF_TAPS @ x[[2, 1, 0, 0, 1, 2, 3, 4]]), abs=1e-12)
    # last output 8: u = 15.5 -> 1-based taps 12..19 -> 0-based [11..15, 15, 14, 13]
    assert out[7] == pytest.approx(float(HALF_TAPS @ x[[11, 12, 13, 14, 15, 15, 14, 13]]), abs=1e-12)


def test_upscale_by_two_hand_computed_taps():
    # s = 2, no antialias: u = i/2 + 0.5*(1 - 0.5) = i/2 + 0.25; output 3 (1-based) -> u = 1.75,
    # taps 0..4 (1-based) at distances 1.75, 0.75, -0.25, -1.25, -2.25
    x = np.array([3.0, -1.0, 4.0, 1.0, 5.0, 9.0])
    k = cubic(np.array([1.75, 0.75, -0.25, -1.25, -2.25]))
    expected = float(k @ x[[0, 0, 1, 2, 3]]) / k.sum()  # 1-based 0 mirrors to 1
    assert imresize(x[None, :], scale=2)[0, 2] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 2, 3, 4, 1.5])
def test_constant_image_stays_constant(scale):
    img = np.full((23, 17, 3), 0.37)
    out = imresize(img, scale=scale)
    np.testing.assert_allclose(out, 0.37, atol=1e-12)


@pytest.mark.parametrize("h,w,scale", [(23, 17, 0.25), (10, 7, 3), (9, 9, 1 / 3), (31, 20, 2.5), (5, 8, 4)])
def test_output_shape_is_ceil(h, w, scale):
    assert imresize(np.zeros((h, w)), scale=scale).shape == (math.ceil(h * scale), math.ceil(w * scale))
    assert imresize(np.zeros((h, w, 3), np.float32), scale=scale).shape[2] == 3


@pytest.mark.parametrize("scale", [0.25, 0.5, 2, 4])
def test_linear_ramp_stays_linear_away_from_borders(scale):
    n = 64
    ramp = 2.0 + 0.75 * np.arange(n)[None, :] + 0.5 * np.arange(n)[:, None]  # (H, W)
    out = imresize(ramp, scale=scale)
    m = out.shape[0]
    # output i (0-based) sits at input coordinate (i + 0.5) / s - 0.5
    coord = (np.arange(m) + 0.5) / scale - 0.5
    expected = 2.0 + 0.75 * coord[None, :] + 0.5 * coord[:, None]
    margin = int(math.ceil(3 * max(1, scale)))  # beyond the support of the mirrored taps
    inner = slice(margin, m - margin)
    np.testing.assert_allclose(out[inner, inner], expected[inner, inner], atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_then_downscale_roughly_returns_input(scale):
    rng = np.random.default_rng(0)
    small = cv2_blur(rng.random((24, 20)))
    back = imresize(imresize(small, scale=scale), scale=1 / scale)
    assert back.shape == small.shape
    assert np.abs(back - small)[3:-3, 3:-3].max() < 0.03


def cv2_blur(x):
    import cv2

    return cv2.GaussianBlur(x, (0, 0), 1.0)


def test_numpy_and_torch_agree_and_keep_dtype():
    rng = np.random.default_rng(1)
    img = rng.random((19, 26, 3))
    ref = imresize(img, scale=0.25)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]  # (1, 3, H, W)
    out = imresize(t, scale=0.25)
    assert out.shape == (1, 3, 5, 7) and out.dtype == torch.float64
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), ref, atol=1e-12)
    out32 = imresize(t.float(), out_shape=(38, 52))
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32[0].permute(1, 2, 0).numpy(), imresize(img, scale=2), atol=1e-5)
    assert imresize(img.astype(np.float32), scale=2).dtype == np.float32


def test_integer_input_refused():
    with pytest.raises(TypeError):
        imresize(np.zeros((4, 4), np.uint8), scale=2)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), scale=2, out_shape=(8, 8))


def test_to_uint8_rounds_half_away_from_zero_and_clips():
    x = np.array([-3.0, 0.49, 0.5, 1.5, 2.5, 254.5, 300.0])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 1, 2, 3, 255, 255])


def test_modcrop_and_downsample_shapes():
    hr = np.random.default_rng(2).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    cropped = modcrop(hr, 4)
    assert cropped.shape == (36, 48, 3)
    lr = downsample(cropped, 4)
    assert lr.shape == (9, 12, 3) and lr.dtype == np.uint8
    assert upsample(lr, 4).shape == cropped.shape
    with pytest.raises(ValueError, match="modcrop"):
        downsample(hr, 4)


def test_downsample_is_rounded_resize_on_the_0_255_scale():
    hr = np.random.default_rng(3).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    exact = imresize(hr.astype(np.float64) / 255.0, scale=0.5) * 255.0
    lr = downsample(hr, 2)
    assert np.abs(lr.astype(np.float64) - exact).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(downsample(np.full((8, 8, 3), 77, np.uint8), 2), 77)
