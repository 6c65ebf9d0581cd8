"""Device-tree model string and nvpmodel power mode: parsing, and the engine sidecar refusing another board.

Fixtures: tests/fixtures/nvpmodel/*.txt (``nvpmodel -q`` outputs) and tests/fixtures/device_tree/* (the raw
/proc/device-tree/model bytes, NUL-terminated).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mambalitesr import device_identity as di
from mambalitesr import formats
from mambalitesr.errors import UserError
from mambalitesr.export import engine as eng
from mambalitesr.runtime.backends import engine_files

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NVPMODEL = FIXTURES / "nvpmodel"
SUPER = "NVIDIA Jetson Orin Nano Engine Reference Developer Kit Super"

EXPECTED_MODES = {
    "orin_nano_15w.txt": {"name": "15W", "id": 0},
    "orin_nano_super_maxn.txt": {"name": "MAXN_SUPER", "id": 2},
    "orin_nano_7w_fan_warning.txt": {"name": "7W", "id": 1},
    "agx_orin_30w_fan_mode.txt": {"name": "MODE_30W_ALL", "id": 3},
    "no_mode_number.txt": {"name": "25W", "id": None},
    "no_power_mode.txt": None,
}


def test_every_fixture_has_an_expectation():
    assert sorted(p.name for p in NVPMODEL.glob("*.txt")) == sorted(EXPECTED_MODES)


@pytest.mark.parametrize("name", sorted(EXPECTED_MODES))
def test_parse_nvpmodel(name):
    assert di.parse_nvpmodel((NVPMODEL / name).read_text()) == EXPECTED_MODES[name]


def test_device_model_strips_nul_and_is_none_when_absent(tmp_path):
    assert di.device_model(FIXTURES / "device_tree" / "orin_nano_super_model") == SUPER
    assert di.device_model(tmp_path / "missing") is None
    (tmp_path / "empty").write_bytes(b"\x00")
    assert di.device_model(tmp_path / "empty") is None


def test_power_mode_runs_nvpmodel(tmp_path):
    exe = tmp_path / "nvpmodel"
    exe.write_text(f"#!/bin/sh\ncat '{NVPMODEL / 'orin_nano_7w_fan_warning.txt'}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    assert di.power_mode(str(exe)) == {"name": "7W", "id": 1}
    assert di.power_mode(str(tmp_path / "absent")) is None


def _sidecar(platform):
    return eng.make_sidecar(
        engine_path="m.engine", engine_sha256="e" * 64, engine_bytes=1, tensorrt_version="10.3.0.30",
        gpu={"name": "Orin", "compute_capability": "8.7"}, precision="fp16", inputs={}, outputs={}, profile=None,
        plugin=None, onnx_path="m.onnx", onnx_sha256="o" * 64, plugin_nodes=0, platform=platform)


def _check(sidecar, here):
    return formats.check_sidecar(sidecar, tensorrt_version="10.3.0.30", gpu={"name": "Orin", "compute_capability": "8.7"},
                             engine_sha256="e" * 64, plugin_sha256=None, platform=here)


def test_sidecar_refuses_an_engine_built_on_another_model():
    built = {"device_model": "NVIDIA Jetson AGX Orin Developer Kit", "power_mode": {"name": "MAXN", "id": 0}}
    here = {"device_model": SUPER, "power_mode": {"name": "MAXN_SUPER", "id": 2}}
    problems = _check(_sidecar(built), here)
    assert len(problems) == 1
    assert "built on NVIDIA Jetson AGX Orin Developer Kit" in problems[0] and SUPER in problems[0]


def test_sidecar_accepts_same_model_in_another_power_mode():
    built = {"device_model": SUPER, "power_mode": {"name": "15W", "id": 0}}
    here = {"device_model": SUPER, "power_mode": {"name": "MAXN_SUPER", "id": 2}}
    assert _check(_sidecar(built), here) == []


def test_sidecar_without_platform_refused_on_a_jetson_only():
    old = _sidecar(None)
    assert "does not record the device model" in _check(old, {"device_model": SUPER, "power_mode": None})[0]
    assert _check(old, {"device_model": None, "power_mode": None}) == []


def test_load_engine_checks_the_platform(tmp_path, monkeypatch):
    """The runtime's load_engine passes this machine's platform to the check (TensorRT and the GPU faked)."""
    import hashlib
    import json
    import types

    data = b"plan"
    engine = tmp_path / "m.engine"
    engine.write_bytes(data)
    sidecar = _sidecar({"device_model": "NVIDIA Jetson AGX Orin Developer Kit", "power_mode": None})
    sidecar["engine"]["sha256"] = hashlib.sha256(data).hexdigest()
    formats.sidecar_path(engine).write_text(json.dumps(sidecar))
    monkeypatch.setattr(engine_files, "import_tensorrt", lambda: types.SimpleNamespace(__version__="10.3.0.30"))
    monkeypatch.setattr(engine_files, "gpu_identity", lambda device=0: {"name": "Orin", "compute_capability": "8.7"})
    monkeypatch.setattr(engine_files, "platform_identity", lambda: {"device_model": SUPER, "power_mode": None})
    with pytest.raises(UserError, match="built on NVIDIA Jetson AGX Orin Developer Kit"):
        engine_files.load_engine(engine)


@pytest.mark.skipif(not os.path.exists("/proc/device-tree/model"), reason="no /proc/device-tree/model (not a Jetson)")
def test_this_device_model_reads():
    assert di.device_model()


def test_container_reads_the_hosts_copies(tmp_path, monkeypatch):
    """No /proc/device-tree and no nvpmodel (a container): the copies run.sh left in the data folder are read."""
    monkeypatch.setattr(di, "DEVICE_TREE_MODEL", tmp_path / "masked")
    monkeypatch.setattr(di.shutil, "which", lambda name: None)
    monkeypatch.setenv("MAMBALITESR_DEVICE_TREE_MODEL", str(FIXTURES / "device_tree" / "orin_nano_super_model"))
    monkeypatch.setenv("MAMBALITESR_NVPMODEL_QUERY", str(NVPMODEL / "orin_nano_super_maxn.txt"))
    assert di.platform_identity() == {"device_model": SUPER, "power_mode": {"name": "MAXN_SUPER", "id": 2}}
    monkeypatch.delenv("MAMBALITESR_NVPMODEL_QUERY")
    assert di.power_mode() is None
