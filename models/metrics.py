"""PSNR and SSIM on the luma channel, as the standard SR protocol reports them.

Glossary (code name -> paper symbol):
    y           Y    ITU-R BT.601 luma on the 0..255 scale, in [16, 235]
    shave       s    pixels dropped from every border before measuring (= scale)
    psnr_y      PSNR = 10 log10(L^2 / MSE) on Y, L = 255
    ssim_y      SSIM (Wang et al. 2004) on Y: Gaussian window 11, sigma 1.5,
                C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03, 'valid' filtering
                (no padding: the map is (H - 10) x (W - 10)), mean of the map

Y is kept in float64 (not rounded to 8 bits), as the common Python SR code does.
"""
from __future__ import annotations

import math

import numpy as np

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> Y float64 (H, W) in [16, 235], BT.601 studio swing."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y takes (H, W, 3) RGB (got shape {img.shape})")
    rgb = img.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def _shaved_pair(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {sr.shape} vs {hr.shape}")
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise TypeError(f"metrics take uint8 images (got {sr.dtype}, {hr.dtype}); round the SR output first")
    y_sr, y_hr = rgb_to_y(sr), rgb_to_y(hr)
    if shave:
        if min(y_sr.shape) <= 2 * shave:
            raise ValueError(f"image {y_sr.shape} too small to shave {shave} px per border")
        y_sr = y_sr[shave:-shave, shave:-shave]
        y_hr = y_hr[shave:-shave, shave:-shave]
    return y_sr, y_hr


def psnr(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """PSNR in dB of two float arrays on the 0..peak scale; inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def ssim(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """Mean SSIM of two single-channel float arrays (H, W), 'valid' Gaussian filtering."""
    import cv2

    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"ssim takes two equal (H, W) arrays (got {a.shape}, {b.shape})")
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"image {a.shape} smaller than the SSIM window {SSIM_WINDOW}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    g = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)
    window = g @ g.T
    r = SSIM_WINDOW // 2

    def local_mean(x: np.ndarray) -> np.ndarray:
        # filter2D pads the border; cropping r px keeps only fully-inside ('valid') windows
        return cv2.filter2D(x, -1, window)[r:-r, r:-r]

    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2
    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a * mu_a
    var_b = local_mean(b * b) - mu_b * mu_b
    cov = local_mean(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """PSNR-Y in dB of SR vs HR (uint8 RGB (H, W, 3)), ``shave`` px dropped per border."""
    return psnr(*_shaved_pair(sr, hr, shave))


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """SSIM-Y of SR vs HR (uint8 RGB (H, W, 3)), ``shave`` px dropped per border."""
    return ssim(*_shaved_pair(sr, hr, shave))
