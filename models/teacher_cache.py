"""The teacher's SR of every whole training image, computed once and kept on disk.

Distillation needs teacher outputs for each crop; running the frozen teacher on
each whole image once (it sees more context than a crop would) costs less than
one epoch of crops and makes every later step teacher-free. The cache file is
keyed by the teacher's weights hash, the scale and the image list.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

from mambalitesr.models.train_data import ImagePair


def cache_key(teacher_name: str, weights_hash: str, pairs: list[ImagePair]) -> str:
    digest = hashlib.sha256(f"{teacher_name}:{weights_hash}".encode())
    for p in pairs:  # an unlabelled LR image (hr None) is keyed by its LR shape; its name says lr:
        digest.update(f"{p.name}:{p.hr.shape if p.hr is not None else p.lr.shape}".encode())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def _run_teacher(teacher, lr: np.ndarray, tile: int) -> np.ndarray:
    """LR uint8 (H, W, 3) -> teacher SR float16 (sH, sW, 3) clamped to [0, 1]; whole image when it fits ``tile``."""
    x = torch.from_numpy(lr.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]  # (1, 3, H, W)
    if max(x.shape[-2:]) <= tile:
        y = teacher(x)
    else:  # very large images: horizontal bands, each with full width
        bands = [teacher(x[..., r:r + tile, :]) for r in range(0, x.shape[-2], tile)]
        y = torch.cat(bands, dim=-2)
    return y[0].clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float16)


def attach_teacher_outputs(
    pairs: list[ImagePair], teacher, teacher_name: str, weights_hash: str, cache_dir: Path, tile: int = 1024
) -> None:
    """Fill ``pair.teacher`` for every pair, from ``cache_dir`` when a matching cache exists."""
    from tqdm import tqdm

    from mambalitesr.imageio import atomic_path

    path = Path(cache_dir) / f"teacher-{teacher_name}-{cache_key(teacher_name, weights_hash, pairs)}.npz"
    if path.is_file():
        with np.load(path) as data:
            for i, pair in enumerate(pairs):
                pair.teacher = data[f"t{i}"]
        print(f"teacher outputs: loaded from {path}", file=sys.stderr)
        return
    for pair in tqdm(pairs, desc=f"teacher {teacher_name} on training images", unit="img", file=sys.stderr):
        pair.teacher = _run_teacher(teacher, pair.lr, tile)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{f"t{i}": p.teacher for i, p in enumerate(pairs)})
    print(f"teacher outputs: cached in {path}", file=sys.stderr)
