"""The viewer yields the CPU to the pipeline: its threads run only on CPU time the pipeline leaves.

Glossary (code name -> meaning):
    SCHED_IDLE         Linux's idle scheduling class, set per thread: a normal-priority thread always
                       preempts it and it gets a core only when no normal thread wants one. On a Jetson,
                       where inference runs on the GPU and cores sit idle, the viewer runs at its full
                       rate; on a CPU-bound pipeline the viewers' frame rate drops, not the pipeline's
    VIEWER_NICE        the fallback where SCHED_IDLE is refused: this many nice steps down. A niced thread
                       still takes its weighted share (~10% at +10), which a CPU-bound pipeline loses
    lower_this_thread  applies one of the two to the calling thread (threads it starts later inherit it);
                       other systems share one priority per process, so there it changes nothing and says so
"""
from __future__ import annotations

import os
import sys
import threading

VIEWER_NICE = 10


def lower_this_thread(steps: int = VIEWER_NICE) -> str:
    """Put the calling thread below the pipeline's threads. Returns how: ``"SCHED_IDLE"``, ``"nice +N"``,
    or ``""`` when nothing changed (not Linux, or already at the lowest priority)."""
    if not sys.platform.startswith("linux"):
        return ""
    tid = threading.get_native_id()
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            pass  # refused (a seccomp profile, an RT-only container): fall back to nice
    if steps <= 0:
        return ""
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, before + steps))
        after = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return ""
    return f"nice +{after - before}" if after > before else ""


def thread_is_lowered(native_id: int) -> bool:
    """Whether the thread runs in SCHED_IDLE or nicer than this process's main thread (Linux)."""
    if hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(native_id) == os.SCHED_IDLE:
        return True
    return os.getpriority(os.PRIO_PROCESS, native_id) > os.getpriority(os.PRIO_PROCESS, 0)
