"""NVML (nvidia-ml-py) as a power source on a discrete GPU: the board power of GPU 0.

Glossary: nvmlDeviceGetPowerUsage -> mW drawn by the whole GPU board (not the host), sampled
by the driver; rails {"GPU0_BOARD": (cur_mw, mean_mw since start)}; total_mw = that board power.
"""
from __future__ import annotations

import threading
import time
from typing import Iterator

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.power.sample import PowerSample

HOW_TO_GET = "pip install nvidia-ml-py, with an NVIDIA driver and a discrete GPU"


class NvmlSource:
    """Polls GPU 0's board power every interval_ms."""

    name = "nvml"

    def __init__(self, interval_ms: int = 100) -> None:
        try:
            import pynvml  # provided by nvidia-ml-py
        except ImportError:
            raise MissingDependency(f"NVML not available: nvidia-ml-py is not installed: {HOW_TO_GET}") from None
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
        self.exit_reason: str | None = None
        self._closed = False
        self._lock = threading.Lock()

    def samples(self, stop: threading.Event) -> Iterator[PowerSample]:
        count, mean = 0, 0.0
        try:
            while not stop.is_set():
                mw = float(self._nvml.nvmlDeviceGetPowerUsage(self._handle))
                count += 1
                mean += (mw - mean) / count
                yield PowerSample(time.monotonic(), mw, {"GPU0_BOARD": (mw, mean)}, "nvml")
                stop.wait(self.interval_s)
        except Exception as exc:  # driver reset, GPU lost
            if not stop.is_set():
                self.exit_reason = f"NVML stopped after {count} samples: {exc}"
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # NVML already torn down with the driver: nothing left to release
            pass
