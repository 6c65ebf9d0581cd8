"""Every CLI subcommand on the bad-input corpus of tests/badinputs.py: one clear message, non-zero exit, no output.

Glossary (code name -> meaning):
    corpus       the bad files, written once per module into a temporary folder (badinputs.write_*)
    refused      a run that exits non-zero, prints exactly one "error:" line naming the file or problem,
                 prints no traceback and leaves nothing in its output folder (no partial or temporary file)
    fake TRT     a stand-in ``tensorrt`` / ``pycuda`` module pair (version 10.3.0, one "Orin"): the engine and
                 plugin checks of the real code run against it; plugin libraries are dlopen()ed for real

A few runs are subprocesses (``python -m mambalitesr``: the real entry point, stderr as the user sees it);
the rest call ``mambalitesr.cli.main`` in-process, which is what ``__main__`` calls, to keep the suite fast.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
cv2 = pytest.importorskip("cv2")

import badinputs as bad  # noqa: E402  (tests/ is on sys.path under pytest's rootdir-relative import)
from mambalitesr import cli  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEVICE_GPU = {"name": "Orin", "compute_capability": "8.7"}
DEVICE_TRT = "10.3.0"


# ----------------------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    c = types.SimpleNamespace(root=root)
    c.good = bad.write_good_images(root / "good", 2)
    c.images = bad.write_bad_images(root / "images")
    c.weights = {x.name: x for x in bad.write_bad_weights(root / "weights")}
    c.onnx = {x.name: x for x in bad.write_bad_onnx(root / "onnx")}
    c.sr_onnx = bad.sr_onnx(root / "sr.onnx")
    c.engines = bad.write_bad_engines(root / "engines", DEVICE_TRT, DEVICE_GPU)
    c.plugins = bad.write_bad_plugins(root / "plugins")
    c.marker = root / "weights" / bad.MARKER_NAME
    from mambalitesr.models.registry import create_model
    from mambalitesr.models.weights_io import save_weights

    c.test_x4_weights = root / "test_x4.safetensors"  # valid: so that only the argument under test is bad
    save_weights(create_model("test_x4", pretrained=False), c.test_x4_weights, "test_x4")
    return c


def files_under(folder: Path) -> list[str]:
    """Every file (hidden temporaries included) under ``folder``; [] when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_refused(rc, err: str, words: str, out: Path | None = None) -> None:
    """Non-zero exit, one "error:" line holding ``words``, no traceback, nothing under ``out``."""
    assert rc not in (0, None), err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert words.lower() in err.lower(), (words, err)
    if out is not None:
        assert files_under(out) == [], files_under(out)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``mambalitesr ARGS`` in-process: (exit status, stdout, stderr); argparse errors count as status 2."""
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse: usage line + "error:" line, status 2
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "mambalitesr", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------- the corpus itself


def test_the_corpus_is_what_it_claims(corpus, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # read the declared size, as imageio does
    from mambalitesr.errors import UserError
    from mambalitesr.imageio import read_image

    by_name = {c.name: c for c in corpus.images}
    for name in ("bomb.png", "bomb.jpg"):
        path = by_name[name].path
        assert path.stat().st_size < 2048  # a few hundred bytes on disk...
        with Image.open(path) as im:
            assert im.size == (20000, 20000)  # ...declaring 400 Mpixel
    for case in corpus.images:
        if case.refused:
            with pytest.raises(UserError, match=None) as err:
                read_image(case.path)
            assert case.words in str(err.value) and str(case.path) in str(err.value), (case.name, err.value)
        else:
            rgb = read_image(case.path)
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, case.name
    assert not corpus.marker.exists()


def test_decoders_print_nothing_of_their_own_on_stderr(corpus):
    """libpng and OpenCV write to fd 2 directly: a subprocess shows what a user would see."""
    paths = [str(c.path) for c in corpus.images if c.refused and c.path.is_file()]
    code = ("import sys\nfrom mambalitesr.imageio import read_image\nfrom mambalitesr.errors import UserError\n"
            "for p in sys.argv[1:]:\n    try:\n        read_image(p)\n    except UserError as e:\n"
            "        print('refused', p)\n")
    proc = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count("refused") == len(paths), proc.stdout + proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


# ------------------------------------------------------------------------------------------ upscale


def test_upscale_batch_writes_the_good_reports_the_bad_and_exits_non_zero(corpus, tmp_path):
    files = [c for c in corpus.images if c.path.is_file() or c.name == "missing.png"]
    out = tmp_path / "out"
    proc = run_cli("upscale", *[c.path for c in files], *corpus.good, "-o", out, "--backend", "onnxruntime",
                   "--onnx", corpus.sr_onnx, "--no-progress")
    err = proc.stderr
    assert proc.returncode == 1 and "Traceback" not in err, err
    refused = [c for c in files if c.refused]
    for case in refused:
        lines = [line for line in err.splitlines() if f"{case.path}: error:" in line]
        assert len(lines) == 1 and case.words in lines[0], (case.name, err)
    assert f"{len(refused)} of {len(files) + len(corpus.good)} input(s) failed" in err
    written = files_under(out)
    expected = sorted([c.name for c in files if not c.refused] + [p.name for p in corpus.good])
    assert written == expected  # no partial file of a refused input, no temporary left behind
    for case in files:
        if not case.refused:
            lr = cv2.imread(str(case.path), cv2.IMREAD_UNCHANGED)
            sr = cv2.imread(str(out / case.name))
            assert sr.shape == (4 * lr.shape[0], 4 * lr.shape[1], 3), case.name


def test_upscale_refuses_an_empty_folder_argument_before_any_job(corpus, tmp_path, capsys):
    folder = next(c.path for c in corpus.images if c.name == "folder.png")  # a directory named like an image
    out = tmp_path / "out"
    rc, _, err = run_main(capsys, "upscale", corpus.good[0], folder, "-o", out, "--backend", "onnxruntime",
                          "--onnx", corpus.sr_onnx, "--no-progress")
    assert_refused(rc, err, f"{folder}: no images", out)


@pytest.mark.parametrize("name", ["random.onnx", "truncated.onnx", "zero_bytes.onnx", "grey_model.onnx",
                                  "two_inputs.onnx", "int_input.onnx", "not_upscaling.onnx"])
def test_upscale_refuses_bad_onnx(corpus, tmp_path, capsys, name):
    case = corpus.onnx[name]
    out = tmp_path / "out"
    rc, _, err = run_main(capsys, "upscale", corpus.good[0], "-o", out / "x.png", "--backend", "onnxruntime",
                          "--onnx", case.path, "--no-progress")
    assert_refused(rc, err, case.words, out)
    assert str(case.path) in err


def test_upscale_refuses_bad_weights_and_never_runs_their_code(corpus, tmp_path, capsys):
    for case in corpus.weights.values():
        out = tmp_path / case.name
        rc, _, err = run_main(capsys, "upscale", corpus.good[0], "-o", out / "x.png", "--model", "test_x4",
                              "--weights", case.path, "--no-progress")
        assert_refused(rc, err, case.words, out)
        assert str(case.path) in err
    assert not corpus.marker.exists()


def test_upscale_bad_arguments(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        (["--tile", "3"], "--tile must be"),
        (["--tile", "16", "--tile-overlap", "16"], "--tile-overlap"),
        (["--onnx", corpus.sr_onnx], "--onnx applies to --backend onnxruntime"),
        (["--model", "no_such_model"], "unknown model"),
        (["--backend", "webgpu"], "invalid choice"),
    ]
    for extra, words in cases:
        rc, _, err = run_main(capsys, "upscale", corpus.good[0], "-o", out / "x.png", "--no-progress", *extra)
        assert_refused(rc, err, words, out)
    rc, _, err = run_main(capsys, "upscale", corpus.good[0], "-o", out / "x.txt", "--no-progress")
    assert_refused(rc, err, "unknown output type", out)


# --------------------------------------------------------------------------------------------- eval


def test_eval_refuses_a_folder_with_a_bad_image_and_writes_no_json(corpus, tmp_path):
    """A fresh process: PIL's own bomb check (a traceback) is only lifted once imageio has run."""
    data = tmp_path / "data"
    data.mkdir()
    for p in corpus.good:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "a_bomb.png").write_bytes(bad.png_bomb())  # sorted first: the first file the process opens
    out = tmp_path / "out"
    proc = run_cli("eval", "--model", "bicubic", "--data", data, "--json", out / "r.json", "--no-progress")
    assert_refused(proc.returncode, proc.stderr, "a_bomb.png: declares 20000x20000 pixels", out)


def test_eval_bad_weights_folders_and_arguments(corpus, tmp_path, capsys):
    good_dir = corpus.good[0].parent
    out = tmp_path / "out"
    cases = [
        (["--model", "test_x4", "--weights", corpus.weights["code_pickle.pth"].path], "refused to load"),
        (["--model", "test_x4", "--weights", corpus.weights["wrong_config.safetensors"].path], "another config"),
        (["--model", "test_x4"], "ships no weights"),
        (["--model", "bicubic", "--scale", "0"], "--scale must be"),
        (["--model", "bicubic", "--data", tmp_path / "nowhere"], "no such folder"),
        (["--model", "bicubic", "--data", corpus.root / "onnx"], "no images"),
    ]
    for extra, words in cases:
        rc, _, err = run_main(capsys, "eval", "--data", good_dir, *extra, "--json", out / "r.json", "--no-progress")
        assert_refused(rc, err, words, out)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "t.png").write_bytes(next(c for c in corpus.images if c.name == "truncated.png").path.read_bytes())
    rc, _, err = run_main(capsys, "eval", "--model", "bicubic", "--data", truncated, "--json", out / "r.json")
    assert_refused(rc, err, "t.png: corrupt or truncated PNG", out)
    assert not corpus.marker.exists()


# -------------------------------------------------------------------------------------------- models


def test_models_bad_arguments(capsys):
    for extra, words in ((["--height", "0"], "must be positive"), (["--width", "-5"], "must be positive"),
                         (["--height", "tall"], "invalid int value")):
        rc, out, err = run_main(capsys, "models", *extra)
        assert_refused(rc, err, words)
        assert out == ""


# --------------------------------------------------------------------------------------------- train


def test_train_refuses_bad_data_weights_and_checkpoints(corpus, tmp_path, capsys):
    bad_data = tmp_path / "bad_data"
    bad_data.mkdir()
    (bad_data / "bomb.png").write_bytes(bad.png_bomb())
    good_dir = corpus.good[0].parent
    base = ["train", "--model", "test_x4", "--steps", "2", "--batch", "2", "--patch", "8", "--val-every", "1"]
    cases = [
        (["--train", bad_data], "20000x20000"),
        (["--train", good_dir, "--init", corpus.weights["wrong_shapes.pth"].path], "do not fit"),
        (["--train", good_dir, "--init", corpus.weights["code_torch_zip.pth"].path], "refused to load"),
        (["--train", good_dir, "--teacher", "dvmsr_x4", "--teacher-weights",
          corpus.weights["code_pickle.pth"].path], "refused to load"),
        (["--train", good_dir, "--steps", "0"], "steps"),
        (["--train", good_dir, "--resume"], "no checkpoint"),
    ]
    for i, (extra, words) in enumerate(cases):
        run = tmp_path / f"run{i}"
        rc, _, err = run_main(capsys, *base, "-o", run, *extra)
        assert_refused(rc, err, words, run)
    run = tmp_path / "resume_code"
    bad.write_code_checkpoint(run)
    rc, _, err = run_main(capsys, *base, "-o", run, "--train", good_dir, "--resume")
    assert_refused(rc, err, "unreadable checkpoint")
    assert files_under(run) == ["checkpoint.pt"] and not (run / bad.MARKER_NAME).exists()
    assert not corpus.marker.exists()


# -------------------------------------------------------------------------------------------- search


def test_search_refuses_missing_studies_and_bad_data(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the study's default paths are relative: keep them out of the repository
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    out = tmp_path / "out"
    bad_data = tmp_path / "bad_data"
    bad_data.mkdir()
    (bad_data / "text.png").write_text("not an image\n")
    cache = ["--teacher-cache", tmp_path / "cache"]
    cases = [
        (["report", "--storage", storage, "--out", out], "no study database"),
        (["cost", "--storage", storage], "no study database"),
        (["promote", "--storage", storage, "--steps", "10", "--train", corpus.good[0].parent, *cache],
         "no study database"),
        (["rerun", "--storage", storage, "--trial", "0", "--train", corpus.good[0].parent, *cache],
         "no study database"),
        (["run", "--storage", f"sqlite:///{tmp_path / 'run.db'}", "--trials", "1", *cache], "--train"),
        (["run", "--storage", f"sqlite:///{tmp_path / 'run.db'}", "--trials", "1", "--train", bad_data, *cache],
         "not an image file"),
        (["run", "--storage", f"sqlite:///{tmp_path / 'run.db'}", "--trials", "1", "--holdout-every", "1",
          "--train", corpus.good[0].parent, *cache], "holdout"),
    ]
    for extra, words in cases:
        rc, _, err = run_main(capsys, "search", *extra)
        assert_refused(rc, err, words, out)
    assert files_under(tmp_path / "cache") == []


# -------------------------------------------------------------------------------------- export onnx


def test_export_onnx_refuses_bad_weights_images_and_arguments(corpus, tmp_path, capsys):
    images = {c.name: c for c in corpus.images}
    out = tmp_path / "out"
    target = out / "m.onnx"
    cases = [
        (["--weights", corpus.weights["no_metadata.safetensors"].path], "no 'config'"),
        (["--weights", corpus.weights["code_pickle.pth"].path], "refused to load"),
        (["--weights", corpus.weights["truncated.safetensors"].path], "not a readable safetensors"),
        (["--verify-image", images["bomb.png"].path], "20000x20000"),
        (["--verify-image", images["text.png"].path], "not an image file"),
        (["--verify-image", images["truncated.jpg"].path], "corrupt or truncated"),
        (["--opset", "5"], "--opset must be"),
        (["--height", "8"], "both --height and --width"),
        (["--dynamic"], "plugin"),
    ]
    for extra, words in cases:
        rc, _, err = run_main(capsys, "export", "onnx", "--model", "test_x4", "-o", target, *extra)
        assert_refused(rc, err, words, out)
    out.mkdir()
    rc, _, err = run_main(capsys, "export", "onnx", "--model", "test_x4", "-o", out)
    assert_refused(rc, err, "is a directory", out)
    assert not corpus.marker.exists()


# ---------------------------------------------------------------------- engines, plugins, the fake TRT


class _FakeRegistry:
    """TensorRT's plugin registry as documented: load_library dlopen()s (None on failure); creators come from
    the library's own registration, which no library in this corpus performs."""

    def __init__(self):
        self.handles = []

    def load_library(self, path):
        try:
            self.handles.append(ctypes.CDLL(path))
        except OSError:
            return None
        return self.handles[-1]

    def get_creator(self, name, version, namespace=""):
        return None


@pytest.fixture
def fake_trt(monkeypatch):
    """``import tensorrt`` / ``import pycuda.driver`` give stand-ins; the GPU is an "Orin" (8.7)."""
    from mambalitesr import trt_runtime
    from mambalitesr.runtime.backends import engine_files as engine_module

    trt = types.ModuleType("tensorrt")
    trt.__version__ = DEVICE_TRT

    class Logger:
        WARNING, VERBOSE = 2, 4

        def __init__(self, severity):
            self.min_severity = severity

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return None  # what TensorRT returns for bytes that are not a plan of this version

    registry = _FakeRegistry()
    trt.Logger, trt.Runtime, trt.get_plugin_registry = Logger, Runtime, lambda: registry
    driver = types.ModuleType("pycuda.driver")

    class Context:
        def push(self):
            pass

        def pop(self):
            pass

        def detach(self):
            pass

    class Device:
        def __init__(self, index):
            pass

        @staticmethod
        def count():
            return 1

        def retain_primary_context(self):
            return Context()

    driver.Error, driver.init, driver.Device = RuntimeError, lambda: None, Device
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setattr(engine_module, "gpu_identity", lambda device=0: dict(DEVICE_GPU))
    monkeypatch.setattr(trt_runtime, "_logger", None, raising=False)
    monkeypatch.setattr(trt_runtime, "_loaded_plugins", {})
    return trt


def test_camera_refuses_engines_that_do_not_belong_here(corpus, tmp_path, capsys, fake_trt):
    e, p = corpus.engines, corpus.plugins
    cases = [
        ([e["no_sidecar"]], "no sidecar"),
        ([e["bad_sidecar"]], "unreadable sidecar"),
        ([e["old_tensorrt"]], "built with TensorRT 8.6.1, this is TensorRT 10.3.0"),
        ([e["garbage"]], "could not deserialize"),
        ([e["needs_plugin"]], "pass the plugin library"),
        ([e["needs_plugin"], "--plugin", p["random"]], "plugin library differs"),
        ([e["needs_plugin"], "--plugin", p["missing"]], f"{p['missing']}: no such plugin library"),
        ([tmp_path / "missing.engine"], "no such engine file"),
    ]
    if "not_plugin" in p:
        cases.append(([e["needs_plugin"], "--plugin", p["not_plugin"]], "plugin library differs"))
    for (engine, *extra), words in cases:
        rc, out, err = run_main(capsys, "camera", "--source", "synthetic:32x32", "--frames", "1", "--sink", "null",
                                "--power", "none", "--backend", "tensorrt", "--engine", engine, *extra)
        assert_refused(rc, err, words)
        assert str(engine) in err or "--plugin" in extra, err


def test_export_engine_refuses_bad_onnx_and_bad_plugins(corpus, tmp_path, capsys, fake_trt):
    out = tmp_path / "out"
    target = out / "m.engine"
    for name in ("random.onnx", "truncated.onnx", "zero_bytes.onnx"):
        rc, _, err = run_main(capsys, "export", "engine", corpus.onnx[name].path, "-o", target)
        assert_refused(rc, err, "not a readable ONNX model", out)
    p = corpus.plugins
    cases = [(p["missing"], "plugin library not found"), (p["random"], "could not load the plugin library")]
    if "not_plugin" in p:
        cases.append((p["not_plugin"], "no SelectiveScan v1 plugin creator was registered"))
    for plugin, words in cases:
        for attempt in range(2):  # a refused library must stay refused when asked again in the same process
            rc, _, err = run_main(capsys, "export", "engine", corpus.sr_onnx, "-o", target, "--plugin", plugin)
            assert_refused(rc, err, words, out)
    rc, _, err = run_main(capsys, "export", "engine", corpus.sr_onnx, "-o", target, "--min-shape", "1x3x64x64",
                          "--max-shape", "1x3x8x8")
    assert_refused(rc, err, "min <= opt <= max", out)
    rc, _, err = run_main(capsys, "export", "engine", tmp_path / "none.onnx", "-o", target)
    assert_refused(rc, err, "no such ONNX file", out)


def test_export_engine_without_tensorrt_says_what_is_missing(corpus, tmp_path):
    """The real entry point on a machine without TensorRT (skipped where it is installed)."""
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; the device checks cover building engines")
    except ImportError:
        pass
    out = tmp_path / "out"
    proc = run_cli("export", "engine", corpus.sr_onnx, "-o", out / "m.engine")
    assert_refused(proc.returncode, proc.stderr, "TensorRT Python bindings not found", out)
    assert proc.returncode == 3


# -------------------------------------------------------------------------------------------- camera


def test_camera_refuses_bad_sources_models_and_weights(corpus, tmp_path, capsys):
    bomb_dir = tmp_path / "frames"
    bomb_dir.mkdir()
    (bomb_dir / "a.png").write_bytes(bad.png_bomb())
    onnx = ["--backend", "onnxruntime", "--onnx"]
    base = ["--frames", "2", "--power", "none"]
    cases = [
        (["--source", f"images:{bomb_dir}", "--sink", "null", *onnx, corpus.sr_onnx], "20000x20000"),
        (["--source", f"images:{corpus.root / 'onnx'}", "--sink", "null", *onnx, corpus.sr_onnx], "no images"),
        (["--source", "file:" + str(corpus.onnx["random.onnx"].path), "--sink", "null", *onnx, corpus.sr_onnx],
         "random.onnx"),
        (["--source", "synthetic:32x32", "--sink", "null", *onnx, corpus.onnx["truncated.onnx"].path], "ONNX"),
        (["--source", "synthetic:32x32", "--sink", "null", *onnx, corpus.onnx["not_upscaling.onnx"].path],
         "not an SR model"),
        (["--source", "synthetic:32x32", "--sink", "null", "--backend", "torch", "--model", "test_x4",
          "--weights", corpus.weights["code_torch_zip.pth"].path], "refused to load"),
        (["--source", "synthetic:32x32", "--sink", f"images:{corpus.good[0]}", *onnx, corpus.sr_onnx],
         "not a folder"),
        (["--source", "synthetic:32x32", "--sink", "null", "--batch", "0", *onnx, corpus.sr_onnx], "--batch"),
    ]
    for extra, words in cases:
        rc, _, err = run_main(capsys, "camera", *base, *extra)
        assert_refused(rc, err, words)
    assert not corpus.marker.exists()


# --------------------------------------------------------------------------------------------- bench


def test_bench_refuses_bad_weights_data_and_arguments_and_writes_no_results(corpus, tmp_path, capsys):
    results = tmp_path / "results"
    base = ["--results-dir", results, "--device", "testdev"]
    ok = f"test_x4={corpus.test_x4_weights}"
    w = corpus.weights
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    (bomb / "a.png").write_bytes(bad.png_bomb())
    cases = [
        (["latency", "--model", f"test_x4={w['code_pickle.pth'].path}"], "refused to load"),
        (["latency", "--model", f"test_x4={w['wrong_config.safetensors'].path}"], "another config"),
        (["latency", "--model", "test_x4"], "ships no weights"),
        (["latency", "--model", ok, "--sizes", "axb"], "WxH"),
        (["latency", "--model", ok, "--batches", "0"], ">= 1"),
        (["latency", "--model", ok, "--backends", "webgpu"], "unknown webgpu"),
        (["power", "--model", f"test_x4={w['truncated.safetensors'].path}", "--power", "none"],
         "not a readable safetensors"),
        (["quality", "--model", ok, "--data", bomb], "20000x20000"),
        (["quality", "--model", ok, "--data", tmp_path / "nowhere"], "no such folder"),
        (["all", "--model", f"test_x4={w['code_torch_zip.pth'].path}"], "refused to load"),
        (["report"], "no such results file"),
    ]
    for extra, words in cases:
        rc, _, err = run_main(capsys, "bench", extra[0], *base, *extra[1:])
        assert_refused(rc, err, words, results)
    results.mkdir()
    (results / "testdev.json").write_text("{ not json")
    rc, _, err = run_main(capsys, "bench", "report", *base)
    assert_refused(rc, err, "unreadable results file")
    assert files_under(results) == ["testdev.json"]
    assert not corpus.marker.exists()


# ------------------------------------------------------------------------------------ coverage of CLI


COVERED = {"upscale", "eval", "models", "train", "search run", "search report", "search cost", "search rerun",
           "search promote",
           "export onnx", "export engine", "camera", "bench latency", "bench power", "bench quality", "bench all",
           "bench report"}


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, f"{prefix}{name} ")
                names |= nested or {f"{prefix}{name}"}
    return names


def test_every_cli_subcommand_has_bad_input_cases_here():
    missing = _subcommands(cli.build_parser()) - COVERED
    assert not missing, f"add bad-input cases for {sorted(missing)} to tests/test_bad_inputs.py, then to COVERED"
