"""The streaming pipeline: capture -> preprocess -> infer -> postprocess -> sink, one thread per stage.

Glossary (code name -> meaning):
    stage          a thread with one job; stages talk through bounded queues, so memory and latency are bounded
    live queue     the capture queue of a live source keeps only the newest frame: when the next stage is
                   busy, the older frame is dropped (counted as stale) instead of queueing up latency
    finite queue   for files, folders and unpaced patterns the capture stage blocks instead: nothing is lost
    END            the marker a stage passes on when its input is exhausted; every stage drains and exits
    stop           graceful: capture ends, everything already captured is processed (SIGTERM, --frames, 'q')
    abort          immediate: every stage exits at its next queue operation (an error, a second signal)
    in flight      with a backend whose ``max_in_flight`` > 1 (TensorRT), the infer stage submits batch k+1
                   before it waits for batch k, so the H2D copy of k+1 overlaps the compute of k
    gap            the camera went away: the capture stage reopens it with exponential back-off
                   (``backoff`` initial and max seconds) for at most ``reconnect_timeout`` seconds

Stage times are per frame: the time the frame's work took in that stage (a batch's time counts for each
of its frames). ``capture`` is the time spent in ``source.read``, which for a camera includes waiting for
the next frame. ``compute_s`` is the backend's own time (``Pending.compute_s``), shared over the frames.
"""
from __future__ import annotations

import queue
import sys
import threading
import time

from mambalitesr.errors import UserError
from mambalitesr.runtime.stream.overlay import RateMeter, draw_overlay, overlay_lines
from mambalitesr.runtime.core.processing import FrameProcessor
from mambalitesr.runtime.core.frames import Output
from mambalitesr.runtime.core.inference import InferenceQueue
from mambalitesr.runtime.stream.sinks import Sink
from mambalitesr.runtime.stream.sources import Source, SourceLost, SourceUnavailable
from mambalitesr.runtime.stream.stats import Gap, RunStats

END = object()
POLL_S = 0.05


def _log(msg: str) -> None:
    print(f"camera: {msg}", file=sys.stderr, flush=True)


class Pipeline:
    def __init__(
        self,
        source: Source,
        processor: FrameProcessor,
        sink: Sink,
        *,
        batch: int = 1,
        max_frames: int | None = None,
        queue_depth: int | None = None,
        overlay: bool = False,
        power=None,
        warmup: int = 3,
        reconnect_timeout: float = 30.0,
        backoff: tuple[float, float] = (0.1, 2.0),
        log=_log,
    ):
        if batch < 1:
            raise UserError(f"batch must be >= 1, got {batch}")
        if max_frames is not None and max_frames < 1:
            raise UserError(f"--frames must be >= 1, got {max_frames}")
        self.source, self.processor, self.sink = source, processor, sink
        self.backend = processor.backend
        self.batch, self.max_frames, self.overlay, self.power = batch, max_frames, overlay, power
        self.warmup, self.reconnect_timeout, self.backoff, self.log = warmup, reconnect_timeout, backoff, log
        depth = queue_depth or (1 if source.live else 2)
        self.q_capture: queue.Queue = queue.Queue(maxsize=1 if source.live else max(depth, 2))
        self.q_pre: queue.Queue = queue.Queue(maxsize=depth)
        self.q_infer: queue.Queue = queue.Queue(maxsize=depth)
        self.q_post: queue.Queue = queue.Queue(maxsize=depth)
        self.stats = RunStats()
        getattr(sink, "watch", lambda pipeline: None)(self)  # live viewers (web sink) read stats and power
        self.started = False  # run() was entered: there is a summary to print, even of zero frames
        self.failed = False  # the run ended for a reason that is not success (camera gone, sink error)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._sink_done = False
        self._first = None
        self._warmup_index = -1
        # Live sources: preprocess takes a frame only when infer has taken the previous work, so frames
        # wait in the capture queue (where newer ones replace them) and not after it.
        self._infer_tokens = threading.Semaphore(depth) if source.live else None

    # -- control --------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Graceful: no more frames are captured; those in flight are finished."""
        if not self._stop.is_set():
            self.stats.stop_reason = self.stats.stop_reason or reason
            self._stop.set()

    def abort(self, reason: str) -> None:
        """Immediate: every stage exits at its next queue operation."""
        self.request_stop(reason)
        self._abort.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- queue helpers (every wait wakes up to notice an abort) ---------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        while not self._abort.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _put_newest(self, q: queue.Queue, item) -> None:
        """Live capture: never wait; replace a frame nobody has taken yet."""
        while not self._abort.is_set():
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    self.stats.count_drop()
                except queue.Empty:
                    pass

    def _get(self, q: queue.Queue, timeout: float | None = None):
        """The next item, END when aborted, or None when ``timeout`` passed with nothing."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._abort.is_set():
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.perf_counter())
            if wait <= 0:
                return None
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                continue
        return END

    # -- stages -----------------------------------------------------------------------------
    def _capture(self) -> None:
        captured = 0
        last_index = self._warmup_index
        try:
            if self._first is not None:
                frame, self._first = self._first, None
                frame.t_capture = time.perf_counter()
                self._deliver(frame)
                captured, last_index = 1, frame.index
            while not self._stop.is_set():
                if self.max_frames is not None and not self.source.live and captured >= self.max_frames:
                    break
                start = time.perf_counter()
                try:
                    frame = self.source.read()
                except SourceLost as exc:
                    if not self._reconnect(exc, last_index):
                        break
                    continue
                if frame is None:
                    self.request_stop("end of input")
                    break
                self.stats.stage_s["capture"].add(time.perf_counter() - start)
                self._deliver(frame)
                captured += 1
                last_index = frame.index
        finally:
            self.source.close()
            self._put(self.q_capture, END)

    def _deliver(self, frame) -> None:
        if self.stats.first_capture is None:
            self.stats.first_capture = frame.t_capture
        self.stats.captured += 1
        if self.source.live:
            self._put_newest(self.q_capture, frame)
        else:
            self._put(self.q_capture, frame)

    def _reconnect(self, exc: Exception, last_index: int) -> bool:
        gap = Gap(after_index=last_index, lost_at=time.perf_counter(), reason=str(exc))
        self.stats.gaps.append(gap)
        self.log(f"source lost after frame {last_index} ({exc}); reconnecting")
        self.source.close()
        delay = self.backoff[0]
        while not self._stop.is_set():
            if time.perf_counter() - gap.lost_at > self.reconnect_timeout:
                self.failed = True
                self.request_stop(f"source lost for more than {self.reconnect_timeout:g} s; gave up ({exc})")
                self.log(self.stats.stop_reason)
                return False
            if self._stop.wait(delay):
                break
            gap.attempts += 1
            try:
                self.source.open()
            except (SourceUnavailable, UserError):
                delay = min(delay * 2, self.backoff[1])
                continue
            gap.back_at = time.perf_counter()
            self.log(f"source back after {gap.seconds:.2f} s ({gap.attempts} attempt(s))")
            return True
        return False

    def _preprocess(self) -> None:
        stats, carry = self.stats, None
        while True:
            if self._infer_tokens is not None:
                while not self._infer_tokens.acquire(timeout=POLL_S):
                    if self._abort.is_set():
                        return
            first = carry if carry is not None else self._get(self.q_capture)
            carry = None
            if first is END:
                break
            frames = [first]
            ended = False
            while len(frames) < self.batch:
                nxt = self._get(self.q_capture)
                if nxt is END:
                    ended = True
                    break
                if nxt.hw != first.hw:  # one Work holds frames of one size
                    carry = nxt
                    break
                frames.append(nxt)
            start = time.perf_counter()
            work = self.processor.prepare(frames)
            elapsed = time.perf_counter() - start
            stats.stage_s["preprocess"].add(elapsed, len(frames))
            if not self._put(self.q_pre, work) or ended:
                break
        self._put(self.q_pre, END)

    def _infer(self) -> None:
        calls = InferenceQueue(self.processor, on_done=self._inferred)
        while True:
            if calls.busy and (calls.full or self.q_pre.empty()):
                calls.complete_oldest()  # nothing new to overlap with: finish what is running
                continue
            work = self._get(self.q_pre)
            if work is END:
                break
            if self._infer_tokens is not None:
                self._infer_tokens.release()
            calls.submit(work)
        while calls.busy and not self._abort.is_set():
            calls.complete_oldest()
        self._put(self.q_infer, END)

    def _inferred(self, work, elapsed: float) -> None:
        n = len(work.frames)
        self.stats.stage_s["infer"].add(elapsed, n)
        self.stats.compute_s.add(work.compute_s / n, n)
        self._put(self.q_infer, work)

    def _postprocess(self) -> None:
        while True:
            work = self._get(self.q_infer)
            if work is END:
                break
            start = time.perf_counter()
            images = self.processor.finish(work, order="bgr")
            elapsed = time.perf_counter() - start
            self.stats.stage_s["postprocess"].add(elapsed, len(images))
            for frame, sr in zip(work.frames, images):
                if not self._put(self.q_post, Output(sr, frame, frame.index)):
                    break
        self._put(self.q_post, END)

    def _sink_stage(self) -> None:
        stats, meter = self.stats, RateMeter()
        while True:
            out = self._get(self.q_post)
            if out is END:
                break
            if self._sink_done:
                continue  # the sink asked to stop (or --frames was reached): drain without writing
            start = time.perf_counter()
            if self.overlay:
                fps = meter.tick(start)
                draw_overlay(out.sr, overlay_lines(fps, (start - out.frame.t_capture) * 1000, self._watts()))
            ok = self.sink.write(out)
            now = time.perf_counter()
            if not ok:
                self._sink_done = True
                self.failed = self.failed or self.sink.stop_is_error
                self.request_stop(self.sink.stop_reason or "the sink stopped")
                continue
            stats.stage_s["sink"].add(now - start)
            stats.mark_out(out.frame.t_capture, now)
            if stats.frames_out == 1:
                self.log(f"streaming: first frame out {(now - out.frame.t_capture) * 1000:.0f} ms after capture")
            if self.max_frames is not None and stats.frames_out >= self.max_frames:
                self._sink_done = True
                self.request_stop(f"{self.max_frames} frames done")

    def _watts(self) -> float | None:
        latest = getattr(self.power, "latest_watts", None)
        return latest() if callable(latest) else None

    # -- run ------------------------------------------------------------------------------
    def _thread(self, name: str, fn) -> threading.Thread:
        def guarded():
            try:
                fn()
            except BaseException as exc:  # keep the first error; stop every stage
                if self.error is None:
                    self.error = exc
                self.abort(f"{name} failed: {exc}")

        t = threading.Thread(target=guarded, name=f"stream-{name}", daemon=True)
        t.start()
        return t

    def _open_and_warm_up(self) -> None:
        """Open the source, take one frame to learn its size, warm the backend up on that shape."""
        self.source.open()
        try:
            first = self.source.read()
        except SourceLost as exc:
            raise SourceUnavailable(f"the source opened but delivered no frame ({exc})") from None
        if first is None:
            raise UserError("the source holds no frames")
        h, w = self.processor.frame_hw(first)
        plan = self.processor.plan(h, w)
        if self.warmup:
            b = min(plan.tiles * self.batch, self.backend.batch_limit or plan.tiles * self.batch)
            self.backend.warm_up(self.warmup, (plan.tile_h, plan.tile_w), batch=b)
        if not self.source.live:
            self._first = first  # a file frame is not stale: keep it; a live one is, after the warm-up
        self._warmup_index = first.index
        self.plan = plan

    def run(self) -> RunStats:
        """Run to the end of the input, ``max_frames``, a stop or an abort; returns the stats (also on error)."""
        self.stats.backend = self.backend.describe()
        self.started = True
        try:
            self._open_and_warm_up()
            self.sink.open(self.source.fps)
        except BaseException:
            self.source.close()
            raise
        if self.power is not None:
            self.power.start()
        threads = [
            self._thread("sink", self._sink_stage),
            self._thread("postprocess", self._postprocess),
            self._thread("infer", self._infer),
            self._thread("preprocess", self._preprocess),
            self._thread("capture", self._capture),
        ]
        try:
            for t in threads:
                while t.is_alive():  # short joins: signal handlers run in this (main) thread between them
                    t.join(0.2)
        finally:
            if self.power is not None:
                self.stats.power = self._power_summary()
            try:
                self.sink.close()
            except Exception as exc:  # a close failure must not hide the run's own error or summary
                if self.error is None:
                    self.error = exc
        if self.error is not None:
            raise self.error
        return self.stats

    def _power_summary(self) -> dict:
        try:
            return self.power.stop(self.stats.frames_out)
        except Exception as exc:
            return {"error": f"power monitor failed: {exc}"}
