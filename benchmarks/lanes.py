"""The lanes of ``bench latency``: one backend + graph + precision each, the reasons a lane cannot run here, and the
ONNX exports the ONNX Runtime lanes need.

Glossary (code name -> meaning): see benchmarks/latency.py (lane, graph, reference).
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mambalitesr.benchmarks.latency_plan import LatencyPlan, ModelSpec
from mambalitesr.benchmarks.timing import ExportFailed, Skip
from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.optional import find, install_hint


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _file_tag(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def bench_frames(hw: tuple[int, int], batch: int) -> np.ndarray:
    """(B, 3, h, w) float32 in [0, 1]: the export test pattern, shifted per frame so the frames differ."""
    from mambalitesr.export.onnx_export import test_pattern, to_input

    base = to_input(test_pattern(*hw))[0]  # (3, h, w)
    frames = [np.roll(base, shift=7 * k, axis=2) for k in range(batch)]
    return np.ascontiguousarray(np.stack(frames), dtype=np.float32)


class Lane:
    """One backend + graph + precision for one model; opens its backend (per size where the graph is fixed)."""

    def __init__(self, backend: str, graph: str, precision: str, providers: str | None = None):
        self.backend, self.graph, self.precision, self.providers = backend, graph, precision, providers
        self.skip_reason: str | None = None
        self._open: dict = {}

    @property
    def label(self) -> str:
        where = f" [{self.providers}]" if self.providers else ""
        return f"{self.backend}/{self.graph}/{self.precision}{where}"

    def check_shape(self, hw: tuple[int, int], batch: int) -> None:
        """Raise Skip when this lane cannot take (B, 3, h, w)."""

    def backend_for(self, hw: tuple[int, int]):
        raise NotImplementedError

    def close(self) -> None:
        for b in self._open.values():
            b.close()
        self._open.clear()


class TorchLane(Lane):
    """The torch backend on one device: the native C scan on the CPU, the chunked scan on CUDA."""

    def __init__(self, model: ModelSpec, plan: LatencyPlan, device: str, precision: str):
        scan = "native" if device == "cpu" else "chunked"
        super().__init__("torch", f"pytorch-{scan}-scan", precision)
        self.model, self.plan, self.device, self.scan = model, plan, device, scan
        if precision == "bf16":
            self.skip_reason = bf16_reason()
        elif precision == "fp16" and device == "cpu":
            self.skip_reason = ("fp16 runs on CUDA only in the torch backend (see the torch CUDA lanes)"
                                if any(d.startswith("cuda") for d in plan.torch_devices)
                                else "fp16 runs on CUDA only in the torch backend; this run has no --torch-device cuda")
        elif device.startswith("cuda"):
            self.skip_reason = cuda_reason()

    def backend_for(self, hw):
        if "any" not in self._open:
            from mambalitesr.runtime.backends import create_backend

            self._open["any"] = create_backend("torch", model=self.model.name, weights=str(self.model.weights),
                                               device=self.device, precision=self.precision,
                                               scan_backend=self.scan, threads=self.plan.threads)
        return self._open["any"]


class OnnxLane(Lane):
    def __init__(self, model: ModelSpec, plan: LatencyPlan, form: str, providers: str, exporter: "Exporter"):
        super().__init__("onnxruntime", f"onnx-{form}", "fp32", providers)
        self.model, self.plan, self.form, self.exporter = model, plan, form, exporter
        self.skip_reason = providers_reason(providers) or (fused_reason(model.name) if form == "fused" else None)

    def check_shape(self, hw, batch):
        if self.form == "portable" and batch != 1:
            raise Skip("the portable graph is exported at fixed shapes with B = 1 (its chunked scan is "
                       "unrolled for one h x w); batched runs use the plugin graph")
        if self.form == "portable" and self.plan.portable_sizes is not None and hw not in self.plan.portable_sizes:
            chosen = ", ".join(f"{w}x{h}" for h, w in self.plan.portable_sizes)
            raise Skip(f"portable graph run at {chosen or 'no size'} only (--portable-sizes): each size is a "
                       "separate export taking minutes of CPU, and its unrolled scan's memory grows fast with h x w")

    def backend_for(self, hw):
        key = hw if self.form == "portable" else "any"
        if key not in self._open:
            from mambalitesr.runtime.backends import create_backend

            path = self.exporter.get(self.model, self.form, hw if self.form == "portable" else None)
            self._open[key] = create_backend("onnxruntime", onnx=str(path), providers=self.providers,
                                             threads=self.plan.threads)
        return self._open[key]


class TensorRTLane(Lane):
    """One engine; its precision (from the engine's sidecar) is known once it is open."""

    def __init__(self, model: ModelSpec, plan: LatencyPlan, engine: Path | None):
        super().__init__("tensorrt", "trt-engine", "engine")
        self.model, self.plan, self.engine = model, plan, engine
        if engine is None:
            self.skip_reason = tensorrt_reason(model.name)

    def backend_for(self, hw):
        if "any" not in self._open:
            from mambalitesr.runtime.backends import create_backend

            backend = create_backend("tensorrt", engine=str(self.engine),
                                     plugin=str(self.plan.plugin) if self.plan.plugin else None)
            self.precision = backend.precision
            self._open["any"] = backend
        return self._open["any"]

    def check_shape(self, hw, batch):
        if "any" in self._open:
            b = self._open["any"]
            if b.batch_limit is not None and batch > b.batch_limit:
                raise Skip(f"the engine takes at most B = {b.batch_limit} (its optimisation profile)")
            if b.tile_limit is not None and (hw[0] > b.tile_limit[0] or hw[1] > b.tile_limit[1]):
                raise Skip(f"the engine profile's max input is {b.tile_limit[1]}x{b.tile_limit[0]}")


def bf16_reason() -> str:
    """Why there is no torch bf16 lane (always a reason: the torch backend has no bf16 mode)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    hw = ("this CPU has bf16 instructions" if any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
          else "this CPU has no bf16 arithmetic (no avx512_bf16 / amx_bf16 in /proc/cpuinfo), so PyTorch would "
               "emulate it")
    return (f"bf16 skipped: the torch backend runs fp32 (fp16 on CUDA) only, the native C scan computes in fp32, "
            f"and {hw}")


def cuda_reason() -> str | None:
    """Why torch cannot run on CUDA here (None: it can)."""
    torch = find("torch")
    if torch is None:
        return f"torch is not installed: {install_hint(package='torch')}"
    if torch.cuda.is_available():
        return None
    build = "is a CPU-only build" if torch.version.cuda is None else f"(CUDA {torch.version.cuda}) finds no GPU"
    return f"no CUDA: torch {torch.__version__} {build}; a CUDA build of torch and an NVIDIA GPU run this lane"


def providers_reason(providers: str) -> str | None:
    """Why an onnxruntime lane with these providers cannot run here (None: every one is installed)."""
    ort = find("onnxruntime")
    if ort is None:
        return f"onnxruntime is not installed: {install_hint(package='onnxruntime')}"
    from mambalitesr.runtime.backends.onnxruntime_backend import provider_name

    available = ort.get_available_providers()
    missing = [provider_name(p) for p in providers.split(",") if p.strip() and provider_name(p) not in available]
    if not missing:
        return None
    return (f"onnxruntime {ort.__version__} has no {', '.join(missing)} (available: {', '.join(available)}); "
            "an onnxruntime build with it (e.g. onnxruntime-gpu with CUDA and cuDNN) runs this lane")


def fused_reason(model_name: str) -> str | None:
    """Why the fused ONNX graph of ``model_name`` cannot run here (None: it can)."""
    from mambalitesr.models.registry import get_entry
    from mambalitesr.runtime.backends import ort_ops

    if get_entry(model_name).config.directions != 1:
        return "the fused graph runs one-direction mixers; this model has the 4-direction cross-scan"
    if find("onnxruntime") is not None and ort_ops.native_library_path() is None:
        return (f"the fused graph's MambaMixer nodes run on the native ONNX Runtime kernels, not built here "
                f"({ort_ops.NOT_BUILT_FIX})")
    return None


def tensorrt_reason(model_name: str) -> str:
    try:
        from mambalitesr.trt_runtime import import_tensorrt

        import_tensorrt()
    except MissingDependency as exc:
        return str(exc)
    except Exception as exc:  # a broken install must not stop the other lanes
        return f"TensorRT unusable here ({type(exc).__name__}: {exc})"
    return f"no engine given for {model_name} (--engine {model_name}=FILE; build one with `mambalitesr export engine`)"


class Exporter:
    """ONNX files for the lanes: exported once per (model, weights, form, size) and kept in ``folder``.

    A dynamic (plugin) graph is traced and verified at ``trace_hw``, the run's smallest size: its export-time
    check then costs seconds instead of minutes, and every benchmarked size is checked anyway (max error
    against PyTorch in each row).
    """

    def __init__(self, folder: Path | None, trace_hw: tuple[int, int] | None = None):
        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="mambalitesr-bench-")
        self.folder = Path(folder) if folder else Path(self._tmp.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.trace_hw = trace_hw
        self.failed: dict[tuple, str] = {}
        self.seconds: dict[str, float] = {}

    def _trace_image(self) -> Path | None:
        """The export test pattern at ``trace_hw`` as a PNG (export_onnx traces a dynamic graph at its size)."""
        if self.trace_hw is None:
            return None
        from mambalitesr.export.onnx_export import test_pattern
        from mambalitesr.imageio import write_image

        path = self.folder / f"trace-{self.trace_hw[1]}x{self.trace_hw[0]}.png"
        if not path.is_file():
            write_image(path, test_pattern(*self.trace_hw))
        return path

    def get(self, model: ModelSpec, form: str, hw: tuple[int, int] | None) -> Path:
        from mambalitesr.export.onnx_export import export_onnx

        shape = "dynamic" if hw is None else f"{hw[1]}x{hw[0]}"
        key = (model.name, str(model.weights), form, shape)
        if key in self.failed:
            raise (ExportFailed if "export" in self.failed[key] else Skip)(self.failed[key])
        path = self.folder / f"{model.name}-{_file_tag(model.weights)}-{form}-{shape}.onnx"
        if path.is_file():
            return path
        say(f"bench: exporting {model.name} ({form} graph, {shape}) to {path}")
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            export_onnx(model.name, str(model.weights), path, scan=form, height=hw[0] if hw else None,
                        width=hw[1] if hw else None, dynamic=hw is None,
                        verify_image=self._trace_image() if hw is None else None, log=lambda m: say(f"  {m}"))
        except MissingDependency as exc:  # onnx / onnxruntime missing: this lane cannot run here
            self.failed[key] = str(exc)
            raise Skip(str(exc)) from None
        except UserError as exc:  # VerificationError included: no file was written
            self.failed[key] = f"ONNX export ({form}, {shape}) failed: {exc}"
            raise ExportFailed(self.failed[key]) from None
        self.seconds[path.name] = time.perf_counter() - start
        say(f"bench: exported {path.name} in {self.seconds[path.name]:.0f} s "
             f"({time.process_time() - cpu_start:.0f} s CPU)")
        return path

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def make_lanes(model: ModelSpec, plan: LatencyPlan, exporter: Exporter) -> list[Lane]:
    """Every lane of ``plan`` for ``model``; the torch fp32 lane first (it gives the reference)."""
    lanes: list[Lane] = []
    if "torch" in plan.backends:
        for device in plan.torch_devices:
            precisions = ("fp32", "fp16", "bf16") if device == "cpu" else ("fp32", "fp16")
            if device == "cpu" and len(plan.torch_devices) > 1:
                precisions = ("fp32", "bf16")  # fp16 is a CUDA lane
            lanes += [TorchLane(model, plan, device, p) for p in precisions]
    if "onnxruntime" in plan.backends:
        for providers in plan.providers:
            for form in plan.onnx_graphs:
                lanes.append(OnnxLane(model, plan, form, providers, exporter))
    if "tensorrt" in plan.backends:
        # every model gets as many TensorRT lanes as the model with the most engines, so the models keep
        # taking turns lane by lane; a model with fewer engines skips the extra lanes
        n = max([len(v) for v in plan.engines.values()] + [1])
        engines = list(plan.engines.get(model.name, []))
        lanes += [TensorRTLane(model, plan, engines[i] if i < len(engines) else None) for i in range(n)]
    return lanes
