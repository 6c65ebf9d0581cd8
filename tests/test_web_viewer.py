"""The live web viewer (``--sink http://...``): address rules, the page, MJPEG fan-out, slow viewers, a browser.

The camera command runs once for the module on loopback (synthetic pattern, the registry's tiny ``test_x4``);
the browser test drives the system Chromium over the DevTools protocol (aiohttp's WebSocket client) and
saves a screenshot to tests/artifacts/web_viewer.png. Pipeline-level checks use a local stand-in model.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from mambalitesr.errors import UserError  # noqa: E402
from mambalitesr.runtime.backends import create_backend  # noqa: E402
from mambalitesr.runtime.stream.pipeline import Pipeline  # noqa: E402
from mambalitesr.runtime.core.processing import FrameProcessor  # noqa: E402
from mambalitesr.runtime.stream.registry import parse_sink  # noqa: E402
from mambalitesr.runtime.stream.synthetic import SyntheticSource  # noqa: E402
from mambalitesr.runtime.web.address import parse_address  # noqa: E402
from mambalitesr.runtime.web.priority import thread_is_lowered  # noqa: E402
from mambalitesr.runtime.web.server import STATIC  # noqa: E402
from mambalitesr.runtime.web.sink import WebSink  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STARTUP_S = 180  # importing torch on a loaded 2-core CI machine can take a minute
URL_LINE = re.compile(r"web viewer: open (http://\S+/) in a browser")


# -- helpers ----------------------------------------------------------------------------------------
class StandIn(torch.nn.Module):
    """A local x4 SR stand-in: conv -> pixel shuffle (fast, deterministic)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 48, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(4)

    def forward(self, x):
        return self.shuffle(self.conv(x))


class Running:
    """A Pipeline with a WebSink, run in a thread; ``stop()`` ends it and returns the stats."""

    def __init__(self, spec="http://127.0.0.1:0", source=None, **kw):
        self.sink = parse_sink(spec)
        backend = create_backend("torch", module=StandIn().eval(), threads=1)
        self.pipeline = Pipeline(source or SyntheticSource(64, 48, fps=20), FrameProcessor(backend), self.sink,
                                 warmup=1, log=lambda m: None, **kw)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while self.sink.port is None:
            assert self.thread.is_alive() and time.monotonic() < deadline, f"the viewer did not start: {self.error}"
            time.sleep(0.05)
        self.url = self.sink.url

    def _run(self):
        try:
            self.stats = self.pipeline.run()
        except BaseException as exc:
            self.error = exc

    def stop(self, wait_for_end: bool = False):
        if not wait_for_end:
            self.pipeline.request_stop("test done")
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.stats


async def read_parts(url: str, n: int, timeout: float = 60.0) -> list[tuple[dict, bytes]]:
    """The first ``n`` parts of an MJPEG stream: (part headers, JPEG bytes)."""
    parts = []
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "stream.mjpg", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            reader = aiohttp.MultipartReader.from_response(r)
            while len(parts) < n:
                part = await reader.next()
                parts.append((dict(part.headers), await part.read()))
    return parts


async def get_json(url: str):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as r:
            assert r.status == 200, r.status
            return json.loads(await r.text())


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) != 0


# -- the sink spec ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, host, port", [
    ("http://localhost:8080", "127.0.0.1", 8080),
    ("http://localhost", "127.0.0.1", 8080),
    ("http://127.0.0.1:0/", "127.0.0.1", 0),
    ("http://0.0.0.0:9000", "0.0.0.0", 9000),
    ("http://[::1]:8081", "::1", 8081),
])
def test_address_binds_what_was_typed(spec, host, port):
    a = parse_address(spec)
    assert (a.host, a.port) == (host, port)
    assert a.loopback == (host != "0.0.0.0")
    assert (a.exposure_warning(port) is None) == a.loopback


def test_all_interfaces_is_announced():
    warning = parse_address("http://0.0.0.0:8080").exposure_warning(8080)
    assert "every network interface" in warning and "http://localhost:8080" in warning


def test_display_options_are_parsed():
    a = parse_address("http://localhost:8080?fps=12.5&quality=70&width=1280")
    assert (a.fps, a.quality, a.width) == (12.5, 70, 1280)


@pytest.mark.parametrize("spec, message", [
    ("http://localhost:99999", "out of range"),
    ("http://:8080", "give a host"),
    ("http://localhost:8080/viewer", "served at the root"),
    ("http://localhost:8080?fps=0", "fps must be"),
    ("http://localhost:8080?quality=101", "quality must be"),
    ("http://localhost:8080?fps=fast", "needs a number"),
    ("http://localhost:8080?colour=1", "unknown option"),
])
def test_bad_addresses_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_sink(spec)


def test_parse_sink_builds_the_viewer():
    sink = parse_sink("http://localhost:0")
    assert isinstance(sink, WebSink) and sink.address.host == "127.0.0.1"


def test_a_busy_port_is_a_user_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        spec = f"http://127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(UserError, match="cannot listen"):
            WebSink(spec)  # found at parse time, before any model loads
        sink = WebSink("http://127.0.0.1:0")
        sink.address = parse_address(spec)  # the port taken between parsing and opening
        with pytest.raises(UserError, match="cannot listen"):
            sink.open(None)
        sink.close()


# -- chart points -----------------------------------------------------------------------------------
def test_chart_points_follow_the_run_stats():
    from types import SimpleNamespace

    from mambalitesr.runtime.stream.stats import RunStats
    from mambalitesr.runtime.web.telemetry import LiveTelemetry

    stats = RunStats()
    telemetry = LiveTelemetry()
    telemetry.watch(SimpleNamespace(stats=stats, power=None))
    for i in range(40):  # 10 frames per second, infer 20 ms each
        stats.stage_s["infer"].append(0.020)
        stats.end_to_end_s.append(0.050 if i % 2 else float("nan"))
        stats.frames_out += 1
        telemetry.tick(i, now=100.0 + 0.1 * i)
    history = telemetry.stats()["history"]
    assert len(history) == 14  # a point every 0.3 s (the first tick at or after each SAMPLE_S)
    assert history[0]["fps"] is None and all(abs(p["fps"] - 10.0) < 1e-6 for p in history[1:])
    assert all(abs(p["ms"]["infer"] - 20.0) < 1e-9 for p in history)
    assert all(p["ms"]["capture"] is None for p in history)  # nothing recorded: no made-up value
    assert all(p["ms"]["end_to_end"] is None for p in history)  # NaN in the data -> null, never NaN in JSON
    json.dumps(telemetry.stats(), allow_nan=False)
    assert [p["seq"] for p in telemetry.stats(since=history[-3]["seq"])["history"]] == [13, 14]


# -- the page makes no request elsewhere ------------------------------------------------------------
class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [value for name, value in attrs if name in ("src", "href", "action") and value is not None]


def test_page_refers_only_to_its_own_origin():
    parser = _Refs()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.refs, "the page has no src/href at all?"
    for ref in parser.refs:
        assert ref == "data:," or not re.match(r"^([a-z][a-z0-9+.-]*:|//)", ref, re.I), f"non-relative reference {ref!r}"
        if not ref.startswith("data:"):
            assert (STATIC.parent / ref).is_file() or ref == "stream.mjpg", f"{ref} is not served from the package"
    app = (STATIC / "app.js").read_text()
    assert not re.search(r"https?://|wss?://|//[a-z0-9.-]+\.[a-z]{2,}/", app, re.I), "app.js names another host"
    vendored = (STATIC / "vendor" / "uPlot.iife.min.js").read_text()
    for call in ("fetch(", "XMLHttpRequest", "sendBeacon", "WebSocket", "EventSource", "importScripts"):
        assert call not in vendored, f"the vendored chart library calls {call}"
    assert (STATIC / "vendor" / "uPlot.LICENSE").is_file()


# -- the pipeline side ------------------------------------------------------------------------------
def test_nothing_is_encoded_without_viewers_and_the_run_end_closes_the_port():
    run = Running(max_frames=15, source=SyntheticSource(64, 48))
    port = run.sink.port
    stats = run.stop(wait_for_end=True)
    assert stats.frames_out == 15
    # nobody watched: no frame was copied for the viewer, the JPEG encoder never ran
    assert run.sink.viewer.frames_sent == 0 and run.sink.encodes == 0
    assert port_is_closed(port)
    assert not run.sink.viewer.running, "the viewer process outlived the run"


def test_two_viewers_share_one_encode_per_tick():
    run = Running()
    try:
        async def both():
            return await asyncio.gather(read_parts(run.url, 6), read_parts(run.url, 6))

        a, b = asyncio.run(both())
        for parts in (a, b):
            seqs = [int(h["X-Frame-Seq"]) for h, _ in parts]
            indices = [int(h["X-Frame-Index"]) for h, _ in parts]
            assert seqs == sorted(set(seqs)) and indices == sorted(set(indices)), "frames repeated or out of order"
            image = decode(parts[-1][1])
            assert image.shape == (192, 512, 3)  # bicubic | SR, each 4 x (64x48)
        by_seq_a = {int(h["X-Frame-Seq"]): jpeg for h, jpeg in a}
        by_seq_b = {int(h["X-Frame-Seq"]): jpeg for h, jpeg in b}
        common = by_seq_a.keys() & by_seq_b.keys()
        assert common, "the two viewers never saw the same tick"
        assert all(by_seq_a[s] is not None and by_seq_a[s] == by_seq_b[s] for s in common)
        if sys.platform.startswith("linux"):  # every thread of the viewer process yields to the pipeline
            assert run.sink.viewer.lowered == "SCHED_IDLE"
            tids = [int(t) for t in os.listdir(f"/proc/{run.sink.viewer.pid}/task")]
            assert len(tids) >= 3  # main, encoder, server at least
            assert all(thread_is_lowered(tid) for tid in tids)
            assert not thread_is_lowered(threading.get_native_id())  # the pipeline's threads are not
    finally:
        run.stop()


def test_a_slow_viewer_skips_frames_and_does_not_hold_the_others():
    # 160x120 x4: ~1280x480 pictures of a few hundred KiB, so a viewer that stops reading fills its socket fast
    run = Running("http://127.0.0.1:0?quality=95", source=SyntheticSource(160, 120, fps=20))
    stalled = socket.socket()
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", run.sink.port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n")
        fast = asyncio.run(read_parts(run.url, 12))  # the stalled viewer reads nothing meanwhile
        fast_seqs = [int(h["X-Frame-Seq"]) for h, _ in fast]
        assert fast_seqs == sorted(set(fast_seqs)) and len(fast_seqs) == 12
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        stalled.settimeout(10.0)
        data, deadline = b"", time.monotonic() + 30
        while len(re.findall(rb"X-Frame-Seq: (\d+)", data)) < 4 and time.monotonic() < deadline:
            data += stalled.recv(1 << 20)
        seqs = [int(s) for s in re.findall(rb"X-Frame-Seq: (\d+)", data)]
        assert len(seqs) >= 4, seqs
        # what waited for it was at most a couple of stale frames; then the newest, skipping the backlog
        jump = max(b - a for a, b in zip(seqs, seqs[1:]))
        assert seqs[0] <= 3 and jump >= 5, f"the stalled viewer got a backlog instead of the newest frame: {seqs}"
    finally:
        stalled.close()
        run.stop()


def test_foreign_host_names_are_refused_on_loopback():
    run = Running()
    try:
        async def probe():
            async with aiohttp.ClientSession() as session:
                async with session.get(run.url + "stats", headers={"Host": "attacker.example"}) as r:
                    refused = r.status
                async with session.get(run.url + "stats") as r:
                    return refused, r.status

        assert asyncio.run(probe()) == (403, 200)
    finally:
        run.stop()


# -- the viewer process: hand-off, never blocking, dying ---------------------------------------------
def test_the_frame_slot_hands_over_each_shape_and_order():
    from mambalitesr.runtime.core.frames import Frame, Output
    from mambalitesr.runtime.web.slot import SlotReader, SlotWriter

    rng = np.random.default_rng(0)
    writer, reader = SlotWriter(), SlotReader()
    try:
        generations = []
        for i, (h, w, fmt) in enumerate([(8, 8, "bgr"), (20, 12, "rgb"), (6, 10, "bgr")]):
            lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            sr = rng.integers(0, 256, (4 * h, 4 * w, 3), dtype=np.uint8)
            message, fds = writer.put(Output(sr, Frame(lr[:, ::-1][:, ::-1], i, 0.0, fmt), i))  # a strided view
            generations.append((message["generation"], len(fds)))
            out = reader.take(json.loads(json.dumps(message)), [os.dup(fd) for fd in fds])
            assert out.index == i and out.frame.fmt == fmt
            np.testing.assert_array_equal(out.frame.image, lr)
            np.testing.assert_array_equal(out.sr, sr)
        # a new buffer (and its descriptor) only when a frame does not fit the current one
        assert generations == [(1, 1), (2, 1), (2, 0)]
        with pytest.raises(RuntimeError, match="without its memory"):
            SlotReader().take(message, [])
    finally:
        writer.close()
        reader.close()


def test_the_channel_never_blocks_the_sender_and_reports_a_closed_peer():
    from mambalitesr.runtime.web.channel import Channel, ChannelClosed, socket_pair

    a, b = (Channel(s) for s in socket_pair())
    sent, t0 = 0, time.monotonic()
    while a.try_send({"points": [{"seq": sent, "pad": "x" * 1000}]}):
        sent += 1
        assert sent < 100_000, "the socket never filled"
    assert time.monotonic() - t0 < 5.0 and sent > 0  # a full peer is a False, not a wait
    message, fds = b.receive()
    assert message["points"][0]["seq"] == 0 and fds == []
    assert a.try_send({"close": True})  # room again after one read
    b.close()
    with pytest.raises(ChannelClosed):
        a.receive(timeout=1.0)
        a.try_send({"close": True})


def test_a_stopped_viewer_process_never_stalls_the_pipeline():
    run = Running(source=SyntheticSource(64, 48, fps=20))
    pid = run.sink.viewer.pid
    try:
        asyncio.run(read_parts(run.url, 2))
        os.kill(pid, signal.SIGSTOP)  # a viewer the scheduler starves completely
        try:
            before, t0 = run.pipeline.stats.frames_out, time.monotonic()
            time.sleep(3.0)
            rate = (run.pipeline.stats.frames_out - before) / (time.monotonic() - t0)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert rate > 10, f"the pipeline slowed to {rate:.1f} fps of 20 while its viewer process was stopped"
        parts = asyncio.run(read_parts(run.url, 3))  # and watching resumes
        assert len(parts) == 3
        assert run.sink.stop_reason == ""
    finally:
        run.stop()
    assert not run.sink.viewer.running


def test_a_stuck_viewer_process_does_not_hold_up_the_end_of_the_run():
    run = Running(source=SyntheticSource(64, 48, fps=20))
    viewer = run.sink.viewer
    os.kill(viewer.pid, signal.SIGSTOP)  # never reads again: its channel fills, the close message cannot go
    time.sleep(2.0)
    t0 = time.monotonic()
    stats = run.stop()
    assert time.monotonic() - t0 < 20 and stats.frames_out > 0
    assert not viewer.running, "the stuck viewer process was left behind"


def test_a_dead_viewer_process_ends_the_run_with_the_reason():
    run = Running(source=SyntheticSource(64, 48, fps=20))
    os.kill(run.sink.viewer.pid, signal.SIGKILL)
    run.stop(wait_for_end=True)  # the run ends by itself
    assert "viewer process stopped" in run.sink.stop_reason and run.sink.stop_is_error


def test_a_viewer_that_dies_between_poll_and_send_ends_the_run_instead_of_raising():
    """The race CI once hit: poll() saw a live viewer, the send after it met a closed channel (EPIPE)."""
    run = Running(source=SyntheticSource(64, 48, fps=20))
    viewer = run.sink.viewer
    os.kill(viewer.pid, signal.SIGKILL)
    viewer._proc.wait(timeout=10)
    assert viewer.send({"points": []}) is False  # the closed channel: no exception out of the sink's sends
    assert "viewer process stopped (exit code -9)" in viewer.error
    run.stop(wait_for_end=True)
    assert "viewer process stopped" in run.sink.stop_reason and run.sink.stop_is_error


# -- the command ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def camera():
    """``mambalitesr camera --sink http://127.0.0.1:0`` on the synthetic pattern; yields (process, url, stderr)."""
    cmd = [sys.executable, "-m", "mambalitesr", "camera", "--source", "synthetic:64x48@10", "--backend", "torch",
           "--model", "test_x4", "--threads", "1", "--sink", "http://127.0.0.1:0", "--power", "none", "--warmup", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    found = threading.Event()

    def pump():
        for line in proc.stderr:
            lines.append(line)
            if URL_LINE.search(line):
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(STARTUP_S):
        proc.kill()
        proc.wait()
        pytest.fail("the camera command did not start its viewer:\n" + "".join(lines))
    url = URL_LINE.search("".join(lines)).group(1).replace("localhost", "127.0.0.1")
    yield proc, url, lines
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_camera_command_serves_page_stats_summary_and_frames(camera):
    proc, url, _ = camera

    async def visit():
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as r:
                page = await r.text()
                assert r.status == 200 and "static/app.js" in page
                assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
            async with session.get(url + "static/vendor/uPlot.iife.min.js") as r:
                assert r.status == 200 and len(await r.read()) > 10000

    asyncio.run(visit())
    async def two_viewers():
        return await asyncio.wait_for(asyncio.gather(read_parts(url, 3), read_parts(url, 3)), 90)

    a, b = asyncio.run(two_viewers())
    for parts in (a, b):
        assert decode(parts[-1][1]).shape == (192, 512, 3)
        indices = [int(h["X-Frame-Index"]) for h, _ in parts]
        assert indices == sorted(set(indices))
    stats = asyncio.run(get_json(url + "stats"))
    assert stats["latest"] is not None and stats["history"], stats
    assert stats["latest"]["ms"]["infer"] is None or stats["latest"]["ms"]["infer"] > 0
    assert any(p["ms"]["infer"] for p in stats["history"]), "no infer latency in the chart history"
    later = asyncio.run(get_json(url + f"stats?since={stats['latest']['seq']}"))
    assert all(p["seq"] > stats["latest"]["seq"] for p in later["history"])
    summary = asyncio.run(get_json(url + "summary"))
    assert "test_x4" in summary["backend"] and "synthetic 64x48" in summary["source"]
    assert summary["stats"]["frames_out"] > 0 and "latency (ms)" in summary["text"]
    assert summary["plan"]["scale"] == 4 and summary["viewer"]["encodes"] > 0


# -- the browser ------------------------------------------------------------------------------------
class DevTools:
    """The few Chrome DevTools protocol calls the test needs, over aiohttp's WebSocket client."""

    def __init__(self, ws):
        self.ws, self.next_id, self.requests, self.errors = ws, 0, [], []

    async def call(self, method: str, **params):
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.errors.append(msg["params"]["exceptionDetails"].get("text", "exception"))

    async def js(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.js(expression):
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}: {await self.js('JSON.stringify(mlsrViewer.state)')}")

    async def mouse(self, kind: str, x: float, y: float, buttons: int = 0):
        await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left" if kind != "mouseMoved" else "none",
                        buttons=buttons, clickCount=1 if kind != "mouseMoved" else 0)


def _launch_chromium(profile: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1280,1000",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file, deadline = Path(profile) / "DevToolsActivePort", time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("chromium did not open its DevTools port")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_browser_shows_frames_split_lens_and_charts(camera):
    _, url, _ = camera
    profile = tempfile.mkdtemp(prefix="mlsr-chromium-")
    chrome, port = _launch_chromium(profile)
    try:
        asyncio.run(asyncio.wait_for(_drive_browser(url, port), 150))
    finally:
        chrome.terminate()
        try:
            chrome.wait(10)
        except subprocess.TimeoutExpired:
            chrome.kill()
        shutil.rmtree(profile, ignore_errors=True)


async def _drive_browser(url: str, port: int) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            dt = DevTools(ws)
            for domain in ("Network", "Runtime", "Page"):
                await dt.call(f"{domain}.enable")
            await dt.call("Page.navigate", url=url)
            await dt.until("typeof mlsrViewer === 'object'", 30, "the page script")
            await dt.until("mlsrViewer.state.frames >= 3", 60, "three frames")
            first = await dt.js("mlsrViewer.state.frameIndex")
            await dt.until(f"mlsrViewer.state.frameIndex > {first}", 30, "a newer frame")
            size = await dt.js("(() => { const c = document.getElementById('canvas'); return [c.width, c.height]; })()")
            assert size == [256, 192], size  # one half of bicubic | SR: 4 x (64x48)

            points = await dt.js("mlsrViewer.charts.fps.data[0].length")
            await dt.until(f"mlsrViewer.charts.fps.data[0].length > {points}", 30, "the charts to grow")
            infer = await dt.js("mlsrViewer.charts.latency.data[3].filter(v => v !== null).length")
            assert infer > 0, "the latency chart has no infer values"

            # drag the split handle from the middle to a quarter of the picture
            box = await dt.js("(() => { const r = document.getElementById('canvas').getBoundingClientRect(); "
                              "return [r.left, r.top, r.width, r.height]; })()")
            left, top, width, height = box
            y = top + height / 2
            await dt.mouse("mousePressed", left + width / 2, y, buttons=1)
            await dt.mouse("mouseMoved", left + width * 0.35, y, buttons=1)
            await dt.mouse("mouseMoved", left + width * 0.25, y, buttons=1)
            await dt.mouse("mouseReleased", left + width * 0.25, y)
            split = await dt.js("mlsrViewer.state.split")
            assert abs(split - 0.25) < 0.02, split
            handle = await dt.js("(() => { const h = document.getElementById('split').getBoundingClientRect(); "
                                 "return h.left + h.width / 2; })()")
            assert abs(handle - (left + width * 0.25)) < 3, (handle, left + width * 0.25)
            draws = await dt.js("mlsrViewer.state.draws")
            await dt.until(f"mlsrViewer.state.draws > {draws}", 30, "a redraw after the drag")

            # the lens follows the pointer
            await dt.mouse("mouseMoved", left + width * 0.6, top + height * 0.4)
            await dt.until("!document.getElementById('lens').classList.contains('hidden')", 10, "the lens")
            await asyncio.sleep(1.0)  # one more chart poll and frame before the picture

            page_size = (await dt.call("Page.getLayoutMetrics"))["cssContentSize"]
            width = max(page_size["width"], await dt.js("window.innerWidth"))  # no scroll bar once captured whole
            shot = await dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                 clip={"x": 0, "y": 0, "width": width, "height": page_size["height"], "scale": 1})
            scrolls = await dt.js("document.documentElement.scrollWidth > document.documentElement.clientWidth")
            assert not scrolls, "the page is wider than the window"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            ignore = ARTIFACTS / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n")
            (ARTIFACTS / "web_viewer.png").write_bytes(base64.b64decode(shot["data"]))

            assert not dt.errors, f"the page threw: {dt.errors}"
            origin = url.rstrip("/")
            foreign = [u for u in dt.requests if not (u.startswith(origin + "/") or u.startswith("data:"))]
            assert dt.requests and not foreign, f"the page requested other hosts: {foreign}"


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_stops_the_camera_command_with_its_summary(camera):
    proc, url, lines = camera
    port = int(url.rsplit(":", 1)[1].strip("/"))
    viewers = children(proc.pid) if sys.platform.startswith("linux") else []
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines)
    assert "summary:" in out and "frames out" in out
    assert port_is_closed(port)
    assert not any(alive(pid) for pid in viewers), "the viewer process outlived the command"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the viewer process through Linux /proc")
def test_the_viewer_process_goes_when_the_camera_command_is_killed():
    cmd = [sys.executable, "-m", "mambalitesr", "camera", "--source", "synthetic:32x24@10", "--backend", "torch",
           "--model", "test_x4", "--threads", "1", "--sink", "http://127.0.0.1:0", "--power", "none", "--warmup", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the viewer is up once its address is printed
            if URL_LINE.search(line):
                break
        viewers = children(proc.pid)
        assert len(viewers) == 1, viewers
        proc.kill()  # no chance to close anything: the viewer process must notice by itself
        proc.wait(30)
        deadline = time.monotonic() + 15
        while alive(viewers[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(viewers[0]), "the viewer process outlived its pipeline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
