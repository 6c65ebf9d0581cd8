"""`mambalitesr export onnx`: both scan forms export, pass onnx's checks and match PyTorch in ONNX Runtime.

Each export in the module fixtures already verified itself (the product's own check); the tests here
check again independently: a fresh ONNX Runtime session on another input against a freshly loaded model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import native_scan_available

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from mambalitesr.errors import MissingDependency  # noqa: E402
from mambalitesr.models.registry import REGISTRY, create_model  # noqa: E402
from mambalitesr.models.weights_io import save_weights, sha256_file  # noqa: E402
from mambalitesr.testing import assert_close  # noqa: E402

needs_native = pytest.mark.skipif(not native_scan_available(),
                                  reason="native scan library not built (pip install -e .)")
try:
    import onnxruntime_extensions  # noqa: F401

    HAVE_EXTENSIONS = True
except ImportError:
    HAVE_EXTENSIONS = False
needs_plugin_runtime = pytest.mark.skipif(not (HAVE_EXTENSIONS and native_scan_available()),
                                          reason="plugin form runs need onnxruntime-extensions and the native scan")

HW = (16, 20)
TOL = 1e-4
FORBIDDEN = {"Loop", "Scan", "Einsum", "CumSum"}


def all_nodes(model):
    """Every node: main graph, nested graphs of any attribute, local functions."""
    out = []

    def walk(nodes):
        for n in nodes:
            out.append(n)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g.node)
                for g in a.graphs:
                    walk(g.node)

    walk(model.graph.node)
    for fn in model.functions:
        walk(fn.node)
    return out


def random_weights(tmp_dir: Path, name: str, seed: int) -> Path:
    torch.manual_seed(seed)
    model = create_model(name, pretrained=False)
    with torch.no_grad():  # move D and the biases off their init so the scan's every input matters
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_dir / f"{name}.safetensors"
    save_weights(model, path, name)
    return path


def session(path: Path, scan: str):
    if scan == "plugin":
        from mambalitesr.runtime.backends.ort_ops import make_session

        return make_session(path)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_error(path: Path, scan: str, name: str, weights: Path, x: np.ndarray, backend: str = "chunked") -> float:
    got = session(path, scan).run(["sr"], {"lr": x})[0]
    with torch.no_grad():
        want = create_model(name, weights, scan_backend=backend).eval()(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    assert_close(got, want, what=f"{name} {scan} graph on ONNX Runtime vs PyTorch")
    return float(np.abs(got - want).max())


def lr_input(hw, batch=1, seed=1):
    return np.random.default_rng(seed).random((batch, 3) + tuple(hw), dtype=np.float32)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{(model, scan): (path, weights, report)} for the two tiny variants, both forms, at 16 x 20."""
    from mambalitesr.export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("onnx_export")
    out = {}
    for seed, name in enumerate(("test_x4", "test_xs4_x4")):
        weights = random_weights(root, name, seed)
        for scan in ("portable", "plugin"):
            if scan == "plugin" and not (HAVE_EXTENSIONS and native_scan_available()):
                continue
            path = root / f"{name}_{scan}.onnx"
            report = export_onnx(name, weights, path, scan=scan, height=HW[0], width=HW[1], log=lambda m: None)
            out[name, scan] = path, weights, report
    return out


CASES = [pytest.param("test_x4", "portable"), pytest.param("test_xs4_x4", "portable"),
         pytest.param("test_x4", "plugin", marks=needs_plugin_runtime),
         pytest.param("test_xs4_x4", "plugin", marks=needs_plugin_runtime)]


@pytest.mark.parametrize("name, scan", CASES)
def test_export_matches_pytorch_in_ort(exports, name, scan):
    path, weights, report = exports[name, scan]
    assert path.is_file() and report.max_abs_error <= TOL
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert max_error(path, scan, name, weights, lr_input(HW, seed=7)) <= TOL


@pytest.mark.parametrize("name", ["test_x4", "test_xs4_x4"])
def test_portable_graph_is_loop_free_standard_onnx(exports, name):
    model = onnx.load(str(exports[name, "portable"][0]))
    nodes = all_nodes(model)
    assert len(nodes) > 50  # the scan really is in the graph, as operators
    assert not {n.op_type for n in nodes} & FORBIDDEN
    assert {n.domain for n in nodes} <= {"", "ai.onnx"}
    assert {op.domain: op.version for op in model.opset_import}.get("", None) == 17


@needs_plugin_runtime
@pytest.mark.parametrize("name", ["test_x4", "test_xs4_x4"])
def test_plugin_graph_has_one_selective_scan_node_per_mixer(exports, name):
    cfg = REGISTRY[name].config
    model = onnx.load(str(exports[name, "plugin"][0]))
    custom = [n for n in all_nodes(model) if n.domain not in ("", "ai.onnx")]
    assert len(custom) == cfg.groups * cfg.mixers
    assert all((n.domain, n.op_type) == ("mambalitesr", "SelectiveScan") for n in custom)
    assert {op.domain: op.version for op in model.opset_import}["mambalitesr"] == 1
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in inferred.graph.value_info}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    initializers = {i.name for i in model.graph.initializer}
    B, (H, W), K, N, D = 1, HW, cfg.directions, cfg.d_state, cfg.d_inner
    want = [[B, D, H, W], [B, K * D, H, W], [K * D, N], [B, K, N, H, W], [B, K, N, H, W], [K * D],
            [B, D, H, W], [K * D]]
    A_logs = [v.numpy() for k, v in create_model(name, exports[name, "plugin"][1]).state_dict().items()
              if k.endswith("A_log")]
    for n, A_log in zip(custom, A_logs):  # graph order is mixer order
        assert {a.name: a.i for a in n.attribute} == {"directions": K, "d_state": N, "delta_softplus": 1}
        assert [shapes[i] for i in n.input] == want
        assert all(n.input[i] in initializers for i in (2, 5, 7))  # A, Dskip, delta_bias: constants
        A = onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == n.input[2]))
        np.testing.assert_allclose(A, -np.exp(A_log), rtol=1e-6)  # already -exp(A_log)


@pytest.mark.parametrize("name, scan", CASES)
def test_metadata_records_model_weights_and_form(exports, name, scan):
    path, weights, _ = exports[name, scan]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    cfg = REGISTRY[name].config
    assert meta["model"] == name and meta["scan"] == scan and meta["scale"] == str(cfg.scale)
    assert json.loads(meta["config"]) == json.loads(cfg.to_json())
    assert meta["weights_sha256"] == sha256_file(weights)
    from mambalitesr import __version__

    assert meta["mambalitesr_version"] == __version__


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    from mambalitesr.export import onnx_export

    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # any real error now fails the check
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(onnx_export.VerificationError, match="max abs error"):
        onnx_export.export_onnx("test_x4", None, out, scan="portable", height=8, width=8, log=lambda m: None)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary left behind either


@pytest.mark.parametrize("args, message", [
    (["--scan", "plugin", "--dynamic", "--height", "16", "--width", "16"], "--dynamic"),
    (["--scan", "portable", "--dynamic"], "fixed input sizes only"),
    (["--height", "16"], "both --height and --width"),
    (["--height", "0", "--width", "16"], "argument --height: must be in [8, 8192]"),
    (["--opset", "16", "--height", "16", "--width", "16"], "--opset"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, args, message):
    from mambalitesr.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--model", "test_x4", "-o", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_model_and_missing_weights_are_user_errors(tmp_path, capsys):
    from mambalitesr.cli import main

    assert main(["export", "onnx", "--model", "nope", "-o", str(tmp_path / "a.onnx")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["export", "onnx", "--model", "test_x4", "--weights", str(tmp_path / "none.safetensors"),
                 "-o", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert "argument --weights:" in err and "no such file" in err


@needs_plugin_runtime
def test_cli_plugin_dynamic_runs_at_other_sizes(tmp_path, capsys):
    from mambalitesr.cli import main

    from mambalitesr.export.onnx_export import test_pattern
    from mambalitesr.imageio import write_image

    weights = random_weights(tmp_path, "test_xs4_x4", 3)
    image = tmp_path / "small.png"  # the trace and first check run at the verify image's size
    write_image(image, test_pattern(18, 22))
    out = tmp_path / "dyn.onnx"
    assert main(["export", "onnx", "--model", "test_xs4_x4", "--weights", str(weights), "-o", str(out),
                 "--scan", "plugin", "--dynamic", "--verify-image", str(image)]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "verify 2x3x18x22" in captured.err  # two sizes checked at export
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][1] == 3 and all(dims[i].dim_param for i in (0, 2, 3))
    for hw, batch in (((12, 28), 3), ((24, 10), 1)):
        assert max_error(out, "plugin", "test_xs4_x4", weights, lr_input(hw, batch)) <= TOL


@needs_native
def test_ort_kernel_matches_the_reference_scan():
    pytest.importorskip("onnxruntime_extensions")
    from mambalitesr.runtime.backends.ort_ops import selective_scan_node
    from mambalitesr.models.scan import selective_scan

    g = torch.Generator().manual_seed(0)
    for K, (B, D, N, H, W) in ((1, (2, 3, 4, 5, 7)), (4, (1, 2, 5, 6, 3))):
        t = {
            "u": torch.randn(B, D, H * W, generator=g), "delta": torch.randn(B, K * D, H * W, generator=g),
            "A": -torch.rand(K * D, N, generator=g) - 0.1, "Bm": torch.randn(B, K, N, H * W, generator=g),
            "Cm": torch.randn(B, K, N, H * W, generator=g), "Dskip": torch.randn(K * D, generator=g),
            "z": torch.randn(B, D, H * W, generator=g), "delta_bias": torch.randn(K * D, generator=g),
        }
        want = selective_scan(*t.values(), True, directions=K, height=H, width=W, backend="ref")
        grid = {k: (v.reshape(*v.shape[:-1], H, W) if k in ("u", "delta", "Bm", "Cm", "z") else v).numpy()
                for k, v in t.items()}
        got = selective_scan_node(*grid.values(), directions=K, d_state=N, delta_softplus=1)
        np.testing.assert_allclose(got, want.reshape(B, D, H, W).numpy(), rtol=1e-5, atol=1e-5)


def test_missing_native_library_is_a_missing_dependency(monkeypatch):
    pytest.importorskip("onnxruntime_extensions")
    from mambalitesr.models import scan_lib
    from mambalitesr.runtime.backends import ort_ops

    monkeypatch.setattr(ort_ops, "_registered", False)
    monkeypatch.setattr(scan_lib.LIBRARY, "lib", None)
    monkeypatch.setattr(scan_lib.LIBRARY, "path", lambda: None)
    with pytest.raises(MissingDependency, match="native scan library"):
        ort_ops.register_kernels()


@pytest.mark.parametrize("scan", ["portable", pytest.param("plugin", marks=needs_plugin_runtime)])
def test_student_architecture_exports_both_forms(tmp_path, scan):
    """Acceptance: the shipped student's architecture (random weights) at 48 x 64."""
    from mambalitesr.export.onnx_export import export_onnx

    weights = random_weights(tmp_path, "mambalitesr_x4", 11)
    out = tmp_path / f"student_{scan}.onnx"
    report = export_onnx("mambalitesr_x4", weights, out, scan=scan, height=48, width=64, log=lambda m: None)
    assert report.max_abs_error <= TOL and out.is_file()
    cfg = REGISTRY["mambalitesr_x4"].config
    scans = report.node_counts.get("mambalitesr::SelectiveScan", 0)
    assert scans == (cfg.groups * cfg.mixers if scan == "plugin" else 0)
    # Against the other implementation: the C kernel for the chunked-scan graph, the chunked scan for the node.
    backend = "native" if scan == "portable" and native_scan_available() else "chunked"
    assert max_error(out, scan, "mambalitesr_x4", weights, lr_input((48, 64), seed=5), backend) <= TOL


def test_verify_image_of_another_size_is_area_resized_to_the_fixed_size(tmp_path, capsys):
    """The shipped student on the Set5 images (both forms, CLI check, metadata): tests/test_export_set5.py."""
    from mambalitesr.cli import main
    from mambalitesr.export.onnx_export import test_pattern
    from mambalitesr.imageio import write_image

    image = tmp_path / "big.png"
    write_image(image, test_pattern(20, 26))
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--model", "test_x4", "-o", str(out), "--height", "8", "--width", "10",
                 "--verify-image", str(image)]) == 0
    err = capsys.readouterr().err
    assert "area-resized to the export size 10x8" in err and "verify 1x3x8x10: max |ONNX Runtime - PyTorch|" in err
    assert out.is_file()
