"""`bench quality`: PSNR-Y / SSIM-Y of bicubic, registry models and exported graphs or engines, per dataset.

Glossary (code name -> paper symbol):
    psnr_y, ssim_y   PSNR / SSIM on BT.601 luma with s pixels shaved per border, the standard x s protocol
                     of mambalitesr.models.evaluate (modcrop, MATLAB bicubic LR, rounding; never tiled)
    s (scale)        the models' factor; every entry of one run must share it
    dataset          the folder's name (Set5, Set14, ...): any folder of HR images given with --data

Each image runs at its own size in one call (batch 1), so an exported graph must accept any h x w:
a fixed-size (portable) graph or an engine whose profile is too small gives a ``skipped`` row with
the reason instead of a score.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mambalitesr.benchmarks.latency_plan import ModelSpec
from mambalitesr.benchmarks.results import Row, RowCollector
from mambalitesr.errors import UserError


@dataclass(frozen=True)
class Entry:
    """One thing to score: "bicubic", a registry model, an ONNX graph or a TensorRT engine."""

    kind: str  # bicubic | torch | onnxruntime | tensorrt
    name: str
    model: ModelSpec | None = None
    path: Path | None = None
    plugin: Path | None = None


def _backend_upscaler(backend):
    def run(lr: np.ndarray) -> np.ndarray:  # (h, w, 3) -> (s h, s w, 3)
        x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32)  # (1, 3, h, w)
        return backend.infer(x)[0].transpose(1, 2, 0)

    return run


def _open(entry: Entry, threads: int | None):
    """(upscaler, backend name, graph, precision, params, weights name, scale) for an entry."""
    from mambalitesr.runtime.backends import create_backend

    if entry.kind == "bicubic":
        return "bicubic", "bicubic", "bicubic", "fp64", 0, None, None
    if entry.kind == "torch":
        model = entry.model
        b = create_backend("torch", model=model.name, weights=str(model.weights), device="cpu", precision="fp32",
                           scan_backend="native", threads=threads)
        return _backend_upscaler(b), "torch", "pytorch-native-scan", "fp32", model.params, model.weights.name, b.scale
    if entry.kind == "onnxruntime":
        b = create_backend("onnxruntime", onnx=str(entry.path), providers="cpu", threads=threads)
        graph = "onnx-plugin" if b.custom else "onnx-portable"
        return _backend_upscaler(b), "onnxruntime", graph, b.precision, None, entry.path.name, b.scale
    b = create_backend("tensorrt", engine=str(entry.path), plugin=str(entry.plugin) if entry.plugin else None)
    return _backend_upscaler(b), "tensorrt", "trt-engine", b.precision, None, entry.path.name, b.scale


def _params_of_onnx(path: Path) -> int | None:
    """Parameters of the registry model an exported graph came from (its metadata), when it says."""
    try:
        from mambalitesr.export.onnx_export import read_metadata
        from mambalitesr.models.registry import get_entry

        meta = read_metadata(path)
        from mambalitesr.models.complexity import analytic_params

        return int(analytic_params(get_entry(meta["model"]).config)) if "model" in meta else None
    except Exception:  # not ours, or no onnx package: the plot simply leaves it out
        return None


def run_quality(entries: list[Entry], datasets: list[Path], run_id: str, machine: str, scale: int = 4,
                threads: int | None = None, progress: bool = True, on_row=None) -> list[Row]:
    """Score every entry on every dataset; one row per (entry, dataset)."""
    from mambalitesr.imageio import list_images
    from mambalitesr.models.evaluate import evaluate

    for folder in datasets:
        list_images(folder)  # a bad folder fails before any model is loaded
    emit = RowCollector(on_row)
    rows = emit.rows

    for entry in entries:
        base = dict(kind="quality", variant=entry.name, run_id=run_id, machine=machine, scale=scale)
        try:
            upscaler, backend, graph, precision, params, weights, model_scale = _open(entry, threads)
        except UserError as exc:  # MissingDependency included
            for folder in datasets:
                emit(Row(**base, backend=entry.kind, graph="-", precision="-", status="skipped", reason=str(exc),
                         dataset=Path(folder).resolve().name))
            continue
        if model_scale is not None and model_scale != scale:
            raise UserError(f"{entry.name} upscales x{model_scale}, but this quality run is x{scale}")
        if params is None and entry.kind == "onnxruntime":
            params = _params_of_onnx(entry.path)
        for folder in datasets:
            name = Path(folder).resolve().name
            common = dict(**base, backend=backend, graph=graph, precision=precision, params=params, weights=weights,
                          dataset=name)
            try:
                result = evaluate(upscaler, folder, scale, progress=progress, model_name=entry.name)
            except UserError as exc:  # e.g. a fixed-size graph refusing an image
                emit(Row(**common, status="skipped", reason=str(exc)))
                continue
            emit(Row(**common, status="ok", images=len(result["images"]), psnr_y=float(result["psnr_y"]),
                     ssim_y=float(result["ssim_y"])))
            print(f"bench: {entry.name} on {name}: PSNR-Y {result['psnr_y']:.3f} dB, SSIM-Y {result['ssim_y']:.4f}",
                  file=sys.stderr, flush=True)
    return rows
