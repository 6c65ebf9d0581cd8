"""ONNX Runtime backend: an exported ``.onnx`` model on the execution providers asked for.

Glossary (code name -> meaning / paper symbol):
    onnx         path of the exported model: input (B, 3, h, w) -> output (B, 3, s*h, s*w)
    providers    execution providers in priority order, short or full names: cpu = CPUExecutionProvider,
                 cuda = CUDAExecutionProvider, tensorrt = TensorrtExecutionProvider. Each one asked for must
                 be installed *and* actually enabled by the session, else MissingDependency (ONNX Runtime
                 itself would silently fall back to the CPU)
    custom ops   nodes in the ``mambalitesr`` domain (SelectiveScan, MambaMixer) run through the kernels of
                 ``ort_ops`` (the native C kernels, or onnxruntime-extensions + the C scan where those were not
                 built: SelectiveScan only); registered only when the model has such nodes
    shipped      without ``onnx``, the model's ONNX shipped beside its weights (``shipped.shipped_onnx``): the
                 fused form when the CPU provider alone runs it and the native kernels are built (the fastest
                 ONNX Runtime graph on a CPU), else the plugin form; ``describe()`` names the form
    s (scale)    from the model metadata ``scale``, else the static output shape, else a probe run
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.backends import ort_ops
from mambalitesr.runtime.backends.base import NUMPY_DTYPES, Backend, infer_scale
from mambalitesr.runtime.backends.shipped import DEFAULT_MODEL, shipped_onnx, shipped_onnx_path
from mambalitesr.optional import find, require

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
CUSTOM_DOMAIN = ort_ops.DOMAIN
ORT_TYPES = {"tensor(float)": "fp32", "tensor(float16)": "fp16"}
PROBE_HW = (32, 32)


class _CustomOpMissing(Exception):
    """The session failed on a node of the custom domain."""


def provider_name(short: str) -> str:
    return PROVIDER_NAMES.get(short.strip().lower(), short.strip())


STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
FORM_OPS = {"plugin": (ort_ops.OP_TYPE,), "fused": (ort_ops.MIXER_OP_TYPE,)}  # export metadata "scan" -> its nodes


def custom_ops(onnx_path: Path) -> tuple[set[str], set[str]] | None:
    """(non-standard domains the model imports or uses, its top graph's ``domain::op`` of those domains);
    None when onnx is not installed."""
    onnx = find("onnx")
    if onnx is None:
        return None
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # DecodeError, ValueError, ... for a file that is not an ONNX model
        raise UserError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    domains = {op.domain for op in model.opset_import} | {n.domain for n in model.graph.node}
    ops = {f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS}
    return {d for d in domains if d not in STANDARD_DOMAINS}, ops


def shipped_form(model: str, providers: list[str]) -> str:
    """The shipped graph to run: "fused" on the CPU provider alone when it is shipped and the native kernels are
    built (its MambaMixer nodes run there only), else "plugin" (GPU providers run its standard operators)."""
    if providers != ["CPUExecutionProvider"] or not shipped_onnx_path(model, "fused").is_file():
        return "plugin"
    return "fused" if ort_ops.resolve_kernels() == "native" else "plugin"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, onnx: str | None = None, providers: list[str] | str | None = None, threads: int | None = None,
                 model: str | None = None):
        super().__init__()
        if onnx and model:
            raise UserError("give the onnxruntime backend an ONNX file or a model name, not both")
        self.shipped = not onnx
        if isinstance(providers, str):
            providers = [p for p in providers.split(",") if p.strip()]
        self.providers = [provider_name(p) for p in (providers or ["cpu"])]
        self.form = shipped_form(model or DEFAULT_MODEL, self.providers) if self.shipped else None
        self.onnx_path = Path(onnx) if onnx else shipped_onnx(model or DEFAULT_MODEL, self.form)
        self.threads = threads

    def load(self) -> None:
        ort = require("onnxruntime", "onnxruntime backend needs the onnxruntime package",
                      install="pip install onnxruntime (on a Jetson: the onnxruntime-gpu wheel for your JetPack)")
        if not self.onnx_path.is_file():
            raise UserError(f"{self.onnx_path}: no such ONNX file")
        available = ort.get_available_providers()
        for p in self.providers:
            if p not in available:
                raise MissingDependency(
                    f"onnxruntime provider {p} is not available in this onnxruntime {ort.__version__} "
                    f"(available: {', '.join(available)}); install an onnxruntime build with it or choose "
                    "another with --providers"
                )
        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        found = custom_ops(self.onnx_path)
        domains = found[0] if found is not None else None
        self.custom = domains is not None and CUSTOM_DOMAIN in domains
        self.custom_ops = sorted(found[1]) if found is not None else []
        if self.custom:
            ort_ops.check_ops(self.custom_ops)  # a MambaMixer graph without the native kernels: named here
            self._register_custom_ops(so)
        try:
            self.session = self._session(ort, so)
        except _CustomOpMissing:
            if domains is not None:  # registered already, or onnx saw none: the kernels really are missing
                raise MissingDependency(
                    f"{self.onnx_path}: a '{CUSTOM_DOMAIN}' custom op has no kernel here "
                    f"(this package's kernels: {', '.join(ort_ops.OPS['native'])})"
                ) from None
            self.custom = True  # no onnx package to look inside the model: ORT told us
            self._register_custom_ops(so)
            try:
                self.session = self._session(ort, so)
            except _CustomOpMissing as exc:  # e.g. a MambaMixer node on the Python kernel
                raise MissingDependency(f"{self.onnx_path}: {exc} (this package's kernels: "
                                        f"{', '.join(ort_ops.OPS[ort_ops.resolve_kernels()])})") from None
        enabled = self.enabled_providers = self.session.get_providers()  # kept for describe() after close()
        for p in self.providers:
            if p not in enabled:
                raise MissingDependency(
                    f"onnxruntime did not enable {p} (session runs on {', '.join(enabled)}): its runtime libraries "
                    "(CUDA, cuDNN, TensorRT) are missing or do not match this onnxruntime build"
                )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{self.onnx_path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        self._in, self._out = inputs[0].name, outputs[0].name
        if self.custom and not self.custom_ops:  # no onnx package to list the nodes: the export's form says
            form = self.session.get_modelmeta().custom_metadata_map.get("scan")
            self.custom_ops = list(FORM_OPS.get(form, ()))
        if inputs[0].type not in ORT_TYPES:
            raise UserError(f"{self.onnx_path}: input type {inputs[0].type}; expected float or float16")
        self.precision = ORT_TYPES[inputs[0].type]
        self.input_dtype = NUMPY_DTYPES[self.precision]
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape)
        if len(self.input_shape) != 4 or self.input_shape[1] not in (3, None):
            raise UserError(f"{self.onnx_path}: input shape {inputs[0].shape}; expected (B, 3, h, w)")
        self.loaded = True
        self.scale = self._find_scale(outputs[0].shape)

    def close(self) -> None:
        """Drop the session, and with it ONNX Runtime's CPU arena (it keeps its peak until the session ends)."""
        self.session = None
        self.loaded = False

    def _session(self, ort, so):
        try:
            return ort.InferenceSession(str(self.onnx_path), sess_options=so, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if CUSTOM_DOMAIN in text:
                raise _CustomOpMissing(text) from None
            raise UserError(f"{self.onnx_path}: onnxruntime cannot load it: {text}") from None

    def _register_custom_ops(self, so) -> None:
        ort_ops.session_options(so, threads=self.threads)

    def _find_scale(self, out_shape) -> int:
        meta = self.session.get_modelmeta().custom_metadata_map
        if "scale" in meta:
            return int(meta["scale"])
        in_hw, out_hw = self.input_shape[2:], tuple(out_shape[2:])
        if all(isinstance(d, int) for d in in_hw + out_hw):
            return infer_scale(in_hw, out_hw, str(self.onnx_path))
        probe_hw = self.fixed_hw or PROBE_HW
        batch = self.fixed_batch or 1
        out = self._run(np.full((batch, 3) + probe_hw, 0.5, dtype=self.input_dtype))
        return infer_scale(probe_hw, out.shape[2:], str(self.onnx_path))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run([self._out], {self._in: batch})[0]  # (B, 3, s*h, s*w)
        except Exception as exc:  # ORT's Fail / InvalidArgument: the model cannot take this input
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"{self.onnx_path.name}: onnxruntime failed on input {tuple(batch.shape)}: {text} "
                "(was the model exported for other input sizes?)"
            ) from None
        return out.astype(np.float32, copy=False)

    def describe(self) -> str:
        ops = ", ".join(op.split("::")[1] for op in self.custom_ops) or "mambalitesr nodes"
        custom = f", {ops} via {ort_ops.provider()}" if self.custom else ""
        shipped = f" (shipped, {self.form} form)" if self.shipped else ""
        return (
            f"onnxruntime {self.onnx_path.name}{shipped} on {', '.join(self.enabled_providers)} "
            f"({self.precision}{custom}), x{self.scale}, {self.shapes_text()}"
        )
