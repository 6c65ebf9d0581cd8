"""First contact: the defaults a new user meets work, or say clearly what to choose.

- ``--backend`` defaults to onnxruntime when it is installed, else torch, else an error naming the extras;
  onnxruntime without ``--onnx`` runs the shipped graph.
- ``camera --sink`` defaults to a sink that can open here (window, else web viewer, else a clear error).
- ``camera`` shrinks frames larger than the backend serves whole, in the C frame path, and says so.
- ``export onnx`` defaults to the plugin form with dynamic sizes and prints its stages.
- ``bench`` defaults to the shipped student and writes to the user directory, not the checkout.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from mambalitesr.cli import main
from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.backends import options
from mambalitesr.runtime.backends.base import Backend
from mambalitesr.runtime.core.frames import Frame
from mambalitesr.runtime.core.processing import FrameProcessor, fit_size
from mambalitesr.testing import assert_close


def _parser(choices=("torch", "onnxruntime", "tensorrt")):
    p = argparse.ArgumentParser()
    options.add_backend_arguments(p, choices)
    return p


# -- the default backend --------------------------------------------------------------------------------
@pytest.mark.parametrize("present, want", [({"onnxruntime", "torch"}, "onnxruntime"), ({"torch"}, "torch"),
                                           ({"onnxruntime"}, "onnxruntime")])
def test_the_default_backend_is_onnxruntime_when_installed_and_never_an_absent_torch(monkeypatch, present, want):
    monkeypatch.setattr(options, "installed", lambda name: name in present)
    args = _parser().parse_args([])
    assert args.backend == "auto"
    opts = options.backend_options(args)
    assert args.backend == want
    if want == "onnxruntime":
        assert opts["onnx"] is None and opts["model"] is None  # the shipped graph


@pytest.mark.parametrize("argv, want", [(["--weights", "{tmp}/w.pth"], "torch"), (["--model", "test_x4"], "torch"),
                                        (["--model", "mambalitesr_x4"], "onnxruntime"),
                                        (["--onnx", "{tmp}/m.onnx"], "onnxruntime"),
                                        (["--engine", "{tmp}/m.engine"], "tensorrt"), (["--device", "cpu"], "torch")])
def test_auto_follows_the_options_that_name_a_backend(monkeypatch, tmp_path, argv, want):
    for name in ("w.pth", "m.onnx", "m.engine"):  # the options check that files exist while parsing
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setattr(options, "installed", lambda name: True)
    args = _parser().parse_args([a.format(tmp=tmp_path) for a in argv])
    options.backend_options(args)
    assert args.backend == want


def test_torch_options_without_torch_are_a_clear_error(monkeypatch):
    monkeypatch.setattr(options, "installed", lambda name: name == "onnxruntime")
    with pytest.raises(MissingDependency, match=r"--model test_x4 \(no shipped ONNX graph\) needs the torch backend"):
        options.backend_options(_parser().parse_args(["--model", "test_x4"]))


def test_no_backend_installed_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(options, "installed", lambda name: False)
    with pytest.raises(MissingDependency, match=r"mambalitesr\[onnxruntime\].*mambalitesr\[torch\]"):
        options.backend_options(_parser().parse_args([]))


def _handler_importing(module: str):
    def handler(args):
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)
    return lambda func: handler


@pytest.mark.parametrize(("module", "extra"), [("torch", "torch"), ("optuna", "study"), ("onnx.helper", "export")])
def test_a_command_importing_an_absent_extra_says_which_in_one_line(monkeypatch, capsys, module, extra):
    import mambalitesr.cli as cli

    monkeypatch.setattr(cli, "_resolve", _handler_importing(module))
    assert cli.main(["models"]) == MissingDependency.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"mambalitesr models: error: mambalitesr models needs {module.split('.')[0]} "), err
    assert f"pip install 'mambalitesr[{extra}]'" in err


def test_a_missing_module_no_extra_brings_is_a_bug_and_keeps_its_traceback(monkeypatch):
    import mambalitesr.cli as cli

    monkeypatch.setattr(cli, "_resolve", _handler_importing("mambalitesr.no_such_module"))
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        cli.main(["models"])


def test_onnxruntime_options_take_a_model_or_a_file_not_both(tmp_path):
    opts = options.backend_options(_parser().parse_args(["--backend", "onnxruntime", "--model", "mambalitesr_x4"]))
    assert opts["model"] == "mambalitesr_x4" and opts["onnx"] is None
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(UserError, match="give one"):
        options.backend_options(_parser().parse_args(["--backend", "onnxruntime", "--model", "x", "--onnx",
                                                      str(tmp_path / "m.onnx")]))


def test_a_model_without_a_shipped_graph_is_named():
    pytest.importorskip("onnxruntime")
    from mambalitesr.runtime.backends import create_backend

    with pytest.raises(UserError, match="no ONNX graph is shipped for 'dvmsr_x4'.*shipped: mambalitesr_x4"):
        create_backend("onnxruntime", model="dvmsr_x4")


@pytest.mark.parametrize("form", ["plugin", "fused"])
def test_the_shipped_graphs_run_and_match_the_torch_backend(form, monkeypatch):
    """Both shipped forms; the CPU default is the fused one when the native kernels are built."""
    pytest.importorskip("onnxruntime_extensions")
    pytest.importorskip("torch")
    from mambalitesr.runtime.backends import create_backend, ort_ops
    from mambalitesr.runtime.backends import onnxruntime_backend as ob

    if form == "fused" and ort_ops.native_library_path() is None:
        pytest.skip("the native ONNX Runtime kernels were not built (no ONNX Runtime C header at install)")
    assert ob.shipped_form("mambalitesr_x4", ["CPUExecutionProvider"]) == (
        "fused" if ort_ops.native_library_path() else "plugin")
    monkeypatch.setattr(ob, "shipped_form", lambda model, providers: form)
    ort_backend = create_backend("onnxruntime")
    name, op = ("mambalitesr_x4.onnx", "SelectiveScan") if form == "plugin" else ("mambalitesr_x4.fused.onnx",
                                                                                    "MambaMixer")
    assert f"{name} (shipped, {form} form)" in ort_backend.describe() and op in ort_backend.describe()
    assert ort_backend.fixed_hw is None and ort_backend.scale == 4  # dynamic H and W
    torch_backend = create_backend("torch", threads=1)
    x = np.random.default_rng(3).random((2, 3, 21, 34), dtype=np.float32)
    got, want = ort_backend.infer(x), torch_backend.infer(x)
    assert got.shape == want.shape == (2, 3, 84, 136)
    assert_close(got, want, what="shipped graph on onnxruntime vs the torch backend")
    assert np.abs(got - want).max() <= 1e-4


# -- the default sink -----------------------------------------------------------------------------------
def test_the_auto_sink_is_the_window_only_where_it_can_open(monkeypatch):
    from mambalitesr.runtime import camera_cli
    from mambalitesr.runtime.stream import sinks

    def no_gui(*a, **k):
        raise MissingDependency("window sink: this OpenCV 5.1 is a headless build (no GUI)")

    monkeypatch.setattr(sinks.WindowSink, "__init__", no_gui)
    monkeypatch.setattr(options, "installed", lambda name: False)
    with pytest.raises(MissingDependency, match=r"headless.*mambalitesr\[web\].*file:out.mp4.*null"):
        camera_cli.choose_sink("auto")
    monkeypatch.setattr(options, "installed", lambda name: name == "aiohttp")
    sink, note = camera_cli.choose_sink("auto")
    assert type(sink).__name__ == "WebSink" and "headless" in note and "http://localhost:8080" in note
    monkeypatch.setattr(sinks.WindowSink, "__init__", lambda self, *a, **k: None)
    sink, note = camera_cli.choose_sink("auto")
    assert isinstance(sink, sinks.WindowSink) and "GUI" in note
    sink, note = camera_cli.choose_sink("null")
    assert type(sink).__name__ == "NullSink" and note == ""


def test_the_headless_opencv_here_never_defaults_to_a_window():
    import cv2

    from mambalitesr.runtime import camera_cli

    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if not gui or gui[0].split(":", 1)[1].strip().upper() != "NONE":
        pytest.skip("this OpenCV has a GUI build")
    try:
        sink, note = camera_cli.choose_sink("auto")
    except MissingDependency as exc:
        assert "Choose --sink" in str(exc)
    else:
        assert type(sink).__name__ == "WebSink" and "no window" in note


# -- frames the backend cannot serve whole are shrunk in the C frame path --------------------------------
class _Identity(Backend):
    """x4 nearest upscale with a profile max, standing in for an engine."""

    name = "identity"

    def __init__(self, max_hw=None, fixed_hw=None):
        super().__init__()
        self.scale, self.max_hw = 4, max_hw
        if fixed_hw:
            self.input_shape = (None, 3, *fixed_hw)
        self.calls: list[tuple] = []

    def load(self):
        self.loaded = True

    def _run(self, batch):
        self.calls.append(batch.shape)
        return np.repeat(np.repeat(batch, 4, axis=2), 4, axis=3).astype(np.float32)

    def describe(self):
        return "identity"


def test_fit_size_keeps_the_aspect_inside_the_limit():
    assert fit_size(720, 1280, (480, 640)) == (360, 640)
    assert fit_size(1080, 1920, (180, 320)) == (180, 320)
    assert fit_size(480, 640, (480, 640)) == (480, 640)
    assert fit_size(90, 160, None) == (90, 160)
    assert fit_size(1000, 100, (480, 640)) == (480, 48)


@pytest.mark.parametrize("limits, want_hw, want_call", [({"max_hw": (480, 640)}, (360, 640), (1, 3, 360, 640)),
                                                         ({"fixed_hw": (180, 320)}, (180, 320), (1, 3, 180, 320))])
def test_a_720p_camera_is_shrunk_to_what_the_backend_serves_whole(limits, want_hw, want_call):
    from mambalitesr.runtime.core import framepath_ref as ref

    backend = _Identity(**limits)
    backend.load()
    said = []
    processor = FrameProcessor(backend, fit=True, log=said.append)
    image = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    out = processor.process(Frame(image, 0, 0.0, "bgr"))
    h, w = want_hw
    assert out.shape == (4 * h, 4 * w, 3) and backend.calls == [want_call]  # one call: no tiles
    assert len(said) == 1 and f"to {w}x{h}" in said[0] and f"output is {4 * w}x{4 * h}" in said[0]
    # the model saw the area average of the frame (the C path against its numpy twin), shown x4 nearest
    small = ref.downscale_ref(ref.pack_packed_ref(image, "bgr"), h, w)
    want = ref.unpack_ref(np.repeat(np.repeat(small, 4, axis=1), 4, axis=2), "bgr")
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1


def test_fitting_is_off_when_the_user_tiles_or_sizes():
    backend = _Identity(max_hw=(480, 640))
    backend.load()
    frame = Frame(np.zeros((720, 1280, 3), np.uint8), 0, 0.0)
    assert FrameProcessor(backend, fit=True, tile=64).frame_hw(frame) == (720, 1280)
    assert FrameProcessor(backend, fit=True, input_size=(320, 180)).frame_hw(frame) == (180, 320)
    assert FrameProcessor(backend).frame_hw(frame) == (720, 1280)


# -- export onnx defaults ------------------------------------------------------------------------------
def test_export_onnx_defaults_to_the_dynamic_plugin_form_and_says_what_it_does(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime_extensions")
    pytest.importorskip("torch")
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--model", "test_x4", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    for stage in ("plugin form, dynamic batch, height and width", "[1/3]", "[2/3]", "[3/3]", "verify"):
        assert stage in captured.err, captured.err
    assert "MB" in captured.out and "plugin scan" in captured.out
    model = onnx.load(str(out))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert all(dims[i].dim_param for i in (0, 2, 3))
    assert sum(n.op_type == "SelectiveScan" for n in model.graph.node) == 2  # test_x4: one per mixer


def test_export_onnx_help_states_the_portable_forms_cost(capsys):
    assert main(["export", "onnx", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "plugin (default)" in text and "GB of memory" in text and "minutes" in text


# -- bench defaults ------------------------------------------------------------------------------------
def test_bench_defaults_to_the_shipped_student_and_the_user_directory(tmp_path, monkeypatch):
    from mambalitesr.benchmarks import bench_cli
    from mambalitesr.benchmarks.results import default_results_dir

    assert bench_cli.DEFAULT_MODELS == ("mambalitesr_x4",)
    monkeypatch.setenv("MAMBALITESR_HOME", str(tmp_path / "home"))
    assert default_results_dir() == tmp_path / "home" / "bench"
    monkeypatch.chdir(tmp_path)  # a checkout's committed results must stay untouched
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    assert main(["bench", "latency", "--device", "ci", "--sizes", "16x16", "--batches", "1", "--backends",
                 "torch", "--torch-device", "cpu", "--threads", "1", "--warmup", "1", "--min-iters", "1",
                 "--min-seconds", "0", "--max-iters", "1"]) == 0
    assert (tmp_path / "home" / "bench" / "ci.json").is_file()
    assert not any((tmp_path / "benchmarks" / "results").iterdir())


# -- a fixed-shape graph tiles, and says so with the seam error it measured ------------------------------
def test_upscale_with_a_fixed_shape_graph_announces_tiles_and_their_measured_seams(tmp_path, capsys):
    import re

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime_extensions")
    pytest.importorskip("torch")
    from pathlib import Path

    from mambalitesr.export.onnx_export import export_onnx

    fixed = tmp_path / "fixed.onnx"
    export_onnx("test_x4", None, fixed, scan="plugin", height=24, width=32, log=lambda m: None)
    testcard = Path(__file__).resolve().parents[1] / "examples" / "testcard.png"
    out = tmp_path / "out.png"
    assert main(["upscale", str(testcard), "-o", str(out), "--backend", "onnxruntime", "--onnx", str(fixed),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "input is fixed at 32x24" in err and "tiles" in err
    found = re.search(r"Seam error measured on testcard.png \((\d+)x(\d+) crop\): .* up to (\d+)/255", err)
    assert found, err
    assert (int(found[1]), int(found[2])) == (80, 60)  # 2.5 tiles each way
    assert int(found[3]) > 0  # the tiny Mamba's row scan sees across tiles: the cuts show
    assert out.is_file()


def test_camera_tiling_a_fixed_shape_graph_on_request_announces_measured_seams(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime_extensions")
    pytest.importorskip("torch")
    import re

    from mambalitesr.export.onnx_export import export_onnx

    fixed = tmp_path / "fixed.onnx"
    export_onnx("test_x4", None, fixed, scan="plugin", height=24, width=32, log=lambda m: None)
    common = ["camera", "--source", "synthetic:80x60", "--backend", "onnxruntime", "--onnx", str(fixed),
              "--sink", "null", "--frames", "2", "--warmup", "1", "--power", "none"]
    assert main(common) == 0
    err = capsys.readouterr().err
    assert "80x60 frames exceed the model's fixed input 32x24" in err and "to 32x24" in err  # shrunk, not tiled
    assert main(common + ["--tile", "24"]) == 0
    err = capsys.readouterr().err
    found = re.search(r"fixed at 32x24 and tiling was asked for.* up to (\d+)/255", err)
    assert found and int(found[1]) > 0, err
