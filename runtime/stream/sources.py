"""Frame sources: cameras (CSI, V4L2), video files, image folders and a synthetic test pattern.

Glossary (code name -> meaning):
    spec        the ``--source`` text: ``csi:N[:WxH[@FPS]]``, ``v4l2:/dev/videoN[:WxH[@FPS]]``, ``file:PATH``,
                ``images:DIR``, ``synthetic[:WxH][@FPS][:drop_at=N][:gap=SECONDS]``
                (runtime/stream/registry.py maps each KIND to its factory)
    Frame       one picture: ``image`` uint8 (H, W, 3) in ``fmt`` ("bgr" or "rgb"), its ``index`` in the
                source's own numbering, ``t_capture`` (time.perf_counter when it was taken)
    live        a source that produces frames whether or not we take them (a camera, a paced pattern):
                the pipeline keeps only the newest and drops stale ones; a finite source (file, folder,
                unpaced pattern) waits for the pipeline and loses nothing
    SourceLost  raised by ``read`` when a live source stops delivering (unplugged, driver reset): the
                pipeline closes it and calls ``open`` again with back-off until it is back
    SourceUnavailable  ``open`` failed: the device is missing or busy (a UserError when it happens first)

``read`` returns None at the end of a finite source. Sources are used from one thread (capture).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.core.frames import Frame
from mambalitesr.optional import require

_SIZE = re.compile(r"^(?:(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?$")


class SourceLost(Exception):
    """A live source stopped delivering frames; reopening may bring it back."""


class SourceUnavailable(UserError):
    """A source could not be opened (missing, busy, offline)."""


class Source:
    live = False
    fps: float | None = None

    def open(self) -> None:
        """Acquire the device or file; raise SourceUnavailable (or MissingDependency) when it cannot."""

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def describe(self) -> str:
        return type(self).__name__


# -- OpenCV capture -----------------------------------------------------------------------
def _cv2():
    return require("cv2", "video sources need OpenCV", install="pip install opencv-python-headless")


class _CaptureSource(Source):
    """Common part of the cv2.VideoCapture sources."""

    def __init__(self):
        self.cap = None
        self._index = 0

    def _open_capture(self):
        raise NotImplementedError

    def open(self) -> None:
        self.close()
        self.cap = self._open_capture()

    def read(self) -> Frame | None:
        if self.cap is None:
            raise SourceLost("capture is closed")
        ok, img = self.cap.read()
        t = time.perf_counter()
        if not ok or img is None:
            if self.live:
                raise SourceLost("the camera delivered no frame")
            return None
        if img.ndim == 2:  # some V4L2 grey sensors
            img = np.repeat(img[:, :, None], 3, axis=2)
        frame = Frame(np.ascontiguousarray(img[:, :, :3]), self._index, t, "bgr")
        self._index += 1
        return frame

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class VideoFileSource(_CaptureSource):
    """A video file, checked as it is read: a file that ends before the frame count its container declares
    (cut short, damaged) raises UserError at its end, or with ``allow_truncated`` says which frames are
    missing on stderr. Only regular files with UTF-8 names reach OpenCV (a FIFO would block its open,
    and a non-UTF-8 name crashes it)."""

    live = False

    def __init__(self, path: str, allow_truncated: bool = False):
        from mambalitesr.argtypes import check_path_text, printable, regular_file_problem

        super().__init__()
        check_path_text(path)
        self.path = Path(path)
        problem = regular_file_problem(self.path)
        if problem:
            raise UserError(f"{printable(path)}: " + ("no such video file" if problem == "no such file" else problem))
        self.frame_count = None
        self.allow_truncated = allow_truncated
        self.truncated: tuple[int, int] | None = None  # (first missing, declared count) once known

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is None and self.cap is not None and self.frame_count and self._index < self.frame_count:
            self._short(self._index)
        return frame

    def _short(self, got: int) -> None:
        self.truncated = (got, self.frame_count)
        missing = f"frames {got}..{self.frame_count - 1}" if self.frame_count - got > 1 else f"frame {got}"
        text = (f"{self.path}: decoded {got} of the {self.frame_count} frames its container declares "
                f"({missing} missing: cut short or damaged)")
        if not self.allow_truncated:
            raise UserError(text + "; --allow-truncated accepts it")
        import sys

        print(f"warning: {text}", file=sys.stderr, flush=True)
        self.frame_count = None  # said once

    def _open_capture(self):
        cv2 = _cv2()
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise UserError(f"{self.path}: OpenCV cannot open it as a video (unknown container or codec?)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        self._index = 0
        return cap

    def describe(self) -> str:
        fps = f", {self.fps:g} fps" if self.fps else ""
        n = f", {self.frame_count} frames" if self.frame_count else ""
        return f"video file {self.path}{fps}{n}"


class V4L2Source(_CaptureSource):
    live = True

    def __init__(self, device: str, width: int | None = None, height: int | None = None, fps: float | None = None):
        super().__init__()
        self.device, self.width, self.height, self.fps = device, width, height, fps

    def _open_capture(self):
        cv2 = _cv2()
        if not Path(self.device).exists():
            raise SourceUnavailable(f"{self.device}: no such device (is the camera plugged in? `v4l2-ctl --list-devices`)")
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise SourceUnavailable(
                f"{self.device}: cannot open with V4L2 (busy in another program, or no permission: "
                "add the user to the 'video' group)"
            )
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: we want the newest frame
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap

    def describe(self) -> str:
        size = f" {self.width}x{self.height}" if self.width else ""
        return f"V4L2 camera {self.device}{size}" + (f" @ {self.fps:g} fps" if self.fps else "")


def has_gstreamer(cv2) -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return line.split(":", 1)[1].strip().upper().startswith("YES")
    return False


class CsiSource(_CaptureSource):
    """A Jetson CSI camera through nvarguscamerasrc: NVMM NV12 -> nvvidconv BGRx -> videoconvert BGR -> appsink."""

    live = True

    def __init__(self, sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30.0):
        super().__init__()
        self.sensor_id, self.width, self.height, self.fps = int(sensor_id), width or 1280, height or 720, fps or 30.0

    def pipeline(self) -> str:
        # appsink drop=true max-buffers=1: GStreamer itself discards stale buffers, so no latency builds up.
        return (
            f"nvarguscamerasrc sensor-id={self.sensor_id} ! "
            f"video/x-raw(memory:NVMM),width={self.width},height={self.height},"
            f"framerate={int(round(self.fps))}/1,format=NV12 ! "
            "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=1 sync=false"
        )

    def _open_capture(self):
        cv2 = _cv2()
        if not has_gstreamer(cv2):
            raise MissingDependency(
                f"csi:{self.sensor_id} needs OpenCV built with GStreamer, and this OpenCV {cv2.__version__} has none "
                "(the PyPI opencv wheels never do): use JetPack's system OpenCV (sudo apt install python3-opencv; "
                "pip uninstall opencv-python-headless)"
            )
        cap = cv2.VideoCapture(self.pipeline(), cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            raise SourceUnavailable(
                f"csi:{self.sensor_id}: the GStreamer pipeline did not start (camera connected? nvargus-daemon "
                f"running? `sudo systemctl restart nvargus-daemon`): {self.pipeline()}"
            )
        return cap

    def describe(self) -> str:
        return f"CSI camera {self.sensor_id} {self.width}x{self.height} @ {self.fps:g} fps (nvarguscamerasrc)"


# -- image folder -------------------------------------------------------------------------
class ImageFolderSource(Source):
    live = False

    def __init__(self, folder: str):
        from mambalitesr.imageio import list_images

        self.folder = Path(folder)
        self.files = list_images(self.folder)
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> Frame | None:
        from mambalitesr.imageio import read_image

        if self._next >= len(self.files):
            return None
        rgb = read_image(self.files[self._next])  # (H, W, 3) RGB uint8, validated
        frame = Frame(rgb, self._next, time.perf_counter(), "rgb")
        self._next += 1
        return frame

    def describe(self) -> str:
        return f"image folder {self.folder} ({len(self.files)} images)"


# -- parsing ------------------------------------------------------------------------------
def size_fps(text: str, what: str) -> tuple[int | None, int | None, float | None]:
    m = _SIZE.match(text)
    if not m:
        raise UserError(f"{what}: {text!r} is not WxH, WxH@FPS or @FPS")
    w, h, fps = m.groups()
    return (int(w) if w else None), (int(h) if h else None), (float(fps) if fps else None)


# -- factories (runtime/stream/registry.py names them; each takes the text after "KIND:") ---------
def file_source(rest: str) -> Source:
    if not rest:
        raise UserError("file source: give a path, file:PATH")
    return VideoFileSource(rest)


def images_source(rest: str) -> Source:
    if not rest:
        raise UserError("images source: give a folder, images:DIR")
    return ImageFolderSource(rest)


def csi_source(rest: str) -> Source:
    sensor, _, size = rest.partition(":")
    if not sensor.isdigit():
        raise UserError(f"csi source: sensor id must be a number, csi:0, got {'csi:' + rest!r}")
    w, h, fps = size_fps(size, "csi source") if size else (None, None, None)
    return CsiSource(int(sensor), w, h, fps)


def v4l2_source(rest: str) -> Source:
    device, _, size = rest.partition(":")
    if not device:
        raise UserError("v4l2 source: give the device, v4l2:/dev/video0")
    w, h, fps = size_fps(size, "v4l2 source") if size else (None, None, None)
    return V4L2Source(device, w, h, fps)
