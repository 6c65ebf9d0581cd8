"""Image files in and out, safely.

``read_image`` returns RGB uint8 (H, W, 3) whatever the file holds (grey is
replicated, alpha dropped, 16-bit rounded to 8-bit, each said once on stderr),
and refuses what it cannot read with a :class:`UserError`: a missing,
unreadable, truncated or non-image file, a file over ``MAX_BYTES`` or a declared
size over ``MAX_PIXELS`` (both checked before any pixel is decoded). The EXIF
orientation of a photo is applied (OpenCV's IMREAD_UNCHANGED ignores it).

Limits (like Pillow's ``MAX_IMAGE_PIXELS``): ``MAMBALITESR_MAX_IMAGE_PIXELS`` and
``MAMBALITESR_MAX_IMAGE_MB`` in the environment, or ``--max-image-pixels`` /
``--max-image-mb`` (:func:`set_limits`), or the ``max_pixels`` argument.

``atomic_path`` / ``write_image`` write atomically: a temporary file in the
target folder, flushed to disk, then a rename, so a failure never leaves a
half-written file under the target's name; an OSError (ENOSPC, EACCES, EROFS)
becomes a :class:`OutputError` naming the target and the cause.
"""
from __future__ import annotations

import errno
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mambalitesr import stopping
from mambalitesr.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_MAX_PIXELS = 8192 * 8192  # input side; 4x output of that is already 1 Gpixel
DEFAULT_MAX_MB = 512  # a 64-Mpixel 16-bit RGB TIFF is 384 MiB; a bigger "image" is a sparse or bogus file


class OutputError(UserError):
    """An output could not be written (disk full, permissions, read-only file system)."""

    exit_code = 1


def _env_limit(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"${name}={text!r}: expected a positive integer") from None
    if value < 1:
        raise UserError(f"${name}={text!r}: expected a positive integer")
    return value


MAX_PIXELS = DEFAULT_MAX_PIXELS
MAX_BYTES = DEFAULT_MAX_MB << 20
_configured = False


def set_limits(max_pixels: int | None = None, max_mb: int | None = None) -> None:
    """Set the limits of read_image: the arguments, else the environment, else the defaults."""
    global MAX_PIXELS, MAX_BYTES, _configured
    _configured = True
    MAX_PIXELS = max_pixels or _env_limit("MAMBALITESR_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)
    MAX_BYTES = (max_mb or _env_limit("MAMBALITESR_MAX_IMAGE_MB", DEFAULT_MAX_MB)) << 20


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def declared_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header alone; raises UserError when there is no image header."""
    return _header(path)[:2]


def _header(path: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation 1..8) from the header alone (no pixel decoded)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with our own message
    try:
        with Image.open(path) as im:
            try:
                orientation = int(im.getexif().get(0x0112, 1))  # 0x0112: the EXIF Orientation tag
            except Exception:  # a damaged EXIF block: the pixels may still be fine, keep them as stored
                orientation = 1
            return im.size[0], im.size[1], orientation if 1 <= orientation <= 8 else 1
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


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, ...) as stored -> as meant to be shown, for EXIF orientation 1..8 (Pillow's exif_transpose)."""
    if orientation == 2:
        img = img[:, ::-1]  # mirrored
    elif orientation == 3:
        img = img[::-1, ::-1]  # upside down
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = np.swapaxes(img, 0, 1)  # transpose
    elif orientation == 6:
        img = np.rot90(img, -1)  # the phone was turned right: rotate 90 degrees clockwise
    elif orientation == 7:
        img = np.swapaxes(img, 0, 1)[::-1, ::-1]  # transverse
    elif orientation == 8:
        img = np.rot90(img, 1)
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``path`` into RGB uint8 (H, W, 3), EXIF orientation applied."""
    import cv2

    from mambalitesr.argtypes import check_path_text

    path = Path(path)
    check_path_text(path)
    if not _configured:
        set_limits()
    max_pixels = max_pixels or MAX_PIXELS
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    nbytes = path.stat().st_size
    if nbytes == 0:
        raise UserError(f"{path}: empty file")
    if nbytes > MAX_BYTES:
        raise UserError(f"{path}: {nbytes / 2**20:.0f} MiB, over the limit of {MAX_BYTES >> 20} MiB for an image "
                        "(--max-image-mb or $MAMBALITESR_MAX_IMAGE_MB raise it)")
    width, height, orientation = _header(path)
    if width * height > max_pixels:
        raise UserError(
            f"{path}: declares {width}x{height} pixels, over the limit of {max_pixels} "
            "(a decompression bomb, or too large to process; crop it first, or raise --max-image-pixels / "
            "$MAMBALITESR_MAX_IMAGE_PIXELS)"
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
    if orientation != 1:
        img = apply_orientation(img, orientation)
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


def write_failure(target: str | os.PathLike, exc: OSError) -> OutputError:
    """The one-line error for an OSError met while writing ``target``."""
    from mambalitesr.argtypes import printable

    cause = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"{printable(target)}: could not write ({cause})")


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if not directory or exc.errno not in (errno.EINVAL, errno.EBADF):  # some file systems cannot sync folders
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None, check=None):
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    On success the temporary file is flushed to disk (fsync) before the rename, and the folder after it,
    so a power cut leaves the old file or the new one, never a torn one. ``check(tmp)``, when given, runs
    before the rename and may raise to refuse the result (e.g. a video that does not reopen). Any OSError
    on the way (making the folder, writing, flushing, renaming) becomes an OutputError naming ``target``,
    and the temporary file is removed; so is it on any other exception, KeyboardInterrupt included.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result should look like any other new file
    except OSError as exc:
        raise write_failure(target, exc) from None
    stopping.track(tmp)  # a second signal, which exits at once, removes it too
    try:
        yield Path(tmp)
        if check is not None:
            check(Path(tmp))
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent, directory=True)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_failure(target, exc) from None
        raise
    finally:
        stopping.untrack(tmp)


def write_bytes_atomic(target: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``target`` atomically (see atomic_path); text is written as UTF-8."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = memoryview(data).cast("B")
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)  # not Path.write_bytes through a buffer that hides a short write: one call, checked


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


def check_video(path: str | os.PathLike, frames: int, size: tuple[int, int], target: str | os.PathLike) -> None:
    """Reopen a just-written video and count its frames: OpenCV's VideoWriter fails silently (a full disk,
    a codec that writes nothing), so this is the only proof the file holds what was written. ``size`` is
    (width, height); raises OutputError naming ``target`` when the file does not hold ``frames`` of it."""
    import cv2

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise OutputError(f"{target}: could not write the video (the writer produced an empty file)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise OutputError(f"{target}: could not write the video (the written file does not reopen; "
                              "disk full or codec failure?)")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        counted = 0
        while cap.grab():
            counted += 1
    finally:
        cap.release()
    if (w, h) != tuple(size) or counted != frames:
        raise OutputError(f"{target}: could not write the video (wrote {frames} frames of {size[0]}x{size[1]}, "
                          f"the file holds {counted} of {w}x{h}; disk full or codec failure?)")


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use under ``folder`` (statvfs f_bavail)."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize

