"""Allocator settings the runtime sets for itself, so a frame reuses freed pages instead of mapping fresh ones.

Glossary (glibc mallopt parameter -> meaning):
    M_MMAP_MAX        how many blocks may be served by their own mmap; 0 serves every block from the heap
    M_TRIM_THRESHOLD  free memory at the top of the heap above which glibc returns it to the kernel

Why: an SR frame allocates tensors of tens to hundreds of MB. glibc serves blocks above its mmap threshold
(at most 32 MB, however it is tuned) with a fresh mmap and unmaps them on free, so every frame pays a page
fault per 4 KiB touched: measured 1.08 M minor faults and 3.75 s of system time per 640x360 student frame,
which made a 4x larger frame cost 6.6-8.6x. From the heap, and with the heap never trimmed, the second
frame finds its pages already mapped. The cost: the process keeps its peak heap (one frame's working set).

glibc only (Linux); elsewhere ``keep_freed_memory`` does nothing and says so in its return value.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_TRIM_NEVER = 2**31 - 1  # the largest value mallopt takes (an int): 2 GiB of free heap kept

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed pages mapped; True when glibc took both settings."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _TRIM_NEVER))
    return _applied
