"""Faults an unattended device meets: the camera goes away, telemetry dies, the disk fills, a signal arrives.

Glossary (code name -> meaning):
    back-off     the delays between reconnect attempts: backoff[0], doubling, capped at backoff[1]
    gap          seconds without frames between losing the camera and getting it back (RunStats.gaps)
    ENOSPC       "No space left on device": made for real on a small tmpfs where mounting is allowed
                 (root), and injected into the image encoder's write everywhere else
    drain        after SIGINT/SIGTERM the camera finishes the frames in flight and prints its summary

tests/test_stream.py already covers, and this file does not repeat: a synthetic disconnect and the gap in the
summary at the pipeline level, a camera that never returns, a free-space check that reports "disk full", and
SIGINT/SIGTERM to a streaming camera (exit 130 / 0, summary printed).
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

import badinputs as bad  # noqa: E402
from mambalitesr import cli  # noqa: E402
from mambalitesr.runtime.backends import create_backend  # noqa: E402
from mambalitesr.runtime.stream.pipeline import Pipeline  # noqa: E402
from mambalitesr.runtime.core.processing import FrameProcessor  # noqa: E402
from mambalitesr.runtime.stream.sinks import ImageFolderSink, NullSink, VideoFileSink  # noqa: E402
from mambalitesr.runtime.core.frames import Frame  # noqa: E402
from mambalitesr.runtime.stream.sources import Source, SourceLost, SourceUnavailable  # noqa: E402
from mambalitesr.runtime.stream.synthetic import SyntheticSource  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FAKE_TEGRASTATS = REPO / "tests" / "fixtures" / "tegrastats" / "fake_tegrastats.sh"


@pytest.fixture(scope="module")
def sr_model(tmp_path_factory):
    return bad.sr_onnx(tmp_path_factory.mktemp("model") / "sr.onnx")


def _pipeline(source, sink, sr_model, **kw) -> Pipeline:
    backend = create_backend("onnxruntime", onnx=str(sr_model), threads=1)
    return Pipeline(source, FrameProcessor(backend), sink, warmup=1, log=lambda m: None, **kw)


def _main(capsys, *args):
    rc = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _hidden_or_partial(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name)


# --------------------------------------------------------------------------------------- camera loss


class FlakyCamera(Source):
    """A camera that unplugs after ``lose_after`` frames and refuses ``failures`` reopen attempts (timed)."""

    live = True
    fps = 30.0

    def __init__(self, lose_after: int, failures: int):
        self.pattern = SyntheticSource(48, 32)
        self.lose_after, self.failures = lose_after, failures
        self.attempts: list[float] = []  # time of every open() after the loss
        self.index, self.lost, self.opened = 0, False, False

    def open(self) -> None:
        if self.lost:
            self.attempts.append(time.perf_counter())
            if len(self.attempts) <= self.failures:
                raise SourceUnavailable("flaky camera: still unplugged")
        self.opened = True

    def read(self):
        if not self.opened:
            raise SourceLost("read while closed")
        if self.index == self.lose_after and not self.lost:
            self.lost, self.opened = True, False
            self.lost_at = time.perf_counter()
            raise SourceLost("cable pulled (simulated)")
        time.sleep(1 / self.fps)
        self.index += 1
        return Frame(self.pattern.pattern(self.index - 1), self.index - 1, time.perf_counter(), "bgr")

    def close(self) -> None:
        self.opened = False


def test_reconnect_backs_off_exponentially_up_to_the_cap_and_reports_the_gap(sr_model):
    first, cap, failures = 0.01, 0.04, 9
    camera = FlakyCamera(lose_after=4, failures=failures)
    pipeline = _pipeline(camera, NullSink(), sr_model, max_frames=10, backoff=(first, cap), reconnect_timeout=20)
    stats = pipeline.run()
    assert not pipeline.failed and stats.frames_out == 10
    assert len(camera.attempts) == failures + 1
    waits = np.diff([camera.lost_at] + camera.attempts)
    for i, waited in enumerate(waits):
        assert waited >= 0.8 * min(first * 2 ** i, cap), (i, waits)  # never retries faster than the schedule
    # Without the cap the 10 waits would sum to (2^10 - 1) * 10 ms = 10 s; capped they are 0.35 s.
    assert waits.sum() < 5.0, waits
    (gap,) = stats.gaps
    assert gap.attempts == failures + 1 and gap.back_at is not None and "cable pulled" in gap.reason
    assert f"reconnected after {failures + 1} attempt(s)" in stats.summary()


def test_camera_command_reports_a_gap_and_succeeds_or_gives_up_and_fails(sr_model, capsys):
    base = ["camera", "--sink", "null", "--power", "none", "--backend", "onnxruntime", "--onnx", sr_model]
    rc, out, err = _main(capsys, *base, "--source", "synthetic:48x32@50:drop_at=6:gap=0.3", "--frames", "15")
    assert rc == 0, err
    assert "1 camera gap(s)" in out and "gap 1: after frame" in out and "reconnected after" in out
    assert "source lost after frame" in err and "source back after" in err and "Traceback" not in err
    rc, out, err = _main(capsys, *base, "--source", "synthetic:48x32@50:drop_at=6:gap=30", "--reconnect-timeout", "0.5")
    assert rc == 1, err
    assert "never came back" in out and "gave up" in out and "Traceback" not in err


# ---------------------------------------------------------------------------------- telemetry death


def test_telemetry_death_mid_stream_is_said_and_the_stream_goes_on(sr_model, tmp_path, capsys):
    fake = shlex.join(["sh", str(FAKE_TEGRASTATS), str(FAKE_TEGRASTATS.parent / "xavier_legacy.txt"), "die"])
    rc, out, err = _main(capsys, "camera", "--source", "synthetic:48x32@30", "--frames", "60", "--sink", "null",
                         "--backend", "onnxruntime", "--onnx", sr_model, "--power", "tegrastats",
                         "--tegrastats-cmd", fake, "--power-interval-ms", "20", "--json", tmp_path / "s.json")
    assert rc == 0, err
    assert "warning: power telemetry lost" in err and "exited with code 3" in err  # said when it happened
    assert "60 frames out" in out and "telemetry lost" in out  # the run went on, and the summary says so
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_out"] == 60 and summary["joules_per_frame"] is None  # no J/frame from partial data


# ---------------------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A mount point factory for tmpfs of a given size; skips where mounting is not permitted."""
    mounted = []

    def make(size_kib: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        try:
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(point)],
                                  capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no mount command here, so no real full disk (the injected ENOSPC tests still run)")
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_images_sink_on_a_really_full_disk_stops_and_keeps_whole_frames(sr_model, tiny_disk, capsys):
    folder = tiny_disk(384) / "frames"
    rc, out, err = _main(capsys, "camera", "--source", "synthetic:64x48", "--sink", f"images:{folder}",
                         "--backend", "onnxruntime", "--onnx", sr_model, "--power", "none")
    assert rc == 1 and "Traceback" not in err, err
    assert "images sink stopped after" in out and "No space left on device" in out
    written = sorted(folder.iterdir())
    assert written and _hidden_or_partial(folder) == []
    for path in written:  # every file that is there is a whole frame
        assert cv2.imread(str(path)).shape == (192, 256, 3), path
    assert f"{len(written)} frames out" in out


def test_video_sink_on_a_really_full_disk_stops_and_the_video_plays(sr_model, tiny_disk):
    disk = tiny_disk(3072)
    sink = VideoFileSink(str(disk / "sr.avi"), min_free_bytes=1 << 20)
    pipeline = _pipeline(SyntheticSource(64, 48), sink, sr_model)
    stats = pipeline.run()
    assert pipeline.failed and "disk full" in stats.stop_reason
    assert sink.written == stats.frames_out > 5 and _hidden_or_partial(disk) == []
    cap = cv2.VideoCapture(str(disk / "sr.avi"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == sink.written


@pytest.fixture
def enospc_after(monkeypatch):
    """From the n-th image file on, imageio's writes put half the bytes on disk, then fail with ENOSPC."""
    import builtins

    from mambalitesr import imageio

    count = {"n": 0}

    class FillingFile:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            data = memoryview(data).cast("B")
            self.fh.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def arm(n_ok: int):
        def filling_open(path, mode="r", *args, **kw):
            fh = builtins.open(path, mode, *args, **kw)
            if "w" not in mode:
                return fh
            count["n"] += 1
            return fh if count["n"] <= n_ok else FillingFile(fh)

        monkeypatch.setattr(imageio, "open", filling_open, raising=False)  # shadows the builtin in imageio only

    return arm


def test_upscale_batch_on_a_full_disk_reports_each_and_leaves_no_partial_file(sr_model, tmp_path, capsys,
                                                                            enospc_after):
    inputs = bad.write_good_images(tmp_path / "in", 4, size=(16, 16))
    out = tmp_path / "out"
    enospc_after(1)
    rc, _, err = _main(capsys, "upscale", *inputs, "-o", out, "--backend", "onnxruntime", "--onnx", sr_model,
                       "--no-progress")
    assert rc == 1 and "Traceback" not in err, err
    assert err.count("No space left on device") == 3 and "3 of 4 input(s) failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["good_0.png"]  # the one written whole; no temporaries


def test_images_sink_stops_at_enospc_and_keeps_whole_frames(sr_model, tmp_path, enospc_after):
    enospc_after(3)
    sink = ImageFolderSink(str(tmp_path / "frames"))
    pipeline = _pipeline(SyntheticSource(48, 32), sink, sr_model, max_frames=50)
    stats = pipeline.run()
    assert pipeline.failed and "No space left on device" in stats.stop_reason and stats.frames_out == 3
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:06d}.png" for i in range(3)]


# ------------------------------------------------------------------------------------------- signals


def _default_sigint() -> None:
    # A shell's background job starts with SIGINT ignored, and Python keeps an ignored SIGINT ignored:
    # give the child the default disposition, as an interactive user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "mambalitesr", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> str:
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if needle in line or not line:
            break
    assert needle in "".join(seen), "".join(seen)
    return "".join(seen)


def test_sigterm_while_the_camera_is_gone_stops_at_once_with_the_summary(sr_model):
    proc = _spawn("camera", "--source", "synthetic:48x32@30:drop_at=8:gap=600", "--reconnect-timeout", "900",
                  "--sink", "null", "--power", "none", "--backend", "onnxruntime", "--onnx", sr_model)
    try:
        early = _wait_for_line(proc, "reconnecting")
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, early + err
    assert time.monotonic() - sent < 30  # not the 900 s reconnect timeout
    # (a loaded machine may warm up past frame 8, so the gap can follow the warm-up frame itself)
    assert "stopped: SIGTERM" in out and "gap 1: after frame" in out and "never came back" in out
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "in.avi"
    src = SyntheticSource(64, 48)
    src.open()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for _ in range(400):
        writer.write(src.read().image)
    writer.release()
    return path


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_upscale_leaves_no_partial_output(long_video, tmp_path, sig, code):
    out = tmp_path / "out"
    proc = _spawn("upscale", long_video, "-o", out / "sr.avi", "--model", "test_x4", "--threads", "1",
                  "--no-progress")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out.is_dir() and any(out.iterdir())) and proc.poll() is None:
            time.sleep(0.05)  # the temporary video appears when the first frame is written
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert ("interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)") in err and "Traceback" not in err
    assert list(out.iterdir()) == []  # neither sr.avi nor its temporary


INTERRUPT_IN_EXEC = """
import runpy
from mambalitesr.runtime import upscale_cli

def run(args):  # a Ctrl-C landing in a dataclass' exec(str), as in torch's lazy imports on the first frame
    exec("raise KeyboardInterrupt", {})

upscale_cli.run = run
runpy.run_module("mambalitesr", run_name="__main__")
"""


def test_an_interrupt_inside_a_string_exec_still_exits_130(tmp_path):
    """The flake of the SIGINT case above, made deterministic: CPython marks a KeyboardInterrupt that
    leaves a string exec as unhandled even though the CLI catches it, and under `python -m` it then
    kills the process with SIGINT (-2) after the CLI has printed "interrupted" and returned 130."""
    (tmp_path / "interrupt_in_exec.py").write_text(INTERRUPT_IN_EXEC)
    proc = subprocess.run([sys.executable, "-m", "interrupt_in_exec", "upscale", "in.png", "-o", "out.png"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "mambalitesr upscale: interrupted\n"


# ---------------------------------------------------------------------------------------------- soak


def _samples(rss, fds=None, threads=None, frames=None, every=10.0):
    from mambalitesr.benchmarks.soak import Sample

    n = len(rss)
    fds, threads = fds or [9] * n, threads or [12] * n
    frames = frames or [100 * i for i in range(n)]
    return [Sample(i * every, r, f, t, 3, fr, 0) for i, (r, f, t, fr) in enumerate(zip(rss, fds, threads, frames))]


def test_soak_verdict_catches_growth_of_memory_descriptors_threads_and_stalls():
    from mambalitesr.benchmarks.soak import judge

    flat = judge(_samples([500_000] * 3 + [400_000 + (i % 3) * 100 for i in range(30)]), warmup_s=30)
    assert flat["failures"] == [] and abs(flat["rss_drift_pct"]) < 0.1  # the warm-up's higher RSS is excluded
    leak = judge(_samples([400_000 + 1000 * i for i in range(40)]), warmup_s=30)
    assert leak["rss_drift_pct"] > 5 and "RSS drift" in leak["failures"][0]
    assert leak["rss_slope_mib_per_h"] == pytest.approx(1000 * 360 / 1024)
    assert leak["bytes_per_frame"] == pytest.approx(1000 * 1024 / 100)
    fds = judge(_samples([400_000] * 20, fds=[9] * 10 + [10] * 10), warmup_s=0)
    assert fds["failures"] == ["file descriptors grew by 1"]
    threads = judge(_samples([400_000] * 20, threads=[12] * 19 + [13]), warmup_s=0)
    assert threads["failures"] == ["threads grew by 1"]
    stalled = judge(_samples([400_000] * 20, frames=[5 * min(i, 8) for i in range(20)]), warmup_s=0)
    assert "no frame out between samples 11 time(s)" in stalled["failures"][0]
    assert judge(_samples([1, 2]), warmup_s=100)["failures"][0].startswith("only 0 sample(s)")


def test_soak_short_run_streams_samples_and_writes_its_csv(sr_model, tmp_path):
    from mambalitesr.benchmarks import soak

    args = soak._parse(["--minutes", "0.15", "--warmup-minutes", "0.05", "--every", "1", "--onnx", str(sr_model),
                        "--size", "32x24", "--fps", "30", "--csv", str(tmp_path / "s.csv")])
    samples, result, pipeline = soak.soak(args, say=lambda m: None)
    assert len(samples) >= 5 and samples[-1].frames_out > samples[0].frames_out
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]  # the .partial was renamed
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == ",".join(soak.FIELDS) and len(rows) == len(samples) + 1
    assert {"rss_drift_pct", "fd_growth", "thread_growth", "failures"} <= set(result)
    assert not pipeline.failed and "soak: time up" in pipeline.stats.stop_reason


# ------------------------------------------------------------------ every output on a full or read-only disk


@pytest.fixture
def full_disk(tiny_disk):
    """A 256 KiB tmpfs filled to leave ``free`` bytes: every output larger than that meets a real ENOSPC."""

    def make(free: int = 4096) -> Path:
        disk = tiny_disk(256)
        filler = disk / ".filler"
        total = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(filler, "wb") as fh:
            fh.write(b"\0" * max(total - free, 0))
        out = disk / "out"
        out.mkdir()
        return out

    return make


@pytest.fixture
def read_only_disk(tmp_path):
    point = tmp_path / "ro"
    point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(point)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _one_error(rc, err: str, words: str) -> None:
    assert rc not in (0, None) and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and words.lower() in lines[0].lower(), err


def _nothing_in(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir() if p.name != ".filler") == [], list(folder.iterdir())


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    return bad.write_video(tmp_path_factory.mktemp("small_video") / "in.avi", frames=6, size=(48, 32))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from mambalitesr.models.registry import create_model
    from mambalitesr.models.weights_io import save_weights

    path = tmp_path_factory.mktemp("weights") / "test_x4.safetensors"
    save_weights(create_model("test_x4", pretrained=False), path, "test_x4")
    return path


def _outputs(sr_model, small_video, weights, tmp: Path, out: Path) -> dict[str, list]:
    """What each writing subcommand is asked to write under ``out``: argv lists."""
    images = bad.write_good_images(tmp / "in", 1, size=(24, 32))
    train_images = bad.write_good_images(tmp / "train", 1, size=(128, 128))  # LR 32: the trainer's least side
    onnx = ["--backend", "onnxruntime", "--onnx", sr_model]
    cam = ["camera", "--source", "synthetic:32x24", "--frames", "3", "--power", "none", *onnx]
    return {
        "upscale image": ["upscale", images[0], "-o", out / "sr.png", *onnx, "--no-progress"],
        "upscale video": ["upscale", small_video, "-o", out / "sr.avi", *onnx, "--no-progress"],
        "camera images sink": [*cam, "--sink", f"images:{out / 'frames'}"],
        "camera file sink": [*cam, "--sink", f"file:{out / 'sr.avi'}"],
        "camera json": [*cam, "--sink", "null", "--json", out / "s.json"],
        "eval json": ["eval", "--model", "bicubic", "--data", images[0].parent, "--json", out / "r.json",
                      "--no-progress"],
        "train checkpoint": ["train", "--model", "test_x4", "--train", train_images[0].parent, "-o", out / "run",
                             "--steps", "2", "--batch", "1", "--patch", "8", "--log-every", "1"],
        "export onnx": ["export", "onnx", "--model", "test_x4", "--weights", weights, "-o", out / "m.onnx",
                        "--height", "16", "--width", "16"],
        "bench results": ["bench", "latency", "--model", f"test_x4={weights}", "--device", "testdev",
                          "--results-dir", out / "results", "--sizes", "16x16", "--batches", "1", "--backends",
                          "torch", "--torch-device", "cpu", "--warmup", "1", "--min-iters", "1", "--min-seconds",
                          "0", "--max-seconds", "0.1"],
    }


OUTPUT_KINDS = ["upscale image", "upscale video", "camera images sink", "camera file sink", "camera json",
                "eval json", "train checkpoint", "export onnx", "bench results"]


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_every_output_on_a_full_disk_is_one_line_and_leaves_no_file(kind, sr_model, small_video, weights, tmp_path,
                                                                    full_disk, capsys):
    out = full_disk(free=2048)
    argv = _outputs(sr_model, small_video, weights, tmp_path, out)[kind]
    rc, stdout, err = _main(capsys, *argv)
    assert rc not in (0, None) and "Traceback" not in err, err
    if kind == "camera images sink":  # a stream stops at the full disk and keeps whole frames (none fit here)
        assert "No space left on device" in stdout, stdout
    elif kind == "camera file sink":
        assert "disk full" in stdout or "No space left on device" in err, stdout + err
    else:
        _one_error(rc, err, "No space left on device")
    leftovers = [p for p in out.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers  # no partial file, no temporary


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_every_output_on_a_read_only_disk_is_refused_before_any_work(kind, sr_model, small_video, weights, tmp_path,
                                                                     read_only_disk, capsys):
    argv = _outputs(sr_model, small_video, weights, tmp_path, read_only_disk / "out")[kind]
    started = time.monotonic()
    rc, _, err = _main_or_exit(capsys, *argv)
    _one_error(rc, err, "read-only file system")
    assert time.monotonic() - started < 30
    assert list(read_only_disk.iterdir()) == []


def _main_or_exit(capsys, *args):
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_atomic_writes_name_the_target_and_the_cause_on_a_full_disk(full_disk):
    """The writer behind engines, sidecars, checkpoints, weights, JSON and CSV (export engine needs TensorRT,
    so this is its full-disk case here)."""
    from mambalitesr.errors import UserError
    from mambalitesr.imageio import write_bytes_atomic

    out = full_disk(free=2048)
    with pytest.raises(UserError) as err:
        write_bytes_atomic(out / "m.engine", b"\1" * 65536)
    assert str(err.value) == f"{out / 'm.engine'}: could not write (No space left on device)"
    _nothing_in(out)


# ------------------------------------------------------------------------------------ signals, twice


def test_two_sigterms_stop_training_at_once_without_a_traceback(tmp_path):
    images = bad.write_good_images(tmp_path / "in", 2, size=(32, 32))
    run = tmp_path / "run"
    proc = _spawn("train", "--model", "test_x4", "--train", images[0].parent, "-o", run, "--steps", "100000",
                  "--batch", "1", "--patch", "8", "--log-every", "1", "--threads", "1")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "log.csv").is_file() and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # 143 from our handler; -SIGTERM when a slow scheduler delivers the second signal only after the first one
    # finished the exit and Python's teardown put the default handler back (see the upscale case below)
    assert proc.returncode in (143, -signal.SIGTERM), err
    assert time.monotonic() - sent < 20 and "Traceback" not in err, err
    assert "terminated (SIGTERM)" in err or "mambalitesr train: SIGTERM again: stopped at once" in err, err
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temporary checkpoint left


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_upscale_still_leaves_no_partial_output(long_video, tmp_path, sig):
    out = tmp_path / "out"
    proc = _spawn("upscale", long_video, "-o", out / "sr.avi", "--model", "test_x4", "--threads", "1",
                  "--no-progress")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out.is_dir() and any(out.iterdir())) and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # 128 + sig from our handler; or killed by the signal itself when the second one lands in the interpreter's
    # final teardown, where Python has put the default handlers back (shells report both as 128 + sig)
    assert proc.returncode in (128 + sig, -sig), err
    assert "Traceback" not in err and list(out.iterdir()) == []


# ------------------------------------------------------------------------------------- the web viewer


def test_an_oversize_request_header_is_one_line_on_stderr(sr_model, capfd):
    """The viewer process shares the camera's stderr: a hostile request must not print a traceback there."""
    pytest.importorskip("aiohttp")
    import socket
    from urllib.parse import urlparse

    from mambalitesr.runtime.stream.registry import parse_sink

    sink = parse_sink("http://127.0.0.1:0")
    pipeline = _pipeline(SyntheticSource(32, 24, fps=10), sink, sr_model)
    import threading

    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while sink.port is None:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        url = urlparse(sink.url)
        with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
            reply = conn.recv(200)
        assert reply.split(b"\r\n")[0].endswith(b"400 Bad Request"), reply
        with socket.create_connection((url.hostname, url.port), timeout=10) as conn:  # and the server lives on
            conn.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert conn.recv(200).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)
    finally:
        pipeline.request_stop("test done")
        thread.join(60)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("viewer:")]
    assert len(lines) == 1, err


def test_a_video_that_does_not_reopen_with_every_frame_is_refused_before_the_rename(tmp_path):
    """OpenCV's VideoWriter fails silently (a full disk mid-file, a codec that writes nothing): the written
    file is reopened and counted, and one that is short never replaces the target."""
    from mambalitesr.errors import UserError
    from mambalitesr.imageio import atomic_path, check_video

    good = bad.write_video(tmp_path / "good.avi", frames=8, size=(48, 32))
    check_video(good, 8, (48, 32), good)  # a whole file passes
    target = tmp_path / "out.avi"
    with pytest.raises(UserError, match=r"out.avi: could not write the video \(wrote 8 frames of 48x32, the file "
                                        r"holds [0-7] of"):
        with atomic_path(target, check=lambda tmp: check_video(tmp, 8, (48, 32), target)) as tmp:
            bad.cut(good, 0.6, tmp)  # what a writer that hit ENOSPC leaves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.avi"]
