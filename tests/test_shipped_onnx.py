"""The shipped ONNX graph (models/weights/mambalitesr_x4.onnx) is what the shipped weights export to.

It is made by ``mambalitesr export onnx --model mambalitesr_x4 -o models/weights/mambalitesr_x4.onnx`` (the
defaults: the plugin form, one ``mambalitesr::SelectiveScan`` node per mixer, dynamic batch, height and width).
When the weights or the export change, that command must be run again: the drift test re-exports from the
weights and fails when the shipped file computes something else.
"""
from __future__ import annotations

import numpy as np
import pytest

from mambalitesr.models.files import WEIGHTS_DIR
from mambalitesr.models.registry import REGISTRY

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_extensions")

MODEL = "mambalitesr_x4"
SHIPPED = WEIGHTS_DIR / f"{MODEL}.onnx"
REMAKE = f"mambalitesr export onnx --model {MODEL} -o models/weights/{MODEL}.onnx"


def _metadata(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_the_shipped_graph_is_the_dynamic_plugin_form_of_the_shipped_weights():
    from mambalitesr.models.weights_io import sha256_file

    assert SHIPPED.is_file(), f"{SHIPPED} is missing: {REMAKE}"
    meta = _metadata(SHIPPED)
    weights = REGISTRY[MODEL].weights_path
    assert meta["model"] == MODEL and meta["scan"] == "plugin" and meta["dynamic"] == "1"
    assert meta["weights"] == weights.name
    assert meta["weights_sha256"] == sha256_file(weights), f"the shipped weights changed: {REMAKE}"
    model = onnx.load(str(SHIPPED))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert all(dims[i].dim_param for i in (0, 2, 3)) and dims[1].dim_value == 3
    cfg = REGISTRY[MODEL].config
    scans = [n for n in model.graph.node if (n.domain, n.op_type) == ("mambalitesr", "SelectiveScan")]
    assert len(scans) == cfg.groups * cfg.mixers


def test_a_fresh_export_of_the_weights_computes_what_the_shipped_graph_computes(tmp_path):
    """Slow (one export of the student, about a minute on an idle 2-core CPU)."""
    pytest.importorskip("torch")
    from mambalitesr.export.onnx_export import export_onnx
    from mambalitesr.runtime.backends.ort_ops import make_session

    fresh = tmp_path / "fresh.onnx"
    export_onnx(MODEL, None, fresh, log=lambda msg: None)  # the defaults the shipped file was made with
    x = np.random.default_rng(15).random((2, 3, 27, 45), dtype=np.float32)
    got = make_session(SHIPPED).run(None, {"lr": x})[0]
    want = make_session(fresh).run(None, {"lr": x})[0]
    assert got.shape == want.shape == (2, 3, 108, 180)
    drift = float(np.abs(got - want).max())
    assert drift <= 1e-5, f"the shipped graph drifted from its weights by {drift:.3g}: {REMAKE}"
    assert _metadata(fresh)["weights_sha256"] == _metadata(SHIPPED)["weights_sha256"]
