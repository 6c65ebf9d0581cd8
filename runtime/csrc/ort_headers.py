"""Find ONNX Runtime's C API header for building the native kernels of the mambalitesr ONNX nodes.

Run by setup.py at build time, never imported by the package. The header is third-party source, so it is
never committed: it comes from the build machine (ORT_INCLUDE_DIR, or a system install such as Debian's
libonnxruntime-dev in /usr/include/onnxruntime), else from Debian's libonnxruntime-dev package, downloaded
once, checked against its pinned SHA-256 and unpacked into the user's cache. The C API is stable across
versions and the kernel asks the running ONNX Runtime for API 16 only, so the 1.21 header builds a library
that any ONNX Runtime from 1.16 on loads (the header is the same on x86-64 and aarch64).

``include_dir()`` returns the folder holding onnxruntime_c_api.h, or None with the reason printed; the
build then goes on without the native kernel, and the runtime says so when it falls back to the Python one.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

HEADER = "onnxruntime_c_api.h"
DEB_URL = "https://deb.debian.org/debian/pool/main/o/onnxruntime/libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb"
DEB_SHA256 = "14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08"
SYSTEM_DIRS = ("/usr/include/onnxruntime", "/usr/local/include/onnxruntime")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mambalitesr" / "onnxruntime-1.21.0-headers"


def _ar_members(blob: bytes):
    """(name, data) of a Unix ar archive (a .deb is one)."""
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        yield name, blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)


def _unpack_headers(deb: bytes, dest: Path) -> None:
    data = next((d for n, d in _ar_members(deb) if n.startswith("data.tar")), None)
    if data is None:
        raise ValueError("the package has no data.tar member")
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".h") and "/include/onnxruntime/" in member.name:
                target = tmp / member.name.split("/include/onnxruntime/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    if not (tmp / HEADER).is_file():
        raise ValueError(f"the package holds no {HEADER}")
    try:
        os.replace(tmp, dest)  # atomic: a half-unpacked cache is never taken for a whole one
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / HEADER).is_file():  # not another build's finished copy
            raise


def _download(url: str, sha256: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        blob = response.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != sha256:
        raise ValueError(f"{url}: SHA-256 {digest} differs from the pinned {sha256}")
    return blob


def include_dir(log=lambda msg: print(msg, file=sys.stderr)) -> str | None:
    """The folder with onnxruntime_c_api.h, fetching Debian's package into the cache when none is installed."""
    explicit = os.environ.get("ORT_INCLUDE_DIR")
    if explicit:
        if (Path(explicit) / HEADER).is_file():
            return explicit
        log(f"ORT_INCLUDE_DIR={explicit} has no {HEADER}; building without the native ONNX Runtime kernel")
        return None
    for folder in (*SYSTEM_DIRS, str(_cache_dir())):
        if (Path(folder) / HEADER).is_file():
            return folder
    if os.environ.get("MAMBALITESR_NO_DOWNLOAD"):
        log(f"no {HEADER} and MAMBALITESR_NO_DOWNLOAD is set; building without the native ONNX Runtime kernel "
            "(install libonnxruntime-dev or set ORT_INCLUDE_DIR)")
        return None
    try:
        _unpack_headers(_download(DEB_URL, DEB_SHA256), _cache_dir())
    except (OSError, ValueError) as exc:
        log(f"could not fetch ONNX Runtime's C API header ({exc}); building without the native ONNX Runtime "
            "kernel (install libonnxruntime-dev or set ORT_INCLUDE_DIR, then reinstall)")
        return None
    return str(_cache_dir())
