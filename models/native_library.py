"""Finding and opening the project's own C libraries (built by setup.py next to their loaders), ABI-checked.

The kernels are plain shared libraries loaded with ctypes, so a stale build (an older ABI left over from a
previous ``pip install -e .``) would silently misread its params struct; every loader checks the library's
own ABI function first. Torch-free: the ONNX Runtime kernels and the torch paths share it.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os

from mambalitesr.errors import MissingDependency


def library_path(stem: str, folder: str | None = None) -> str | None:
    """The built library ``stem`` (e.g. ``_scan_cpu``) in ``folder`` (default: beside this package), or None when
    it has not been built."""
    here = folder or os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, stem + suffix)
        if os.path.isfile(path):
            return path
    return None


def open_library(path: str | None, what: str, abi_function: str, abi_version: int) -> ctypes.CDLL:
    """Open the library at ``path`` (None: not built); MissingDependency naming ``what`` and the fix when it is
    absent, broken or stale."""
    if path is None:
        raise MissingDependency(f"{what} library not built: run `pip install -e .`")
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise MissingDependency(f"{what} library {path} cannot be loaded ({exc}): run `pip install -e .`") from exc
    abi = getattr(lib, abi_function)
    abi.restype = ctypes.c_int
    if abi() != abi_version:
        raise MissingDependency(f"{what} library {path} is stale (ABI mismatch): run `pip install -e .`")
    return lib


class Library:
    """One of the project's C libraries, opened once and ABI-checked, its functions declared by ``declare(lib)``.

    ``path()`` is where the build put it (None: not built); tests swap ``path`` and reset ``lib`` to see the
    errors a missing or stale build gives.
    """

    def __init__(self, stem: str, what: str, abi_function: str, abi_version: int, declare):
        self.stem, self.what, self.abi_function, self.abi_version = stem, what, abi_function, abi_version
        self.declare = declare
        self.lib: ctypes.CDLL | None = None

    def path(self) -> str | None:
        return library_path(self.stem)

    def load(self) -> ctypes.CDLL:
        """The opened library; MissingDependency if it is not built, cannot load or is stale."""
        if self.lib is None:
            lib = open_library(self.path(), self.what, self.abi_function, self.abi_version)
            self.declare(lib)
            self.lib = lib
        return self.lib
