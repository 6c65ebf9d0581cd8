"""``--sink http://HOST:PORT``: the pipeline's frames and figures, served to browsers while the run goes on.

Glossary (code name -> meaning):
    watch(pipeline)  the pipeline introduces itself (before ``open``): the sink reads its RunStats, power
                     link and description for the charts and the summary; it never writes them
    write            on the sink thread, per frame: read the viewer process's state, take a chart point,
                     send new points (every SAMPLE_S) and the summary (every SUMMARY_CACHE_S), and copy the
                     output into the frame slot when someone watches, the slot is free and the fps cap
                     allows. Nothing waits for the viewer process; returns False only when the viewer
                     itself broke, so a viewer never stops a run by watching or leaving
    open / close     start / stop the viewer process (viewer_process.py); the port is bound at ``open``
"""
from __future__ import annotations

import sys
import time

from mambalitesr.runtime.stream.sinks import Sink
from mambalitesr.runtime.web.address import ViewerAddress, check_bindable, parse_address
from mambalitesr.runtime.web.server import require_aiohttp
from mambalitesr.runtime.web.telemetry import LiveTelemetry
from mambalitesr.runtime.web.viewer_process import ViewerProcess


def _log(msg: str) -> None:
    print(f"web viewer: {msg}", file=sys.stderr, flush=True)


class WebSink(Sink):
    def __init__(self, address: ViewerAddress | str, log=_log):
        require_aiohttp()  # a missing extra is reported at parse time, before the model loads
        self.address = parse_address(address) if isinstance(address, str) else address
        check_bindable(self.address)  # a busy port is reported now, not after the model has loaded
        self.log = log
        self.telemetry = LiveTelemetry()
        self.viewer: ViewerProcess | None = None
        self.port: int | None = None
        self.frames = 0
        self._points_sent = 0  # seq of the last chart point the viewer process has

    def watch(self, pipeline) -> None:
        self.telemetry.watch(pipeline)

    @property
    def url(self) -> str | None:
        return None if self.port is None else self.address.url(self.port)

    @property
    def viewers(self) -> int:
        return 0 if self.viewer is None else self.viewer.state["viewers"]

    @property
    def encodes(self) -> int:
        return 0 if self.viewer is None else self.viewer.state["encodes"]

    def open(self, fps) -> None:
        super().open(fps)
        a = self.address
        self.viewer = ViewerProcess(a)
        self.port = self.viewer.start()
        self._send_summary(force=True)
        warning = a.exposure_warning(self.port)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        if a.host in ("0.0.0.0", "::"):
            self.log(f"open http://<this machine's address>:{self.port}/ in a browser on another machine, "
                     f"or http://localhost:{self.port}/ here")
        else:
            self.log(f"open {self.url} in a browser (MJPEG at {self.url}stream.mjpg)")

    def _describe(self) -> dict:
        a = self.address
        return {"sink": self.describe(),
                "viewer": {"url": self.url, "max_fps": a.fps, "jpeg_quality": a.quality, "max_width": a.width}}

    def _send_summary(self, force: bool = False) -> None:
        body = self.telemetry.describe_run() if force else self.telemetry.summary_due()
        if body is not None:
            self.viewer.send({"summary": {**body, "extra": self._describe()}})

    def write(self, out) -> bool:
        broken = self.viewer.poll()
        if broken:
            self.stop_reason, self.stop_is_error = broken, True
            return False
        self.telemetry.tick(out.index)
        if self.telemetry.last_seq > self._points_sent:
            points = self.telemetry.points_after(self._points_sent)
            if self.viewer.send({"points": points}):
                self._points_sent = points[-1]["seq"]
        self._send_summary()
        if self.viewer.wants_frame(time.monotonic()):
            self.viewer.send_frame(out)
        if self.viewer.error:  # it died between poll() and a send above
            self.stop_reason, self.stop_is_error = self.viewer.error, True
            return False
        self.frames += 1
        return True

    def close(self) -> None:
        if self.viewer is not None:
            self.viewer.close()

    def describe(self) -> str:
        a = self.address
        where = self.url or (a.url() if a.port else f"http://{a.host}:<free port>/")
        return f"web viewer {where} (MJPEG bicubic | SR, <= {a.fps:g} fps, JPEG q{a.quality})"


def web_sink(rest: str) -> WebSink:
    """``http://HOST:PORT[?options]`` (the registry passes the text after "http:")."""
    return WebSink(f"http:{rest}")
