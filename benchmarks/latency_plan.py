"""What ``bench latency`` runs: the models (with their weights), sizes, batches, backends and lanes' options.

Glossary (code name -> meaning): see benchmarks/latency.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mambalitesr.benchmarks.timing import IterationPolicy
from mambalitesr.errors import UserError

DEFAULT_SIZES = ((90, 160), (180, 320), (360, 640))  # (h, w): x4 gives 640x360 .. 2560x1440
DEFAULT_BATCHES = (1, 4)
BACKENDS = ("torch", "onnxruntime", "tensorrt")
# CUDA lanes are tried by default: where there is no CUDA they are one skipped row each, with the reason
DEFAULT_TORCH_DEVICES = ("cpu", "cuda")
DEFAULT_PROVIDERS = ("cpu", "cuda,cpu")
ONNX_GRAPHS = ("plugin", "fused", "portable")


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
