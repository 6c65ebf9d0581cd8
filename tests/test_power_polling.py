"""The read loop jtop and NVML share (runtime/power/polling.py): exit reasons, pacing, one release."""
from __future__ import annotations

import sys
import threading
import types

from mambalitesr.runtime.power.polling import PolledSource
from mambalitesr.runtime.power.sample import PowerSample


class _Scripted(PolledSource):
    """Reads from a script: numbers become samples, None ends the source, an exception is the library failing."""

    label = "fake"
    ended_text = "no more data"

    def __init__(self, script):
        super().__init__()
        self.script, self.pauses, self.released = list(script), 0, 0

    def _read(self, stop):
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return None if step is None else PowerSample(float(step), 1000.0 * step)

    def _pause(self, stop):
        self.pauses += 1

    def _release(self):
        self.released += 1
        raise RuntimeError("already gone")  # a dead service may fail to close: that must not escape


def test_a_source_that_ends_says_so_and_is_released_once():
    source = _Scripted([1, 2, None])
    got = [s.total_mw for s in source.samples(threading.Event())]
    assert got == [1000.0, 2000.0] and source.pauses == 2
    assert source.exit_reason == "fake stopped after 2 samples (no more data)"
    source.close()
    assert source.released == 1


def test_a_failing_library_is_the_exit_reason():
    source = _Scripted([1, OSError("driver reset")])
    assert len(list(source.samples(threading.Event()))) == 1
    assert source.exit_reason == "fake stopped after 1 samples: driver reset" and source.released == 1


def test_stopping_is_not_a_failure():
    stop = threading.Event()
    source = _Scripted([1, 2, 3])
    for _ in source.samples(stop):
        stop.set()
    assert source.exit_reason is None and source.released == 1


def test_nvml_reader_reports_a_lost_driver(monkeypatch):
    from mambalitesr.runtime.power.nvml_reader import NvmlSource

    readings = iter([39000, 40000, 41000])  # the first reading is the availability probe

    def power(handle):
        try:
            return next(readings)
        except StopIteration:
            raise RuntimeError("GPU is lost") from None

    shut = []
    fake = types.SimpleNamespace(nvmlInit=lambda: None, nvmlShutdown=lambda: shut.append(1),
                                 nvmlDeviceGetHandleByIndex=lambda i: "gpu0", nvmlDeviceGetPowerUsage=power)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    source = NvmlSource(interval_ms=1)
    samples = list(source.samples(threading.Event()))
    assert [s.rails["GPU0_BOARD"] for s in samples] == [(40000.0, 40000.0), (41000.0, 40500.0)]
    assert source.exit_reason == "NVML stopped after 2 samples: GPU is lost" and shut == [1]
