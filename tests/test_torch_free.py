"""Inference without torch: the README's first command in a fresh virtual environment.

A clean venv (no system site-packages: this machine's torch must not leak in) gets
``pip install ".[onnxruntime]"`` from the package registry, exactly as a user types it. Then:
torch is absent; ``mambalitesr camera`` and ``mambalitesr upscale`` run with ``--backend onnxruntime`` on
the shipped ONNX graph; the commands that need torch (eval, models, train, bench) say so in one line; and the image the torch-free install writes matches the torch backend's within
1/255 (the 8-bit rounding of outputs within 1e-4; the float outputs are compared in-process below).

Slow (one package build, about a minute on an idle 2-core machine, mostly compiling the C scan), but in CI:
it is the only test that proves the base install carries no torch import on the inference path.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTCARD = ROOT / "examples" / "testcard.png"
PIP_TIMEOUT_S = 1200  # a loaded machine compiles slowly; CI is idle


def _clean_env() -> dict:
    """This process's environment without what would let the venv see the outer interpreter's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with ``pip install ".[onnxruntime]"``; returns its bin folder."""
    root = tmp_path_factory.mktemp("torch_free") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, env=_clean_env())
    bin_dir = root / "bin"
    proc = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{ROOT}[onnxruntime]"],
        capture_output=True, text=True, env=_clean_env(), timeout=PIP_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"pip install '.[onnxruntime]' failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return bin_dir


def _run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=_clean_env(), cwd=cwd,
                          timeout=600)


def test_the_base_install_has_no_torch(venv, tmp_path):
    proc = _run(venv, venv / "python", "-c", "import torch", cwd=tmp_path)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr
    listed = _run(venv, venv / "python", "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    assert "onnxruntime==" in listed and "mambalitesr==" in listed
    assert not [line for line in listed.splitlines() if line.startswith(("torch", "nvidia-"))], listed


def test_camera_runs_the_shipped_graph_without_torch(venv, tmp_path):
    proc = _run(venv, venv / "mambalitesr", "camera", "--source", "synthetic:160x90", "--backend", "onnxruntime",
                "--sink", "null", "--frames", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the fused form where the native kernels were built (the CPU default), else the plugin form
    assert re.search(r"mambalitesr_x4\.(fused\.onnx \(shipped, fused form\).*MambaMixer|onnx \(shipped, plugin "
                     r"form\).*SelectiveScan)", proc.stderr), proc.stderr[-2000:]
    assert "summary: 10 frames out" in proc.stdout


def test_upscale_without_torch_matches_the_torch_backend(venv, tmp_path):
    pytest.importorskip("torch")
    from mambalitesr.cli import main
    from mambalitesr.imageio import read_image

    out = tmp_path / "testcard_x4_ort.png"
    proc = _run(venv, venv / "mambalitesr", "upscale", TESTCARD, "-o", out, "--backend", "onnxruntime",
                "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = tmp_path / "testcard_x4_torch.png"
    assert main(["upscale", str(TESTCARD), "-o", str(want), "--backend", "torch", "--no-progress"]) == 0
    got, ref = read_image(out).astype(int), read_image(want).astype(int)
    assert got.shape == ref.shape == (4 * 160, 4 * 240, 3)
    assert np.abs(got - ref).max() <= 1  # outputs within 1e-4 round to the same byte or a neighbour


def test_default_backend_without_torch_is_onnxruntime(venv, tmp_path):
    out = tmp_path / "default.png"
    proc = _run(venv, venv / "mambalitesr", "upscale", TESTCARD, "-o", out, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"upscale: onnxruntime mambalitesr_x4\.(fused\.)?onnx \(shipped, (fused|plugin) form\)",
                     proc.stderr), proc.stderr[-2000:]


@pytest.mark.parametrize("argv", [
    ["models"],
    ["eval", "--model", "mambalitesr_x4", "--data", "{images}"],
    ["train", "--train", "{images}", "-o", "{tmp}/run"],
    ["bench", "latency", "--results-dir", "{tmp}/results"],
], ids=lambda argv: argv[0] + ("_" + argv[1] if argv[0] == "bench" else ""))
def test_commands_that_need_torch_say_so_in_one_line(venv, tmp_path, argv):
    images = tmp_path / "images"
    images.mkdir()
    (images / "testcard.png").write_bytes(TESTCARD.read_bytes())
    args = [a.format(images=images, tmp=tmp_path) for a in argv]
    proc = _run(venv, venv / "mambalitesr", *args, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    assert f"mambalitesr {argv[0]} needs torch (No module named 'torch'): pip install 'mambalitesr[torch]'" \
        in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "results").exists()
