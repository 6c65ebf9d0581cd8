"""The shipped ONNX graphs (models/weights/mambalitesr_x4.onnx and .fused.onnx) are what the shipped weights
export to.

They are made by ``mambalitesr export onnx --model mambalitesr_x4 -o models/weights/mambalitesr_x4.onnx`` (the
defaults: the plugin form, one ``mambalitesr::SelectiveScan`` node per mixer, dynamic batch, height and width)
and the same with ``--scan fused -o models/weights/mambalitesr_x4.fused.onnx`` (one ``mambalitesr::MambaMixer``
node per mixer). When the weights or the export change, those commands must be run again: the drift test
re-exports from the weights and fails when a shipped file computes something else.
"""
from __future__ import annotations

import numpy as np
import pytest

from mambalitesr.models.registry import REGISTRY
from mambalitesr.runtime.backends.shipped import shipped_onnx_path

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_extensions")

MODEL = "mambalitesr_x4"
NODE = {"plugin": "SelectiveScan", "fused": "MambaMixer"}


def _remake(form: str) -> str:
    scan = "" if form == "plugin" else f" --scan {form}"
    return f"mambalitesr export onnx --model {MODEL}{scan} -o models/weights/{shipped_onnx_path(MODEL, form).name}"


def _metadata(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _needs_kernels(form: str) -> None:
    from mambalitesr.runtime.backends import ort_ops

    if form == "fused" and ort_ops.native_library_path() is None:
        pytest.skip("the fused form runs on the native ONNX Runtime kernels, which were not built here "
                    "(no ONNX Runtime C header at install)")


@pytest.mark.parametrize("form", list(NODE))
def test_the_shipped_graph_is_the_dynamic_form_of_the_shipped_weights(form):
    from mambalitesr.models.weights_io import sha256_file

    shipped = shipped_onnx_path(MODEL, form)
    assert shipped.is_file(), f"{shipped} is missing: {_remake(form)}"
    meta = _metadata(shipped)
    weights = REGISTRY[MODEL].weights_path
    assert meta["model"] == MODEL and meta["scan"] == form and meta["dynamic"] == "1"
    assert meta["weights"] == weights.name
    assert meta["weights_sha256"] == sha256_file(weights), f"the shipped weights changed: {_remake(form)}"
    model = onnx.load(str(shipped))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert all(dims[i].dim_param for i in (0, 2, 3)) and dims[1].dim_value == 3
    cfg = REGISTRY[MODEL].config
    nodes = [n for n in model.graph.node if (n.domain, n.op_type) == ("mambalitesr", NODE[form])]
    assert len(nodes) == cfg.groups * cfg.mixers


@pytest.mark.parametrize("form", list(NODE))
def test_a_fresh_export_of_the_weights_computes_what_the_shipped_graph_computes(tmp_path, form):
    """Slow (one export of the student, about half a minute on an idle 2-core CPU)."""
    pytest.importorskip("torch")
    _needs_kernels(form)
    from mambalitesr.export.onnx_export import export_onnx
    from mambalitesr.runtime.backends.ort_ops import make_session

    shipped = shipped_onnx_path(MODEL, form)
    fresh = tmp_path / "fresh.onnx"
    export_onnx(MODEL, None, fresh, scan=form, log=lambda msg: None)  # the defaults the shipped file was made with
    x = np.random.default_rng(15).random((2, 3, 27, 45), dtype=np.float32)
    got = make_session(shipped).run(None, {"lr": x})[0]
    want = make_session(fresh).run(None, {"lr": x})[0]
    assert got.shape == want.shape == (2, 3, 108, 180)
    drift = float(np.abs(got - want).max())
    assert drift <= 1e-5, f"the shipped graph drifted from its weights by {drift:.3g}: {_remake(form)}"
    assert _metadata(fresh)["weights_sha256"] == _metadata(shipped)["weights_sha256"]


def test_the_two_shipped_forms_compute_the_same_network():
    _needs_kernels("fused")
    from mambalitesr.runtime.backends.ort_ops import make_session

    x = np.random.default_rng(16).random((1, 3, 30, 41), dtype=np.float32)
    plugin, fused = (make_session(shipped_onnx_path(MODEL, f), threads=1).run(None, {"lr": x})[0] for f in NODE)
    assert float(np.abs(plugin - fused).max()) <= 1e-4
