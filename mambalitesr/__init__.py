"""MambaLiteSR: tiny Vision-Mamba super-resolution for edge devices.

The fixed top-level folders ``models/``, ``runtime/``, ``export/`` and
``benchmarks/`` are installed as ``mambalitesr.models`` and so on.
"""
import os as _os

__version__ = "0.1.0"

# Run from a source checkout without installing (``python -m mambalitesr`` in the
# repository root): the subpackages live beside this folder, not inside it.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "models", "__init__.py")) and not _os.path.isdir(
    _os.path.join(_os.path.dirname(__file__), "models")
):
    __path__.append(_root)  # noqa: F821 - __path__ is defined for packages
