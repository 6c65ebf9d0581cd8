"""MambaLiteSR: tiny Vision-Mamba super-resolution for edge devices.

The fixed top-level folders ``models/``, ``runtime/``, ``export/`` and
``benchmarks/`` are installed as ``mambalitesr.models`` and so on (setup.py's
``package_dir``); ``pip install -e .`` maps them the same way for a checkout.
See ARCHITECTURE.md for the layers.
"""

__version__ = "0.1.0"
