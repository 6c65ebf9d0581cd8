"""PSNR-Y / SSIM-Y: BT.601 luma, border shave, known values."""
import math

import numpy as np
import pytest

from mambalitesr.models.metrics import psnr, psnr_y, rgb_to_y, ssim, ssim_y


def _image(seed, shape=(40, 48, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_rgb_to_y_range_and_coefficients():
    black, white = np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 255, np.uint8)
    assert rgb_to_y(black)[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(white)[0, 0] == pytest.approx(235.0)
    red = np.array([[[255, 0, 0]]], np.uint8)
    assert rgb_to_y(red)[0, 0] == pytest.approx(16 + 65.481)
    assert rgb_to_y(red).dtype == np.float64


def test_identical_images():
    img = _image(0)
    assert psnr_y(img, img, 4) == math.inf
    assert ssim_y(img, img, 4) == pytest.approx(1.0, abs=1e-12)


def test_known_mse_gives_known_psnr():
    a = np.full((20, 30), 100.0)
    b = a + 5.0  # MSE = 25
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25))
    # on Y: grey +g in RGB moves Y by exactly 219/255 * g
    hr = np.full((20, 30, 3), 100, np.uint8)
    sr = hr + np.uint8(10)
    dy = 219.0 / 255.0 * 10
    assert psnr_y(sr, hr, 2) == pytest.approx(10 * math.log10(255**2 / dy**2))


def test_shave_drops_borders():
    hr = _image(1)
    sr = hr.copy()
    sr[:3] = 0  # damage only inside the shaved border
    sr[:, -3:] = 255
    assert psnr_y(sr, hr, 3) == math.inf
    assert psnr_y(sr, hr, 2) < 40


def test_ssim_symmetric_and_below_one_for_noise():
    rng = np.random.default_rng(2)
    hr = _image(3)
    noisy = np.clip(hr.astype(np.int16) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    s1, s2 = ssim_y(noisy, hr, 4), ssim_y(hr, noisy, 4)
    assert s1 == pytest.approx(s2, abs=1e-12)
    assert 0 < s1 < 0.99


def test_ssim_of_a_constant_shift_matches_the_formula():
    # constant images: sigmas are 0, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    a, b = np.full((30, 30), 100.0), np.full((30, 30), 120.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1), abs=1e-9)


def _ssim_brute_force(a, b):
    """Loop over every fully-inside 11x11 window (Gaussian sigma 1.5), straight from Wang et al. (2004)."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_brute_force_valid_windows():
    rng = np.random.default_rng(4)
    a = rng.random((24, 27)) * 255
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255)
    b[:3, :] = 0  # border damage: weighs differently under 'valid' and padded filtering
    assert ssim(a, b) == pytest.approx(_ssim_brute_force(a, b), abs=1e-9)


def test_shape_and_dtype_checks():
    with pytest.raises(ValueError):
        psnr_y(_image(0), _image(0, (40, 44, 3)), 4)
    with pytest.raises(TypeError):
        psnr_y(_image(0).astype(np.float32), _image(0).astype(np.float32), 4)
