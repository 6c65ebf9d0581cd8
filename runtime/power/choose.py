"""`--power auto|jtop|tegrastats|nvml|none`: which telemetry source a run uses.

Glossary: auto tries jtop (its service running), then tegrastats (the binary, or
--tegrastats-cmd), then NVML (a discrete GPU), and otherwise runs unmeasured, saying so once
per process. An explicit choice that is not available raises MissingDependency with how to get it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.power.sample import PowerSource

POWER_CHOICES = ("auto", "jtop", "tegrastats", "nvml", "none")
DEFAULT_INTERVAL_MS = 100

_told_unavailable = False  # "unavailable" is said once per process, not once per run


def _open(kind: str, interval_ms: int, tegrastats_cmd: str | None) -> PowerSource:
    if kind == "jtop":
        from mambalitesr.runtime.power.jtop_reader import JtopSource

        return JtopSource(interval_ms)
    if kind == "tegrastats":
        from mambalitesr.runtime.power.tegrastats import TegrastatsSource

        return TegrastatsSource(interval_ms, tegrastats_cmd)
    if kind == "nvml":
        from mambalitesr.runtime.power.nvml_reader import NvmlSource

        return NvmlSource(interval_ms)
    raise ValueError(f"unknown power source {kind!r}; choose from {', '.join(POWER_CHOICES)}")


def open_power_source(
    choice: str = "auto",
    *,
    interval_ms: int = DEFAULT_INTERVAL_MS,
    tegrastats_cmd: str | None = None,
    say: Callable[[str], None] | None = None,
) -> PowerSource | None:
    """The source for `--power choice`, or None when running unmeasured (none, or auto with nothing)."""
    global _told_unavailable
    if choice not in POWER_CHOICES:
        raise ValueError(f"unknown --power {choice!r}; choose from {', '.join(POWER_CHOICES)}")
    if interval_ms <= 0:
        raise ValueError(f"--power-interval-ms must be positive, got {interval_ms}")
    if choice == "none":
        return None
    if choice != "auto":
        return _open(choice, interval_ms, tegrastats_cmd)
    reasons = []
    for kind in ("jtop", "tegrastats", "nvml"):
        try:
            return _open(kind, interval_ms, tegrastats_cmd)
        except MissingDependency as exc:
            reasons.append(str(exc).split(":")[0])
    if not _told_unavailable:
        _told_unavailable = True
        (say or (lambda m: print(m, file=sys.stderr)))(
            "power: telemetry unavailable (" + "; ".join(reasons) + "); watts and joules will not be measured"
        )
    return None


def add_power_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --power, --power-interval-ms and --tegrastats-cmd to a subcommand's parser."""
    from mambalitesr.argtypes import int_range

    group = parser.add_argument_group("power telemetry")
    group.add_argument(
        "--power", choices=POWER_CHOICES, default="auto",
        help="telemetry source (default auto: jtop, then tegrastats, then NVML, else unmeasured)",
    )
    group.add_argument(
        "--power-interval-ms", type=int_range(1, 60_000), default=DEFAULT_INTERVAL_MS, metavar="MS",
        help=f"sampling interval (default {DEFAULT_INTERVAL_MS})",
    )
    group.add_argument(
        "--tegrastats-cmd", default=None, metavar="CMD",
        help="command run instead of tegrastats (`--interval MS` is appended), e.g. 'sudo tegrastats'",
    )
