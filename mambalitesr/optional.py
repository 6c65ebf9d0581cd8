"""Optional dependencies: import one when a feature needs it, or say what is missing and how to get it.

Glossary (code name -> meaning):
    require   the module, or MissingDependency "<what> (<the ImportError>): <how to install>"
    extra     the pip extra that brings the module: ``pip install 'mambalitesr[<extra>]'``
    find      the module or None, for probes that only decide whether a check can run

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
