"""Latency of every model on every available backend and precision, at each input size and batch.

Glossary (code name -> meaning / symbol):
    h x w, B        LR input height and width, batch; output (B, 3, s h, s w)
    lane            one way to run a model: backend + graph + precision (+ ORT providers), e.g.
                    torch / pytorch-native-scan / fp32, onnxruntime / onnx-plugin / fp32 on cpu
    graph           pytorch-native-scan (the C scan) or pytorch-chunked-scan (CUDA); onnx-portable
                    (standard operators, exported per h x w at B = 1); onnx-plugin (one SelectiveScan
                    node per mixer, dynamic B, h, w; the onnxruntime-extensions kernel on the CPU);
                    trt-engine (a TensorRT engine given with --engine)
    reference       the torch fp32 lane's output on the same input (its own max_abs_err is 0)
    IterationPolicy warm-up and stopping rule of one measurement (see ``time_calls``)
    t_i             wall time of timed call i (time.perf_counter), seconds
    p50/p90/p99     percentiles of t_i, linear between order statistics (numpy's default); with n < 100
                    calls p99 lies between the two slowest calls, so every row keeps its n
    fps             frames per second: B * n / sum(t_i)
    cpu_ms          process CPU time (all threads, time.process_time) per timed call: unlike wall time it
                    hardly grows when other jobs share the machine, so it is recorded beside it
    PeakRss         peak resident memory above the resident memory right before warm-up: Linux VmHWM
                    after resetting it through /proc/self/clear_refs
    MemoryGuard     a lane's measured peak MB per input pixel (h w B) at the sizes run so far; a larger
                    shape whose projected peak exceeds MemAvailable is skipped with both numbers, instead
                    of letting the kernel's OOM killer end the whole run
    CallRates       an open backend's slowest measured seconds per input pixel (h w B): a shape whose one
                    call it projects above ``skip_warmup_above`` runs without warm-up on that (already
                    warm) backend, and its row says warmup 0

A lane that cannot run here (no CUDA, no TensorRT, no engine) gives one ``skipped`` row with the
reason; a shape a lane cannot take gives a ``skipped`` row for that shape. Nothing is estimated.
"""
from __future__ import annotations

import gc
import hashlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mambalitesr.benchmarks.results import Row
from mambalitesr.errors import MissingDependency, UserError

DEFAULT_SIZES = ((90, 160), (180, 320), (360, 640))  # (h, w): x4 gives 640x360 .. 2560x1440
DEFAULT_BATCHES = (1, 4)
BACKENDS = ("torch", "onnxruntime", "tensorrt")
# CUDA lanes are tried by default: where there is no CUDA they are one skipped row each, with the reason
DEFAULT_TORCH_DEVICES = ("cpu", "cuda")
DEFAULT_PROVIDERS = ("cpu", "cuda,cpu")
ONNX_GRAPHS = ("plugin", "portable")
NOT_MEASURED_POWER = "not measured: `bench latency` reads no power telemetry (use `bench power` or `bench all`)"


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class IterationPolicy:
    """Stop timing when max_iters calls are done, or min_iters calls AND min_seconds have passed, or
    max_seconds have passed with at least floor_iters calls (slow configurations: fewer calls, recorded)."""

    warmup: int = 2
    warmup_seconds: float = 1.0  # warm-up stops after this long (at least one call)
    min_iters: int = 10
    max_iters: int = 200
    min_seconds: float = 2.0
    max_seconds: float = 5.0
    floor_iters: int = 1
    # A lane already warm from a smaller shape skips the warm-up of a shape whose one call is projected to
    # take longer than this: one-time costs are negligible there, and the warm-up would double the run.
    skip_warmup_above: float = 5.0

    def check(self) -> "IterationPolicy":
        if self.warmup < 1:
            raise UserError("--warmup must be at least 1 (the first call pays one-time costs)")
        if not 1 <= self.floor_iters <= self.min_iters <= self.max_iters:
            raise UserError(f"iterations must satisfy 1 <= --floor-iters ({self.floor_iters}) <= --min-iters "
                            f"({self.min_iters}) <= --max-iters ({self.max_iters})")
        if self.min_seconds < 0 or self.max_seconds < self.min_seconds:
            raise UserError(f"seconds must satisfy 0 <= --min-seconds ({self.min_seconds}) <= --max-seconds "
                            f"({self.max_seconds})")
        if not self.skip_warmup_above > 0:
            raise UserError(f"--skip-warmup-above must be > 0 seconds, got {self.skip_warmup_above}")
        return self


@dataclass(frozen=True)
class Timing:
    warmup: int
    times_s: tuple[float, ...]
    t0: float  # time.monotonic() at the first timed call (for power intervals)
    t1: float
    last_output: object  # output of the last call (for the error check)
    cpu_s: float = 0.0  # process CPU time over the timed calls

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_s / len(self.times_s) * 1e3

    @property
    def iterations(self) -> int:
        return len(self.times_s)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.times_s), q)) * 1e3

    def fps(self, batch: int) -> float:
        return batch * len(self.times_s) / sum(self.times_s)


def time_calls(fn: Callable[[], object], policy: IterationPolicy, warm: bool = False) -> Timing:
    """Warm up ``fn``, then time it under ``policy``; returns the call times and the last call's output.

    ``warm``: no warm-up calls (the caller judged one-time costs negligible; the row records warmup 0).
    """
    out = None
    warm_start = time.perf_counter()
    done = 0
    while done < policy.warmup and not warm:
        out = fn()
        done += 1
        if time.perf_counter() - warm_start >= policy.warmup_seconds:
            break
    times: list[float] = []
    t0 = time.monotonic()
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        elapsed, n = time.perf_counter() - start, len(times)
        if n >= policy.max_iters or (n >= policy.min_iters and elapsed >= policy.min_seconds):
            break
        if n >= policy.floor_iters and elapsed >= policy.max_seconds:
            break
    cpu_s = time.process_time() - cpu_start
    return Timing(done, tuple(times), t0, time.monotonic(), out, cpu_s)


class PeakRss:
    """``with PeakRss() as m: ...`` then ``m.peak_mb`` (None, with ``m.why``, where it cannot be read)."""

    METHOD = "peak RSS above the RSS before warm-up (Linux VmHWM, reset via /proc/self/clear_refs)"

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self.why: str | None = None
        self._base_kb: int | None = None

    @staticmethod
    def _status_kb(name: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise OSError(f"no {name} in /proc/self/status")

    def __enter__(self) -> "PeakRss":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
            self._base_kb = self._status_kb("VmRSS")
        except (OSError, ValueError) as exc:
            self.why = f"not measured ({exc})"
        return self

    def __exit__(self, *exc) -> None:
        if self._base_kb is None:
            return
        try:
            self.peak_mb = max(0, self._status_kb("VmHWM") - self._base_kb) / 1024.0
        except (OSError, ValueError) as err:
            self.why = f"not measured ({err})"


def mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


class MemoryGuard:
    """Skip shapes whose peak memory, projected from the same lane's smaller shapes, would not fit."""

    HEADROOM = 0.8  # of MemAvailable

    def __init__(self) -> None:
        self._per_pixel: dict[tuple, float] = {}

    def record(self, key: tuple, hw, batch: int, peak_mb: float | None) -> None:
        if peak_mb is not None:
            rate = peak_mb / (hw[0] * hw[1] * batch)
            self._per_pixel[key] = max(rate, self._per_pixel.get(key, 0.0))

    def check(self, key: tuple, hw, batch: int) -> None:
        rate, avail = self._per_pixel.get(key), mem_available_mb()
        if rate is None or avail is None:
            return
        projected = rate * hw[0] * hw[1] * batch
        if projected > self.HEADROOM * avail:
            raise Skip(f"projected peak memory {projected / 1024:.1f} GiB (this lane's measured MB per input pixel "
                       f"at smaller shapes x {hw[1]}x{hw[0]}x{batch}) exceeds {self.HEADROOM:.0%} of the "
                       f"{avail / 1024:.1f} GiB available")


class CallRates:
    """Project one call's seconds on an open backend from its earlier (smaller) shapes."""

    def __init__(self) -> None:
        self._per_pixel: dict[int, tuple[object, float]] = {}  # id(backend) -> (backend, s per pixel)

    def record(self, backend, hw, batch: int, seconds: float) -> None:
        rate = seconds / (hw[0] * hw[1] * batch)
        old = self._per_pixel.get(id(backend))
        self._per_pixel[id(backend)] = (backend, max(rate, old[1] if old else 0.0))  # keeps id() unique

    def projected_s(self, backend, hw, batch: int) -> float | None:
        """None: this backend has not run yet (it needs its warm-up)."""
        entry = self._per_pixel.get(id(backend))
        return None if entry is None else entry[1] * hw[0] * hw[1] * batch


# ---------------------------------------------------------------- what to run


@dataclass(frozen=True)
class ModelSpec:
    """A registry model and its weights (None: the shipped ones)."""

    name: str
    weights: Path | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        name, _, weights = text.partition("=")
        if not name:
            raise UserError(f"--model {text!r}: expected NAME or NAME=WEIGHTS")
        return cls(name, Path(weights) if weights else None)

    def resolve(self) -> "ModelSpec":
        """The same spec with its weights file, or UserError when there is none (no random networks)."""
        from mambalitesr.models.registry import get_entry

        entry = get_entry(self.name)
        weights = self.weights or entry.weights_path
        if weights is None:
            raise UserError(f"{self.name} ships no weights: give --model {self.name}=PATH "
                            f"(for dvmsr_x4: the published DVMSR x4 weights)")
        if not Path(weights).is_file():
            raise UserError(f"{self.name}: weights file {weights} not found")
        from mambalitesr.models.registry import create_model

        create_model(self.name, weights)  # bad weights fail the command now, not as "skipped" rows that exit 0
        return ModelSpec(self.name, Path(weights))

    @property
    def config(self):
        from mambalitesr.models.registry import get_entry

        return get_entry(self.name).config

    @property
    def params(self) -> int:
        from mambalitesr.models.complexity import analytic_params

        return int(analytic_params(self.config))


@dataclass
class LatencyPlan:
    models: list[ModelSpec]
    sizes: list[tuple[int, int]] = field(default_factory=lambda: list(DEFAULT_SIZES))  # (h, w)
    batches: list[int] = field(default_factory=lambda: list(DEFAULT_BATCHES))
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    onnx_graphs: list[str] = field(default_factory=lambda: list(ONNX_GRAPHS))
    portable_sizes: list[tuple[int, int]] | None = None  # None: every size (one export each)
    providers: list[str] = field(default_factory=lambda: list(DEFAULT_PROVIDERS))  # one ORT lane per entry
    torch_devices: list[str] = field(default_factory=lambda: list(DEFAULT_TORCH_DEVICES))  # one lane set each
    threads: int | None = None
    engines: dict[str, list[Path]] = field(default_factory=dict)  # model name -> its TensorRT engines
    plugin: Path | None = None
    onnx_dir: Path | None = None  # exported graphs kept (and reused) here; default: a temporary folder
    policy: IterationPolicy = field(default_factory=IterationPolicy)


class Skip(Exception):
    """A lane or a shape that cannot run here; the message is the row's reason."""

    status = "skipped"


class ExportFailed(Skip):
    """The ONNX export (or its verification against PyTorch) failed: a ``failed`` row, not a skip."""

    status = "failed"


def _say(msg: str) -> None:
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


# ---------------------------------------------------------------- lanes


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
        self.skip_reason = providers_reason(providers)  # before any export: a missing provider costs nothing

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
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    if torch.cuda.is_available():
        return None
    build = "is a CPU-only build" if torch.version.cuda is None else f"(CUDA {torch.version.cuda}) finds no GPU"
    return f"no CUDA: torch {torch.__version__} {build}; a CUDA build of torch and an NVIDIA GPU run this lane"


def providers_reason(providers: str) -> str | None:
    """Why an onnxruntime lane with these providers cannot run here (None: every one is installed)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc}): pip install onnxruntime"
    from mambalitesr.runtime.backends.onnxruntime_backend import provider_name

    available = ort.get_available_providers()
    missing = [provider_name(p) for p in providers.split(",") if p.strip() and provider_name(p) not in available]
    if not missing:
        return None
    return (f"onnxruntime {ort.__version__} has no {', '.join(missing)} (available: {', '.join(available)}); "
            "an onnxruntime build with it (e.g. onnxruntime-gpu with CUDA and cuDNN) runs this lane")


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
        _say(f"bench: exporting {model.name} ({form} graph, {shape}) to {path}")
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            export_onnx(model.name, str(model.weights), path, scan=form, height=hw[0] if hw else None,
                        width=hw[1] if hw else None, dynamic=hw is None,
                        verify_image=self._trace_image() if hw is None else None, log=lambda m: _say(f"  {m}"))
        except MissingDependency as exc:  # onnx / onnxruntime missing: this lane cannot run here
            self.failed[key] = str(exc)
            raise Skip(str(exc)) from None
        except UserError as exc:  # VerificationError included: no file was written
            self.failed[key] = f"ONNX export ({form}, {shape}) failed: {exc}"
            raise ExportFailed(self.failed[key]) from None
        self.seconds[path.name] = time.perf_counter() - start
        _say(f"bench: exported {path.name} in {self.seconds[path.name]:.0f} s "
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


# ---------------------------------------------------------------- the run


class ReferenceOutputs:
    """PyTorch fp32 output for the current (model, h, w, B): the torch fp32 lane's, else computed once."""

    def __init__(self, plan: LatencyPlan):
        self.plan = plan
        self._key = None
        self._out: np.ndarray | None = None
        self._backend = None
        self._backend_model: str | None = None

    def set(self, key, out: np.ndarray) -> None:
        self._key, self._out = key, out

    def get(self, key, model: ModelSpec, x: np.ndarray) -> np.ndarray:
        if self._key != key:
            if self._backend_model != model.name:
                from mambalitesr.runtime.backends import create_backend

                self._backend = create_backend("torch", model=model.name, weights=str(model.weights), device="cpu",
                                               precision="fp32", scan_backend="native", threads=self.plan.threads)
                self._backend_model = model.name
            self.set(key, self._backend.infer(x))
        return self._out


def _lane_row(lane: Lane, model: ModelSpec, run_id: str, machine: str, **extra) -> Row:
    return Row(kind="latency", variant=model.name, backend=lane.backend, graph=lane.graph, precision=lane.precision,
               providers=lane.providers, run_id=run_id, machine=machine, weights=model.weights.name,
               params=model.params, **extra)


def _return_freed_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise), so MemAvailable, which the
    MemoryGuard reads, sees what the closed sessions and dropped frames really left free."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim, the guard is only more cautious


def run_latency(plan: LatencyPlan, run_id: str, machine: str, power=None,
                on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Measure every (model, size, batch, lane) of ``plan``; rows in the order measured.

    ``power``: a benchmarks.power.PowerContext (``bench power``), or None (``bench latency``: power
    columns stay null with a note). ``on_row`` sees each row as soon as it exists (incremental saves).
    """
    plan.policy.check()
    rows: list[Row] = []

    def emit(row: Row) -> None:
        row.validate()
        rows.append(row)
        if on_row:
            on_row(row)

    exporter = Exporter(plan.onnx_dir, trace_hw=min(plan.sizes, key=lambda hw: hw[0] * hw[1], default=None))
    # Every model's lanes are open together and the models take turns on each (size, batch, lane), so a
    # student / teacher pair is measured back to back, under the same load of a shared machine.
    lanes = {m.name: make_lanes(m, plan, exporter) for m in plan.models}
    refs = {m.name: ReferenceOutputs(plan) for m in plan.models}
    noted: set = set()
    guard, rates = MemoryGuard(), CallRates()
    try:
        for model in plan.models:
            for lane in lanes[model.name]:
                if lane.skip_reason:
                    emit(_lane_row(lane, model, run_id, machine, status="skipped", reason=lane.skip_reason))
        n_lanes = len(lanes[plan.models[0].name]) if plan.models else 0
        for hw in plan.sizes:
            for batch in plan.batches:
                x = bench_frames(hw, batch)
                for i in range(n_lanes):
                    for model in plan.models:
                        lane = lanes[model.name][i]
                        if lane.skip_reason:
                            continue
                        row = _try_measure(lane, model, hw, batch, x, refs[model.name], plan, run_id, machine,
                                           power, noted, guard, rates)
                        if row is not None:
                            if row.status == "ok":
                                guard.record((model.name, lane.label), hw, batch, row.peak_mem_mb)
                            emit(row)
                        if isinstance(lane, OnnxLane):
                            # ONNX Runtime's CPU arena keeps its peak until the session ends: one model's
                            # 640x360 x4 arena would otherwise starve the other model's turn on the same shape.
                            lane.close()
                            _return_freed_heap()
                for r in refs.values():
                    r.set(None, None)
                del x
                gc.collect()
                _return_freed_heap()
    finally:
        for model_lanes in lanes.values():
            for lane in model_lanes:
                lane.close()
        exporter.close()
    return rows


def _try_measure(lane: Lane, model: ModelSpec, hw, batch, x, refs: "ReferenceOutputs", plan: LatencyPlan,
                 run_id: str, machine: str, power, noted: set, guard: MemoryGuard, rates: CallRates) -> Row | None:
    """The row of one (lane, model, h x w, B): measured, or skipped / failed with the reason (None: said already)."""
    try:
        lane.check_shape(hw, batch)
        guard.check((model.name, lane.label), hw, batch)
        backend = lane.backend_for(hw)
        lane.check_shape(hw, batch)  # an engine's limits are known once it is open
    except Skip as exc:
        if isinstance(lane, OnnxLane) and lane.form == "portable" and batch != 1:
            if (model.name, lane.label, batch) in noted:  # one row says it for every size
                return None
            noted.add((model.name, lane.label, batch))
            return _lane_row(lane, model, run_id, machine, status="skipped", reason=str(exc), batch=batch)
        return _lane_row(lane, model, run_id, machine, status=exc.status, reason=str(exc), input_hw=list(hw),
                         batch=batch)
    except UserError as exc:  # MissingDependency included: the whole lane is out for this model
        lane.skip_reason = str(exc)
        return _lane_row(lane, model, run_id, machine, status="skipped", reason=str(exc))
    projected = rates.projected_s(backend, hw, batch)
    warm = projected is not None and projected > plan.policy.skip_warmup_above
    row = _measure(lane, backend, model, hw, batch, x, (model.name, hw, batch), refs, plan, run_id, machine, power,
                   warm)
    if row.status == "ok":
        rates.record(backend, hw, batch, row.mean_ms / 1e3)
    return row


def _measure(lane: Lane, backend, model: ModelSpec, hw, batch, x, key, refs: ReferenceOutputs, plan: LatencyPlan,
             run_id: str, machine: str, power, warm: bool = False) -> Row:
    gc.collect()
    try:
        with PeakRss() as mem:
            timing = time_calls(lambda: backend.infer(x), plan.policy, warm=warm)
    except UserError as exc:  # the backend refused this input (shape outside what it was built for)
        return _lane_row(lane, model, run_id, machine, status="skipped", reason=str(exc), input_hw=list(hw),
                         batch=batch)
    out = timing.last_output
    if isinstance(lane, TorchLane) and lane.precision == "fp32" and lane.device == "cpu":
        refs.set(key, out)
        err = 0.0
    else:
        ref = refs.get(key, model, x)
        err = float(np.max(np.abs(out - ref))) if out.shape == ref.shape else float("inf")
    if not np.isfinite(err):
        return _lane_row(lane, model, run_id, machine, status="failed", input_hw=list(hw), batch=batch,
                         reason=f"output {out.shape} is not finite or not the reference's shape {ref.shape}")
    power_fields = power.fields(timing, batch) if power is not None else {"power_note": NOT_MEASURED_POWER}
    threads = plan.threads
    if lane.backend == "torch" and threads is None:
        import torch

        threads = torch.get_num_threads()
    row = _lane_row(
        lane, model, run_id, machine, status="ok", input_hw=list(hw), batch=batch, warmup=timing.warmup,
        iterations=timing.iterations, p50_ms=timing.percentile_ms(50), p90_ms=timing.percentile_ms(90),
        p99_ms=timing.percentile_ms(99), mean_ms=float(np.mean(timing.times_s)) * 1e3, fps=timing.fps(batch),
        cpu_ms=timing.cpu_ms_per_call,
        peak_mem_mb=mem.peak_mb, mem_method=PeakRss.METHOD if mem.peak_mb is not None else mem.why,
        max_abs_err=err, threads=threads, **power_fields,
    )
    _say(f"bench: {model.name} {lane.label} {hw[1]}x{hw[0]} B={batch}: p50 {row.p50_ms:.1f} ms, "
         f"{row.fps:.2f} fps, {row.iterations} iters, CPU {row.cpu_ms:.0f} ms/call, max err {err:.2e}")
    return row

