"""The native ONNX Runtime kernel of mambalitesr::SelectiveScan (runtime/csrc/ort_selective_scan.c) against the
reference scan, beside the Python kernel; its registration, threads entry and refusals; the library's aarch64
build (both ops; MambaMixer's own tests are in test_ort_mixer_kernel.py)."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_native_ort
from mambalitesr.errors import MissingDependency
from mambalitesr.testing import assert_close

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from mambalitesr.runtime.backends import ort_ops  # noqa: E402

SCAN_INPUTS = ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias")  # the node contract's order
GRID_INPUTS = ("u", "delta", "Bm", "Cm", "z")


def scan_inputs(K, B, D, N, H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = H * W
    return {"u": torch.randn(B, D, L, generator=g), "delta": torch.randn(B, K * D, L, generator=g) * 0.5,
            "A": -torch.rand(K * D, N, generator=g) * 2 - 0.1, "Bm": torch.randn(B, K, N, L, generator=g),
            "Cm": torch.randn(B, K, N, L, generator=g), "Dskip": torch.randn(K * D, generator=g),
            "z": torch.randn(B, D, L, generator=g), "delta_bias": torch.randn(K * D, generator=g) * 0.3}


def one_node_model(path, K, N, softplus=1):
    """A graph of one SelectiveScan node with every input a graph input (any B, D, H, W)."""
    from onnx import TensorProto, helper

    ranks = dict(zip(SCAN_INPUTS, (4, 4, 2, 5, 5, 1, 4, 1)))
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None] * r) for n, r in ranks.items()]
    node = helper.make_node("SelectiveScan", list(ranks), ["y"], domain="mambalitesr", directions=K, d_state=N,
                            delta_softplus=softplus)
    graph = helper.make_graph([node], "scan", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("mambalitesr", 1)])
    onnx.save(model, str(path))
    return path


def feeds(t, H, W):
    return {k: (v.reshape(*v.shape[:-1], H, W) if k in GRID_INPUTS else v).numpy() for k, v in t.items()}


@needs_native_ort
@pytest.mark.parametrize("K, shape", [(1, (2, 3, 4, 5, 7)), (1, (1, 16, 16, 33, 40)), (4, (1, 2, 5, 6, 3)),
                                      (4, (2, 4, 16, 9, 11))], ids=["K1-small", "K1-blocks", "K4-small", "K4-N16"])
@pytest.mark.parametrize("kernels", ["native", "python"])
def test_kernel_matches_the_reference_scan(tmp_path, K, shape, kernels):
    from mambalitesr.models.scan import selective_scan

    if kernels == "python":
        pytest.importorskip("onnxruntime_extensions")
    B, D, N, H, W = shape
    t = scan_inputs(K, B, D, N, H, W)
    want = selective_scan(*t.values(), True, directions=K, height=H, width=W, backend="ref")  # (B, D, L)
    session = ort_ops.make_session(one_node_model(tmp_path / "scan.onnx", K, N), kernels=kernels, threads=2)
    got = session.run(None, feeds(t, H, W))[0]  # (B, D, H, W)
    assert_close(got, want.reshape(B, D, H, W), what=f"{kernels} ORT kernel K={K} {shape}")


@needs_native_ort
def test_native_kernel_is_the_default_and_says_so():
    assert ort_ops.resolve_kernels("auto") == "native"
    assert ort_ops.provider() == ort_ops.NATIVE_PROVIDER


def test_without_the_native_library_auto_names_the_python_kernel_and_native_refuses(monkeypatch):
    monkeypatch.setattr(ort_ops, "native_library_path", lambda: None)
    assert ort_ops.resolve_kernels("auto") == "python"
    assert "native kernel was not built" in ort_ops.provider()
    with pytest.raises(MissingDependency, match="libonnxruntime-dev or set ORT_INCLUDE_DIR"):
        ort_ops.session_options(kernels="native")


@needs_native_ort
def test_bad_shapes_and_attributes_are_refused_with_the_contract(tmp_path):
    B, D, N, H, W = 1, 2, 4, 3, 5
    t = scan_inputs(1, B, D, N, H, W)
    session = ort_ops.make_session(one_node_model(tmp_path / "scan.onnx", 1, N), kernels="native")
    bad = feeds(t, H, W)
    bad["A"] = bad["A"][:, :3]
    with pytest.raises(Exception, match=r"A must be \(K\*D, N\) = \(2, 4\)"):
        session.run(None, bad)
    too_big = one_node_model(tmp_path / "big.onnx", 1, 65)
    with pytest.raises(Exception, match="d_state must be in 1..64"):
        ort_ops.make_session(too_big, kernels="native").run(None, feeds(scan_inputs(1, B, D, 65, H, W), H, W))


@needs_native_ort
def test_shipped_student_on_the_native_kernel_matches_the_python_kernel():
    pytest.importorskip("onnxruntime_extensions")
    from mambalitesr.runtime.backends.shipped import shipped_onnx

    path = shipped_onnx("mambalitesr_x4")
    x = np.random.default_rng(3).random((1, 3, 20, 28), dtype=np.float32)
    native = ort_ops.make_session(path, kernels="native", threads=1)
    name = native.get_inputs()[0].name
    python = ort_ops.make_session(path, kernels="python")
    assert_close(native.run(None, {name: x})[0], python.run(None, {name: x})[0], what="native vs python kernel")


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="no aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu; tests/aarch64/run.sh does)")
def test_native_kernel_cross_builds_for_aarch64(tmp_path):
    """The Jetson build of the kernel library: setup.py's flags, ONNX Runtime's header as setup.py finds it; the
    library exports RegisterCustomOps and needs nothing from ONNX Runtime at link time."""
    import runpy

    repo = Path(__file__).resolve().parent.parent
    include = runpy.run_path(str(repo / "runtime" / "csrc" / "ort_headers.py"))["include_dir"]()
    if include is None:
        pytest.skip("ONNX Runtime's C header could not be found or fetched (see the message above)")
    flags_source = re.search(r"^C_FLAGS\s*=\s*(\[.*?\])", (repo / "setup.py").read_text(), re.M | re.S).group(1)
    flags = [f for f in ast.literal_eval(flags_source) if not f.startswith("-march")]  # as tests/aarch64/run.sh
    lib = tmp_path / "libort_scan_aarch64.so"
    sources_text = re.search(r"^ORT_KERNEL_SOURCES\s*=\s*(\[.*?\])", (repo / "setup.py").read_text(), re.M | re.S)
    sources = ast.literal_eval(sources_text.group(1))  # the list setup.py builds
    subprocess.run(["aarch64-linux-gnu-gcc", *flags, "-Wall", "-Wno-psabi", "-shared", "-fPIC", f"-I{include}",
                    *[str(repo / s) for s in sources], "-o", str(lib), "-fopenmp", "-Wl,--no-undefined", "-lm"],
                   check=True, capture_output=True, text=True)
    symbols = subprocess.run(["aarch64-linux-gnu-nm", "-D", "--defined-only", str(lib)], capture_output=True,
                             text=True, check=True).stdout
    assert " T RegisterCustomOps" in symbols and " T mambalitesr_ort_abi_version" in symbols
    assert " T mlsr_selective_scan_op" in symbols and " T mlsr_mamba_mixer_op" in symbols


@needs_native_ort
def test_concurrent_runs_of_one_session_do_not_share_a_workspace(tmp_path):
    """ONNX Runtime allows concurrent Run() on one session; the kernel's one workspace is locked per call."""
    from concurrent.futures import ThreadPoolExecutor

    from mambalitesr.models.scan import selective_scan

    B, D, N, H, W = 1, 32, 16, 60, 120  # L = 7200: several blocks of the channel scan, calls long enough to overlap
    session = ort_ops.make_session(one_node_model(tmp_path / "scan.onnx", 1, N), kernels="native", threads=1)
    cases = [scan_inputs(1, B, D, N, H, W, seed=s) for s in range(6)]
    wants = [selective_scan(*t.values(), True, directions=1, height=H, width=W, backend="ref").reshape(B, D, H, W)
             for t in cases]
    with ThreadPoolExecutor(max_workers=3) as pool:
        gots = list(pool.map(lambda t: [session.run(None, feeds(t, H, W))[0] for _ in range(4)], cases))
    for seed, (runs, want) in enumerate(zip(gots, wants)):
        for got in runs:
            assert_close(got, want, what=f"case {seed} under concurrent runs")
