"""IP cameras: RTSP and HTTP (MJPEG) streams through OpenCV's FFmpeg backend, or GStreamer on a Jetson.

Glossary (code name -> meaning):
    spec         ``rtsp://[user:pass@]host[:port]/path``, ``rtsps://...``, ``http(s)://host/path`` (MJPEG, or any
                 stream FFmpeg reads); prefixed ``ffmpeg:`` or ``gst:`` to force the decoder
    decoder      "ffmpeg": cv2.CAP_FFMPEG (the PyPI OpenCV wheels have it; RTSP over TCP);
                 "gstreamer": rtspsrc ! depay ! parse ! nvv4l2decoder (the Jetson's hardware decoder) !
                 nvvidconv ! BGRx ! videoconvert ! BGR ! appsink, which needs JetPack's system OpenCV;
                 "auto": gstreamer on a Jetson whose OpenCV has GStreamer, else ffmpeg
    codec        h264 or h265: which depayloader and parser the GStreamer pipeline uses (``gst:`` + ``#h265``)
    timeout      open and read time-outs (ms): a camera that stops sending makes ``read`` fail within it,
                 raising SourceLost, so the pipeline reconnects with the same back-off as a USB camera

A live source: the pipeline keeps only the newest frame and counts the stale ones it drops.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.stream.sources import SourceUnavailable, _CaptureSource, _cv2, has_gstreamer

SCHEMES = ("rtsp", "rtsps", "http", "https")
DECODERS = ("auto", "ffmpeg", "gstreamer")
CODECS = ("h264", "h265")
OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000
_CREDENTIALS = re.compile(r"//[^/@]*@")


def on_jetson() -> bool:
    return Path("/etc/nv_tegra_release").is_file()


def redact(url: str) -> str:
    """The URL without its user:password, for logs and summaries."""
    return _CREDENTIALS.sub("//***@", url)


def gstreamer_pipeline(url: str, codec: str = "h264", latency_ms: int = 200) -> str:
    """The Jetson pipeline: network source, hardware decode (nvv4l2decoder), BGR frames to appsink."""
    if codec not in CODECS:
        raise UserError(f"IP camera: codec must be one of {', '.join(CODECS)}, got {codec!r}")
    if url.startswith(("http://", "https://")):  # MJPEG over HTTP: the hardware JPEG decoder
        head = f'souphttpsrc location="{url}" is-live=true do-timestamp=true ! multipartdemux ! jpegparse ! nvv4l2decoder mjpeg=1'
    else:
        depay = "rtph264depay ! h264parse" if codec == "h264" else "rtph265depay ! h265parse"
        head = f'rtspsrc location="{url}" latency={latency_ms} protocols=tcp drop-on-latency=true ! {depay} ! nvv4l2decoder'
    # appsink drop=true max-buffers=1: GStreamer discards stale frames itself, so no latency builds up.
    return (f"{head} ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=1 sync=false")


class IpCameraSource(_CaptureSource):
    """An RTSP / HTTP camera; reconnects through the pipeline's back-off when the stream drops."""

    live = True

    def __init__(self, url: str, decoder: str = "auto", codec: str = "h264",
                 open_timeout_ms: int = OPEN_TIMEOUT_MS, read_timeout_ms: int = READ_TIMEOUT_MS):
        super().__init__()
        if decoder not in DECODERS:
            raise UserError(f"IP camera: decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        scheme = url.split("://", 1)[0].lower()
        if scheme not in SCHEMES or not url.split("://", 1)[1:] or not url.split("://", 1)[1]:
            raise UserError(f"IP camera: {redact(url)!r} is not rtsp://HOST/PATH or http://HOST/PATH")
        self.url, self.decoder, self.codec = url, decoder, codec
        self.open_timeout_ms, self.read_timeout_ms = open_timeout_ms, read_timeout_ms
        self.fps = None
        self._used = None  # the decoder the last open used

    def _choose(self, cv2) -> str:
        if self.decoder != "auto":
            return self.decoder
        return "gstreamer" if on_jetson() and has_gstreamer(cv2) else "ffmpeg"

    def _open_capture(self):
        cv2 = _cv2()
        used = self._choose(cv2)
        if used == "gstreamer":
            if not has_gstreamer(cv2):
                raise MissingDependency(
                    f"gst:{redact(self.url)} needs OpenCV built with GStreamer; this OpenCV {cv2.__version__} has none "
                    "(the PyPI wheels never do): on a Jetson use JetPack's python3-opencv, or drop the gst: prefix "
                    "to decode with FFmpeg"
                )
            cap = cv2.VideoCapture(gstreamer_pipeline(self.url, self.codec), cv2.CAP_GSTREAMER)
        else:
            if self.url.lower().startswith("rtsp") and "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ:
                # RTSP over TCP: no lost UDP packets (smeared frames); the user's own options win.
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.open_timeout_ms,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_timeout_ms]
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(f"{redact(self.url)}: cannot open the stream with {used} (camera offline, wrong "
                                    "path or credentials, or a firewall?)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 240 else None
        self._used = used
        return cap

    def describe(self) -> str:
        how = self._used or (self.decoder if self.decoder != "auto" else "ffmpeg/gstreamer")
        fps = f" @ {self.fps:g} fps" if self.fps else ""
        return f"IP camera {redact(self.url)} ({how}){fps}"


def parse_ip_camera(spec: str) -> IpCameraSource:
    """``rtsp://...`` / ``http://...``, optionally ``ffmpeg:`` or ``gst:`` first, and ``#h265`` for gst."""
    decoder = "auto"
    for prefix, name in (("ffmpeg:", "ffmpeg"), ("gst:", "gstreamer")):
        if spec.startswith(prefix):
            decoder, spec = name, spec[len(prefix):]
    codec = "h264"
    if spec.endswith("#h265") or spec.endswith("#h264"):
        spec, codec = spec[:-5], spec[-4:]
    return IpCameraSource(spec, decoder=decoder, codec=codec)


# -- factories (runtime/stream/registry.py names them; each takes the text after "KIND:") ---------
def rtsp_source(rest: str) -> IpCameraSource:
    return parse_ip_camera("rtsp:" + rest)


def rtsps_source(rest: str) -> IpCameraSource:
    return parse_ip_camera("rtsps:" + rest)


def http_source(rest: str) -> IpCameraSource:
    return parse_ip_camera("http:" + rest)


def https_source(rest: str) -> IpCameraSource:
    return parse_ip_camera("https:" + rest)


def gst_source(rest: str) -> IpCameraSource:
    return parse_ip_camera("gst:" + rest)


def ffmpeg_source(rest: str) -> IpCameraSource:
    return parse_ip_camera("ffmpeg:" + rest)
