"""The models this package ships ready to run: their ONNX graphs beside their weights.

Glossary (code name -> meaning):
    shipped ONNX   ``models/weights/<model>.onnx``: the plugin form (one ``mambalitesr::SelectiveScan`` node per
                   mixer; TensorRT builds its engines from it) with dynamic batch, height and width, exported
                   from ``<model>.safetensors`` by ``mambalitesr export onnx``; and ``<model>.fused.onnx``, the
                   fused form (one ``mambalitesr::MambaMixer`` node per mixer: ONNX Runtime's CPU provider with
                   the native kernels). tests/test_shipped_onnx.py re-exports both and fails on drift
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


FORMS = ("plugin", "fused")  # the export forms that are shipped (export/onnx_export.py's scan forms)


def shipped_onnx_path(model: str = DEFAULT_MODEL, form: str = "plugin") -> Path:
    """Where ``model``'s shipped ONNX of export form ``form`` lives (it may not exist)."""
    if form not in FORMS:
        raise ValueError(f"shipped ONNX forms are {', '.join(FORMS)}, not {form!r}")
    return weights_dir() / (f"{model}.onnx" if form == "plugin" else f"{model}.{form}.onnx")


def shipped_onnx(model: str = DEFAULT_MODEL, form: str = "plugin") -> Path:
    """``model``'s shipped ONNX of ``form``; UserError naming the ones shipped when it has none."""
    path = shipped_onnx_path(model, form)
    if path.is_file():
        return path
    if form != "plugin":
        raise UserError(f"no {form}-form ONNX graph is shipped for {model!r}; make one with `mambalitesr export "
                        f"onnx --model {model} --scan {form} -o {model}.{form}.onnx` and pass --onnx")
    shipped = sorted(p.stem for p in weights_dir().glob("*.onnx") if "." not in p.stem)
    raise UserError(f"no ONNX graph is shipped for {model!r} (shipped: {', '.join(shipped) or 'none'}); make one "
                    f"with `mambalitesr export onnx --model {model} -o {model}.onnx` and pass --onnx")
