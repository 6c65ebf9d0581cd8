"""Training checkpoints that resume exactly, stored as safetensors (no pickle anywhere).

A checkpoint holds the student, its EMA, the feature projector, optimiser and
scheduler state, the step, and the torch RNG state. Tensors are stored flat under
their path in the state (``ema/module.head.weight``, ``optimizer/state/3/exp_avg``);
everything else (config JSON, step, scalar optimiser and scheduler fields) is one
JSON document in the file's metadata. The file is small (about 2 MB for the student),
so a run's checkpoint can be committed and resumed on another machine.

An older ``checkpoint.pt`` (``torch.save`` of the same state) is still read, with
``torch.load(weights_only=True)``, when no ``checkpoint.safetensors`` is present.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from mambalitesr.errors import UserError
from mambalitesr.imageio import write_bytes_atomic

LATEST = "checkpoint.safetensors"
LEGACY = "checkpoint.pt"
_TENSOR = "__tensor__"  # marks a leaf of the JSON skeleton whose value is the tensor stored under that path


def flatten_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a nested state into ``{path: tensor}`` and a JSON skeleton that refers to them."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node, path: str):
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().contiguous().cpu()
            return {_TENSOR: path}
        if isinstance(node, dict):
            return {"dict": [[k, walk(v, f"{path}/{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return {"tuple" if isinstance(node, tuple) else "list": [walk(v, f"{path}/{i}") for i, v in enumerate(node)]}
        if node is None or isinstance(node, (bool, int, float, str)):
            return {"value": node}
        raise TypeError(f"checkpoint state at {path or '/'} holds a {type(node).__name__}, not tensors or plain data")

    return tensors, walk(state, "")


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: dict):
    def build(node):
        if _TENSOR in node:
            return tensors[node[_TENSOR]]
        if "dict" in node:
            return {k: build(v) for k, v in node["dict"]}
        if "list" in node:
            return [build(v) for v in node["list"]]
        if "tuple" in node:
            return tuple(build(v) for v in node["tuple"])
        return node["value"]

    return build(skeleton)


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    path = Path(run_dir) / LATEST
    from safetensors.torch import save

    tensors, skeleton = flatten_state(state)
    # bytes first, then one checked write: safetensors' own file writer reports a full disk as its own error type
    write_bytes_atomic(path, save(tensors, metadata={"state": json.dumps(skeleton)}))
    return path


def _reason(exc: Exception) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.startswith(("Weights only load failed",
                                                                                     "Check the documentation"))]
    return f"{type(exc).__name__}: {(lines or ['empty or unreadable file'])[0][:200]}"


def load_checkpoint(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / LATEST
    if path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                skeleton = json.loads((f.metadata() or {})["state"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            return unflatten_state(tensors, skeleton)
        except Exception as exc:  # a truncated file, a foreign safetensors file, bad metadata: all unusable
            raise UserError(f"{path}: unreadable checkpoint ({_reason(exc)})") from None
    legacy = run_dir / LEGACY
    if not legacy.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(legacy, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means the file is unusable
        raise UserError(f"{legacy}: unreadable checkpoint ({_reason(exc)})") from None
