"""File formats that the export stage writes and the runtime reads: plain Python, no torch, no TensorRT.

Glossary (code name -> meaning):
    engine sidecar  ``<engine>.json`` beside a TensorRT engine: the TensorRT version, GPU, platform (the board's
                    device-tree model and nvpmodel power mode, :mod:`mambalitesr.device_identity`), precision, I/O shapes,
                    optimisation profile, plugin library (version, sha256) and the engine's own sha256 it was
                    built with. ``export.engine`` writes it (``make_sidecar``); ``runtime.backends.engine_files``
                    reads and checks it before deserializing
    format_version  bumped whenever a reader of the previous version would misread the file

Both layers import this module; neither imports the other.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mambalitesr.device_identity import check_platform
from mambalitesr.errors import UserError
from mambalitesr.trt_runtime import PLUGIN_NAME

SIDECAR_FORMAT = "mambalitesr-engine-sidecar"
SIDECAR_VERSION = 1


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def check_sidecar(sidecar: dict, *, tensorrt_version: str, gpu: dict, engine_sha256: str,
                  plugin_sha256: str | None, platform: dict | None = None) -> list[str]:
    """Every reason the engine described by ``sidecar`` must not be used here; empty when it may.

    ``platform`` is this machine's ``device_identity.platform_identity()``; None skips the device-model check
    (an engine built on an Orin Nano must not run on an Orin NX, though both GPUs are named "Orin").
    """
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        return ["the sidecar is not a MambaLiteSR engine sidecar"]
    if sidecar.get("format_version") != SIDECAR_VERSION:
        return [f"sidecar format version {sidecar.get('format_version')!r}, this release reads {SIDECAR_VERSION}"]
    for key in ("engine", "tensorrt_version", "gpu", "plugin"):
        if key not in sidecar:
            return [f"the sidecar has no {key!r} entry"]
    problems = []
    if (sidecar["engine"] or {}).get("sha256") != engine_sha256:
        problems.append("the engine file is not the one its sidecar describes (sha256 differs): "
                        "it was rebuilt or copied without its sidecar")
    if sidecar["tensorrt_version"] != tensorrt_version:
        problems.append(f"built with TensorRT {sidecar['tensorrt_version']}, this is TensorRT {tensorrt_version}")
    built_gpu = sidecar["gpu"] or {}
    if built_gpu.get("compute_capability") != gpu.get("compute_capability") or built_gpu.get("name") != gpu.get("name"):
        problems.append(f"built for {built_gpu.get('name')} (compute capability {built_gpu.get('compute_capability')}), "
                        f"this GPU is {gpu.get('name')} (compute capability {gpu.get('compute_capability')})")
    if platform is not None:
        problems += check_platform(sidecar.get("platform"), platform)
    plugin = sidecar["plugin"]
    if plugin:
        if plugin_sha256 is None:
            problems.append(f"the engine uses the {PLUGIN_NAME} plugin: pass the plugin library it was built with "
                            f"(version {plugin.get('library_version')}, sha256 {str(plugin.get('sha256'))[:12]}...)")
        elif plugin.get("sha256") != plugin_sha256:
            problems.append(f"the plugin library differs from the one the engine was built with (sha256 "
                            f"{plugin_sha256[:12]}... here, {str(plugin.get('sha256'))[:12]}... at build time, "
                            f"library version {plugin.get('library_version')})")
    return problems


def read_sidecar(engine_path: str | os.PathLike) -> dict:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise UserError(f"{path}: no sidecar beside the engine; build engines with `mambalitesr export engine`, "
                        "which writes it")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable sidecar ({exc}); rebuild the engine") from None
