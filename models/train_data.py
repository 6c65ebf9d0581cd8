"""Training pairs: HR folders decoded once, LR made once per image, random aligned crops.

Glossary: s scale, p LR patch side (HR patch s p); batch shapes (B, 3, p, p) LR and
(B, 3, s p, s p) HR (and teacher SR when distilling), float32 in [0, 1].

Each image is decoded and its LR computed once (the MATLAB-compatible bicubic of
evaluation), then crops are cut from memory. Flips and 90-degree rotations commute
with that symmetric bicubic, so augmenting the aligned crops equals downscaling the
augmented crop. Batch k of process r is drawn from its own generator seeded by
(seed, k, r): a resumed run, or any number of loader workers, sees the same batches.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mambalitesr.errors import UserError


@dataclass
class ImagePair:
    name: str
    hr: np.ndarray | None  # (sH, sW, 3) uint8, modcropped; None for a teacher-labelled LR image until labelled
    lr: np.ndarray  # (H, W, 3) uint8
    teacher: np.ndarray | None = None  # (sH, sW, 3) float16 in [0, 1]


def _decoded(folders: list[str], desc: str, progress: bool):
    """(folder/file name, decoded image) for every image of ``folders``, in order, with a progress bar."""
    from tqdm import tqdm

    from mambalitesr.imageio import list_images, read_image

    files = [path for folder in folders for path in list_images(folder)]
    for path in tqdm(files, desc=desc, unit="img", file=sys.stderr, disable=not progress):
        yield f"{path.parent.name}/{path.name}", read_image(path)


def load_pairs(folders: list[str], scale: int, min_lr_side: int, progress: bool = True,
               hr_scales: tuple[float, ...] = (1.0,)) -> list[ImagePair]:
    """Decode every image of ``folders`` (HR) and make its LR; images smaller than the patch are skipped.

    Each factor f of ``hr_scales`` below 1 adds a copy of every image shrunk by f (area filter) as one more
    HR image, named ``folder/file@f``: the same scenes at other sizes, the augmentation FSRCNN used on its
    91 images, for when there are few training images.
    """
    import cv2
    from mambalitesr.models.bicubic import downsample, modcrop

    if not folders:
        raise UserError("no training folders given (--train DIR ...)")
    pairs, skipped = [], 0
    for base, image in _decoded(folders, "decoding training images", progress):
        for f in hr_scales:
            size = (round(image.shape[1] * f), round(image.shape[0] * f))  # (w, h) for OpenCV
            hr = modcrop(image if f == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale)
            if min(hr.shape[:2]) < scale * min_lr_side:
                skipped += 1
                continue
            name = base + ("" if f == 1.0 else f"@{f:g}")
            pairs.append(ImagePair(name, hr, downsample(hr, scale)))
    if not pairs:
        raise UserError(f"no training image is at least {scale * min_lr_side} px on each side")
    if skipped and progress:
        print(f"skipped {skipped} images (or shrunk copies) smaller than the {scale * min_lr_side}px HR patch",
              file=sys.stderr)
    return pairs


def load_lr_images(folders: list[str], min_lr_side: int, progress: bool = True) -> list[ImagePair]:
    """Images used as LR inputs at their own size, with no ground truth (``hr`` None, name ``lr:folder/file``).

    The teacher labels them: its SR of each whole image becomes both targets (:func:`label_with_teacher`),
    so an image too small to give an HR crop, or any image at all, still teaches the student to match the
    teacher. Images with a side below ``min_lr_side`` (the LR patch) are skipped.
    """
    pairs, skipped = [], 0
    for name, image in _decoded(folders, "decoding LR images", progress):
        if min(image.shape[:2]) < min_lr_side:
            skipped += 1
            continue
        pairs.append(ImagePair(f"lr:{name}", None, image))
    if skipped and not pairs:
        raise UserError(f"no LR image (--lr-images) is at least {min_lr_side} px on each side")
    if skipped and progress:
        print(f"skipped {skipped} LR images smaller than the {min_lr_side}px patch", file=sys.stderr)
    return pairs


def label_with_teacher(pairs: list[ImagePair]) -> None:
    """Give every pair without ground truth the teacher's SR (already attached), rounded to 8 bits, as its HR."""
    for pair in pairs:
        if pair.hr is None:
            if pair.teacher is None:
                raise ValueError(f"{pair.name}: no teacher output to label it with")
            pair.hr = np.rint(pair.teacher.astype(np.float32) * 255.0).clip(0, 255).astype(np.uint8)


def _augment(arr: np.ndarray, flip: bool, rot: int) -> np.ndarray:
    if flip:
        arr = arr[:, ::-1]
    return np.rot90(arr, rot) if rot else arr


class PatchBatches(torch.utils.data.Dataset):
    """Index k -> batch k: (lr, hr, teacher-or-empty) tensors, reproducible from (seed, k, rank)."""

    def __init__(self, pairs: list[ImagePair], scale: int, patch: int, batch: int, seed: int, rank: int = 0):
        self.pairs, self.scale, self.patch, self.batch = pairs, scale, patch, batch
        self.seed, self.rank = seed, rank
        # Sample images in proportion to their area so every pixel is equally likely.
        areas = np.array([p.lr.shape[0] * p.lr.shape[1] for p in pairs], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int):
        rng = np.random.default_rng([self.seed, step, self.rank])
        s, p = self.scale, self.patch
        lrs, hrs, teachers = [], [], []
        for index in rng.choice(len(self.pairs), size=self.batch, p=self.weights):
            pair = self.pairs[index]
            y = int(rng.integers(0, pair.lr.shape[0] - p + 1))
            x = int(rng.integers(0, pair.lr.shape[1] - p + 1))
            flip, rot = bool(rng.integers(2)), int(rng.integers(4))
            lrs.append(_augment(pair.lr[y:y + p, x:x + p], flip, rot))
            hrs.append(_augment(pair.hr[s * y:s * (y + p), s * x:s * (x + p)], flip, rot))
            if pair.teacher is not None:
                teachers.append(_augment(pair.teacher[s * y:s * (y + p), s * x:s * (x + p)], flip, rot))
        to_tensor = lambda arrs: torch.from_numpy(np.stack(arrs).transpose(0, 3, 1, 2).astype(np.float32))  # noqa: E731
        lr = to_tensor(lrs) / 255.0  # (B, 3, p, p)
        hr = to_tensor(hrs) / 255.0  # (B, 3, s p, s p)
        teacher = to_tensor(teachers) if teachers else torch.empty(0)
        return lr, hr, teacher
