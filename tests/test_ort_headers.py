"""runtime/csrc/ort_headers.py (run by setup.py): finds ONNX Runtime's C header or fetches Debian's package,
checked against its pinned SHA-256 and unpacked atomically; without one the build goes on and says why."""
from __future__ import annotations

import hashlib
import io
import runpy
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEADERS = runpy.run_path(str(REPO / "runtime" / "csrc" / "ort_headers.py"))


def fake_deb(files: dict[str, bytes]) -> bytes:
    """A .deb as dpkg writes it: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    out = b"!<arch>\n"
    for name, blob in (("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", data.getvalue())):
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode() + blob
        out += b"\n" if len(blob) % 2 else b""
    return out


def test_headers_are_unpacked_from_the_package(tmp_path):
    deb = fake_deb({"./usr/include/onnxruntime/onnxruntime_c_api.h": b"/* api */\n",
                    "./usr/include/onnxruntime/core/session/extra.h": b"/* extra */\n",
                    "./usr/share/doc/libonnxruntime-dev/copyright": b"text"})
    dest = tmp_path / "cache"
    HEADERS["_unpack_headers"](deb, dest)
    assert (dest / "onnxruntime_c_api.h").read_bytes() == b"/* api */\n"
    assert (dest / "core/session/extra.h").is_file() and not (dest / "copyright").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # no temporary folder left


def test_a_package_without_the_header_is_refused(tmp_path):
    with pytest.raises(ValueError, match="onnxruntime_c_api.h"):
        HEADERS["_unpack_headers"](fake_deb({"./usr/include/other.h": b""}), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_download_with_another_digest_is_refused(tmp_path, monkeypatch):
    blob = b"not the pinned package"

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(HEADERS["urllib"].request, "urlopen", lambda url, timeout: Response(blob))
    with pytest.raises(ValueError, match="differs from the pinned"):
        HEADERS["_download"]("https://example.invalid/x.deb", hashlib.sha256(b"other").hexdigest())


def test_an_explicit_folder_without_the_header_builds_without_the_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("ORT_INCLUDE_DIR", str(tmp_path))
    said = []
    assert HEADERS["include_dir"](log=said.append) is None
    assert "has no onnxruntime_c_api.h" in said[0] and "without the native ONNX Runtime kernel" in said[0]
    (tmp_path / "onnxruntime_c_api.h").write_text("/* api */\n")
    assert HEADERS["include_dir"](log=said.append) == str(tmp_path)
