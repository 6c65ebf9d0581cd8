"""``--sink http://HOST:PORT``: the pipeline's frames and figures, served to browsers while the run goes on.

Glossary (code name -> meaning):
    watch(pipeline)  the pipeline introduces itself (before ``open``): the sink reads its RunStats, power
                     link and description for the charts and the summary; it never writes them
    write            hands the Output to the FrameEncoder (no copy, no encode on the pipeline's thread) and
                     takes a chart point; returns False only when the viewer itself broke (encoder or
                     server died), so a viewer never stops a run by watching or leaving
    open / close     start / stop the encoder thread and the server; the port is bound at ``open``
"""
from __future__ import annotations

import sys

from mambalitesr.runtime.stream.sinks import Sink
from mambalitesr.runtime.web.address import ViewerAddress, check_bindable, parse_address
from mambalitesr.runtime.web.frames import FrameEncoder
from mambalitesr.runtime.web.server import ViewerServer, require_aiohttp
from mambalitesr.runtime.web.telemetry import LiveTelemetry


def _log(msg: str) -> None:
    print(f"web viewer: {msg}", file=sys.stderr, flush=True)


class WebSink(Sink):
    def __init__(self, address: ViewerAddress | str, log=_log):
        require_aiohttp()  # a missing extra is reported at parse time, before the model loads
        self.address = parse_address(address) if isinstance(address, str) else address
        check_bindable(self.address)  # a busy port is reported now, not after the model has loaded
        self.log = log
        self.telemetry = LiveTelemetry()
        self.encoder: FrameEncoder | None = None
        self.server: ViewerServer | None = None
        self.port: int | None = None
        self.frames = 0

    def watch(self, pipeline) -> None:
        self.telemetry.watch(pipeline)

    @property
    def url(self) -> str | None:
        return None if self.port is None else self.address.url(self.port)

    def open(self, fps) -> None:
        super().open(fps)
        a = self.address
        self.encoder = FrameEncoder(a.fps, a.quality, a.width)
        self.server = ViewerServer(a.host, a.port, self.encoder, self.telemetry, self._describe, loopback=a.loopback)
        self.encoder.on_publish = self.server.publish
        self.port = self.server.start()
        self.encoder.start()
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

    def write(self, out) -> bool:
        broken = self._broken()
        if broken:
            self.stop_reason, self.stop_is_error = broken, True
            return False
        self.encoder.offer(out)
        self.telemetry.tick(out.index)
        self.frames += 1
        return True

    def _broken(self) -> str:
        if self.encoder.error is not None:
            return f"web viewer: the JPEG encoder failed ({self.encoder.error})"
        if not self.server.alive:
            return f"web viewer: the server stopped ({self.server.error or 'no error recorded'})"
        return ""

    def close(self) -> None:
        if self.encoder is not None:
            self.encoder.close()
        if self.server is not None:
            self.server.stop()

    def describe(self) -> str:
        a = self.address
        where = self.url or (a.url() if a.port else f"http://{a.host}:<free port>/")
        return f"web viewer {where} (MJPEG bicubic | SR, <= {a.fps:g} fps, JPEG q{a.quality})"
