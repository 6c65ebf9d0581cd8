"""Benchmark an upscaler on a folder of HR images with the standard SR protocol.

Glossary (code name -> paper symbol):
    hr          I_HR   ground truth, RGB uint8, cropped to multiples of s (modcrop)
    lr          I_LR   MATLAB bicubic downsampling of I_HR by 1/s, rounded to uint8
    sr          I_SR   upscaler(I_LR / 255), rounded to uint8 (clip, round half away from zero)
    scale       s      upscaling factor; also the border shave of the metrics
    psnr_y      PSNR on Y (BT.601), ssim_y  SSIM on Y; see mambalitesr.models.metrics

Memory, not image, tiling: a Mamba scan's receptive field is the whole image,
so splitting an image into tiles would change the result. Evaluation therefore
never splits an image: it runs one image at a time (batch 1) under
``torch.inference_mode`` (no autograd buffers kept), so the peak memory is that of
the largest single image, and every score is exactly that of the untiled model.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable, Union

import numpy as np

from mambalitesr.errors import UserError
from mambalitesr.imageio import list_images, read_image
from mambalitesr.models.bicubic import downsample, modcrop, to_uint8, upsample
from mambalitesr.models.metrics import SSIM_WINDOW, psnr_y, ssim_y

# LR float32 (h, w, 3) in [0, 1] -> SR float32 (s*h, s*w, 3) in [0, 1], not rounded
Upscaler = Callable[[np.ndarray], np.ndarray]


def torch_upscaler(model, device: str = "cpu") -> Upscaler:
    """Wrap an nn.Module taking (1, 3, h, w) in [0, 1] and giving (1, 3, s*h, s*w) as an Upscaler."""
    import torch

    model = model.to(device).eval()

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None].to(device)  # (1, 3, h, w)
        with torch.inference_mode():
            y = model(x)  # (1, 3, s*h, s*w)
        return y[0].permute(1, 2, 0).float().cpu().numpy()

    return run


def check_no_alpha(path: Path) -> None:
    """Refuse HR images with real transparency: their colour under alpha=0 is arbitrary, so scores would be too.

    A fully opaque alpha channel carries nothing; read_image drops it (with a warning).
    A file PIL cannot decode is left to read_image, which explains what is wrong with it.
    """
    from PIL import Image

    from mambalitesr.imageio import MAX_PIXELS, declared_size

    try:
        width, height = declared_size(path)  # lifts PIL's own bomb check (a traceback here); ours is just below
    except UserError:
        return
    if width * height > MAX_PIXELS:
        return  # read_image refuses it, with the reason
    try:
        with Image.open(path) as im:
            if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in im.info:
                return
            alpha_min = im.convert("RGBA").getchannel("A").getextrema()[0]
    except (OSError, SyntaxError, ValueError):
        return
    if alpha_min < 255:
        raise UserError(
            f"{path}: has transparent pixels (alpha channel); benchmark HR images must be opaque RGB or grey. "
            "Flatten it onto a background first, or remove it from the folder"
        )


def load_hr(path: Path, scale: int) -> np.ndarray:
    """Read HR as RGB uint8 (grey -> R=G=B) and modcrop it; UserError when it is unusable."""
    check_no_alpha(path)  # before read_image, which would drop alpha with a warning
    hr = modcrop(read_image(path), scale)
    min_side = 2 * scale + SSIM_WINDOW  # SSIM needs a full window after the shave
    if min(hr.shape[:2]) < min_side:
        raise UserError(f"{path}: too small for x{scale} evaluation (needs at least {min_side} px per side)")
    return hr


def super_resolve(upscaler: Union[Upscaler, str], lr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """LR uint8 (h, w, 3) -> SR uint8 (s*h, s*w, 3)."""
    if isinstance(upscaler, str):
        if upscaler != "bicubic":
            raise ValueError(f"unknown built-in upscaler {upscaler!r}; only 'bicubic'")
        return upsample(lr, scale)
    sr = np.asarray(upscaler(lr.astype(np.float32) / 255.0))
    expected = (lr.shape[0] * scale, lr.shape[1] * scale, 3)
    if sr.shape != expected:
        raise UserError(f"{name}: the model returned shape {sr.shape}, expected {expected} for x{scale}")
    if not np.isfinite(sr).all():
        raise UserError(f"{name}: the model returned NaN or infinite values (broken weights?)")
    return to_uint8(sr.astype(np.float64) * 255.0)


def evaluate(
    upscaler: Union[Upscaler, str],
    folder: str | Path,
    scale: int,
    progress: bool = True,
    model_name: str | None = None,
) -> dict:
    """PSNR-Y / SSIM-Y of ``upscaler`` (or "bicubic") on every image of ``folder``, one image at a time.

    Returns {"model", "dataset", "scale", "psnr_y", "ssim_y", "images": [{"name", "psnr_y", "ssim_y"}]}
    with the means over images.
    """
    from tqdm import tqdm

    folder = Path(folder)
    scale = int(scale)
    if scale < 1:
        raise UserError(f"scale must be a positive integer (got {scale})")
    files = list_images(folder)
    if model_name is None:
        model_name = upscaler if isinstance(upscaler, str) else getattr(upscaler, "__name__", "model")
    rows = []
    for path in tqdm(files, desc=f"{folder.name} x{scale}", unit="img", file=sys.stderr, disable=not progress):
        hr = load_hr(path, scale)
        lr = downsample(hr, scale)
        sr = super_resolve(upscaler, lr, scale, path.name)
        rows.append({"name": path.name, "psnr_y": psnr_y(sr, hr, scale), "ssim_y": ssim_y(sr, hr, scale)})
    return {
        "model": model_name,
        "dataset": folder.resolve().name,
        "scale": scale,
        "psnr_y": _mean([r["psnr_y"] for r in rows]),
        "ssim_y": _mean([r["ssim_y"] for r in rows]),
        "images": rows,
    }


def _mean(values: list[float]) -> float:
    return math.inf if any(math.isinf(v) for v in values) else float(np.mean(values))
