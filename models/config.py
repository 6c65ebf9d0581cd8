"""Typed hyper-parameters of the SR networks; everything derivable is derived.

Glossary (code name -> paper symbol):
    embed_dim C, groups G, mixers M (per group), d_state N, expand E, d_inner D = E * C,
    dt_rank R = ceil(C / 16) unless given, rank r (low-rank in_proj / out_proj; None = full),
    directions K (1 or 4), scale s, d_conv (depthwise causal conv kernel over tokens),
    anchor_skip: the output adds the input repeated s^2 times before the pixel shuffle
    (nearest-neighbour upsampling), so the network learns only the residual detail.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

# DIV2K RGB mean, subtracted at the input and added back at the output (image range 1).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


@dataclass(frozen=True)
class SRConfig:
    """One network of the family: shallow conv, G residual groups of M Mamba mixers, pixel-shuffle upsampler."""

    embed_dim: int = 32
    groups: int = 4
    mixers: int = 2
    d_state: int = 16
    expand: int = 2
    dt_rank: int | None = None
    rank: int | None = None
    directions: int = 1
    scale: int = 4
    d_conv: int = 4
    anchor_skip: bool = False  # add the nearest-upsampled input before the output (learn a residual)

    def __post_init__(self):
        if self.directions not in (1, 4):
            raise ValueError(f"directions must be 1 or 4, got {self.directions}")
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        for name in ("embed_dim", "groups", "mixers", "d_state", "expand", "d_conv"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be positive or None, got {self.rank}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.embed_dim

    @property
    def dt_rank_(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.embed_dim / 16)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SRConfig":
        return cls(**json.loads(text))

    def replace(self, **changes) -> "SRConfig":
        return dataclasses.replace(self, **changes)
