"""The frame slot: shared memory through which the pipeline hands its newest output to the viewer process.

Glossary (code name -> meaning):
    slot         one anonymous shared buffer (memfd on Linux, an unlinked temporary file elsewhere) holding
                 the captured frame (H, W, 3) followed by the SR output (s*H, s*W, 3), both uint8. No name
                 in /dev/shm, so nothing can leak: the memory goes when both processes have closed it
    generation   1, 2, ... each time the writer makes a new buffer (the first frame, or a larger one); the
                 descriptor travels with the frame message of a new generation only
    handoff      the writer fills the slot only after the reader has said it took the previous frame, so
                 nobody reads a half-written picture; the message that follows the copy (a system call on
                 each side) orders the copy before the read on every CPU, ARM included
    SlotWriter   the pipeline side: ``put(out)`` copies into the slot, returns the message to send
    SlotReader   the viewer side: ``take(message, fds)`` copies out of the slot, returns an Output
"""
from __future__ import annotations

import mmap
import os
import socket
import sys
import tempfile

import numpy as np


def _anonymous_fd(size: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("mambalitesr-viewer-slot", getattr(os, "MFD_CLOEXEC", 0))
    else:
        handle = tempfile.TemporaryFile()  # unlinked already; its descriptor is all that remains
        fd = os.dup(handle.fileno())
        handle.close()
    os.ftruncate(fd, size)
    return fd


def _views(buffer, lr_shape, sr_shape) -> tuple[np.ndarray, np.ndarray]:
    lr_bytes = int(np.prod(lr_shape))
    lr = np.frombuffer(buffer, np.uint8, lr_bytes, 0).reshape(lr_shape)
    sr = np.frombuffer(buffer, np.uint8, int(np.prod(sr_shape)), lr_bytes).reshape(sr_shape)
    return lr, sr


class SlotWriter:
    def __init__(self):
        self.generation = 0
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self.size = 0

    def put(self, out) -> tuple[dict, tuple[int, ...]]:
        """Copy ``out`` (an Output) into the slot; returns (message, descriptors to send with it)."""
        lr_src, sr_src = out.frame.image, out.sr
        need = lr_src.nbytes + sr_src.nbytes
        fds: tuple[int, ...] = ()
        if need > self.size:
            self._replace(need)
            fds = (self._fd,)
        lr, sr = _views(self._map, lr_src.shape, sr_src.shape)
        np.copyto(lr, lr_src)
        np.copyto(sr, sr_src)
        message = {"frame": out.index, "fmt": out.frame.fmt, "lr": list(lr_src.shape), "sr": list(sr_src.shape),
                   "generation": self.generation}
        return message, fds

    def _replace(self, need: int) -> None:
        self.close()
        size = -(-need // mmap.PAGESIZE) * mmap.PAGESIZE
        self._fd = _anonymous_fd(size)
        self._map = mmap.mmap(self._fd, size)
        self.size = size
        self.generation += 1

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.size = 0


class SlotReader:
    def __init__(self):
        self.generation = 0
        self._map: mmap.mmap | None = None

    def take(self, message: dict, fds: list[int]):
        """The frame ``message`` announces, copied out of the slot -> stream.sinks.Output."""
        from mambalitesr.runtime.core.frames import Frame, Output

        if fds:
            self.close()
            fd = fds[0]
            try:
                self._map = mmap.mmap(fd, os.fstat(fd).st_size)
            finally:
                for extra in fds:
                    os.close(extra)
            self.generation = message["generation"]
        if self._map is None or message["generation"] != self.generation:
            raise RuntimeError(f"frame slot generation {message['generation']} announced without its memory "
                               f"(have {self.generation})")
        lr, sr = _views(self._map, tuple(message["lr"]), tuple(message["sr"]))
        index = int(message["frame"])
        return Output(sr.copy(), Frame(lr.copy(), index, 0.0, message["fmt"]), index)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def supported() -> str:
    """'' when this system can run the viewer process; otherwise why not."""
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds") or sys.platform == "win32":
        return "the web viewer's frame hand-off needs a Unix system (Linux or macOS)"
    return ""
