"""NVML (nvidia-ml-py) as a power source on a discrete GPU: the board power of GPU 0.

Glossary: nvmlDeviceGetPowerUsage -> mW drawn by the whole GPU board (not the host), sampled
by the driver; rails {"GPU0_BOARD": (cur_mw, mean_mw since start)}; total_mw = that board power.
"""
from __future__ import annotations

import threading
import time

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.power.polling import PolledSource
from mambalitesr.runtime.power.sample import PowerSample
from mambalitesr.optional import require

HOW_TO_GET = "pip install nvidia-ml-py, with an NVIDIA driver and a discrete GPU"


class NvmlSource(PolledSource):
    """Polls GPU 0's board power every interval_ms."""

    name = "nvml"
    label = "NVML"

    def __init__(self, interval_ms: int = 100) -> None:
        super().__init__()
        pynvml = require("pynvml", "NVML not available: nvidia-ml-py is not installed", install=HOW_TO_GET)
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded
            raise MissingDependency(f"NVML not available ({exc}): {HOW_TO_GET}") from None
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            pynvml.nvmlDeviceGetPowerUsage(self._handle)  # some boards do not report power
        except Exception as exc:
            pynvml.nvmlShutdown()
            raise MissingDependency(f"NVML cannot read the power of GPU 0 ({exc}): {HOW_TO_GET}") from None
        self.interval_s = interval_ms / 1000
        self._count, self._mean = 0, 0.0

    def _read(self, stop: threading.Event) -> PowerSample:
        mw = float(self._nvml.nvmlDeviceGetPowerUsage(self._handle))
        self._count += 1
        self._mean += (mw - self._mean) / self._count
        return PowerSample(time.monotonic(), mw, {"GPU0_BOARD": (mw, self._mean)}, "nvml")

    def _pause(self, stop: threading.Event) -> None:
        stop.wait(self.interval_s)

    def _release(self) -> None:
        self._nvml.nvmlShutdown()
