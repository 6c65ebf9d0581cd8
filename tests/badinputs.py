"""Bad inputs, made by code: every kind of file an unattended device may be handed, written into a folder.

Glossary (code name -> meaning):
    Case          one file: ``name``, ``path``, ``refused`` (the product must refuse it) and ``words`` (a
                  fragment the one-line message must contain); accepted cases are read, with a warning
    bomb          a PNG or JPEG whose header declares 20000 x 20000 pixels over a few bytes of data: refused
                  from the header, before any pixel buffer is allocated
    marker        the file a malicious pickle's ``__reduce__`` would create with ``os.system``: it must
                  never appear, whatever the loader does with the file
    sidecar       ``FILE.engine.json``, the build record a TensorRT engine is checked against

Decisions (one rule each, also what the tests assert):
    - Content decides, not the extension: a JPEG named ``.png`` is read (the decoders sniff the bytes); the
      extension only chooses an *output* format. A text file named ``.png`` is refused as "not an image file".
    - Grey, 16-bit, alpha, palette and CMYK images are read as RGB uint8 (a warning says what was dropped).
    - A 1x1 image is a valid image: ``upscale`` makes 4x4 of it; ``eval`` and ``train`` refuse or skip it
      as too small for their protocol.
    - A folder named like an image (``folder.png``) is a folder: ``read_image`` refuses it ("not a regular
      file"), folder listings skip it, and ``upscale`` given it as an argument refuses the whole invocation
      before any job when it holds no images (an argument error, not a bad file among others).
    - Weights are only ever read as safetensors or with ``torch.load(weights_only=True)``.

Nothing here needs TensorRT, a GPU or network access; torch is imported only by the weights makers.
"""
from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    refused: bool
    words: str = ""  # a fragment of the message (refused) or of the warning (accepted)


# ---------------------------------------------------------------------------------------------- images


def pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 (h, w, 3) with smooth structure and noise, so JPEG and PNG both have work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def _pil_bytes(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    return _pil_bytes(Image.fromarray(rgb), "PNG")


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    return _pil_bytes(Image.fromarray(rgb), "JPEG", quality=quality)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A well-formed PNG whose IHDR declares width x height RGB, with one tiny IDAT (a few dozen bytes on disk)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, no filter, no interlace
    idat = zlib.compress(b"\x00" * 64)  # the start of the first scanline: a decoder that trusts IHDR allocates first
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A small real JPEG whose SOF0 marker is rewritten to declare width x height."""
    data = bytearray(jpeg_bytes(pattern(16, 16)))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "baseline JPEG expected"
    struct.pack_into(">HH", data, sof + 5, height, width)  # marker(2) length(2) precision(1) height(2) width(2)
    return bytes(data)


def write_good_images(folder: Path, n: int = 2, size: tuple[int, int] = (40, 48)) -> list[Path]:
    """``n`` valid PNGs of (h, w) ``size``: good_0.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"good_{i}.png"
        path.write_bytes(png_bytes(pattern(*size, seed=i)))
        paths.append(path)
    return paths


def write_bad_images(folder: Path) -> list[Case]:
    """Every bad or unusual image file; ``refused`` says whether read_image must refuse it."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rgb = pattern(48, 64)
    png, jpg = png_bytes(rgb), jpeg_bytes(rgb)
    flipped_png = bytearray(png)
    flipped_png[len(png) // 2] ^= 0xFF  # inside IDAT: the chunk CRC no longer matches
    sos = jpg.find(b"\xff\xda")
    broken_jpg = jpg[:sos] + b"\xff\xd9"  # headers, then the end marker where the scan should be
    cmyk = Image.fromarray(rgb).convert("CMYK")
    grey16 = Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257)).convert("I;16")
    rgba = np.dstack([rgb, np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))])
    files: dict[str, tuple[bytes | None, bool, str]] = {
        # name: (content, refused, words)
        "truncated.png": (png[: len(png) // 2], True, "truncated"),
        "truncated.jpg": (jpg[: len(jpg) // 2], True, "corrupt or truncated"),
        "corrupt_crc.png": (bytes(flipped_png), True, "corrupt"),
        "corrupt_no_scan.jpg": (broken_jpg, True, "corrupt or truncated"),
        "header_only.png": (png[:33], True, "not an image file"),  # signature + IHDR: too short to identify
        "zero_bytes.png": (b"", True, "empty file"),
        "bomb.png": (png_bomb(), True, "20000x20000"),
        "bomb.jpg": (jpeg_bomb(), True, "20000x20000"),
        "text.png": (b"this is not an image, whatever its name says\n", True, "not an image"),
        "random.jpg": (np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), True, "not an image"),
        "one_pixel.png": (png_bytes(rgb[:1, :1]), False, ""),
        "grey.png": (_pil_bytes(Image.fromarray(rgb[:, :, 1]), "PNG"), False, ""),
        "grey16.png": (_pil_bytes(grey16, "PNG"), False, "16-bit"),
        "rgb16.png": (None, False, "16-bit"),  # written by OpenCV below: Pillow cannot write 16-bit RGB
        "rgba.png": (_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), False, "alpha"),
        "palette_transparent.png": (_pil_bytes(Image.fromarray(rgb).convert("P"), "PNG", transparency=0), False,
                                    "alpha"),
        "cmyk.jpg": (_pil_bytes(cmyk, "JPEG"), False, ""),
        "jpeg_named.png": (jpg, False, ""),
    }
    cases = []
    for name, (content, refused, words) in files.items():
        path = folder / name
        if content is None:
            import cv2

            cv2.imwrite(str(path), rgb[:, :, ::-1].astype(np.uint16) * 257)
        else:
            path.write_bytes(content)
        cases.append(Case(name, path, refused, words))
    (folder / "folder.png").mkdir(exist_ok=True)
    cases.append(Case("folder.png", folder / "folder.png", True, "not a regular file"))
    cases.append(Case("missing.png", folder / "missing.png", True, "no such file"))
    return cases


# --------------------------------------------------------------------------------------------- weights

MARKER_NAME = "PWNED_BY_PICKLE"


class _RunsCode:
    """Unpickling this runs ``os.system(touch MARKER)``: what a malicious weights file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_bad_weights(folder: Path, model: str = "test_x4") -> list[Case]:
    """Weights files ``model`` must refuse; the code-carrying ones would create ``folder / MARKER_NAME``."""
    import pickle

    import torch
    from safetensors.torch import save_file

    from mambalitesr.models.registry import create_model

    folder.mkdir(parents=True, exist_ok=True)
    net = create_model(model, pretrained=False)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    config = json.loads(net.config.to_json())
    marker = folder / MARKER_NAME
    cases = []

    def add(name, refused_words, write):
        path = folder / name
        write(path)
        cases.append(Case(name, path, True, refused_words))

    first = next(iter(state))
    wrong = dict(state)
    wrong[first] = torch.zeros(tuple(d + 1 for d in state[first].shape))
    add("wrong_shapes.pth", "do not fit", lambda p: torch.save(wrong, p))
    add("missing_keys.pth", "do not fit", lambda p: torch.save(dict(list(state.items())[1:]), p))
    other = dict(config, embed_dim=config["embed_dim"] * 2)
    add("wrong_config.safetensors", "another config",
        lambda p: save_file(state, str(p), metadata={"config": json.dumps(other), "model": model}))
    add("garbage_config.safetensors", "unreadable config",
        lambda p: save_file(state, str(p), metadata={"config": "{not json", "model": model}))
    add("unknown_config_key.safetensors", "unreadable config",
        lambda p: save_file(state, str(p), metadata={"config": json.dumps(dict(config, colour="red"))}))
    add("no_metadata.safetensors", "no 'config'", lambda p: save_file(state, str(p)))

    def truncated(p):
        save_file(state, str(p), metadata={"config": net.config.to_json()})
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    add("truncated.safetensors", "not a readable safetensors", truncated)
    add("text.safetensors", "not a readable safetensors", lambda p: p.write_text("hello, not tensors\n"))
    add("zero_bytes.pth", "refused to load", lambda p: p.write_bytes(b""))
    add("code_pickle.pth", "refused to load",
        lambda p: p.write_bytes(pickle.dumps({"weight": _RunsCode(marker)}, protocol=2)))
    add("code_torch_zip.pth", "refused to load", lambda p: torch.save({"weight": _RunsCode(marker)}, p))
    add("code_named.safetensors", "not a readable safetensors",
        lambda p: p.write_bytes(pickle.dumps(_RunsCode(marker))))
    add("not_a_state_dict.pth", "not a state_dict", lambda p: torch.save([1, 2, 3], p))
    return cases


def write_code_checkpoint(run_dir: Path) -> Path:
    """``run_dir/checkpoint.pt`` that would run code when unpickled (for ``train --resume``)."""
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "checkpoint.pt"
    torch.save({"step": 3, "student": _RunsCode(run_dir / MARKER_NAME)}, path)
    return path


# ------------------------------------------------------------------------------------------------ ONNX


def sr_onnx(path: Path, scale: int = 4, opset: int = 17, fixed_hw: tuple[int, int] | None = None) -> Path:
    """A valid stand-in SR graph: Conv(3 -> 3 s^2, 3x3) + DepthToSpace(s); (B, 3, h, w) -> (B, 3, s h, s w)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 3 * scale * scale
    weight = numpy_helper.from_array((rng.normal(0, 0.1, (c, 3, 3, 3))).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.full(c, 0.5, np.float32), "b")
    h, w = fixed_hw if fixed_hw else ("h", "w")
    out_hw = (h * scale, w * scale) if fixed_hw else ("H", "W")
    x = helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["B" if not fixed_hw else 1, 3, h, w])
    y = helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["B" if not fixed_hw else 1, 3, *out_hw])
    nodes = [
        helper.make_node("Conv", ["lr", "w", "b"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["feat"], ["sr"], blocksize=scale, mode="CRD"),
    ]
    graph = helper.make_graph(nodes, "standin_sr", [x], [y], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _identity_onnx(path: Path, shapes: list[list], elem=None) -> Path:
    import onnx
    from onnx import TensorProto, helper

    elem = elem or TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(f"x{i}", elem, s) for i, s in enumerate(shapes)]
    if len(shapes) == 1:
        nodes, out_shape = [helper.make_node("Identity", ["x0"], ["y"])], shapes[0]
    else:
        nodes, out_shape = [helper.make_node("Add", ["x0", "x1"], ["y"])], shapes[0]
    y = helper.make_tensor_value_info("y", elem, out_shape)
    model = helper.make_model(helper.make_graph(nodes, "other", inputs, [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_bad_onnx(folder: Path) -> list[Case]:
    from onnx import TensorProto

    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    random = folder / "random.onnx"
    random.write_bytes(np.random.default_rng(2).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    cases.append(Case("random.onnx", random, True, "ONNX"))
    good = sr_onnx(folder / "_full.onnx")
    truncated = folder / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    good.unlink()
    cases.append(Case("truncated.onnx", truncated, True, "ONNX"))
    empty = folder / "zero_bytes.onnx"
    empty.write_bytes(b"")
    cases.append(Case("zero_bytes.onnx", empty, True, "onnx"))
    cases.append(Case("grey_model.onnx", _identity_onnx(folder / "grey_model.onnx", [["B", 1, "h", "w"]]), True,
                      "expected (B, 3, h, w)"))
    cases.append(Case("two_inputs.onnx", _identity_onnx(folder / "two_inputs.onnx", [[1, 3, 8, 8], [1, 3, 8, 8]]),
                      True, "one input"))
    cases.append(Case("int_input.onnx", _identity_onnx(folder / "int_input.onnx", [["B", 3, "h", "w"]],
                                                       TensorProto.INT64), True, "input type"))
    cases.append(Case("not_upscaling.onnx", _identity_onnx(folder / "not_upscaling.onnx", [["B", 3, "h", "w"]]),
                      True, "scale"))
    return cases


# ---------------------------------------------------------------------------------- engines and plugins


def engine_sidecar(engine: Path, tensorrt_version: str, gpu: dict, plugin_sha256: str | None = None) -> dict:
    """The sidecar ``export engine`` would have written for ``engine`` (its real sha256)."""
    import hashlib

    from mambalitesr.export.engine import make_sidecar

    data = engine.read_bytes()
    plugin = None if plugin_sha256 is None else {
        "name": "SelectiveScan", "version": "1", "library_version": "1.0.0", "sha256": plugin_sha256,
        "file": "libmambalitesr_plugins.so"}
    return make_sidecar(
        engine_path=engine, engine_sha256=hashlib.sha256(data).hexdigest(), engine_bytes=len(data),
        tensorrt_version=tensorrt_version, gpu=gpu, precision="fp32",
        inputs={"lr": {"shape": [-1, 3, -1, -1], "dtype": "DataType.FLOAT"}},
        outputs={"sr": {"shape": [-1, 3, -1, -1], "dtype": "DataType.FLOAT"}},
        profile=((1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 32, 32)), plugin=plugin, onnx_path="m.onnx",
        onnx_sha256="0" * 64, plugin_nodes=0 if plugin is None else 2)


def write_bad_engines(folder: Path, tensorrt_version: str, gpu: dict) -> dict[str, Path]:
    """Engine files for a device running ``tensorrt_version`` on ``gpu``:

    no_sidecar      random bytes, nothing beside them
    garbage         random bytes with a sidecar that matches this device (so only deserializing can tell)
    old_tensorrt    random bytes with a sidecar naming TensorRT 8.6.1
    bad_sidecar     random bytes beside a sidecar that is not JSON
    needs_plugin    a sidecar naming a plugin library with sha256 of ``plugin_built.so`` (also written)
    """
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = {}
    for name in ("no_sidecar", "garbage", "old_tensorrt", "bad_sidecar", "needs_plugin"):
        path = folder / f"{name}.engine"
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        paths[name] = path
    sidecar = lambda p: p.with_name(p.name + ".json")  # noqa: E731  (engine.sidecar_path's rule)
    sidecar(paths["garbage"]).write_text(json.dumps(engine_sidecar(paths["garbage"], tensorrt_version, gpu)))
    sidecar(paths["old_tensorrt"]).write_text(json.dumps(engine_sidecar(paths["old_tensorrt"], "8.6.1", gpu)))
    sidecar(paths["bad_sidecar"]).write_text("{ this is not json")
    built = folder / "plugin_built.so"
    built.write_bytes(b"\x7fELF the library the engine was built with")
    sidecar(paths["needs_plugin"]).write_text(json.dumps(engine_sidecar(
        paths["needs_plugin"], tensorrt_version, gpu, plugin_sha256=hashlib.sha256(built.read_bytes()).hexdigest())))
    paths["plugin_built"] = built
    return paths


def loaded_library(stem: str) -> Path | None:
    """Path of a shared library this process has mapped (e.g. ``libm``), from /proc/self/maps; None if none."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) >= 6 and Path(parts[-1]).name.startswith(f"{stem}.so"):
            return Path(parts[-1])
    return None


def write_bad_plugins(folder: Path) -> dict[str, Path]:
    """missing (a path that does not exist), random (bytes named .so), not_plugin (a real library: libm)."""
    folder.mkdir(parents=True, exist_ok=True)
    random = folder / "librandom.so"
    random.write_bytes(np.random.default_rng(4).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    paths = {"missing": folder / "libmambalitesr_plugins_missing.so", "random": random}
    libm = loaded_library("libm")
    if libm is not None:
        paths["not_plugin"] = libm
    return paths


# ---------------------------------------------------------------------------------------------- videos


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (32, 24), fourcc: str = "MJPG") -> Path:
    """A small valid video of a moving pattern; ``size`` is (width, height)."""
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (w, h))
    assert writer.isOpened(), path
    for i in range(frames):
        writer.write(np.roll(pattern(h, w, seed=1), 2 * i, axis=1)[:, :, ::-1].copy())
    writer.release()
    return path


def cut(path: Path, fraction: float, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


NON_UTF8 = os.fsdecode(b"caf\xe9")  # Latin-1 e-acute: not valid UTF-8; reaches Python as a lone surrogate


def write_bad_videos(folder: Path) -> list[Case]:
    """Video files every video reader (upscale, camera file:) must refuse, or accept only with --allow-truncated.

    truncated.avi  the first 60% of a 12-frame MJPG AVI: its header still declares 12 frames
    half.mp4       the first half of an MP4 (the index at its end is gone): OpenCV cannot open it
    """
    folder.mkdir(parents=True, exist_ok=True)
    good = write_video(folder / "_good.avi")
    cases = [Case("truncated.avi", cut(good, 0.6, folder / "truncated.avi"), True, "of the 12 frames"),
             Case("half.mp4", cut(write_video(folder / "_good.mp4", fourcc="mp4v"), 0.5, folder / "half.mp4"), True,
                  "cannot open")]
    (folder / "zero_bytes.mp4").write_bytes(b"")
    cases.append(Case("zero_bytes.mp4", folder / "zero_bytes.mp4", True, "cannot open"))
    (folder / "text.mp4").write_text("not a video at all\n")
    cases.append(Case("text.mp4", folder / "text.mp4", True, "cannot open"))
    os.mkfifo(folder / "fifo.mp4")
    cases.append(Case("fifo.mp4", folder / "fifo.mp4", True, "FIFO"))
    odd = folder / f"{NON_UTF8}.avi"
    odd.write_bytes(good.read_bytes())
    cases.append(Case(f"{NON_UTF8}.avi", odd, True, "not valid UTF-8"))
    return cases


# ------------------------------------------------------------------------------ images: EXIF, limits


def exif_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``rgb`` as stored, tagged with EXIF ``orientation`` (1..8)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return _pil_bytes(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())


def sparse_image(path: Path, nbytes: int = 4 << 30) -> Path:
    """A file of ``nbytes`` (4 GiB) that takes no disk space: named like an image, all zeros."""
    with open(path, "wb") as fh:
        fh.truncate(nbytes)
    return path


# -------------------------------------------------------------------------- files that are not files


def write_special_files(folder: Path) -> dict[str, Path]:
    """fifo, socket and device (``/dev/null``): inputs that are not regular files; none may be opened."""
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.png"))
    sock.close()  # the socket file stays
    return {"fifo": folder / "fifo.png", "socket": folder / "socket.png", "device": Path("/dev/null")}


# ---------------------------------------------------------------------- arguments, from the parser itself


@dataclass(frozen=True)
class ArgCase:
    command: tuple[str, ...]  # ("export", "onnx")
    option: str  # "--lr", or a positional's metavar
    value: str
    kind: str  # the argtypes kind: value, input_file, input_dir, output_file, output_dir, output_path

    @property
    def argv(self) -> list[str]:
        if self.option.startswith("-"):
            return [*self.command, f"{self.option}={self.value}"]  # "=": values like -inf are not options
        return [*self.command, self.value]

    def __str__(self) -> str:
        return f"{' '.join(self.command)} {self.option}={self.value!r}"


def write_bad_paths(folder: Path) -> dict[str, list[str]]:
    """For each path kind of mambalitesr.argtypes, path texts it must refuse (the files are made here)."""
    special = write_special_files(folder / "special")
    a_file = folder / "a_file.txt"
    a_file.write_text("a regular file\n")
    (folder / "a_folder").mkdir(exist_ok=True)
    odd = folder / f"{NON_UTF8}.png"
    odd.write_bytes(png_bytes(pattern(8, 8)))
    (folder / f"{NON_UTF8}_dir").mkdir(exist_ok=True)
    under_file = str(a_file / "child.png")
    return {
        "input_file": [str(folder / "missing.bin"), str(folder / "a_folder"), *map(str, special.values()), str(odd),
                       under_file],
        "input_dir": [str(folder / "missing_dir"), str(a_file), str(folder / f"{NON_UTF8}_dir"), under_file],
        "output_file": [str(folder / "a_folder"), under_file, str(folder / f"{NON_UTF8}_out.png")],
        "output_dir": [str(a_file), under_file, str(folder / f"{NON_UTF8}_out")],
        "output_path": [under_file, str(folder / f"{NON_UTF8}_out.png")],
    }


def subcommands(parser, prefix: tuple[str, ...] = ()):
    """(command words, parser) of every leaf subcommand."""
    import argparse

    found = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found = True
                yield from subcommands(sub, prefix + (name,))
    if not found and prefix:
        yield prefix, parser


def argument_cases(parser, bad_paths: dict[str, list[str]]) -> list[ArgCase]:
    """Every typed argument of every subcommand x every value its type must refuse: grows with the CLI."""
    cases = []
    for words, sub in subcommands(parser):
        for action in sub._actions:
            kind = getattr(action.type, "kind", None)
            if kind is None:
                continue
            name = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest)
            values = action.type.bad_values if kind == "value" else bad_paths[kind]
            for value in values:
                if not action.option_strings and (value.startswith("-") or value == ""):
                    continue  # a positional cannot take these texts
                cases.append(ArgCase(words, name, value, kind))
    return cases
