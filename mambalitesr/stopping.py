"""SIGINT and SIGTERM, one mechanism for every command.

Glossary (code name -> meaning):
    Interrupted   a KeyboardInterrupt carrying the signal number: raised in the main thread by the first
                  signal (SIGINT or SIGTERM alike), so every ``with atomic_path`` on the way out removes its
                  temporary file and every ``except KeyboardInterrupt`` (the trainer's checkpoint) runs
    graceful      a streaming command (camera) registers ``on_first`` / ``on_second`` instead: the first
                  signal asks the pipeline to drain and print its summary, the second abandons the drain
    second signal without a graceful stop, a second signal raises Interrupted again, wherever the first
                  one's clean-up is: the clean-up in progress is abandoned (a checkpoint being saved is
                  not renamed into place; the previous one stays)

What each command keeps (also in README): upscale and export write nothing partial (the temporary
file is removed; finished files of a batch stay); eval and bench keep what they already saved
(bench saves its results file after every row); train saves a checkpoint at the step reached (a
second signal abandons that save); camera drains, finalises its sink and prints the summary.
Exit status: 128 + the signal (130 for SIGINT, 143 for SIGTERM); the camera exits 0 after a SIGTERM
drain, since for a stream that never ends a stop request is its normal end (systemd's stop).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_state = {"received": [], "graceful": None}


def _handle(signum, frame) -> None:
    _state["received"].append(signum)
    graceful = _state["graceful"]
    name = signal.Signals(signum).name
    if graceful is not None:
        on_first, on_second = graceful
        (on_first if len(_state["received"]) == 1 else on_second)(name)
        return
    raise Interrupted(signum)


def received() -> int | None:
    """The first signal received since ``handled()`` began, or None."""
    return _state["received"][0] if _state["received"] else None


@contextmanager
def handled():
    """Install the handler for SIGINT and SIGTERM (main thread only; elsewhere a no-op) and restore after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    outer = _state["received"]
    _state["received"] = []
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _state["received"] = outer


@contextmanager
def graceful(on_first: Callable[[str], None], on_second: Callable[[str], None]):
    """Within this block a signal calls ``on_first(name)`` (then ``on_second(name)``) instead of raising."""
    before = _state["graceful"]
    _state["graceful"] = (on_first, on_second)
    try:
        yield
    finally:
        _state["graceful"] = before
