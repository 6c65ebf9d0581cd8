"""The streaming pipeline: sources, sinks, drops, reconnects, tiling, signals, the summary.

A stand-in SR model (conv -> ReLU -> conv -> pixel shuffle, optionally slowed down) keeps these fast;
the registry's tiny ``test_x4`` runs one short stream through the real network.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from mambalitesr.errors import MissingDependency, UserError  # noqa: E402
from mambalitesr.runtime.backends import create_backend  # noqa: E402
from mambalitesr.runtime.stream import sinks as sinks_module  # noqa: E402
from mambalitesr.runtime.stream.overlay import draw_overlay  # noqa: E402
from mambalitesr.runtime.stream.pipeline import Pipeline  # noqa: E402
from mambalitesr.runtime.core.processing import FrameProcessor  # noqa: E402
from mambalitesr.runtime.stream.registry import parse_sink, parse_source  # noqa: E402
from mambalitesr.runtime.stream.sinks import NullSink, Sink  # noqa: E402
from mambalitesr.runtime.stream.sources import SourceLost, VideoFileSource  # noqa: E402
from mambalitesr.runtime.stream.synthetic import SyntheticSource  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


class StandIn(torch.nn.Module):
    """Local SR model (receptive radius 2 LR pixels); ``delay_s`` sleeps per call to play a slow backend."""

    def __init__(self, scale: int = 4, delay_s: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = torch.nn.Conv2d(6, 3 * scale * scale, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.2
        self.shuffle = torch.nn.PixelShuffle(scale)
        self.delay_s = delay_s

    def forward(self, x):
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.shuffle(self.c2(torch.relu(self.c1(x))))


class Recorder(Sink):
    """Keeps the index and a copy of every frame written."""

    def __init__(self):
        self.indices, self.images = [], []

    def write(self, out):
        self.indices.append(out.index)
        self.images.append(out.sr.copy())
        return True


def _backend(delay_s=0.0, scale=4):
    return create_backend("torch", module=StandIn(scale, delay_s), threads=1)


def _run(source, sink=None, delay_s=0.0, **kw):
    pipeline = Pipeline(source, FrameProcessor(_backend(delay_s)), sink or NullSink(), warmup=1, log=lambda m: None, **kw)
    return pipeline, pipeline.run()


def _write_video(path: Path, n: int, w=64, h=48, fps=10.0) -> Path:
    src = SyntheticSource(w, h)
    src.open()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for _ in range(n):
        writer.write(src.read().image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def standin_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "standin.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(StandIn().eval(), (torch.rand(1, 3, 16, 16),), str(path), dynamo=False,
                          input_names=["lr"], output_names=["sr"], opset_version=17,
                          dynamic_axes={"lr": {0: "b", 2: "h", 3: "w"}, "sr": {0: "b", 2: "H", 3: "W"}})
    return path


# -- sources --------------------------------------------------------------------------------
def test_synthetic_pattern_is_deterministic_and_moves():
    a, b = SyntheticSource(96, 64), SyntheticSource(96, 64)
    a.open(), b.open()
    fa = [a.read().image for _ in range(3)]
    fb = [b.read().image for _ in range(3)]
    for x, y in zip(fa, fb):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(fa[0], fa[2])
    assert fa[0].shape == (64, 96, 3) and fa[0].dtype == np.uint8


def test_synthetic_source_paces_a_live_rate():
    src = parse_source("synthetic:64x48@50")
    assert src.live and src.fps == 50
    src.open()
    start = time.perf_counter()
    for _ in range(10):
        src.read()
    assert time.perf_counter() - start >= 9 / 50 * 0.9


def test_synthetic_disconnect_is_simulated():
    src = SyntheticSource(32, 32, drop_at=2, gap_s=0.2)
    src.open()
    src.read(), src.read()
    with pytest.raises(SourceLost):
        src.read()
    with pytest.raises(UserError, match="offline"):
        src.open()
    time.sleep(0.25)
    src.open()
    assert src.read().index == 2


@pytest.mark.parametrize("spec, message", [
    ("webcam", "unknown source"),
    ("csi:x", "sensor id"),
    ("synthetic:abc", "WxH"),
    ("synthetic:64x48:wat=1", "unknown option"),
    ("file:/no/such/video.mp4", "no such video"),
    ("images:/no/such/folder", "no such folder"),
])
def test_bad_source_specs(spec, message):
    with pytest.raises(UserError, match=message):
        parse_source(spec)


def test_csi_without_gstreamer_says_so():
    from mambalitesr.runtime.stream.sources import has_gstreamer

    if has_gstreamer(cv2):
        pytest.skip("this OpenCV has GStreamer")
    src = parse_source("csi:0")
    with pytest.raises(MissingDependency, match="GStreamer"):
        src.open()


def test_v4l2_missing_device():
    src = parse_source("v4l2:/dev/video99")
    with pytest.raises(UserError, match="no such device"):
        src.open()


# -- pipeline -------------------------------------------------------------------------------
def test_synthetic_to_null_30_frames():
    pipeline, stats = _run(parse_source("synthetic:64x48"), max_frames=30)
    assert stats.frames_out == 30 and stats.captured == 30 and stats.dropped == 0
    assert stats.stage_s["infer"].count == 30 and stats.end_to_end_s.count == 30
    assert stats.backend_fps > 0 and stats.pipeline_fps > 0 and not pipeline.failed
    text = stats.summary()
    for word in ("30 frames out", "p50", "p99", "end_to_end", "backend alone", "power: unavailable"):
        assert word in text


def test_outputs_equal_the_backend_on_each_frame_in_order():
    sink = Recorder()
    _run(parse_source("synthetic:40x32"), sink, max_frames=5, batch=2)
    assert sink.indices == [0, 1, 2, 3, 4]
    backend = _backend()
    ref = SyntheticSource(40, 32)
    ref.open()
    for got in sink.images:
        frame = ref.read()
        rgb = frame.image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255
        want = np.clip(backend.infer(np.ascontiguousarray(rgb))[0], 0, 1).transpose(1, 2, 0)[:, :, ::-1]
        assert np.abs(got.astype(np.float64) - want * 255).max() <= 0.5 + 1e-3


def test_live_source_drops_stale_frames_with_a_slow_backend():
    sink = Recorder()
    pipeline, stats = _run(parse_source("synthetic:64x48@60"), sink, delay_s=0.08, max_frames=8)
    assert stats.frames_out == 8
    assert stats.dropped > 10  # 60 fps in, at most ~12 fps out
    assert max(np.diff(sink.indices)) > 1  # the sink sees the newest frames, not the next ones
    # Latency stays bounded by the work, not by the run's length: a frame waits at most for the
    # inference in progress, then runs its own (plus the cheap stages).
    bound = 2 * stats.stage_s["infer"].max + 4 * stats.stage_s["postprocess"].max + 0.2
    assert stats.end_to_end_s.max < bound, (stats.end_to_end_s.samples(), bound)


def test_file_source_loses_none(tmp_path):
    video = _write_video(tmp_path / "in.avi", 12)
    sink = Recorder()
    pipeline, stats = _run(VideoFileSource(str(video)), sink, delay_s=0.03)
    assert sink.indices == list(range(12))
    assert stats.dropped == 0 and stats.captured == 12 and stats.stop_reason == "end of input"


def test_image_folder_source_takes_every_image_at_its_own_size(tmp_path):
    from mambalitesr.imageio import write_image

    for i, (w, h) in enumerate(((40, 30), (24, 24), (33, 17))):
        write_image(tmp_path / f"{i}.png", np.full((h, w, 3), 60 * i, np.uint8))
    sink = Recorder()
    pipeline, stats = _run(parse_source(f"images:{tmp_path}"), sink)
    assert sink.indices == [0, 1, 2] and stats.dropped == 0
    assert [img.shape for img in sink.images] == [(120, 160, 3), (96, 96, 3), (68, 132, 3)]


def test_camera_disconnect_reconnects_and_reports_the_gap():
    source = parse_source("synthetic:48x32:drop_at=5:gap=0.3")
    pipeline, stats = _run(source, max_frames=12, backoff=(0.05, 0.2))
    assert stats.frames_out == 12 and not pipeline.failed
    assert len(stats.gaps) == 1
    gap = stats.gaps[0]
    assert gap.after_index == 4 and gap.back_at is not None and gap.attempts >= 2 and gap.seconds >= 0.3
    assert "gap 1: after frame 4" in stats.summary()


def test_camera_that_never_comes_back_stops_the_run():
    source = SyntheticSource(48, 32, drop_at=3, gap_s=60)
    pipeline, stats = _run(source, reconnect_timeout=0.4, backoff=(0.05, 0.1))
    assert pipeline.failed and "gave up" in stats.stop_reason
    assert stats.gaps[0].back_at is None and stats.gaps[0].after_index == 2 and stats.frames_out == 3
    assert "never came back" in stats.summary()


def test_file_sink_writes_a_playable_video(tmp_path):
    out = tmp_path / "sr.mp4"
    _run(parse_source("synthetic:40x32"), parse_sink(f"file:{out}"), max_frames=10)
    assert out.is_file() and not list(tmp_path.glob(".*partial*"))
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    assert len(frames) == 10 and frames[0].shape == (128, 160, 3)


def test_disk_full_stops_cleanly_and_keeps_what_was_written(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = sinks_module.shutil.disk_usage

    def filling_up(path):
        calls["n"] += 1
        usage = real(path)
        return usage._replace(free=usage.free if calls["n"] <= 4 else 1024)

    monkeypatch.setattr(sinks_module.shutil, "disk_usage", filling_up)
    out = tmp_path / "sr.avi"
    pipeline, stats = _run(parse_source("synthetic:40x32"), parse_sink(f"file:{out}"), max_frames=20)
    assert pipeline.failed and "disk full" in stats.stop_reason and stats.frames_out == 4
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4


def test_images_sink_writes_one_png_per_frame(tmp_path):
    _run(parse_source("synthetic:40x32"), parse_sink(f"images:{tmp_path / 'out'}"), max_frames=3)
    files = sorted((tmp_path / "out").glob("*.png"))
    assert [f.name for f in files] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert cv2.imread(str(files[0])).shape == (128, 160, 3)


def test_window_sink_on_headless_opencv_is_a_missing_dependency():
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if not gui or gui[0].split(":", 1)[1].strip().upper() != "NONE":
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(MissingDependency, match="headless"):
        parse_sink("window")


def test_bad_sink_specs(tmp_path):
    for spec in ("screen", "file:", "file:out.xyz"):
        with pytest.raises(UserError):
            parse_sink(spec)


def test_overlay_draws_in_the_corner():
    img = np.full((180, 320, 3), 200, np.uint8)
    draw_overlay(img, ["30.0 fps", "12 ms latency", "power n/a"])
    assert (img[:40, :80] != 200).any() and (img[-40:, -80:] == 200).all()


def test_overlay_in_the_pipeline():
    sink = Recorder()
    _run(parse_source("synthetic:64x48"), sink, max_frames=3, overlay=True)
    plain = Recorder()
    _run(parse_source("synthetic:64x48"), plain, max_frames=3)
    assert not np.array_equal(sink.images[2][:20, :60], plain.images[2][:20, :60])
    np.testing.assert_array_equal(sink.images[2][-60:], plain.images[2][-60:])


class _SteadyPower:
    """A telemetry source reading a constant 5 W every 20 ms (the PowerSource protocol)."""

    name, exit_reason = "fake", None

    def samples(self, stop):
        from mambalitesr.runtime.power import PowerSample

        while not stop.is_set():
            yield PowerSample(time.monotonic(), 5000.0, {"VDD_IN": (5000.0, 5000.0)}, "fake")
            stop.wait(0.02)

    def close(self):
        pass


def test_power_is_integrated_over_the_run():
    from mambalitesr.runtime.power import PowerMonitor
    from mambalitesr.runtime.stream.power_link import PowerLink

    power = PowerLink(PowerMonitor(_SteadyPower(), interval_ms=20))
    sink = Recorder()
    pipeline, stats = _run(parse_source("synthetic:64x48"), sink, max_frames=10, power=power, overlay=True)
    assert stats.power["average_w"] == pytest.approx(5.0)
    assert stats.power["j_per_frame"] == pytest.approx(stats.power["energy_j"] / 10)
    assert "5.00 W average" in stats.summary() and "mJ/frame" in stats.summary()
    assert stats.to_dict()["joules_per_frame"] == stats.power["j_per_frame"]


def test_power_unavailable_is_said():
    from mambalitesr.runtime.stream.power_link import PowerLink

    pipeline, stats = _run(parse_source("synthetic:32x32"), max_frames=2, power=PowerLink(None, "--power none"))
    assert "power: unavailable (--power none)" in stats.summary() and stats.to_dict()["joules_per_frame"] is None


# -- tiling and padding against a fixed-shape backend ----------------------------------------
def test_fixed_shape_backend_tiles_large_frames_and_pads_small_ones(tmp_path):
    model = StandIn()
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(1, 3, 32, 32),), str(path), dynamo=False,
                          input_names=["lr"], output_names=["sr"], opset_version=17)
    fixed = create_backend("onnxruntime", onnx=str(path))
    whole = create_backend("torch", module=model)
    r = 2 * 4  # receptive radius (2 LR px) in SR pixels: where a tile edge or a pad can differ
    for w, h in ((100, 70), (20, 24)):
        src = SyntheticSource(max(w, 16), max(h, 16))
        src.open()
        frame = src.read()
        frame.image = np.ascontiguousarray(frame.image[:h, :w])
        tiled = FrameProcessor(fixed, overlap=8)
        plan = tiled.plan(h, w)
        got = tiled.process(frame).astype(int)
        want = FrameProcessor(whole).process(frame).astype(int)
        assert got.shape == want.shape == (4 * h, 4 * w, 3)
        mask = np.ones(got.shape[:2], bool)
        if plan.grid is not None:
            for y in plan.grid.y0[1:]:
                mask[max(0, 4 * y - r): 4 * y + r] = False
            for y in plan.grid.y0[:-1]:
                mask[max(0, 4 * (y + 32) - r): 4 * (y + 32) + r] = False
            for x in plan.grid.x0[1:]:
                mask[:, max(0, 4 * x - r): 4 * x + r] = False
            for x in plan.grid.x0[:-1]:
                mask[:, max(0, 4 * (x + 32) - r): 4 * (x + 32) + r] = False
        else:
            assert plan.padded
            mask[4 * h - r:] = False  # the pad replicates the edge where zero padding was
            mask[:, 4 * w - r:] = False
        assert np.abs(got - want)[mask].max() <= 1


def test_frame_plans_follow_the_backend_shape_limits():
    from mambalitesr.runtime.core.processing import plan_frame

    whole = plan_frame(90, 160, 4)  # dynamic backend, no tiling asked: one call
    assert whole.grid is None and not whole.padded
    fixed = plan_frame(90, 160, 4, fixed_hw=(64, 64), overlap=8)  # tiles of exactly the fixed shape
    assert (fixed.tile_h, fixed.tile_w) == (64, 64) and fixed.grid.y0 == (0, 26) and fixed.grid.x0 == (0, 56, 96)
    small = plan_frame(20, 30, 4, fixed_hw=(64, 64))  # padded up to the fixed shape
    assert small.grid is None and (small.pad_h, small.pad_w) == (64, 64)
    capped = plan_frame(90, 160, 4, max_hw=(64, 128), tile=256, overlap=8)  # a profile max caps the tile
    assert (capped.tile_h, capped.tile_w) == (64, 128) and capped.grid.count == 4
    raised = plan_frame(10, 12, 4, min_hw=(16, 16))  # below a profile min: padded
    assert raised.grid is None and (raised.pad_h, raised.pad_w) == (16, 16)


# -- the real tiny network ----------------------------------------------------------------------
def test_registry_model_streams():
    backend = create_backend("torch", model="test_x4", threads=1)
    pipeline = Pipeline(parse_source("synthetic:32x24"), FrameProcessor(backend), NullSink(), max_frames=4, warmup=1)
    stats = pipeline.run()
    assert stats.frames_out == 4 and "test_x4" in stats.summary()


# -- the command and its signals ----------------------------------------------------------------
def _camera(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "mambalitesr", "camera", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _stop_after_start(proc, sig):
    """Wait for the pipeline to be running (its banner line), let it stream a little, send ``sig``."""
    deadline = time.time() + 60
    seen = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if "streaming: first frame out" in line or not line:
            break
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return out, "".join(seen) + err


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signal_drains_prints_the_summary_and_exits(standin_onnx, sig, code):
    proc = _camera(["--source", "synthetic:64x48@30", "--backend", "onnxruntime", "--onnx", str(standin_onnx),
                    "--sink", "null", "--power", "none"])
    out, err = _stop_after_start(proc, sig)
    assert proc.returncode == code, err
    assert "summary:" in out and "power: unavailable" in out and "latency (ms)" in out
    assert f"stopped: {signal.Signals(sig).name}" in out
    assert "Traceback" not in err


def test_camera_command_bad_inputs_give_one_line_and_nonzero_exit(standin_onnx, capsys):
    from mambalitesr.cli import main

    onnx = ["--backend", "onnxruntime", "--onnx", str(standin_onnx)]
    cases = [
        (["--source", "nope", *onnx, "--sink", "null"], "unknown source"),
        (["--source", "synthetic", "--backend", "onnxruntime", "--model", "test_x4", "--sink", "null"],
         "no ONNX graph is shipped for 'test_x4'"),
        (["--source", "synthetic", "--backend", "tensorrt", "--engine", str(standin_onnx), "--sink", "null"],
         "TensorRT"),  # an existing file: the engine's own checks, then TensorRT, are what is missing
        (["--source", "synthetic", *onnx, "--sink", "null", "--frames", "0"], "argument --frames: must be >= 1"),
        (["--source", "synthetic", *onnx, "--sink", "file:out.xyz"], "unknown video container"),
        (["--source", "synthetic", *onnx, "--sink", "null", "--input-size", "64by48"], "WxH"),
    ]
    for args, message in cases:
        rc = main(["camera", *args])
        err = capsys.readouterr().err
        assert rc != 0 and message in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err


def test_camera_command_end_to_end_with_json(standin_onnx, tmp_path, capsys):
    import json

    from mambalitesr.cli import main

    rc = main(["camera", "--source", "synthetic:64x48", "--backend", "onnxruntime", "--onnx", str(standin_onnx),
               "--sink", "null", "--frames", "20", "--power", "none", "--json", str(tmp_path / "s.json"),
               "--input-size", "32x24"])
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["frames_out"] == 20 and data["dropped"] == 0 and data["backend_fps"] > 0
    assert data["latency"]["end_to_end"]["n"] == 20
    assert "20 frames out of 20 captured" in out
