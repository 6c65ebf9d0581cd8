"""The read loop shared by the power sources that poll a library (jtop, NVML).

Glossary (code name -> meaning):
    _read(stop)   one sample from the library, or None when the source ended on its own (jtop's service
                  stopped answering); may block until the next update
    _pause(stop)  what to wait between two reads (NVML: the interval; jtop paces itself in ``_read``)
    _release()    close the library handle; called once, whichever of ``samples`` or ``close`` ends first
    exit_reason   why the stream ended without being asked to (None while it runs or after ``stop``)
"""
from __future__ import annotations

import threading
from typing import Iterator

from mambalitesr.runtime.power.sample import PowerSample


class PolledSource:
    """A PowerSource whose samples come from calling a library in a loop."""

    name = "polled"
    label = "the power source"  # how the exit reason names it
    ended_text = "it stopped answering"  # the exit reason when ``_read`` returns None

    def __init__(self) -> None:
        self.exit_reason: str | None = None
        self._closed = False
        self._close_lock = threading.Lock()

    def _read(self, stop: threading.Event) -> PowerSample | None:
        raise NotImplementedError

    def _pause(self, stop: threading.Event) -> None:
        return None

    def _release(self) -> None:
        return None

    def samples(self, stop: threading.Event) -> Iterator[PowerSample]:
        count = 0
        try:
            while not stop.is_set():
                sample = self._read(stop)
                if sample is None:
                    if not stop.is_set():
                        self.exit_reason = f"{self.label} stopped after {count} samples ({self.ended_text})"
                    break
                if stop.is_set():  # asked to stop while the read blocked: that sample is past the run
                    break
                yield sample
                count += 1
                self._pause(stop)
        except Exception as exc:  # the service or driver went away mid-run
            if not stop.is_set():
                self.exit_reason = f"{self.label} stopped after {count} samples: {exc}"
        finally:
            self.close()

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._release()
        except Exception:  # already torn down with the service or driver: nothing left to release
            pass
