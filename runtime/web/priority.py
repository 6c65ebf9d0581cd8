"""The viewer yields the CPU to the pipeline: its threads run at a lower scheduling priority.

Glossary (code name -> meaning):
    VIEWER_NICE        how many nice steps below the pipeline the encoder and server threads run; under
                       CPU contention the viewers' frame rate drops first, not the pipeline's
    lower_this_thread  Linux gives each thread its own nice value (setpriority on the thread id); other
                       systems share one value per process, so there the call changes nothing and says so
"""
from __future__ import annotations

import os
import sys
import threading

VIEWER_NICE = 10


def lower_this_thread(steps: int = VIEWER_NICE) -> bool:
    """Make the calling thread up to ``steps`` nicer; True when it is now below the others (Linux)."""
    if not sys.platform.startswith("linux") or steps <= 0:
        return False
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, before + steps))
        return os.getpriority(os.PRIO_PROCESS, tid) > before  # False when already at the lowest (19)
    except OSError:
        return False
