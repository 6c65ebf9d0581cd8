"""The viewer process: JPEG encoding and HTTP serving, away from the pipeline's interpreter and CPU time.

Why a process: in the pipeline's own interpreter the viewer's Python work (20 viewers' writes, the event
loop) contends for the GIL with the pipeline's stages, and a CPU-bound pipeline lost ~30% of its frames
to 20 viewers (benchmarks/bench_web_viewer.py). Here it has its own interpreter, and every thread of it
runs in SCHED_IDLE (priority.py): it gets only the CPU time the pipeline leaves.

Glossary (code name -> meaning):
    ViewerProcess   the pipeline side's handle: starts ``python -m mambalitesr.runtime.web.viewer_process``
                    with one end of a socket pair, waits for its port, hands frames and figures over
                    without ever blocking, reads back its state
    state           what the viewer process reports: ``viewers`` (MJPEG clients now), ``encodes`` (JPEG
                    ticks so far), ``taken`` (the last frame it copied out of the slot: the slot is free
                    again), ``error`` (the encoder or the server failed)
    serve           the viewer process's main loop: receive, copy the frame out, report, offer it to the
                    FrameEncoder; ends when the pipeline side closes the channel or says ``close``
    STATE_S         how often the viewer process reports its state when nothing else changed

Messages (channel.py), pipeline -> viewer: ``frame`` (+ the slot's descriptor for a new slot generation),
``points``, ``summary``, ``close``; viewer -> pipeline: ``ready`` / ``failed`` once, then ``state``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from mambalitesr.errors import UserError
from mambalitesr.runtime.web.channel import Channel, ChannelClosed, socket_pair
from mambalitesr.runtime.web.priority import lower_this_thread

# Nothing above imports numpy or OpenCV: their thread pools start at import, and in the viewer process
# they must start after lower_this_thread so that they inherit SCHED_IDLE too.

START_TIMEOUT_S = 120.0  # importing aiohttp and OpenCV on a loaded 2-core machine
STATE_S = 0.1


class ViewerProcess:
    def __init__(self, address):
        from mambalitesr.runtime.web.slot import SlotWriter, supported

        why = supported()
        if why:
            raise UserError(why)
        self.address = address
        self.port: int | None = None
        self.lowered = ""
        self.state = {"viewers": 0, "encodes": 0, "taken": 0, "error": None}
        self.error: str | None = None  # why the viewer process is gone, once it is
        self.frames_sent = 0
        self._period = 1.0 / address.fps
        self._last_frame = -self._period
        self._slot = SlotWriter()
        self._channel: Channel | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> int:
        """Start the process; returns the bound port. UserError when it cannot listen or does not start."""
        mine, theirs = socket_pair()
        a = self.address
        config = {"host": a.host, "port": a.port, "fps": a.fps, "quality": a.quality, "width": a.width,
                  "loopback": a.loopback, "fd": theirs.fileno()}
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "mambalitesr.runtime.web.viewer_process",
                                           json.dumps(config)], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL)  # the run's stdout is its summary alone
        finally:
            theirs.close()
        self._channel = Channel(mine)
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self._channel.receive(timeout=0.2)
            except ChannelClosed:
                got = None
            if got is not None:
                message, _ = got
                if "ready" in message:
                    self.port, self.lowered = int(message["ready"]), message.get("lowered", "")
                    return self.port
                if "failed" in message:
                    self.close()
                    raise UserError(message["failed"])
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.close()
                raise UserError(f"web viewer: the viewer process exited at start (code {code}); its error is above")
            if time.monotonic() > deadline:
                self.close()
                raise UserError(f"web viewer: the viewer process did not start within {timeout:g} s")

    def close(self, timeout: float = 5.0) -> None:
        if self._channel is not None:
            try:
                self._channel.try_send({"close": True})
            except ChannelClosed:
                pass
            self._channel.finish()  # ends it even when the close message found the channel full
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # a starved or stuck viewer must not hold up the pipeline's exit
                self._proc.wait()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._slot.close()

    # -- from the sink thread (never blocks) --------------------------------------------------
    def poll(self) -> str:
        """Read what the viewer process reported; '' while it is healthy, else why it stopped."""
        if self.error:
            return self.error
        try:
            while (got := self._channel.receive()) is not None:
                message, fds = got
                for fd in fds:
                    os.close(fd)
                if "state" in message:
                    self.state = message["state"]
        except ChannelClosed:
            return self._stopped()
        if self.state.get("error"):
            self.error = f"web viewer: {self.state['error']}"
        return self.error or ""

    def _stopped(self) -> str:
        code = self._proc.poll()
        how = "it closed its channel" if code is None else f"exit code {code}"
        self.error = f"web viewer: the viewer process stopped ({how}); its error, if any, is above"
        return self.error

    def wants_frame(self, now: float) -> bool:
        """Someone watches, the slot is free, and the encoder's fps cap leaves room (no copy it would skip)."""
        return (self.state["viewers"] > 0 and self.state["taken"] >= self.frames_sent
                and now - self._last_frame >= self._period)

    def send_frame(self, out) -> bool:
        message, fds = self._slot.put(out)
        message["seq"] = self.frames_sent + 1
        if self._try_send(message, fds):
            self.frames_sent += 1
            self._last_frame = time.monotonic()
            return True
        if fds:  # the new slot's descriptor did not go with it: make a fresh one for the next try
            self._slot.close()
        return False

    def send(self, message: dict) -> bool:
        return self._try_send(message)

    def _try_send(self, message: dict, fds: tuple[int, ...] = ()) -> bool:
        """False when the message could not go now; a viewer that died since the last poll() sets ``error``
        (the sink ends the run with it) instead of raising out of the sink."""
        try:
            return self._channel.try_send(message, fds)
        except ChannelClosed:
            self._stopped()
            return False


# -- the viewer process ---------------------------------------------------------------------------
def serve(config: dict, lowered: str) -> int:
    from mambalitesr.runtime.web.frames import FrameEncoder
    from mambalitesr.runtime.web.server import ViewerServer
    from mambalitesr.runtime.web.slot import SlotReader
    from mambalitesr.runtime.web.telemetry import TelemetryStore

    channel = Channel.from_fd(config["fd"])
    store = TelemetryStore()
    summary_extra: dict = {}
    encoder = FrameEncoder(config["fps"], config["quality"], config["width"])
    server = ViewerServer(config["host"], config["port"], encoder, store, lambda: summary_extra,
                          loopback=config["loopback"], priority=lowered)
    encoder.on_publish = server.publish
    try:
        port = server.start()
    except UserError as exc:
        channel.try_send({"failed": str(exc)})
        return 2
    encoder.start()
    channel.try_send({"ready": port, "lowered": lowered})
    reader = SlotReader()
    parent = os.getppid()
    state = {"viewers": 0, "encodes": 0, "taken": 0, "error": None}
    reported, last_report = None, 0.0
    try:
        while True:
            got = channel.receive(timeout=STATE_S)
            if got is not None:
                message, fds = got
                if message.get("close"):
                    return 0
                if "frame" in message:
                    out = reader.take(message, fds)
                    state["taken"] = message["seq"]
                    encoder.offer(out)
                elif "points" in message:
                    store.add_points(message["points"])
                elif "summary" in message:
                    summary_extra = message["summary"].pop("extra", {})
                    store.set_summary(message["summary"])
            elif os.getppid() != parent:  # the pipeline process died without closing the channel
                return 0
            state["viewers"], state["encodes"] = encoder.viewers, encoder.encodes
            if encoder.error is not None:
                state["error"] = f"the JPEG encoder failed ({encoder.error})"
            elif not server.alive:
                state["error"] = f"the server stopped ({server.error or 'no error recorded'})"
            now = time.monotonic()
            if state != reported or now - last_report > 1.0:
                if channel.try_send({"state": dict(state)}):
                    reported, last_report = dict(state), now
            if state["error"]:
                return 1
    except ChannelClosed:
        return 0
    finally:
        encoder.close()
        server.stop()
        reader.close()


def main(argv=None) -> int:
    # Ctrl-C in the terminal reaches the whole process group: the pipeline side decides when the viewer
    # ends (it prints its summary first), so the viewer ignores SIGINT and goes when the channel closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lowered = lower_this_thread()  # before any other thread starts: they all inherit it
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m mambalitesr.runtime.web.viewer_process CONFIG_JSON (started by the web sink)",
              file=sys.stderr)
        return 2
    return serve(json.loads(argv[0]), lowered)


if __name__ == "__main__":
    sys.exit(main())
