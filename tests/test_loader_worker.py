"""A training loader worker whose trainer is gone mid-handshake prints nothing; other thread errors still do.

The fd server here is the real one (``multiprocessing.resource_sharer``) and its peer really disappears
mid-handshake, as when the trainer exits on SIGTERM while it fetches a batch (CI saw that traceback).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent("""
    import os, socket, sys, time
    from multiprocessing import resource_sharer
    if sys.argv[1] == "hooked":
        from mambalitesr.models.loader_worker import init_worker
        init_worker(0)
    read_end, _ = os.pipe()
    shared = resource_sharer.DupFd(read_end)  # starts the fd server thread, as a worker sending a batch does
    for _ in range(3):  # a peer that connects, then leaves without the handshake
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(resource_sharer._resource_sharer._address)
        peer.send(b"x" * 64)
        peer.close()
        time.sleep(0.2)
    try:
        raise ZeroDivisionError("unrelated")
    except ZeroDivisionError:
        sys.excepthook(*sys.exc_info())  # the same hook, another error
    print("done", flush=True)
""")


def _run(mode: str) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr
    return proc.stdout, proc.stderr


def test_without_the_hook_the_lost_peer_prints_a_traceback():
    """The reproduction is real: unhooked, Python prints the fd server's error."""
    _, err = _run("plain")
    if "resource_sharer.py" not in err:
        pytest.fail(f"the fd server's lost peer was not reproduced: {err!r}")


def test_the_worker_hook_silences_only_the_lost_peer():
    _, err = _run("hooked")
    assert "resource_sharer.py" not in err, err
    assert "ZeroDivisionError: unrelated" in err, err  # every other error still prints
