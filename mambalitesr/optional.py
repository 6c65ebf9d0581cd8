"""Optional dependencies: import one when a feature needs it, or say what is missing and how to get it.

Glossary (code name -> meaning):
    require   the module, or MissingDependency "<what> (<the ImportError>): <how to install>"
    extra     the pip extra that brings the module: ``pip install 'mambalitesr[<extra>]'``
    find      the module or None, for probes that only decide whether a check can run
    missing   the MissingDependency for an ImportError of a module an extra brings (None for any other)

Every optional import in the package goes through here, so the message always names the missing piece and
the command that installs it, and no caller falls back silently.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from mambalitesr.errors import MissingDependency


def install_hint(extra: str | None = None, package: str | None = None) -> str:
    """The command that installs an extra (``pip install 'mambalitesr[web]'``) or a package."""
    if extra:
        return f"pip install 'mambalitesr[{extra}]'"
    return f"pip install {package}"


# The top-level module -> the extra that installs it. `missing` uses it for the commands whose module imports
# one of them at its top (eval, models, train, bench import torch), so a runtime-only install (`pip install .`)
# gets the same one line as a `require` call gives, not a traceback.
EXTRA_OF = {
    "torch": "torch", "onnx": "export", "onnxscript": "export", "onnxruntime": "onnxruntime",
    "optuna": "study", "matplotlib": "bench", "aiohttp": "web", "pytriton": "serve", "tritonclient": "serve",
    "jtop": "jetson", "pycuda": "jetson",
}
# torch's wheel on PyPI is the CUDA build on Linux x86-64 and is no use on a Jetson: say where the others are.
TORCH_HINT = ("pip install 'mambalitesr[torch]' (for the CPU build, first pip install torch==2.13.0 --index-url "
              "https://download.pytorch.org/whl/cpu; on a Jetson, NVIDIA's JetPack wheel)")


def require(module: str, what: str, *, extra: str | None = None, install: str | None = None) -> ModuleType:
    """``import module``; MissingDependency "``what`` (the ImportError): install" when it fails.

    ``install`` is the full instruction; without it, the pip extra ``extra`` is named, else the module itself.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        how = install or install_hint(extra, module.split(".")[0])
        raise MissingDependency(f"{what} ({exc}): {how}") from None


def find(module: str) -> ModuleType | None:
    """``import module``, or None when it is not installed (for optional checks, never for a feature)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def missing(exc: ImportError, what: str) -> MissingDependency | None:
    """The MissingDependency "``what`` needs <module> (the ImportError): <install>" when ``exc`` is the import
    of a module one of the extras brings; None for any other module (a bug, which keeps its traceback)."""
    root = (getattr(exc, "name", None) or "").split(".")[0]
    if root not in EXTRA_OF:
        return None
    how = TORCH_HINT if root == "torch" else install_hint(EXTRA_OF[root])
    return MissingDependency(f"{what} needs {root} ({exc}): {how}")
