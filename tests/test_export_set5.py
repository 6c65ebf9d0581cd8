"""Acceptance of the export (issue 6) on real images: both ONNX forms of the shipped student
(``mambalitesr_x4`` with its models/weights) run in ONNX Runtime CPU within 1e-4 of PyTorch on every Set5
image, and the portable graph holds no Loop, Scan, Einsum or CumSum node.

Glossary (code name -> meaning / paper symbol):
    hr, lr      Set5 I_HR modcropped to s = 4, and I_LR made from it with the repository's MATLAB-compatible
                bicubic (mambalitesr.models.bicubic.downsample); fed as float32 (1, 3, h, w) in [0, 1]
    plugin      the dynamic-shape graph (one mambalitesr::SelectiveScan node per mixer, run by the
                onnxruntime-extensions kernel): every LR image runs whole, 57 x 86 (w x h) to 128 x 128
    portable    the standard-operator graph, exported once at CROP x CROP and run on the centre crop of each
                LR image (see below)
    reference   the PyTorch model with its CPU-default scan (native, the C kernel) on the very same input; a
                crop runs as its own input, since the scan is global and a crop of the whole output would differ

Why the portable form runs crops: it is fixed-size by construction. Its chunked scan pads the L = h w tokens
to a static multiple of the chunk and takes log2(chunks) doubling steps, both frozen at export, so one graph
serves one h x w, and one export of the student costs tens of CPU seconds (the slowest step here). Five
sizes would mean five exports; one export at 48 x 48, which fits inside every Set5 LR image (the narrowest,
woman, is 57 wide), runs all five images' content.

The plugin export goes through the CLI (`export onnx --scan plugin --dynamic --verify-image IMAGE`), so the
command's own check, its printed error and its metadata are tested here as well. That check runs the graph
against PyTorch with the chunked scan, here on the CROP x CROP centre of bird's LR image (the whole image
would add about 10 CPU seconds). The five images use the native scan as the reference because the chunked
scan costs 18 CPU seconds on baby alone (L = 16384). The plugin node runs that same C kernel, so for the
plugin form the five images check the graph around it (layouts, attributes, every other layer); the kernel
itself is held to the chunked scan by the export's own check and by tests/test_scan_native.py. For the
portable graph (the chunked scan as ONNX operators) the native reference is an independent implementation.

Cost, measured on the 2-core development machine while shared (load 3 to 5), at the lowest priority
(`echo 19 > /proc/self/autogroup`): 70 to 77 s wall for the whole pytest run, 54 to 61 s process CPU
(plugin export 18 to 21 s, portable export 13 to 16 s, each image 1 to 3 s); `pytest -s` prints the
breakdown. Most of it is single-threaded export, so an idle 2-core machine takes about the CPU figure.
"""
from __future__ import annotations

import contextlib
import io
import re
import resource

import numpy as np
import pytest

from conftest import SET5, native_scan_available

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from mambalitesr.models.registry import REGISTRY, create_model  # noqa: E402
from mambalitesr.models.weights_io import sha256_file  # noqa: E402
from mambalitesr.testing import assert_close  # noqa: E402
from test_onnx_export import FORBIDDEN, TOL, all_nodes  # noqa: E402 - the export tests' graph walker and bar

MODEL = "mambalitesr_x4"
SHIPPED = REGISTRY[MODEL].weights_path
IMAGES = ("baby", "bird", "butterfly", "head", "woman")
SCALE = REGISTRY[MODEL].config.scale
CROP = 48  # portable export size: inside every Set5 LR image (smallest side 57)

try:
    import onnxruntime_extensions  # noqa: F401

    HAVE_EXTENSIONS = True
except ImportError:
    HAVE_EXTENSIONS = False

pytestmark = [
    pytest.mark.skipif(not SET5.is_dir(), reason=f"shared Set5 images not found at {SET5} (set MAMBALITESR_SHARED)"),
    pytest.mark.skipif(SHIPPED is None or not SHIPPED.is_file(),
                       reason=f"shipped student weights not found at {SHIPPED}"),
]
needs_plugin_runtime = pytest.mark.skipif(not (HAVE_EXTENSIONS and native_scan_available()),
                                          reason="the plugin form runs on onnxruntime-extensions and the native "
                                          "scan library (pip install onnxruntime-extensions; pip install -e .)")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def as_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) -> float32 (1, 3, h, w) in [0, 1]."""
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top:top + size, left:left + size]


@pytest.fixture(scope="module")
def set5_lr():
    """{name: LR uint8 (h, w, 3)}: Set5 HR, modcropped, MATLAB-bicubic downsampled x4."""
    from mambalitesr.imageio import read_image
    from mambalitesr.models.bicubic import downsample, modcrop

    out = {}
    for name in IMAGES:
        path = SET5 / f"{name}.png"
        assert path.is_file(), f"Set5 is incomplete: {path} missing"
        out[name] = downsample(modcrop(read_image(path), SCALE), SCALE)
    assert min(min(lr.shape[:2]) for lr in out.values()) >= CROP
    return out


@pytest.fixture(scope="module")
def student():
    """The shipped student in PyTorch, native scan (see the module docstring)."""
    if not native_scan_available():
        pytest.skip("the PyTorch reference runs the native scan library, which is not built (pip install -e .)")
    return create_model(MODEL, scan_backend="native")


def reference(student, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return student(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def cost():
    """Wall and CPU seconds of the module, printed at its end (pytest -s shows them)."""
    import time

    start, cpu = time.perf_counter(), cpu_seconds()
    steps = {}
    yield steps
    steps["module"] = (time.perf_counter() - start, cpu_seconds() - cpu)
    print("\n" + "; ".join(f"{k}: {w:.1f} s wall, {c:.1f} s CPU" for k, (w, c) in steps.items()))


@contextlib.contextmanager
def timed(cost, what):
    import time

    start, cpu = time.perf_counter(), cpu_seconds()
    yield
    cost[what] = (time.perf_counter() - start, cpu_seconds() - cpu)


@pytest.fixture(scope="module")
def plugin_export(tmp_path_factory, set5_lr, cost):
    """(path, stdout, stderr) of `mambalitesr export onnx --scan plugin --dynamic`, checked on a crop of bird."""
    from mambalitesr.cli import main
    from mambalitesr.imageio import write_image

    root = tmp_path_factory.mktemp("set5_plugin")
    image = root / "bird_lr_crop.png"  # lossless: the export checks exactly these LR pixels
    write_image(image, centre_crop(set5_lr["bird"], CROP))
    out = root / "student_plugin.onnx"
    stdout, stderr = io.StringIO(), io.StringIO()
    with timed(cost, "plugin export"), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["export", "onnx", "--model", MODEL, "-o", str(out), "--scan", "plugin", "--dynamic",
                   "--verify-image", str(image)])
    assert rc == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def portable_export(tmp_path_factory, cost):
    from mambalitesr.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("set5_portable") / "student_portable.onnx"
    with timed(cost, "portable export"):
        report = export_onnx(MODEL, None, out, scan="portable", height=CROP, width=CROP, log=lambda m: None)
    assert report.max_abs_error <= TOL
    return out


@pytest.fixture(scope="module")
def plugin_session(plugin_export):
    from mambalitesr.runtime.backends.ort_ops import make_session

    return make_session(plugin_export[0])


@pytest.fixture(scope="module")
def portable_session(portable_export):
    return ort.InferenceSession(str(portable_export), providers=["CPUExecutionProvider"])


def check(session, student, rgb, what, cost):
    x = as_input(rgb)
    with timed(cost, what):
        got = session.run(["sr"], {"lr": x})[0]
        want = reference(student, x)
    assert got.shape == want.shape == (1, 3, SCALE * rgb.shape[0], SCALE * rgb.shape[1])
    assert_close(got, want, dtype="float32", what=f"{what} on ONNX Runtime vs PyTorch")
    err = float(np.abs(got.astype(np.float64) - want).max())
    print(f"\n{what} {rgb.shape[1]}x{rgb.shape[0]}: max |ONNX Runtime - PyTorch| = {err:.3g}")
    assert np.isfinite(got).all() and err <= TOL, f"{what}: max abs error {err:.3g} > {TOL:g}"


@needs_plugin_runtime
@pytest.mark.parametrize("name", IMAGES)
def test_plugin_form_matches_pytorch_on_whole_set5_image(plugin_session, student, set5_lr, name, cost):
    check(plugin_session, student, set5_lr[name], f"plugin {name}", cost)


@pytest.mark.parametrize("name", IMAGES)
def test_portable_form_matches_pytorch_on_set5_crop(portable_session, student, set5_lr, name, cost):
    check(portable_session, student, centre_crop(set5_lr[name], CROP), f"portable {name}", cost)


def test_portable_graph_has_no_loop_scan_einsum_or_cumsum(portable_export):
    model = onnx.load(str(portable_export))
    nodes = all_nodes(model)
    assert len(nodes) > 50  # the scan really is in the graph, as operators
    assert not {n.op_type for n in nodes} & FORBIDDEN
    assert {n.domain for n in nodes} <= {"", "ai.onnx"}


@needs_plugin_runtime
def test_plugin_export_command_checked_the_real_image_and_records_the_weights(plugin_export):
    path, stdout, stderr = plugin_export
    h = w = CROP
    found = re.search(rf"verify 2x3x{h}x{w}: max \|ONNX Runtime - PyTorch\| = (\S+)", stderr)
    assert found, stderr  # the export's own check ran on the bird crop (against the chunked scan)
    print(f"\nplugin export's own check, bird crop {w}x{h} vs chunked scan: {found.group(1)}")
    assert float(found.group(1)) <= TOL
    assert "wrote" in stdout and "SelectiveScan" in stdout
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model"] == MODEL and meta["scan"] == "plugin" and meta["dynamic"] == "1"
    assert meta["weights_sha256"] == sha256_file(SHIPPED)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert all(dims[i].dim_param for i in (0, 2, 3)) and dims[1].dim_value == 3
