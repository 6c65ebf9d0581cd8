"""The viewer's HTTP server: aiohttp on its own event loop in a background thread.

Glossary (code name -> meaning):
    /              the page (static/index.html); /static/... its script, style and the vendored uPlot
    /stream.mjpg   multipart/x-mixed-replace JPEG stream; each part carries ``X-Frame-Index`` and
                   ``X-Frame-Seq`` headers. Why MJPEG over WebSocket: a plain ``<img>`` shows it, so do
                   VLC, ffplay and curl; TCP itself is the flow control (below), no ack protocol needed
    latest only    a viewer's coroutine waits for a newer Encoded, writes it and waits again: a slow viewer
                   is still writing when newer frames appear and simply gets the newest next (skips);
                   what waits for it is at most one frame in the transport plus UNSENT_BYTES in the
                   kernel (TCP_NOTSENT_LOWAT), never a queue
    /stats         JSON: the latest chart point and the history after ``?since=SEQ``
    /summary       JSON: what runs (source, backend, plan, viewer) and RunStats.to_dict() with its text
    host check     bound to loopback, requests must name a loopback host (blocks DNS-rebinding pages)
    CSP            every response forbids fetching from, or sending to, any other origin

It runs in the viewer process (viewer_process.py): frames arrive through FrameEncoder, figures through
TelemetryStore, both filled from the pipeline process's messages; the pipeline never waits on it.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

from mambalitesr.errors import UserError
from mambalitesr.runtime.web.frames import BOUNDARY
from mambalitesr.optional import require

STATIC = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
UNSENT_BYTES = 128 << 10
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]", "::1"}


def require_aiohttp():
    return require("aiohttp.web", "the web viewer needs aiohttp", extra="web")


def _limit_unsent(transport) -> None:
    """Keep at most UNSENT_BYTES queued in the kernel for this viewer, so the server's wait for room
    (and so the skip to the newest frame) starts after about one frame, not after megabytes of stale ones."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    try:
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):  # Linux, macOS: the send window still autotunes
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_BYTES)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNSENT_BYTES)
    except OSError:
        pass  # not a TCP socket (a test transport): nothing to tune


class OneLineLog:
    """The request handler's logger: a bad request (an oversize header, a malformed line, a client gone
    mid-response) is one line on stderr, never a traceback on the camera's console."""

    def __init__(self, say=None):
        import sys

        self.say = say or (lambda m: print(m, file=sys.stderr, flush=True))

    def _line(self, msg, *args, exc_info=None, **kw) -> None:
        text = (msg % args) if args else str(msg)
        if exc_info is True:
            import sys

            exc_info = sys.exc_info()[1]
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if exc is not None:
            detail = " ".join(str(exc).split())[:200]
            text = f"{text}: {type(exc).__name__}{': ' + detail if detail else ''}"
        self.say(f"viewer: {text}")

    def exception(self, msg, *args, exc_info=True, **kw) -> None:
        self._line(msg, *args, exc_info=exc_info, **kw)

    def error(self, msg, *args, **kw) -> None:
        self._line(msg, *args, **kw)

    def warning(self, msg, *args, **kw) -> None:
        self._line(msg, *args, **kw)

    def info(self, msg, *args, **kw) -> None:
        pass

    def debug(self, msg, *args, **kw) -> None:
        pass

    def isEnabledFor(self, level) -> bool:  # noqa: N802  (logging.Logger's name)
        return level >= 30

    def log(self, level, msg, *args, **kw) -> None:
        if level >= 30:
            self._line(msg, *args, **kw)


class ViewerServer:
    def __init__(self, host: str, port: int, encoder, telemetry, describe=lambda: {}, loopback: bool = True,
                 priority: str = ""):
        self.web = require_aiohttp()
        self.host, self.port = host, port
        self.encoder, self.telemetry, self.describe = encoder, telemetry, describe
        self.loopback = loopback
        self.priority = priority  # how the viewer process runs below the pipeline (priority.py), for /summary
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing: asyncio.Event | None = None
        self._new_frame: asyncio.Event | None = None
        self._streams: set[asyncio.Task] = set()

    # -- lifecycle (pipeline thread) --------------------------------------------------------
    def start(self, timeout: float = 10.0) -> int:
        """Listen; returns the bound port. UserError when the address cannot be bound."""
        self._thread = threading.Thread(target=self._serve, name="web-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise UserError(f"web viewer: the server did not start within {timeout:g} s")
        if self.error is not None:
            exc = self.error
            self._thread.join(timeout=2.0)
            if isinstance(exc, OSError):
                raise UserError(f"web viewer: cannot listen on {self.host}:{self.port} ({exc.strerror or exc})") from None
            raise exc
        return self.port

    def publish(self, encoded) -> None:
        """From the encoder thread: wake every viewer waiting for a newer frame."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed between the check and the call: nobody to wake
                pass

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is not None and self._closing is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._closing.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- event loop thread ----------------------------------------------------------------
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            if self.error is None:
                self.error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        web = self.web
        self._closing, self._new_frame = asyncio.Event(), asyncio.Event()
        app = web.Application(middlewares=[self._host_check])
        app.router.add_get("/", self._page)
        app.router.add_get("/stream.mjpg", self._stream)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/summary", self._summary)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.on_response_prepare.append(self._add_headers)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, logger=OneLineLog())
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
            self.port = runner.addresses[0][1]  # the real port when 0 was asked
            self._ready.set()
            await self._closing.wait()
        finally:
            self._wake()
            for task in list(self._streams):
                task.cancel()
            await runner.cleanup()

    def _wake(self) -> None:
        event, self._new_frame = self._new_frame, asyncio.Event()
        if event is not None:
            event.set()

    async def _next_frame(self, after_seq: int):
        """The newest Encoded with seq > after_seq; None when the server is closing."""
        while not self._closing.is_set():
            latest = self.encoder.latest
            if latest is not None and latest.seq > after_seq:
                return latest
            await self._new_frame.wait()
        return None

    # -- middleware and handlers ----------------------------------------------------------
    async def _host_check(self, request, handler):
        if self.loopback:
            host = (request.host or "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in LOOPBACK_NAMES:
                raise self.web.HTTPForbidden(text="this viewer serves loopback host names only\n")
        return await handler(request)

    _host_check.__middleware_version__ = 1  # the new-style middleware signature (request, handler)

    async def _add_headers(self, request, response) -> None:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)

    async def _page(self, request):
        return self.web.FileResponse(STATIC / "index.html")

    async def _stats(self, request):
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise self.web.HTTPBadRequest(text="since must be an integer\n") from None
        return self._json(self.telemetry.stats(since))

    async def _summary(self, request):
        extra = dict(self.describe())
        extra["viewer"] = {**extra.get("viewer", {}), "viewers": self.encoder.viewers, "encodes": self.encoder.encodes,
                           "below_pipeline_priority": self.priority or "no", "picture": self._picture()}
        return self._json(self.telemetry.summary(extra))

    def _picture(self):
        latest = self.encoder.latest
        if latest is None:
            return None
        return {"width": latest.width, "height": latest.height, "jpeg_bytes": len(latest.jpeg),
                "encode_ms": round(latest.encode_ms, 2)}

    def _json(self, body: dict):
        return self.web.Response(text=json.dumps(body, allow_nan=False), content_type="application/json")

    async def _stream(self, request):
        web = self.web
        response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
        task = asyncio.current_task()
        self._streams.add(task)
        self.encoder.add_viewer(+1)
        try:
            _limit_unsent(request.transport)
            await response.prepare(request)
            seq = 0
            while True:
                frame = await self._next_frame(seq)
                if frame is None:
                    break
                # write() returns once the socket has room again: the wait that makes a slow viewer skip
                await response.write(frame.part)
                seq = frame.seq
        except ConnectionError:  # reset, broken pipe, or aiohttp's "Connection lost" while waiting for room
            pass  # the viewer left
        finally:
            self.encoder.add_viewer(-1)
            self._streams.discard(task)
        return response
