"""The results file: one JSON per device, one row per measurement, written atomically.

Glossary (code name -> meaning):
    device        the file's name: ``benchmarks/results/<device>.json`` (``--device NAME``, else
                  :func:`default_device_name`, e.g. ``cpu-x86_64-2core`` or ``orin-nano``)
    Row           one measurement: a latency run (``kind="latency"``: one model on one backend, precision,
                  input h x w and batch B) or a quality score (``kind="quality"``: one model on one dataset)
    run_id        which invocation measured the row; speed ratios only compare rows of the same run
    status        "ok", or "skipped" / "failed" with ``reason`` (a backend that is not here, a graph that
                  cannot take the shape): never a number for something that did not run
    reference     max_abs_err is max |backend - PyTorch fp32| over the whole output of the same model on
                  the same input; the PyTorch fp32 row itself is the reference (0 by definition)
    peak_mem_mb   peak resident memory above the resident memory right before warm-up (``mem_method``
                  names how it was read)
    watts_*       board power above the idle baseline measured at the start of the run; null with
                  ``power_note`` when no telemetry was read (never estimated)

The markdown report and the plots are made from this file only (benchmarks/report.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mambalitesr.errors import UserError
from mambalitesr.optional import find

SCHEMA_VERSION = 1
KINDS = ("latency", "quality")
STATUSES = ("ok", "skipped", "failed")
def default_results_dir() -> Path:
    """Where runs go unless --results-dir says otherwise: the user's MambaLiteSR folder, never the committed
    ``benchmarks/results/`` of a checkout (``mambalitesr.paths.user_dir("bench")``: ``$MAMBALITESR_HOME/bench``,
    else ``$XDG_CACHE_HOME/mambalitesr/bench``, else ``~/.cache/mambalitesr/bench``)."""
    from mambalitesr.paths import user_dir

    return user_dir("bench")


@dataclass
class Row:
    kind: str
    variant: str  # registry name, "bicubic", or an ONNX / engine file name
    backend: str  # torch | onnxruntime | tensorrt | bicubic
    graph: str  # pytorch-native-scan | onnx-portable | onnx-plugin | trt-engine | bicubic
    precision: str  # fp32 | fp16 | bf16
    status: str
    run_id: str
    machine: str  # one line: CPU / GPU, cores, memory, OS, library versions
    reason: str | None = None
    weights: str | None = None  # file name of the weights (or "random-init")
    params: int | None = None
    # -- latency
    providers: str | None = None  # onnxruntime execution providers
    input_hw: list[int] | None = None  # [h, w] of the LR input
    batch: int | None = None
    warmup: int | None = None
    iterations: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    fps: float | None = None  # frames (batch items) per second over the timed iterations
    cpu_ms: float | None = None  # process CPU time (all threads) per timed call
    peak_mem_mb: float | None = None
    mem_method: str | None = None
    max_abs_err: float | None = None
    threads: int | None = None
    # -- power (bench power / all)
    power_source: str | None = None
    idle_w: float | None = None
    watts_avg_above_idle: float | None = None
    watts_peak_above_idle: float | None = None
    joules_per_frame: float | None = None  # board energy over the timed iterations / frames
    joules_per_frame_above_idle: float | None = None
    power_note: str | None = None
    # -- quality
    dataset: str | None = None
    scale: int | None = None
    images: int | None = None
    psnr_y: float | None = None
    ssim_y: float | None = None

    def key(self) -> tuple:
        """What a row measures; a later run replaces the row with the same key."""
        hw = tuple(self.input_hw) if self.input_hw else None
        return (self.kind, self.variant, self.backend, self.graph, self.precision, self.providers, hw, self.batch,
                self.dataset)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"row kind {self.kind!r} not in {KINDS}")
        if self.status not in STATUSES:
            raise ValueError(f"row status {self.status!r} not in {STATUSES}")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"{self.status} row {self.key()} has no reason")
        if self.status == "ok" and self.kind == "latency":
            missing = [n for n in ("input_hw", "batch", "iterations", "p50_ms", "p90_ms", "p99_ms", "fps")
                       if getattr(self, n) is None]
            if missing:
                raise ValueError(f"latency row {self.key()} lacks {', '.join(missing)}")
            if not self.p50_ms <= self.p90_ms <= self.p99_ms:
                raise ValueError(f"latency row {self.key()}: percentiles out of order")
        if self.status == "ok" and self.kind == "quality" and (self.psnr_y is None or self.dataset is None):
            raise ValueError(f"quality row {self.key()} lacks psnr_y or dataset")
        power = (self.watts_avg_above_idle, self.joules_per_frame)
        if any(v is not None for v in power) and not self.power_source:
            raise ValueError(f"row {self.key()} has power figures but no power_source")


ROW_FIELDS = tuple(f.name for f in dataclasses.fields(Row))


@dataclass
class Results:
    device: str
    machine: dict = field(default_factory=dict)  # the latest run's machine description (dict)
    runs: list[dict] = field(default_factory=list)  # {"run_id", "command", "started", "wall_s", "note"}
    idle: dict | None = None  # {"source", "idle_w", "seconds"} or {"note"} of the latest power run
    rows: list[Row] = field(default_factory=list)

    def merge(self, rows: list[Row]) -> None:
        """Add rows; one with the key of an existing row replaces it in place."""
        index = {r.key(): i for i, r in enumerate(self.rows)}
        for row in rows:
            row.validate()
            i = index.get(row.key())
            if i is None:
                index[row.key()] = len(self.rows)
                self.rows.append(row)
            else:
                self.rows[i] = row

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "device": self.device,
            "machine": self.machine,
            "runs": self.runs,
            "idle": self.idle,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: dict, where: str = "results") -> "Results":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            raise UserError(f"{where}: not a schema-{SCHEMA_VERSION} benchmark results file")
        rows = []
        for i, raw in enumerate(data.get("rows", [])):
            unknown = set(raw) - set(ROW_FIELDS)
            if unknown:
                raise UserError(f"{where}: row {i} has unknown fields {sorted(unknown)}")
            try:
                row = Row(**raw)
                row.validate()
            except (TypeError, ValueError) as exc:
                raise UserError(f"{where}: row {i} is invalid ({exc})") from None
            rows.append(row)
        return cls(device=data["device"], machine=data.get("machine", {}), runs=list(data.get("runs", [])),
                   idle=data.get("idle"), rows=rows)


class RowCollector:
    """Collects a run's rows in order: each is validated when it exists and shown to ``on_row`` (incremental saves)."""

    def __init__(self, on_row: Callable[[Row], None] | None = None):
        self.rows: list[Row] = []
        self.on_row = on_row

    def __call__(self, row: Row) -> None:
        row.validate()
        self.rows.append(row)
        if self.on_row:
            self.on_row(row)


def results_paths(results_dir: str | os.PathLike, device: str) -> dict[str, Path]:
    d = Path(results_dir)
    return {
        "json": d / f"{device}.json",
        "md": d / f"{device}.md",
        "latency_png": d / f"{device}-latency.png",
        "quality_png": d / f"{device}-psnr-params.png",
        "energy_png": d / f"{device}-energy.png",
    }


def check_device_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise UserError(f"--device {name!r}: use letters, digits, '-', '_' and '.' only (it names the files)")
    return name


def load_results(path: str | os.PathLike, device: str | None = None) -> Results:
    """The results in ``path``; an empty Results for ``device`` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        if device is None:
            raise UserError(f"{path}: no such results file")
        return Results(device=device)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable results file ({exc})") from None
    return Results.from_json(data, str(path))


def dumps(results: Results) -> str:
    return json.dumps(results.to_json(), indent=1, sort_keys=False, allow_nan=False) + "\n"


def save_results(results: Results, path: str | os.PathLike) -> None:
    from mambalitesr.imageio import atomic_path

    for row in results.rows:
        row.validate()
    text = dumps(results)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ---------------------------------------------------------------- the machine


def _jetson_model() -> str | None:
    try:
        text = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return None
    return text or None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_device_name() -> str:
    """A stable name for this machine: ``orin-nano`` (etc.) on a Jetson, else ``cpu-<arch>-<N>core``."""
    model = _jetson_model()
    if model and "jetson" in model.lower():
        words = model.lower().replace("nvidia", "").replace("jetson", "").replace("developer kit", "").split()
        keep = [w for w in words if w.isalnum() and w not in ("engineering", "reference")]
        return check_device_name("-".join(keep[:2]) or "jetson")
    return f"cpu-{platform.machine()}-{os.cpu_count()}core"


def mixer_width() -> int | None:
    """Floats per vector of the fused C mixer here (16 AVX-512, 8 AVX2, 4 SSE/NEON), None when it is not built:
    the same CPU model can differ by an instruction set, and the mixer's speed follows its width."""
    from mambalitesr.errors import MissingDependency
    from mambalitesr.models import mixer_native

    try:
        return mixer_native.vector_width()
    except MissingDependency:
        return None


def machine_description() -> dict:
    """What ran the benchmark: CPU, cores, memory, OS and the versions of the libraries that matter."""
    import importlib.metadata as md

    info = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "board": _jetson_model(),
        "mixer_width": mixer_width(),
    }
    for dist in ("torch", "onnxruntime", "onnxruntime-gpu", "onnxruntime-extensions", "tensorrt", "numpy"):
        try:
            info[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    torch = find("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return {k: v for k, v in info.items() if v is not None}


def machine_line(info: dict) -> str:
    """One line of the machine description, as stored in every row."""
    parts = [info.get("board") or info.get("cpu", "?"), f"{info.get('cores', '?')} cores"]
    if info.get("mixer_width"):
        parts.append(f"C mixer {info['mixer_width']} lanes")
    if info.get("gpu"):
        parts.append(info["gpu"])
    if info.get("memory_gib"):
        parts.append(f"{info['memory_gib']} GiB")
    parts.append(info.get("os", ""))
    libs = [f"{k} {info[k]}" for k in ("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt") if k in info]
    return ", ".join(p for p in parts + libs if p)
