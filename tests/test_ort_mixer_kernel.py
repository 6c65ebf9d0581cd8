"""The native ONNX Runtime kernel of mambalitesr::MambaMixer (runtime/csrc/ort_mamba_mixer.c) against its
PyTorch reference twin (models/mixer_fused.fused_core_reference); its refusals, its lock, and the fused form
of the export and the runtime."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_native_ort
from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.testing import assert_close

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from mambalitesr.export.onnx_mixer_node import INPUT_RANKS, NODE_DOMAIN, NODE_OP_TYPE  # noqa: E402
from mambalitesr.models.mixer_fused import NODE_INPUTS, fused_core_reference  # noqa: E402
from mambalitesr.runtime.backends import ort_ops  # noqa: E402



def core_inputs(B, Ci, Co, D, N, R, Kc, H, W, seed=0):
    """Random node inputs; a in (B, Ci, L), the way fused_core_reference takes it."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=1.0):
        return torch.randn(*shape, generator=g) * s

    return {"a": r(B, Ci, H * W), "w_in": r(2 * D, Ci, s=Ci**-0.5), "conv_w": r(D, Kc, s=0.5), "conv_b": r(D, s=0.1),
            "w_x": r(R + 2 * N, D, s=D**-0.5), "w_dt": r(D, R, s=0.5), "dt_bias": r(D, s=0.3) - 2.0,
            "A": -torch.rand(D, N, generator=g) * 2 - 0.1, "Dskip": r(D), "w_out": r(Co, D, s=D**-0.5)}


def one_node_model(path):
    """A graph of one MambaMixer node with every input a graph input (any sizes)."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None] * r) for n, r in zip(NODE_INPUTS, INPUT_RANKS)]
    node = helper.make_node(NODE_OP_TYPE, list(NODE_INPUTS), ["y"], domain=NODE_DOMAIN)
    graph = helper.make_graph([node], "mixer", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(NODE_DOMAIN, 1)])
    onnx.save(model, str(path))
    return path


def feeds(t, H, W):
    a = t["a"]
    return {k: (a.reshape(a.shape[0], a.shape[1], H, W) if k == "a" else v).numpy() for k, v in t.items()}


@needs_native_ort
@pytest.mark.parametrize("sizes", [
    # B, Ci, Co, D, N, R, Kc, H, W
    (2, 3, 5, 6, 4, 1, 3, 4, 7),        # odd sizes everywhere
    (1, 16, 16, 64, 16, 2, 4, 33, 40),  # the student's shapes (low-rank W_in / W_out), L > one 1024-token block
    (1, 60, 60, 120, 16, 4, 4, 9, 11),  # the teacher's (full-rank W_in / W_out)
], ids=["odd", "student", "teacher"])
def test_kernel_matches_the_reference_core(tmp_path, sizes):
    B, Ci, Co, D, N, R, Kc, H, W = sizes
    t = core_inputs(*sizes)
    want = fused_core_reference(*t.values(), height=H, width=W, scan_backend="ref")  # (B, Co, L)
    session = ort_ops.make_session(one_node_model(tmp_path / "mixer.onnx"), kernels="native", threads=2)
    got = session.run(None, feeds(t, H, W))[0]  # (B, Co, H, W)
    assert_close(got, want.reshape(B, Co, H, W), what=f"native MambaMixer kernel {sizes}")


@needs_native_ort
def test_bad_shapes_are_refused_with_the_contract(tmp_path):
    H, W = 3, 5
    t = core_inputs(1, 4, 4, 6, 4, 2, 4, H, W)
    session = ort_ops.make_session(one_node_model(tmp_path / "mixer.onnx"), kernels="native")
    bad = feeds(t, H, W)
    bad["w_in"] = bad["w_in"][:, :3]
    with pytest.raises(Exception, match=r"w_in must be \(2D, Ci\) = \(12, 4\)"):
        session.run(None, bad)
    bad = feeds(t, H, W)
    bad["w_x"] = bad["w_x"][:-1]
    with pytest.raises(Exception, match=r"w_x must be \(R \+ 2N, D\) = \(10, 6\)"):
        session.run(None, bad)
    big = feeds(core_inputs(1, 4, 4, 6, 65, 2, 4, H, W), H, W)
    with pytest.raises(Exception, match="d_state must be in 1..64, got 65"):
        session.run(None, big)


@needs_native_ort
def test_concurrent_runs_of_one_session_do_not_share_a_workspace(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    H, W = 40, 90  # L = 3600: several blocks, calls long enough to overlap
    session = ort_ops.make_session(one_node_model(tmp_path / "mixer.onnx"), kernels="native", threads=1)
    cases = [core_inputs(1, 16, 16, 32, 16, 2, 4, H, W, seed=s) for s in range(6)]
    wants = [fused_core_reference(*t.values(), height=H, width=W).reshape(1, 16, H, W) for t in cases]
    with ThreadPoolExecutor(max_workers=3) as pool:
        gots = list(pool.map(lambda t: [session.run(None, feeds(t, H, W))[0] for _ in range(3)], cases))
    for seed, (runs, want) in enumerate(zip(gots, wants)):
        for got in runs:
            assert_close(got, want, what=f"case {seed} under concurrent runs")


def test_the_python_kernel_refuses_a_mixer_graph_naming_the_fix(monkeypatch):
    ort_ops.check_ops({ort_ops.OP_TYPE}, kernels="python")  # SelectiveScan: the Python kernel has it
    with pytest.raises(MissingDependency, match="MambaMixer runs only on the native ONNX Runtime kernel.*"
                                                "kernels='python' was asked for.*--scan plugin"):
        ort_ops.check_ops({ort_ops.MIXER_OP_TYPE}, kernels="python")
    monkeypatch.setattr(ort_ops, "native_library_path", lambda: None)
    with pytest.raises(MissingDependency, match="native kernel library was not built.*ORT_INCLUDE_DIR"):
        ort_ops.check_ops({ort_ops.MIXER_OP_TYPE, ort_ops.OP_TYPE})
    with pytest.raises(MissingDependency, match="mambalitesr::Other: no kernel in this package"):
        ort_ops.check_ops({"mambalitesr::Other"})


def test_the_backend_refuses_the_fused_graph_without_the_native_kernels(monkeypatch):
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.shipped import shipped_onnx

    monkeypatch.setattr(ort_ops, "native_library_path", lambda: None)
    with pytest.raises(MissingDependency, match="MambaMixer runs only on the native ONNX Runtime kernel"):
        create_backend("onnxruntime", onnx=str(shipped_onnx("mambalitesr_x4", "fused")))
    # without the native kernels the shipped default is the plugin form, which the Python kernel runs
    from mambalitesr.runtime.backends.onnxruntime_backend import shipped_form

    assert shipped_form("mambalitesr_x4", ["CPUExecutionProvider"]) == "plugin"
    assert shipped_form("mambalitesr_x4", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == "plugin"


@needs_native_ort
def test_a_fused_export_of_the_test_model_matches_pytorch_and_keeps_the_contract(tmp_path):
    """The export compares ONNX Runtime with PyTorch itself (two sizes and batches: the graph is dynamic)."""
    from mambalitesr.export.onnx_export import export_onnx, read_metadata

    path = tmp_path / "fused.onnx"
    report = export_onnx("test_x4", None, path, scan="fused", log=lambda m: None)
    assert len(report.checks) == 2 and report.max_abs_error <= 1e-4
    assert report.node_counts["mambalitesr::MambaMixer"] == 2
    assert not any(k.endswith("SelectiveScan") for k in report.node_counts)
    assert read_metadata(path)["scan"] == "fused" and read_metadata(path)["dynamic"] == "1"


def test_the_fused_form_refuses_the_cross_scan():
    from mambalitesr.export.onnx_mixer_node import fused_mixer_nodes
    from mambalitesr.models.registry import create_model

    model = create_model("test_xs4_x4", pretrained=False)
    with pytest.raises(UserError, match="4-direction cross-scan: export it with --scan plugin"):
        with fused_mixer_nodes(model):
            pass


def test_exporting_a_cross_scan_model_in_the_fused_form_fails_before_tracing(tmp_path):
    from mambalitesr.export.onnx_export import export_onnx

    said = []
    with pytest.raises(UserError, match="test_xs4_x4 has the 4-direction cross-scan: export it with --scan plugin"):
        export_onnx("test_xs4_x4", None, tmp_path / "x.onnx", scan="fused", log=said.append)
    assert not any("tracing" in line for line in said) and not (tmp_path / "x.onnx").exists()


@needs_native_ort
@pytest.mark.parametrize("form, op", [("plugin", "SelectiveScan"), ("fused", "MambaMixer")])
def test_without_the_onnx_package_the_backend_names_the_nodes_from_the_graph_metadata(monkeypatch, form, op):
    """A torch-free install has no onnx package to list the nodes: ORT's refusal, then the export's "scan" field."""
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends import onnxruntime_backend as ob
    from mambalitesr.runtime.backends.shipped import shipped_onnx

    monkeypatch.setattr(ob, "custom_ops", lambda path: None)
    backend = create_backend("onnxruntime", onnx=str(shipped_onnx("mambalitesr_x4", form)), threads=1)
    assert f"{op} via {ort_ops.NATIVE_PROVIDER}" in backend.describe()
