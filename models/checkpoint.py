"""Training checkpoints that resume exactly, loaded without unpickling code.

A checkpoint holds the student, its EMA, the feature projector, optimiser and
scheduler state, the step, and the torch RNG state: tensors and plain containers
only, so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from mambalitesr.errors import UserError
from mambalitesr.imageio import write_bytes_atomic

LATEST = "checkpoint.pt"


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    path = Path(run_dir) / LATEST
    buffer = io.BytesIO()  # torch.save's own file writer reports a full disk as a bare RuntimeError
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getbuffer())
    return path


def load_checkpoint(run_dir: Path) -> dict:
    path = Path(run_dir) / LATEST
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means the file is unusable
        lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.startswith(("Weights only load failed",
                                                                                         "Check the documentation"))]
        raise UserError(f"{path}: unreadable checkpoint ({type(exc).__name__}: "
                        f"{(lines or ['empty or unreadable file'])[0][:200]})") from None
