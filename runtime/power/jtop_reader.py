"""jtop (jetson-stats) as a power source, where its service runs.

Glossary: jetson.power == {"rail": {NAME: {"power": mW, "avg": mW, "volt": mV, "curr": mA, ...}},
"tot": {"power": mW, "avg": mW, ...}}; "tot" is the VDD_IN (POM_5V_IN, VIN) rail.
jtop talks to the jtop.service daemon over a socket, so it needs neither root nor a subprocess.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.power.polling import PolledSource
from mambalitesr.runtime.power.sample import PowerSample
from mambalitesr.optional import require

HOW_TO_GET = "pip install jetson-stats, then sudo systemctl start jtop (Jetson only)"


def sample_from_power(power: dict[str, Any], t_monotonic: float) -> PowerSample:
    """jetson.power -> PowerSample; rails without a reading are left out."""
    rails = {}
    for name, rail in (power.get("rail") or {}).items():
        if isinstance(rail, dict) and rail.get("power") is not None:
            rails[name] = (float(rail["power"]), float(rail.get("avg", rail["power"])))
    tot = power.get("tot") or {}
    total = float(tot["power"]) if tot.get("power") is not None else None
    return PowerSample(t_monotonic, total, rails, "jtop")


class JtopSource(PolledSource):
    """Samples jetson.power each time jtop reports new data (every interval_ms at most)."""

    name = "jtop"
    label = "jtop"
    ended_text = "service no longer answering"

    def __init__(self, interval_ms: int = 100) -> None:
        super().__init__()
        jtop = require("jtop", "jtop not available: jetson-stats is not installed", install=HOW_TO_GET).jtop
        self._jetson = jtop(interval=max(interval_ms, 100) / 1000)
        try:
            self._jetson.start()
        except Exception as exc:  # JtopException: "The jtop.service is not active", or a socket error
            raise MissingDependency(
                f"jtop service not active ({exc}): sudo systemctl start jtop, pip install jetson-stats"
            ) from None

    def _read(self, stop: threading.Event) -> PowerSample | None:
        if not self._jetson.ok():  # blocks until the next update; False once jtop stops
            return None
        return sample_from_power(self._jetson.power, time.monotonic())

    def _release(self) -> None:
        self._jetson.close()
