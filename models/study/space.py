"""The search space of the study, and the configs it must compare at equal budget.

Glossary (code name -> paper symbol): C embed_dim, G groups, M mixers, N d_state, E expand,
r rank (None = full rank), K directions, a alpha; anchor_skip and s = 4 are fixed (as the student).

Optuna parameter names are the paper symbols' long names below; ``decode`` turns a trial's
parameters into an SRConfig and a.
"""
from __future__ import annotations

from mambalitesr.models.config import SRConfig

MAX_PARAMS = 300_000  # trials above this are rejected before training
SCALE = 4

CHOICES = {
    "embed_dim": [16, 24, 32, 48],  # C
    "groups": [1, 2, 3, 4],  # G
    "mixers": [1, 2, 3],  # M
    "d_state": [4, 8, 16],  # N
    "expand": [1, 2],  # E
    "rank": [2, 4, 8, 16, None],  # r
    "directions": [1, 4],  # K
}
ALPHA_RANGE = (0.5, 1.0)  # a

# The MambaLiteSR paper's choice (embed 32, 4 x 2 mixers, rank 2), inside this space (anchor skip as every trial).
PAPER = {"embed_dim": 32, "groups": 4, "mixers": 2, "d_state": 16, "expand": 2, "rank": 2, "directions": 1, "alpha": 0.8}


def distributions() -> dict:
    """Optuna distributions of every searched parameter (a fixed, unconditional space)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists = {name: CategoricalDistribution(choices) for name, choices in CHOICES.items()}
    dists["alpha"] = FloatDistribution(*ALPHA_RANGE)
    return dists


def decode(params: dict) -> tuple[SRConfig, float]:
    """Trial parameters -> (SRConfig, a)."""
    cfg = SRConfig(**{name: params[name] for name in CHOICES}, scale=SCALE, anchor_skip=True)
    return cfg, float(params["alpha"])


def encode(cfg: SRConfig, alpha: float) -> dict:
    """SRConfig and a -> trial parameters (for enqueuing a known config)."""
    params = {name: getattr(cfg, name) for name in CHOICES}
    params["alpha"] = alpha
    return params


def student_params() -> dict:
    """The current student (registry STUDENT), trained with the paper's a = 0.8."""
    from mambalitesr.models.registry import STUDENT

    return encode(STUDENT, 0.8)


def effective_rank(cfg: SRConfig) -> int | None:
    """The rank the projections really have: a rank >= min(C, D) builds full-rank projections."""
    if cfg.rank is None or cfg.rank >= min(cfg.embed_dim, cfg.d_inner):
        return None
    return cfg.rank
