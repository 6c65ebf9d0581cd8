"""Loading and saving weights without executing code from the file.

- ``.safetensors``: tensors plus metadata {"config": SRConfig JSON, "model": registry name, ...}.
  A file whose config does not match the network it is loaded into is refused.
- ``.pth`` / ``.pt``: a plain state_dict read with ``torch.load(weights_only=True)``
  (the teacher's published file); a pickle that needs code to unpickle is refused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from mambalitesr.errors import UserError
from mambalitesr.models.config import SRConfig


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state_dict, metadata) from a .safetensors or a plain .pth state_dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "refused"
        # torch's first line advises weights_only=False (i.e. running the file's code): name the blocked thing instead
        lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.startswith(("Weights only load failed",
                                                                                         "Check the documentation"))]
        raise UserError(
            f"{path}: refused to load ({type(exc).__name__}: {(lines or ['empty or unreadable file'])[0][:200]}); "
            "weights must be a safetensors file or a plain state_dict readable with weights_only=True"
        ) from None
    if isinstance(state, dict) and "params" in state and isinstance(state["params"], dict):
        state = state["params"]  # BasicSR-style wrapper
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a state_dict of tensors")
    return state, {}


def check_config(path: str | Path, metadata: dict[str, str], cfg: SRConfig) -> None:
    """Refuse a safetensors file whose stored config differs from ``cfg``."""
    if "config" not in metadata:
        raise UserError(f"{path}: no 'config' in the safetensors metadata; cannot check it matches the model")
    try:
        stored = SRConfig.from_json(metadata["config"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: unreadable config metadata ({exc})") from None
    if stored != cfg:
        theirs, ours = json.loads(stored.to_json()), json.loads(cfg.to_json())
        diff = ", ".join(f"{k}: file {theirs[k]} vs model {ours[k]}" for k in ours if theirs.get(k) != ours[k])
        raise UserError(f"{path}: weights were trained for another config ({diff})")


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``model`` with strict=True, after checking the config when the file has one."""
    state, metadata = read_state_dict(path)
    if Path(path).suffix == ".safetensors":
        check_config(path, metadata, model.config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = "; ".join(line.strip() for line in str(exc).splitlines()[1:4])
        raise UserError(f"{path}: weights do not fit model {model.config} ({first})") from None


def save_weights(model: nn.Module, path: str | Path, name: str, **extra: str) -> None:
    """Write the model's tensors and config to a safetensors file, atomically."""
    from safetensors.torch import save

    from mambalitesr.imageio import write_bytes_atomic

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"config": model.config.to_json(), "model": name, "format": "mambalitesr-1", **extra}
    # bytes first, then one checked write: safetensors' own file writer reports a full disk as its own error type
    write_bytes_atomic(path, save(state, metadata=metadata))
