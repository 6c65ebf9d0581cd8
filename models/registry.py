"""Named model variants: ``create_model(name, weights=None)``, ``list_models()``.

Each entry is a config plus, where we ship them, default weights (a safetensors
file in ``models/weights/``). ``test_x4`` is a tiny variant CI runs in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mambalitesr.errors import UserError
from mambalitesr.models.config import SRConfig
from mambalitesr.models.files import WEIGHTS_DIR


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config: SRConfig
    description: str
    default_weights: str | None = None  # file name in WEIGHTS_DIR
    for_tests: bool = False  # a tiny variant whose random weights are fine where the numbers do not matter

    @property
    def weights_path(self) -> Path | None:
        return WEIGHTS_DIR / self.default_weights if self.default_weights else None


TEACHER = SRConfig(embed_dim=60, groups=4, mixers=2, d_state=16, expand=2, rank=None, directions=1, scale=4)
STUDENT = SRConfig(
    embed_dim=32, groups=4, mixers=2, d_state=16, expand=2, rank=16, directions=1, scale=4, anchor_skip=True
)

_ENTRIES = [
    ModelEntry("dvmsr_x4", TEACHER, "teacher: DVMSR (Lei et al., CVPRW 2024), published weights loadable"),
    ModelEntry(
        "mambalitesr_x4", STUDENT, "student: low-rank mixers, distilled from dvmsr_x4", "mambalitesr_x4.safetensors"
    ),
    ModelEntry("mambalitesr_x3", STUDENT.replace(scale=3), "student architecture at x3 (no shipped weights)"),
    ModelEntry("mambalitesr_x2", STUDENT.replace(scale=2), "student architecture at x2 (no shipped weights)"),
    ModelEntry(
        "mambalitesr_paper_x4",
        SRConfig(embed_dim=32, groups=4, mixers=2, d_state=16, expand=2, rank=2, directions=1, scale=4),
        "the MambaLiteSR paper's choice: embed 32, 8 mixers, rank 2",
    ),
    ModelEntry(
        "mambalitesr_xs4_x4",
        STUDENT.replace(directions=4),
        "student with the 4-direction cross-scan",
    ),
    ModelEntry(
        "test_x4",
        SRConfig(embed_dim=8, groups=1, mixers=2, d_state=4, expand=2, rank=4, directions=1, scale=4, anchor_skip=True),
        "tiny variant for tests (CPU, seconds)",
        for_tests=True,
    ),
    ModelEntry(
        "test_xs4_x4",
        SRConfig(embed_dim=8, groups=1, mixers=1, d_state=4, expand=2, rank=4, directions=4, scale=4, anchor_skip=True),
        "tiny 4-direction variant for tests",
        for_tests=True,
    ),
]
REGISTRY = {e.name: e for e in _ENTRIES}


def require_weights(name: str, weights) -> None:
    """UserError when ``name`` would run with random weights: no ``weights`` given and none shipped
    (test variants excepted: their output is never presented as a result)."""
    entry = get_entry(name)
    if weights is None and entry.weights_path is None and not entry.for_tests:
        raise UserError(f"{name} ships no weights; give --weights PATH (e.g. a run's model.safetensors from "
                        "`mambalitesr train`): a random network's output would mean nothing")


def list_models() -> list[str]:
    return list(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}") from None


def create_model(
    name: str, weights: str | Path | None = None, *, scan_backend: str | None = None, pretrained: bool = True
):
    """Build registry entry ``name``; load ``weights`` or, when None and ``pretrained``, its shipped weights.

    ``scan_backend`` None takes the fastest one available on the CPU (``scan.fastest_backend``: "native"
    when its C library is built); the model's ``scan_backend`` attribute says which it got.

    A variant with shipped weights whose file is missing is an error, never random weights:
    pass ``pretrained=False`` for a freshly initialised network.
    """
    from mambalitesr.models.network import MambaSR
    from mambalitesr.models.weights_io import load_weights

    entry = get_entry(name)
    model = MambaSR(entry.config)
    if weights is None and pretrained and entry.weights_path is not None:
        if not entry.weights_path.is_file():
            raise UserError(f"shipped weights for {name} are missing ({entry.weights_path}); reinstall the package")
        weights = entry.weights_path
    if weights is not None:
        load_weights(model, weights)
    if scan_backend is None:
        from mambalitesr.models.scan import fastest_backend

        scan_backend = fastest_backend("cpu")
    model.set_scan_backend(scan_backend)
    return model.eval()
