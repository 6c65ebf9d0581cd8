"""One JPEG per tick for every viewer: the newest output, bicubic | SR side by side, encoded once and shared.

Glossary (code name -> meaning):
    offer        the viewer process's main loop hands over the newest Output (its own copy, out of the
                 frame slot); an Output not yet encoded is replaced by the next one, so nothing upstream
                 ever waits for the encoder
    tick         one encode, at most ``fps`` per second and only while ``viewers`` > 0, in a thread of the
                 viewer process, which runs only on CPU time the pipeline leaves (SCHED_IDLE, priority.py)
    Encoded      the published frame: ``seq`` (1, 2, ... per encode), the frame ``index``, the JPEG bytes,
                 the picture size; immutable, so any number of readers share it without copies
    picture      (s*H, 2*s*W, 3) BGR: left half the bicubic upscale of the captured frame, right half the
                 SR output, scaled down as a whole when wider than ``width``
    on_publish   called from the encoder thread after each encode (the server wakes its viewers)

Memory is bounded: one pending Output, one published JPEG, one picture buffer.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np


BOUNDARY = "mambalitesr-frame"


@dataclass(frozen=True)
class Encoded:
    seq: int
    index: int
    jpeg: bytes
    part: bytes  # the whole multipart part (headers, JPEG, CRLF): built once, written to every viewer
    width: int  # the whole picture: bicubic | SR
    height: int
    encode_ms: float


def _bgr(frame) -> np.ndarray:
    return frame.image if frame.fmt == "bgr" else np.ascontiguousarray(frame.image[:, :, ::-1])


def compose(out, max_width: int) -> np.ndarray:
    """Output -> (h, w, 3) BGR uint8 picture: bicubic of the captured frame | SR, at most ``max_width`` wide."""
    import cv2

    sr = out.sr
    h, w = sr.shape[:2]
    picture = np.empty((h, 2 * w, 3), dtype=np.uint8)
    picture[:, :w] = cv2.resize(_bgr(out.frame), (w, h), interpolation=cv2.INTER_CUBIC)
    picture[:, w:] = sr
    if 2 * w > max_width:
        f = max_width / (2 * w)
        half = max(1, int(w * f))
        picture = cv2.resize(picture, (2 * half, max(1, int(round(h * f)))), interpolation=cv2.INTER_AREA)
    return picture


class FrameEncoder:
    def __init__(self, fps: float = 30.0, quality: int = 85, max_width: int = 3840, on_publish=None):
        self.period = 1.0 / fps
        self.quality, self.max_width = int(quality), int(max_width)
        self.on_publish = on_publish
        self.latest: Encoded | None = None
        self.encodes = 0
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._pending = None
        self._viewers = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- from the sink thread -------------------------------------------------------------
    def offer(self, out) -> None:
        with self._cond:
            self._pending = out
            self._cond.notify()

    # -- from the server thread -----------------------------------------------------------
    def add_viewer(self, delta: int) -> None:
        with self._cond:
            self._viewers += delta
            self._cond.notify()

    @property
    def viewers(self) -> int:
        return self._viewers

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="web-encoder", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _take(self):
        """Wait until there is an Output to encode and someone to see it; None when closed."""
        with self._cond:
            while not self._closed and (self._pending is None or self._viewers <= 0):
                self._cond.wait()
            if self._closed:
                return None
            out, self._pending = self._pending, None
            return out

    def _run(self) -> None:
        import cv2

        params = [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]
        last = -self.period
        try:
            while True:
                wait = last + self.period - time.perf_counter()
                if wait > 0:  # the fps cap: outputs offered meanwhile replace each other
                    time.sleep(wait)
                out = self._take()
                if out is None:
                    return
                last = time.perf_counter()
                picture = compose(out, self.max_width)
                ok, buf = cv2.imencode(".jpg", picture, params)
                if not ok:
                    raise RuntimeError(f"OpenCV could not JPEG-encode a {picture.shape} picture")
                self.encodes += 1
                jpeg = buf.tobytes()
                head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                        f"X-Frame-Index: {out.index}\r\nX-Frame-Seq: {self.encodes}\r\n\r\n").encode()
                self.latest = Encoded(self.encodes, out.index, jpeg, head + jpeg + b"\r\n", picture.shape[1],
                                      picture.shape[0], (time.perf_counter() - last) * 1000.0)
                if self.on_publish is not None:
                    self.on_publish(self.latest)
        except BaseException as exc:  # the sink reports it and stops the run: no silent frozen viewer
            self.error = exc
