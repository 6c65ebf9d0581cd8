"""Which board and power mode this is: the device-tree model string and the nvpmodel power mode.

Glossary (code name -> meaning):
    device model   ``/proc/device-tree/model`` with its trailing NUL removed, e.g. "NVIDIA Jetson Orin Nano
                   Engine Reference Developer Kit Super"; the CUDA device name ("Orin") does not tell an Orin
                   Nano 4GB, 8GB, Super, NX or AGX apart, this string does. None where there is no device tree
                   (x86 PCs, most containers without /proc/device-tree)
    power mode     ``nvpmodel -q``: the mode's name ("15W", "MAXN_SUPER") and number; the clocks TensorRT's
                   tactic timings were taken under. None where nvpmodel is absent or says nothing parseable
    platform       {"device_model": str | None, "power_mode": {"name": str, "id": int | None} | None}

Inside a container /proc/device-tree is usually masked and nvpmodel is absent: the Jetson image's run.sh
copies both from the host into the mounted data folder and names the copies in
``MAMBALITESR_DEVICE_TREE_MODEL`` (a file with the model bytes) and ``MAMBALITESR_NVPMODEL_QUERY`` (a file
with the ``nvpmodel -q`` output); they are read when the originals are not there.

Used by the engine sidecar (``export.engine`` writes it, the loader refuses an engine built on another model)
and by the Jetson container's engine cache key. Plain Python: no TensorRT, CUDA or torch.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
NVPMODEL_TIMEOUT_S = 10.0

_POWER_MODE_LINE = re.compile(r"^\s*NV\s+Power\s+Mode\s*:\s*(?P<name>\S.*?)\s*$", re.IGNORECASE)
_MODE_ID_LINE = re.compile(r"^\s*(?P<id>\d+)\s*$")


def _read_model(path) -> str | None:
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    text = raw.replace(b"\x00", b"").decode("utf-8", errors="replace").strip()
    return text or None


def device_model(path: Path | None = None) -> str | None:
    """The device tree's model string, or None where there is none (not a Jetson, or not mounted).

    Without ``path``: /proc/device-tree/model, else the host's copy named by $MAMBALITESR_DEVICE_TREE_MODEL.
    """
    if path is not None:
        return _read_model(path)
    copy = os.environ.get("MAMBALITESR_DEVICE_TREE_MODEL")
    return _read_model(DEVICE_TREE_MODEL) or (_read_model(copy) if copy else None)


def parse_nvpmodel(text: str) -> dict | None:
    """``nvpmodel -q`` output -> {"name": "15W", "id": 0}; None when no power mode line is found.

    The output varies by release: warnings ("NVPM WARN: ...") and a fan-mode line may come first, the mode
    number follows the name on its own line (or is missing when nvpmodel cannot read its status file).
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _POWER_MODE_LINE.match(line)
        if not match:
            continue
        mode_id = None
        for later in lines[i + 1:]:
            if not later.strip():
                continue
            id_match = _MODE_ID_LINE.match(later)
            mode_id = int(id_match.group("id")) if id_match else None
            break
        return {"name": match.group("name"), "id": mode_id}
    return None


def power_mode(nvpmodel: str | None = None) -> dict | None:
    """The current nvpmodel power mode, or None where nvpmodel is absent or its output has no mode.

    Without nvpmodel on the PATH, the host's captured output named by $MAMBALITESR_NVPMODEL_QUERY is parsed.
    """
    exe = nvpmodel or shutil.which("nvpmodel")
    if not exe:
        captured = os.environ.get("MAMBALITESR_NVPMODEL_QUERY")
        try:
            return parse_nvpmodel(Path(captured).read_text(errors="replace")) if captured else None
        except OSError:
            return None
    try:
        proc = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=NVPMODEL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_nvpmodel(proc.stdout + "\n" + proc.stderr)


def platform_identity() -> dict:
    """{"device_model": ..., "power_mode": ...} of this machine (None entries where unknown)."""
    return {"device_model": device_model(), "power_mode": power_mode()}


def describe_power_mode(mode: dict | None) -> str:
    if not mode:
        return "unknown"
    return mode["name"] if mode.get("id") is None else f"{mode['name']} (mode {mode['id']})"


def check_platform(recorded: dict | None, current: dict) -> list[str]:
    """Reasons an engine built on ``recorded`` must not run on ``current``; empty when the models agree.

    Only the device model refuses: a different power mode changes speed, not correctness (the container
    keeps one engine per power mode anyway). A sidecar without a platform entry was written before it was
    recorded; it is refused on a machine that has a device model, since it cannot be told apart.
    """
    here = current.get("device_model")
    if recorded is None:
        if here is not None:
            return [f"the sidecar does not record the device model it was built on (an older engine); this "
                    f"device is {here!r}"]
        return []
    built = recorded.get("device_model")
    if built != here:
        return [f"built on {built or 'a machine without a device-tree model'!s}, this device is "
                f"{here or 'a machine without a device-tree model'!s}: TensorRT engines are specific to the "
                f"board (an Orin Nano 4GB, 8GB, Super, NX and AGX differ)"]
    return []
