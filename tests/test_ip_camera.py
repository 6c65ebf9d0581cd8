"""IP cameras against a REAL RTSP server on loopback (GStreamer's gst-rtsp-server, never a mock).

The server runs under Debian's /usr/bin/python3 (tests/rtsp_server.py); its packages are in .ci/run:
python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly.
"""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from mambalitesr.errors import MissingDependency, UserError  # noqa: E402
from mambalitesr.runtime.backends import create_backend  # noqa: E402
from mambalitesr.runtime.serve.ports import free_port  # noqa: E402
from mambalitesr.runtime.stream.ip_camera import IpCameraSource, gstreamer_pipeline, redact  # noqa: E402
from mambalitesr.runtime.stream.pipeline import Pipeline  # noqa: E402
from mambalitesr.runtime.core.processing import FrameProcessor  # noqa: E402
from mambalitesr.runtime.stream.sinks import Sink  # noqa: E402
from mambalitesr.runtime.stream.registry import parse_source  # noqa: E402
from mambalitesr.runtime.stream.sources import SourceUnavailable  # noqa: E402

SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def _rtsp_server_available() -> str | None:
    """None when the GStreamer RTSP server can run here, else why not."""
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} not found"
    probe = ("import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert all(Gst.ElementFactory.find(e) for e in ('x264enc','rtph264pay','videotestsrc'))")
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return ("no GStreamer RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")
    return None


_WHY_NOT = _rtsp_server_available()
needs_rtsp = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


class RtspServer:
    """tests/rtsp_server.py as a child process; start/stop may be called repeatedly (same port)."""

    def __init__(self, port: int):
        self.port, self.proc = port, None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.port), "160x120", "15"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "READY":
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line} {self.proc.stderr.read()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def rtsp_server():
    server = RtspServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Counter(Sink):
    def __init__(self):
        self.n, self.shapes = 0, set()

    def write(self, out):
        self.n += 1
        self.shapes.add(out.sr.shape)
        return True


class StandIn(torch.nn.Module):
    """A cheap x2 'SR' model: the test is about the source, not the network."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        return self.up(x)


def _pipeline(source, sink, frames):
    backend = create_backend("torch", module=StandIn(), threads=1)
    return Pipeline(source, FrameProcessor(backend), sink, max_frames=frames, warmup=1, log=lambda m: None,
                    reconnect_timeout=30.0, backoff=(0.2, 1.0))


@needs_rtsp
def test_rtsp_stream_reads_30_frames(rtsp_server):
    source = parse_source(rtsp_server.url)
    assert isinstance(source, IpCameraSource) and source.live
    sink = Counter()
    stats = _pipeline(source, sink, 30).run()
    assert stats.frames_out == 30 and sink.n == 30
    assert sink.shapes == {(240, 320, 3)}  # 160x120 at x2
    assert "ffmpeg" in source.describe()


@needs_rtsp
def test_rtsp_survives_the_server_restarting(rtsp_server):
    source = parse_source(rtsp_server.url)
    sink = Counter()
    pipeline = _pipeline(source, sink, 60)
    restarted = threading.Event()

    def restart_when_streaming():
        while sink.n < 15:
            time.sleep(0.05)
        rtsp_server.stop()
        time.sleep(1.5)  # the camera is really gone for a while: reads fail, reopening fails
        rtsp_server.start()
        restarted.set()

    t = threading.Thread(target=restart_when_streaming, daemon=True)
    t.start()
    stats = pipeline.run()
    t.join(30)
    assert restarted.is_set()
    assert stats.frames_out == 60 and sink.n == 60
    assert len(stats.gaps) >= 1 and all(g.back_at is not None for g in stats.gaps), stats.gaps
    assert not pipeline.failed


@needs_rtsp
def test_rtsp_camera_that_is_not_there_is_a_clear_error():
    source = IpCameraSource(f"rtsp://127.0.0.1:{free_port()}/cam", open_timeout_ms=2000)
    with pytest.raises(SourceUnavailable, match="cannot open the stream"):
        source.open()


def test_ip_camera_specs():
    assert parse_source("http://cam.local/mjpg/video.mjpg").url == "http://cam.local/mjpg/video.mjpg"
    gst = parse_source("gst:rtsp://10.0.0.5:554/h265#h265")
    assert gst.decoder == "gstreamer" and gst.codec == "h265" and gst.url == "rtsp://10.0.0.5:554/h265"
    assert parse_source("ffmpeg:rtsp://10.0.0.5/s").decoder == "ffmpeg"
    assert redact("rtsp://admin:secret@10.0.0.5/s") == "rtsp://***@10.0.0.5/s"
    assert "secret" not in IpCameraSource("rtsp://admin:secret@10.0.0.5/s").describe()
    with pytest.raises(UserError):
        parse_source("rtsp://")


def test_jetson_pipeline_uses_the_hardware_decoder():
    p = gstreamer_pipeline("rtsp://10.0.0.5/s")
    assert p.startswith('rtspsrc location="rtsp://10.0.0.5/s"') and "rtph264depay ! h264parse ! nvv4l2decoder" in p
    assert "appsink drop=true max-buffers=1" in p
    assert "rtph265depay ! h265parse" in gstreamer_pipeline("rtsp://x/s", "h265")
    assert "nvv4l2decoder mjpeg=1" in gstreamer_pipeline("http://x/video.mjpg")


def test_gstreamer_decoder_without_gstreamer_opencv_says_so():
    from mambalitesr.runtime.stream.sources import has_gstreamer

    if has_gstreamer(cv2):
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(MissingDependency, match="GStreamer"):
        parse_source("gst:rtsp://127.0.0.1:1/cam").open()
