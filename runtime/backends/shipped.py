"""The models this package ships ready to run: their ONNX graphs beside their weights.

Glossary (code name -> meaning):
    shipped ONNX   ``models/weights/<model>.onnx``: the plugin form (one ``mambalitesr::SelectiveScan`` node per
                   mixer) with dynamic batch, height and width, exported from ``<model>.safetensors`` by
                   ``mambalitesr export onnx`` (tests/test_shipped_onnx.py re-exports it and fails on drift)
    DEFAULT_MODEL  the model every inference command runs unless told otherwise

Looking a file up here imports neither torch nor the network code: only the registry's folder.
"""
from __future__ import annotations

from pathlib import Path

from mambalitesr.errors import UserError

DEFAULT_MODEL = "mambalitesr_x4"


def weights_dir() -> Path:
    from mambalitesr.models.files import WEIGHTS_DIR  # paths only: no torch, no network code

    return WEIGHTS_DIR


def shipped_onnx_path(model: str = DEFAULT_MODEL) -> Path:
    """Where ``model``'s shipped ONNX lives (it may not exist)."""
    return weights_dir() / f"{model}.onnx"


def shipped_onnx(model: str = DEFAULT_MODEL) -> Path:
    """``model``'s shipped ONNX; UserError naming the ones shipped when it has none."""
    path = shipped_onnx_path(model)
    if path.is_file():
        return path
    shipped = sorted(p.stem for p in weights_dir().glob("*.onnx"))
    raise UserError(f"no ONNX graph is shipped for {model!r} (shipped: {', '.join(shipped) or 'none'}); make one "
                    f"with `mambalitesr export onnx --model {model} -o {model}.onnx` and pass --onnx")
