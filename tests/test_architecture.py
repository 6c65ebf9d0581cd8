"""The architecture's rules, checked on the installed package (not the checkout's folders).

``pip install --no-deps --no-build-isolation --target DIR .`` installs the package as a user gets it; then
``lint-imports`` checks the contracts in ``.importlinter`` (layers, torch only in the torch backend, the frame
core below streaming, no cycle between sibling modules) and grimp confirms, package by package, that no two
sibling modules import each other through any chain.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"

grimp = pytest.importorskip("grimp", reason="the architecture checks need import-linter (the test extra)")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package installed with pip into a fresh folder; returns that folder."""
    target = tmp_path_factory.mktemp("installed")
    # A copy without build outputs: setuptools reuses a checkout's build/ folder, whose stale copies of moved or
    # deleted modules would be installed (and checked) too.
    source = tmp_path_factory.mktemp("source") / "mambalitesr"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "*.so",
                                                                "runs", "shared"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(source)],
        capture_output=True, text=True, cwd=target,
    )
    assert proc.returncode == 0, f"pip install --target failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "mambalitesr" / "runtime" / "core" / "processing.py").is_file()
    return target


def _env(target: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(target)}


def test_lint_imports_passes_on_the_installed_package(installed):
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    proc = subprocess.run([lint, "--no-cache", str(CONFIG)], capture_output=True, text=True, cwd=installed,
                          env=_env(installed))
    assert proc.returncode == 0, f"lint-imports found broken contracts:\n{proc.stdout}\n{proc.stderr}"
    assert "0 broken" in proc.stdout


def test_the_subpackages_import_from_the_installed_folder(installed):
    code = ("import mambalitesr.models, mambalitesr.runtime, mambalitesr.export, mambalitesr.benchmarks, sys; "
            "print(mambalitesr.models.__file__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=installed,
                          env=_env(installed))
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(installed)


def _sibling_cycles(graph, package: str) -> list[tuple[str, str]]:
    """Pairs of sibling modules under ``package`` that reach each other through imports (each pair once)."""
    children = sorted(graph.find_children(package))
    found = []
    for i, a in enumerate(children):
        for b in children[i + 1:]:
            a_to_b = graph.chain_exists(importer=a, imported=b, as_packages=True)
            if a_to_b and graph.chain_exists(importer=b, imported=a, as_packages=True):
                found.append((a, b))
    return found


def test_no_cycle_between_sibling_modules_anywhere(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    for name in [m for m in sys.modules if m == "mambalitesr" or m.startswith("mambalitesr.")]:
        monkeypatch.delitem(sys.modules, name)  # build the graph from the installed copy, not the checkout
    import importlib.util

    assert Path(importlib.util.find_spec("mambalitesr").origin).is_relative_to(installed)
    graph = grimp.build_graph("mambalitesr", cache_dir=None)
    packages = [m for m in graph.modules if graph.find_children(m)]
    cycles = {p: _sibling_cycles(graph, p) for p in sorted(packages)}
    cycles = {p: c for p, c in cycles.items() if c}
    assert not cycles, "sibling modules import each other:\n" + "\n".join(
        f"  in {p}: " + ", ".join(f"{a} <-> {b}" for a, b in c) for p, c in cycles.items())


def test_the_installed_package_ships_no_test_harnesses(installed):
    """package_data ships what users run: the plugin's build, not the sources only tests and the GPU check use."""
    plugin = installed / "mambalitesr" / "export" / "plugins" / "selective_scan"
    assert (plugin / "CMakeLists.txt").is_file() and (plugin / "selective_scan_plugin.cpp").is_file()
    for harness in ("torch_binding.cpp", "plugin_selftest.cpp", "selective_scan_emulation.cpp"):
        assert not (plugin / harness).exists(), harness
    assert not list((installed / "mambalitesr").rglob("*.db")), "no study database inside the installed package"
