"""Image files in and out, safely.

``read_image`` returns RGB uint8 (H, W, 3) whatever the file holds (grey is
replicated, alpha dropped, 16-bit rounded to 8-bit, each said once on stderr),
and refuses what it cannot read with a :class:`UserError`: a missing,
unreadable, truncated or non-image file, or a declared size over
``MAX_PIXELS`` (checked from the header, before any pixel is decoded).

``write_image`` writes atomically: a temporary file in the target folder,
then a rename, so a failure never leaves a half-written image.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mambalitesr.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_PIXELS = 8192 * 8192  # input side; 4x output of that is already 1 Gpixel


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def declared_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header alone; raises UserError when there is no image header."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with our own message
    try:
        with Image.open(path) as im:
            return im.size
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file (no known image header)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: unreadable image header ({exc})") from None


def _check_png_chunks(path: Path) -> None:
    """Refuse a PNG with a bad chunk CRC or a missing end before OpenCV sees it: libpng would print its own
    errors on stderr, beside our one-line message. Reads the chunks only, no pixel is decoded."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format != "PNG":
            return
        try:
            im.verify()
        except (OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"{path}: corrupt or truncated PNG ({exc})") from None


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` into RGB uint8 (H, W, 3)."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    width, height = declared_size(path)
    if width * height > max_pixels:
        raise UserError(
            f"{path}: declares {width}x{height} pixels, over the limit of {max_pixels} "
            "(a decompression bomb, or too large to process; crop it first)"
        )
    _check_png_chunks(path)
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise UserError(f"{path}: corrupt or truncated image (the decoder gave no pixels)")
    if img.shape[0] != height or img.shape[1] != width:
        raise UserError(f"{path}: decoded {img.shape[1]}x{img.shape[0]} but the header says {width}x{height}")
    if img.dtype == np.uint16:
        _warn(f"{path}: 16-bit image rounded to 8 bits")
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise UserError(f"{path}: unsupported sample type {img.dtype} (8- or 16-bit images only)")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)  # grey: as the standard protocol, Y from R=G=B
        return np.ascontiguousarray(img)
    channels = img.shape[2]
    if channels == 4:
        _warn(f"{path}: alpha channel dropped (super-resolution works on colour only)")
        img = img[:, :, :3]
    elif channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels != 3:
        raise UserError(f"{path}: {channels} channels; expected grey, RGB or RGBA")
    return np.ascontiguousarray(img[:, :, ::-1])  # OpenCV decodes BGR


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result should look like any other new file
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write RGB uint8 (H, W, 3) atomically; the format follows the suffix."""
    import cv2

    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: unknown image format {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    ok, buf = cv2.imencode(path.suffix.lower(), np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise UserError(f"{path}: could not encode the image")
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(buf)  # not ndarray.tofile: on a full disk its OSError has no errno ("N requested, M written")
    except OSError as exc:
        raise UserError(f"{path}: could not write ({exc.strerror or exc})") from None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files in ``folder`` (sorted); UserError if it is missing or holds none."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files
