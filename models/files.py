"""Where the files shipped with the models live: plain paths, importing nothing else (no torch).

Glossary (code name -> meaning):
    WEIGHTS_DIR   ``models/weights/``: each shipped model's ``<name>.safetensors`` with its model card, and the
                  deployable ``<name>.onnx`` exported from it (the runtime reads that one without torch)
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
