"""SIGINT and SIGTERM, one mechanism for every command.

Glossary (code name -> meaning):
    Interrupted   a KeyboardInterrupt carrying the signal number: raised in the main thread by the first
                  signal (SIGINT or SIGTERM alike), so every ``with atomic_path`` on the way out removes its
                  temporary file and every ``except KeyboardInterrupt`` (the trainer's checkpoint) runs
    graceful      a streaming command (camera) registers ``on_first`` / ``on_second`` instead: the first
                  signal asks the pipeline to drain and print its summary, the second abandons the drain
    second signal without a graceful stop, a second signal ends the process at once (os._exit, 128 + the
                  signal) after removing every temporary file of an atomic write still in progress: the
                  clean-up of the first is abandoned (a checkpoint being saved is not renamed into place;
                  the previous one stays). Raising again instead would land anywhere, e.g. in a data
                  loader's __del__, where Python prints a traceback and carries on.
    temporaries   the temporary files of atomic writes in progress (imageio.atomic_path registers them)

What each command keeps (also in README): upscale and export write nothing partial (the temporary
file is removed; finished files of a batch stay); eval and bench keep what they already saved
(bench saves its results file after every row); train saves a checkpoint at the step reached (a
second signal abandons that save); camera drains, finalises its sink and prints the summary.
Exit status: 128 + the signal (130 for SIGINT, 143 for SIGTERM); the camera exits 0 after a SIGTERM
drain, since for a stream that never ends a stop request is its normal end (systemd's stop).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_state = {"received": [], "graceful": None, "label": "mambalitesr"}
_temporaries: set[str] = set()


def track(path) -> None:
    _temporaries.add(os.fspath(path))


def untrack(path) -> None:
    _temporaries.discard(os.fspath(path))


def _handle(signum, frame) -> None:
    _state["received"].append(signum)
    graceful = _state["graceful"]
    name = signal.Signals(signum).name
    if graceful is not None:
        on_first, on_second = graceful
        (on_first if len(_state["received"]) == 1 else on_second)(name)
        return
    if len(_state["received"]) > 1:
        _abandon(signum, name)
    raise Interrupted(signum)


def _abandon(signum: int, name: str) -> None:
    for path in list(_temporaries):
        try:
            os.unlink(path)
        except OSError:
            pass
    try:
        sys.stdout.flush()
    except Exception:  # a closed or broken stdout must not stop the exit
        pass
    os.write(2, f"{_state['label']}: {name} again: stopped at once, clean-up abandoned\n".encode())
    os._exit(128 + signum)


def abandon(name: str) -> None:
    """End the process at once, as a second signal does (for a graceful stop's ``on_second``)."""
    _abandon(int(signal.Signals[name]), name)


def received() -> int | None:
    """The first signal received since ``handled()`` began, or None."""
    return _state["received"][0] if _state["received"] else None


@contextmanager
def handled(label: str | None = None):
    """Install the handler for SIGINT and SIGTERM (main thread only; elsewhere a no-op) and restore after;
    ``label`` (e.g. "mambalitesr train") starts the line a second signal prints."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    outer, outer_label = _state["received"], _state["label"]
    _state["received"] = []
    _state["label"] = label or outer_label
    try:
        yield
    finally:
        got = _state["received"]
        for sig, handler in previous.items():
            # After a signal the process is on its way out: a second one during the interpreter's own
            # shutdown (atexit, finalizers) must end it at once too, not raise KeyboardInterrupt there.
            signal.signal(sig, _late(got[0]) if got else handler)
        _state["received"], _state["label"] = outer, outer_label


def _late(first: int):
    label = _state["label"]

    def handler(signum, frame) -> None:
        _state["label"] = label
        _abandon(first, signal.Signals(signum).name)

    return handler


@contextmanager
def graceful(on_first: Callable[[str], None], on_second: Callable[[str], None]):
    """Within this block a signal calls ``on_first(name)`` (then ``on_second(name)``) instead of raising."""
    before = _state["graceful"]
    _state["graceful"] = (on_first, on_second)
    try:
        yield
    finally:
        _state["graceful"] = before
