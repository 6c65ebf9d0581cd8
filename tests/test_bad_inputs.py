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
import json
import os
import subprocess
import sys
import time
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
        (["--tile", "3"], "argument --tile: must be 0 (no tiling) or at least 8"),
        (["--tile", "16", "--tile-overlap", "16"], "--tile-overlap"),
        (["--backend", "torch", "--onnx", corpus.sr_onnx], "--onnx applies to --backend onnxruntime"),
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
        (["--model", "bicubic", "--scale", "0"], "argument --scale: must be in [1, 8]"),
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
    for extra, words in ((["--height", "0"], "argument --height: must be in [1, 8192]"),
                         (["--width=-5"], "argument --width: must be in [1, 8192]"),
                         (["--height", "tall"], "expected an integer")):
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
        (["--opset", "5"], "argument --opset: must be in [17, 23]"),
        (["--height", "8"], "both --height and --width"),
        (["--dynamic", "--scan", "portable"], "plugin"),
    ]
    for extra, words in cases:
        rc, _, err = run_main(capsys, "export", "onnx", "--model", "test_x4", "-o", target, *extra)
        assert_refused(rc, err, words, out)
    out.mkdir()
    rc, _, err = run_main(capsys, "export", "onnx", "--model", "test_x4", "-o", out)
    assert_refused(rc, err, "is a folder; give a file name", out)
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
        ([e["needs_plugin"], "--plugin", p["missing"]], f"{p['missing']}: no such file"),
        ([tmp_path / "missing.engine"], "missing.engine: no such file"),
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
    cases = [(p["missing"], "argument --plugin"), (p["random"], "could not load the plugin library")]
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
    assert_refused(rc, err, "none.onnx: no such file", out)


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
        (["latency", "--model", ok, "--batches", "0"], "argument --batches: must be in [1, 1024]"),
        (["latency", "--model", ok, "--backends", "webgpu"], "unknown webgpu"),
        (["power", "--model", f"test_x4={w['truncated.safetensors'].path}", "--power", "none"],
         "not a readable safetensors"),
        (["quality", "--model", ok, "--data", bomb], "20000x20000"),
        (["quality", "--model", ok, "--data", tmp_path / "nowhere"], "no such folder"),
        (["all", "--model", f"test_x4={w['code_torch_zip.pth'].path}"], "refused to load"),
        (["report"], "no such results file"),
        (["peers", "--model", "test_x4", "--peer", "fsrcnn", "--sizes", "16x16"], "ships no weights"),
        (["peers", "--model", ok, "--peer", "edsr"], "--peer"),
        (["peers", "--model", ok, "--repeats", "0"], "argument --repeats: must be in [1, 1000]"),
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


# export triton, bench serve and serve: their typed arguments are in the generated corpus below
COVERED = {"upscale", "eval", "models", "train", "export triton", "bench serve", "serve", "search run", "search report", "search cost", "search rerun",
           "search promote",
           "export onnx", "export engine", "camera", "bench latency", "bench power", "bench quality", "bench all",
           "bench report", "bench peers"}


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


# ------------------------------------------------------------- generated: every typed argument, every command


def _arg_cases():
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mlsr-badargs-"))  # made at collection: the case ids name the values
    return bad.argument_cases(cli.build_parser(), bad.write_bad_paths(folder))


ARG_CASES = _arg_cases()
PARSER = cli.build_parser()  # one parser for every case: building it is most of a case's time


@pytest.mark.parametrize("case", ARG_CASES, ids=str)
def test_every_bad_argument_value_is_refused_at_parse_time(case, capsys):
    """One line naming the option, status 2, before any work (no file opened, so a FIFO cannot block it)."""
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        PARSER.parse_args(case.argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, (case, err)
    assert time.monotonic() - started < 10, case
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, (str(case), err)
    assert case.option in lines[0], (str(case), err)
    err.encode("utf-8")  # printable: an undecodable file name is escaped, never a UnicodeEncodeError


def test_the_generated_argument_corpus_covers_every_subcommand():
    """Every leaf subcommand has typed arguments in the corpus; the counts are printed for the report."""
    by_command: dict[str, int] = {}
    for case in ARG_CASES:
        by_command[" ".join(case.command)] = by_command.get(" ".join(case.command), 0) + 1
    print("generated bad-argument cases per subcommand:", json.dumps(by_command, sort_keys=True))
    leaves = {" ".join(words) for words, _ in bad.subcommands(cli.build_parser())}
    assert leaves - {"search report", "search cost"} <= set(by_command), leaves - set(by_command)


def test_the_issue_examples_fail_at_parse_time(capsys):
    examples = [  # the option under test first: argparse reports the first bad argument it meets
        (["train", "--workers", "-1", "--train", "x", "-o", "y"], "--workers"),
        (["upscale", "--threads", "-2", "a.png", "-o", "b.png"], "--threads"),
        (["train", "--lr", "nan", "--train", "x", "-o", "y"], "--lr"),
        (["eval", "--device", "banana", "--model", "bicubic", "--data", "x"], "--device"),
        (["camera", "--power-interval-ms", "0"], "--power-interval-ms"),
        (["camera", "--input-size", "100000x100000"], "--input-size"),
        (["export", "onnx", "--height", "100000", "--width", "100000", "-o", "m.onnx"], "--height"),
    ]
    for argv, option in examples:
        rc, out, err = run_main(capsys, *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and option in err and "Traceback" not in err, err


# ----------------------------------------------------------------------------- inputs that are not files


@pytest.fixture(scope="module")
def specials(tmp_path_factory):
    return bad.write_special_files(tmp_path_factory.mktemp("special"))


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_upscale_refuses_inputs_that_are_not_regular_files_without_opening_them(corpus, specials, tmp_path, kind):
    out = tmp_path / "out"
    proc = run_cli("upscale", specials[kind], corpus.good[0], "-o", out, "--backend", "onnxruntime", "--onnx",
                   corpus.sr_onnx, "--no-progress", timeout=120)
    err = proc.stderr
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "not a regular file" in err or "is a " in err, err
    assert "1 of 2 input(s) failed" in err and files_under(out) == ["good_0.png"]


def test_camera_refuses_a_fifo_file_source(corpus, specials, tmp_path, capsys):
    rc, _, err = run_main(capsys, "camera", "--source", f"file:{specials['fifo']}", "--sink", "null", "--power", "none",
                          "--backend", "onnxruntime", "--onnx", corpus.sr_onnx, "--frames", "1")
    assert_refused(rc, err, "FIFO")


# ------------------------------------------------------------------------------------------------ videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    cases = bad.write_bad_videos(tmp_path_factory.mktemp("videos"))
    return {c.name: c for c in cases}


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def test_the_video_corpus_is_what_it_claims(videos):
    truncated = videos["truncated.avi"].path
    cap = cv2.VideoCapture(str(truncated))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()
    assert 0 < _frames(truncated) < 12


def test_upscale_refuses_each_bad_video_and_goes_on(corpus, videos, tmp_path):
    """In a subprocess: a non-UTF-8 name handed to OpenCV would be a segmentation fault, not an exit status."""
    out = tmp_path / "out"
    proc = run_cli("upscale", *[c.path for c in videos.values()], corpus.good[0], "-o", out, "--model", "test_x4",
                   "--threads", "1", "--no-progress", timeout=300)
    err = proc.stderr
    assert proc.returncode == 1 and "Traceback" not in err, err
    for case in videos.values():
        shown = os.fsencode(case.path.name).decode("utf-8", "backslashreplace")  # as printed
        lines = [ln for ln in err.splitlines() if "error:" in ln and case.words in ln and shown in ln]
        assert len(lines) == 1, (case.name, err)
    assert f"{len(videos)} of {len(videos) + 1} input(s) failed" in err
    assert files_under(out) == ["good_0.png"]


def test_upscale_allow_truncated_writes_what_decoded_and_names_the_missing_frames(videos, tmp_path, capsys):
    src = videos["truncated.avi"].path
    got = _frames(src)
    out = tmp_path / "sr.avi"
    rc, _, err = run_main(capsys, "upscale", src, "-o", out, "--model", "test_x4", "--threads", "1", "--no-progress",
                          "--allow-truncated")
    assert rc == 0, err
    assert f"warning: {src}: decoded {got} of the 12 frames" in err and f"frames {got}..11 missing" in err
    assert _frames(out) == got


def test_camera_file_source_refuses_a_truncated_video(corpus, videos, capsys):
    base = ["camera", "--source", f"file:{videos['truncated.avi'].path}", "--sink", "null", "--power", "none",
            "--backend", "onnxruntime", "--onnx", corpus.sr_onnx]
    rc, out, err = run_main(capsys, *base)
    assert rc not in (0, None) and "of the 12 frames" in err and "Traceback" not in err, err
    rc, out, err = run_main(capsys, *base, "--allow-truncated")
    assert rc == 0 and "warning:" in err and "missing" in err, err


# ------------------------------------------------------------------------------- images: EXIF and limits


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    from PIL import Image, ImageOps

    from mambalitesr.imageio import read_image

    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(bad.exif_jpeg(bad.pattern(24, 40), orientation))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    assert got.shape == expected.shape, (orientation, got.shape, expected.shape)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 3  # two JPEG decoders may round apart


def test_image_limits_come_from_the_option_or_the_environment(corpus, tmp_path):
    big = corpus.good[0]  # 48x40 = 1920 pixels
    out = tmp_path / "out"
    common = ["--backend", "onnxruntime", "--onnx", corpus.sr_onnx, "--no-progress"]
    proc = run_cli("upscale", big, "-o", out / "a.png", *common, "--max-image-pixels", "1000")
    assert_refused(proc.returncode, proc.stderr, "over the limit of 1000", out)
    env_proc = subprocess.run([sys.executable, "-m", "mambalitesr", "upscale", str(big), "-o", str(out / "b.png"),
                               *map(str, common)], cwd=REPO, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, MAMBALITESR_MAX_IMAGE_PIXELS="1000"))
    assert_refused(env_proc.returncode, env_proc.stderr, "over the limit of 1000", out)


def test_a_huge_sparse_image_is_refused_by_its_size_and_the_batch_goes_on(corpus, tmp_path):
    sparse = bad.sparse_image(tmp_path / "huge.png")
    out = tmp_path / "out"
    proc = run_cli("upscale", sparse, corpus.good[0], "-o", out, "--backend", "onnxruntime", "--onnx",
                   corpus.sr_onnx, "--no-progress")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "huge.png: 4096 MiB, over the limit of 512 MiB" in proc.stderr
    assert files_under(out) == ["good_0.png"]


# ------------------------------------------------------------------------- registry models without weights


@pytest.mark.parametrize("command", [
    ["upscale", "IN", "-o", "OUT/x.png"],
    ["camera", "--source", "synthetic:32x32", "--sink", "null", "--power", "none", "--frames", "1", "--backend", "torch"],
    ["export", "onnx", "-o", "OUT/m.onnx"],
])
def test_a_model_without_weights_never_runs_with_random_ones(corpus, tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = [str(corpus.good[0]) if a == "IN" else a.replace("OUT", str(out)) for a in command]
    rc, _, err = run_main(capsys, *argv, "--model", "mambalitesr_x3")
    assert_refused(rc, err, "mambalitesr_x3 ships no weights; give --weights PATH", out)


# ------------------------------------------------------------------------------ outputs: overwrite, meaning


def test_outputs_are_never_replaced_without_overwrite(corpus, tmp_path, capsys):
    existing = tmp_path / "x.png"
    existing.write_bytes(b"keep me")
    onnx = ["--backend", "onnxruntime", "--onnx", corpus.sr_onnx, "--no-progress"]
    rc, _, err = run_main(capsys, "upscale", corpus.good[0], "-o", existing, *onnx)
    assert_refused(rc, err, "already exists; pass --overwrite")
    assert existing.read_bytes() == b"keep me"
    rc, _, err = run_main(capsys, "upscale", corpus.good[0], "-o", existing, *onnx, "--overwrite")
    assert rc == 0 and cv2.imread(str(existing)).shape == (160, 192, 3), err
    json_out = tmp_path / "r.json"
    json_out.write_text("{}")
    for argv in (["eval", "--model", "bicubic", "--data", corpus.good[0].parent, "--json", json_out, "--no-progress"],
                 ["camera", "--source", "synthetic:32x32", "--frames", "1", "--sink", "null", "--power", "none",
                  "--backend", "onnxruntime", "--onnx", corpus.sr_onnx, "--json", json_out],
                 ["export", "onnx", "--model", "test_x4", "-o", json_out]):
        rc, _, err = run_main(capsys, *argv)
        assert_refused(rc, err, "already exists; pass --overwrite")
        assert json_out.read_text() == "{}"


def test_one_file_name_for_several_inputs_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc, _, err = run_main(capsys, "upscale", *corpus.good, "-o", out, "--backend", "onnxruntime", "--onnx",
                          corpus.sr_onnx, "--no-progress")
    assert_refused(rc, err, "one file name for 2 inputs")
    assert not out.exists()


# ----------------------------------------------------------------------------------------- train, early


def test_train_refuses_a_bad_val_folder_before_training(corpus, tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    (val / "text.png").write_text("not an image\n")
    run = tmp_path / "run"
    started = time.monotonic()
    rc, _, err = run_main(capsys, "train", "--model", "test_x4", "--train", corpus.good[0].parent, "--val", val,
                          "-o", run, "--steps", "100000", "--batch", "2", "--patch", "8")
    assert_refused(rc, err, "text.png: not an image file")
    assert time.monotonic() - started < 30 and not (run / "checkpoint.pt").exists()


def test_train_resume_with_a_checkpoint_of_another_structure_is_one_line(corpus, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 1, "train_config": "{}", "student": {}}, run / "checkpoint.pt")
    rc, _, err = run_main(capsys, "train", "--model", "test_x4", "--train", corpus.good[0].parent, "-o", run,
                          "--steps", "2", "--batch", "2", "--patch", "8", "--resume")
    assert_refused(rc, err, "--resume: the checkpoint was made with")
    torch.save({"step": 1}, run / "checkpoint.pt")
    rc, _, err = run_main(capsys, "train", "--model", "test_x4", "--train", corpus.good[0].parent, "-o", run,
                          "--steps", "2", "--batch", "2", "--patch", "8", "--resume")
    assert_refused(rc, err, "not a checkpoint of this run's model and trainer")
