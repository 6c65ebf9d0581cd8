"""Where super-resolved frames go: a window, a video file, an image folder, or nowhere (benchmarks).

Glossary (code name -> meaning):
    spec          the ``--sink`` text: ``window``, ``file:PATH``, ``images:DIR``, ``null``
    Output        what reaches a sink: ``sr`` uint8 BGR (s*H, s*W, 3), the captured ``frame`` (for the
                  window's bicubic comparison) and the frame ``index``
    write         returns False when the sink wants the run to stop ('q' in the window, disk full);
                  ``stop_reason`` then says why
    partial file  the video is written to a hidden temporary name beside the target and renamed onto it by
                  ``close``, so a crash leaves no half-file under the target's name; a stop (disk full,
                  Ctrl-C) still finalises and keeps what was written

Sinks are used from one thread (the sink stage), which also owns the OpenCV window.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.core.frames import Output
from mambalitesr.optional import require

# container suffix -> fourcc that OpenCV's FFMPEG backend writes without extra codecs
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
MIN_FREE_BYTES = 64 << 20


def _bgr(frame) -> np.ndarray:
    """The captured frame as BGR uint8 (H, W, 3), for display."""
    return frame.image if frame.fmt == "bgr" else np.ascontiguousarray(frame.image[:, :, ::-1])


class Sink:
    stop_reason = ""
    stop_is_error = False  # the sink stopped because it could not write (not because the user quit)

    def open(self, fps: float | None) -> None:
        """Called once before the first frame with the source's frame rate (None when unknown)."""
        self.fps = fps

    def write(self, out: Output) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Finish; safe after a stop or an error."""

    def describe(self) -> str:
        return type(self).__name__


class NullSink(Sink):
    """Discards frames: measures the pipeline without any output cost."""

    def write(self, out: Output) -> bool:
        return True

    def describe(self) -> str:
        return "null (frames discarded)"


class ImageFolderSink(Sink):
    """One PNG per frame, ``DIR/frame_<index>.png``, each written atomically."""

    def __init__(self, folder: str):
        from mambalitesr.argtypes import check_writable

        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{self.folder}: exists and is not a folder")
        check_writable(self.folder, folder=True)
        self.written = 0

    def open(self, fps) -> None:
        from mambalitesr.imageio import write_failure

        super().open(fps)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.folder, exc) from None

    def write(self, out: Output) -> bool:
        from mambalitesr.imageio import write_image

        try:
            write_image(self.folder / f"frame_{out.index:06d}.png", out.sr[:, :, ::-1])
        except UserError as exc:  # write_image turns OSError (disk full, permissions) into UserError
            self.stop_reason = f"images sink stopped after {self.written} frames: {exc}"
            self.stop_is_error = True
            return False
        self.written += 1
        return True

    def describe(self) -> str:
        return f"images in {self.folder}"


class VideoFileSink(Sink):
    """A video file through cv2.VideoWriter, written under a temporary name and renamed at ``close``.

    Disk space is checked before every frame; below ``min_free_bytes`` the sink stops, finalises the
    file (so what was written plays) and asks the run to stop.
    """

    def __init__(self, path: str, min_free_bytes: int = MIN_FREE_BYTES, default_fps: float = 30.0):
        from mambalitesr.argtypes import check_writable

        check_writable(path)
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCC:
            raise UserError(f"{self.path}: unknown video container {suffix!r}; use one of {', '.join(VIDEO_FOURCC)}")
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder; give a file name such as out.mp4")
        self.fourcc = VIDEO_FOURCC[suffix]
        self.min_free_bytes = int(min_free_bytes)
        self.default_fps = default_fps
        self.tmp = self.path.parent / f".{self.path.name}.partial{suffix}"
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.written = 0

    def open(self, fps) -> None:
        from mambalitesr.imageio import write_failure

        super().open(fps)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.path, exc) from None

    def _start(self, sr: np.ndarray) -> None:
        import cv2

        h, w = sr.shape[:2]
        fps = self.fps or self.default_fps
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), fps, (w, h))
        if not self.writer.isOpened():
            self.writer = None
            self.tmp.unlink(missing_ok=True)
            raise UserError(f"{self.path}: OpenCV cannot write {self.fourcc} video here (codec missing or folder not writable)")
        self.size = (h, w)

    def write(self, out: Output) -> bool:
        if self.writer is None:
            self._start(out.sr)
        if out.sr.shape[:2] != self.size:
            self.stop_reason = f"frame size changed from {self.size} to {out.sr.shape[:2]}; a video keeps one size"
            self.stop_is_error = True
            return False
        free = shutil.disk_usage(self.tmp.parent).free
        if free < self.min_free_bytes:
            self.stop_reason = (
                f"disk full: {free >> 20} MiB free under {self.path.parent} (need {self.min_free_bytes >> 20} MiB); "
                f"stopped after {self.written} frames, kept what was written"
            )
            self.stop_is_error = True
            return False
        try:
            self.writer.write(out.sr)
        except Exception as exc:  # cv2.error from the encoder: keep what was written
            self.stop_reason = f"video writer failed after {self.written} frames ({exc}); kept what was written"
            self.stop_is_error = True
            return False
        self.written += 1
        return True

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        if self.written == 0:
            self.tmp.unlink(missing_ok=True)
            return
        from mambalitesr.imageio import check_video, write_failure

        try:  # OpenCV's writer fails silently: the file counts as written once it reopens with every frame
            check_video(self.tmp, self.written, (self.size[1], self.size[0]), self.path)
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise write_failure(self.path, exc) from None
        finally:
            self.tmp.unlink(missing_ok=True)

    def describe(self) -> str:
        return f"video file {self.path} ({self.fourcc})"


class WindowSink(Sink):
    """An OpenCV window: bicubic and SR side by side ('s' toggles SR only), 'q' or Esc quits."""

    MAX_WIDTH = 1920

    def __init__(self, title: str = "MambaLiteSR"):
        cv2 = require("cv2", "window sink needs OpenCV", install="pip install opencv-python (a GUI build)")
        gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
        if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":
            raise MissingDependency(
                f"window sink: this OpenCV {cv2.__version__} is a headless build (no GUI): install opencv-python "
                "(not -headless) or use JetPack's system OpenCV; or use --sink file:out.mp4 / null"
            )
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise MissingDependency("window sink: no display ($DISPLAY is not set); use --sink file:out.mp4 or null")
        self.title = title
        self.side_by_side = True
        self._cv2 = cv2

    def _compose(self, out: Output) -> np.ndarray:
        cv2 = self._cv2
        sr = out.sr
        if self.side_by_side:
            h, w = sr.shape[:2]
            bicubic = cv2.resize(_bgr(out.frame), (w, h), interpolation=cv2.INTER_CUBIC)
            for img, label in ((bicubic, "bicubic"), (sr, "MambaLiteSR")):
                cv2.putText(img, label, (10, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
            sr = np.hstack([bicubic, sr])
        if sr.shape[1] > self.MAX_WIDTH:
            f = self.MAX_WIDTH / sr.shape[1]
            sr = cv2.resize(sr, (self.MAX_WIDTH, int(sr.shape[0] * f)), interpolation=cv2.INTER_AREA)
        return sr

    def write(self, out: Output) -> bool:
        cv2 = self._cv2
        cv2.imshow(self.title, self._compose(out))
        key = cv2.waitKey(1) & 0xFF
        if key == ord("s"):
            self.side_by_side = not self.side_by_side
        if key in (ord("q"), 27):
            self.stop_reason = "quit from the window"
            return False
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_reason = "window closed"
            return False
        return True

    def close(self) -> None:
        self._cv2.destroyAllWindows()

    def describe(self) -> str:
        return "window (bicubic | SR; 's' toggles, 'q' quits)"


# -- factories (runtime/stream/registry.py names them; each takes the text after "KIND:") ---------
def null_sink(rest: str) -> Sink | None:
    return None if rest else NullSink()  # None: not this form (the registry lists the forms)


def window_sink(rest: str) -> Sink | None:
    return None if rest else WindowSink()


def file_sink(rest: str) -> Sink | None:
    return VideoFileSink(rest) if rest else None


def images_sink(rest: str) -> Sink | None:
    return ImageFolderSink(rest) if rest else None
