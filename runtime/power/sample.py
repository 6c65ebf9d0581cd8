"""The one sample type every power source produces, and the interface of a source.

Glossary: t_monotonic (s, time.monotonic clock of this process), total_mw (board input power
in mW, None when unknown), rails {NAME: (cur_mw, avg_mw)} as the source reports them (avg is
the source's own running average), source ("jtop", "tegrastats", "nvml").
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterator, Protocol

# Rails that measure the whole board input, most specific first.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "VIN")


@dataclass(frozen=True)
class PowerSample:
    t_monotonic: float
    total_mw: float | None
    rails: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""


def total_of(rails: dict[str, tuple[float, float]]) -> float | None:
    """Current total input power from the first TOTAL_RAILS name present, else None."""
    for name in TOTAL_RAILS:
        if name in rails:
            return rails[name][0]
    return None


class PowerSource(Protocol):
    """A telemetry source. Constructing it checks availability (MissingDependency if not)."""

    name: str
    exit_reason: str | None  # set when the stream ends without being asked to

    def samples(self, stop: threading.Event) -> Iterator[PowerSample]:
        """Yield samples as they come until `stop` is set or the source dies."""
        ...

    def close(self) -> None:
        """Release the source (kill a subprocess, close a socket); safe to call twice."""
        ...
