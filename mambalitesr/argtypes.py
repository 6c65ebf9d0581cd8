"""Argument types checked at parse time: a bad value never reaches the work.

Glossary (code name -> meaning):
    type          an argparse ``type=`` callable: text -> value, or ``ArgumentTypeError`` with the reason;
                  argparse then prints one line ``mambalitesr CMD: error: argument --x: REASON`` and exits 2
                  (the one-line form is :class:`OneLineParser`, which every subcommand's parser is)
    int_range     integers in [lo, hi] (either end open when None)
    float_range   finite floats in [lo, hi] (nan and inf are refused everywhere)
    size          ``WxH``, each side in [min_side, MAX_SIDE] and W*H <= MAX_PIXELS
    device        ``cpu`` | ``cuda`` | ``cuda:N``
    input_file    an existing regular file whose name OpenCV can take (valid UTF-8); FIFOs, devices and
                  sockets are refused before anything opens them (a FIFO would block the open)
    input_dir     an existing folder
    output_file   a file path whose folder exists or can be made, that is not a folder itself
    output_dir    a folder path that is a folder or can be made
    overwrite     an existing output needs ``--overwrite`` (:func:`check_new_output`, called by the commands
                  before any work, since only they know which outputs a run makes)

This module imports nothing heavy: it runs for every ``mambalitesr`` invocation, ``--help`` included.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Callable

from mambalitesr.errors import UserError

MAX_SIDE = 8192  # pixels per side of a model input (LR); 4x that is already a 1-Gpixel output
MAX_PIXELS = MAX_SIDE * MAX_SIDE


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line: ``PROG: error: MESSAGE (see PROG --help)``, exit 2.

    The stock parser prints the whole usage first, which for a subcommand with twenty options is a
    screenful in front of the one line that matters. Subparsers inherit the class.
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _fail(message: str):
    raise argparse.ArgumentTypeError(message)


def _typed(fn: Callable, name: str, bad: list[str] | None = None, kind: str = "value") -> Callable:
    """Name the type (argparse uses the name in some messages) and attach what the test corpus needs:
    ``bad_values`` (texts this type must refuse) and ``kind`` (value, input_file, input_dir, output_file,
    output_dir, output_path: the path kinds get their bad values from the files the tests make)."""
    fn.__name__ = name
    fn.bad_values = list(bad or [])
    fn.kind = kind
    return fn


# ------------------------------------------------------------------------------------------- numbers


def int_range(lo: int | None = None, hi: int | None = None, what: str = "") -> Callable[[str], int]:
    """Integers in [lo, hi]; ``what`` adds a word on what the value means (e.g. "0 = all cores")."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            _fail(f"expected an integer, got {text!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            _fail(f"must be {_span(lo, hi)}{f' ({what})' if what else ''}, got {value}")
        return value

    bad = ["nan", "1.5", "ten"] + ([str(lo - 1)] if lo is not None else []) + ([str(hi + 1)] if hi is not None else [])
    return _typed(parse, "int", bad)


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                what: str = "") -> Callable[[str], float]:
    """Finite floats in [lo, hi] (or (lo, hi] with ``lo_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            _fail(f"expected a number, got {text!r}")
        if not math.isfinite(value):
            _fail(f"must be a finite number, got {text!r}")
        if lo is not None and (value < lo or (lo_open and value == lo)):
            _fail(f"must be {'>' if lo_open else '>='} {lo:g}{f' ({what})' if what else ''}, got {value:g}")
        if hi is not None and value > hi:
            _fail(f"must be <= {hi:g}{f' ({what})' if what else ''}, got {value:g}")
        return value

    bad = ["nan", "inf", "-inf", "ten"] + ([f"{lo - 1:g}"] if lo is not None else []) + ([f"{lo:g}"] if lo_open else [])
    bad += [f"{hi + 1:g}"] if hi is not None else []
    return _typed(parse, "float", bad)


def _span(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo}, {hi}]"
    return f">= {lo}" if lo is not None else f"<= {hi}"


positive_int = int_range(1)
nonneg_int = int_range(0)
positive_float = float_range(0.0, lo_open=True)
nonneg_float = float_range(0.0)
finite_float = float_range()
fraction = float_range(0.0, 1.0)
threads = int_range(1, 1024, "CPU threads")
workers = int_range(0, 256, "0 = load data in the main process")
port = int_range(0, 65535)


# --------------------------------------------------------------------------------------------- sizes

_WXH = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str, min_side: int = 8, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS
               ) -> tuple[int, int]:
    """'WxH' -> (W, H); ValueError with the reason."""
    m = _WXH.match(text)
    if not m:
        raise ValueError(f"size {text!r} must be WxH, e.g. 640x360")
    w, h = int(m.group(1)), int(m.group(2))
    if w < min_side or h < min_side:
        raise ValueError(f"size {text!r} is too small (at least {min_side}x{min_side})")
    if w > max_side or h > max_side or w * h > max_pixels:
        raise ValueError(f"size {text!r} is too large (at most {max_side} per side and {max_pixels} pixels)")
    return w, h


def size(min_side: int = 8, max_side: int = MAX_SIDE) -> Callable[[str], tuple[int, int]]:
    def parse(text: str) -> tuple[int, int]:
        try:
            return parse_size(text, min_side, max_side)
        except ValueError as exc:
            _fail(str(exc))

    bad = ["100000x100000", f"{max_side + 1}x{min_side}", f"{max(min_side - 1, 0)}x{min_side}", "axb", "640", "-8x8"]
    return _typed(parse, "size", bad)


def side(min_side: int = 1, max_side: int = MAX_SIDE) -> Callable[[str], int]:
    """One image side in pixels."""
    return int_range(min_side, max_side, "pixels")


# ------------------------------------------------------------------------------------------- devices

_DEVICE = re.compile(r"^(cpu|cuda(:\d{1,2})?)$")


def device(text: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' (whether that device exists is checked when the model loads)."""
    if not _DEVICE.match(text):
        _fail(f"unknown device {text!r}; use cpu, cuda or cuda:N")
    return text


_typed(device, "device", ["banana", "cuda:x", "gpu", "CPU", ""])


# ------------------------------------------------------------------------------------------- paths


def path_text_problem(text: str) -> str | None:
    """Why OpenCV and friends cannot be given this path text, or None.

    A file name that is not valid UTF-8 reaches Python as lone surrogates (PEP 383); OpenCV converts the
    str to UTF-8 and crashes (SIGSEGV) on them, so such names are refused here, with a way out.
    """
    if "\x00" in text:
        return "contains a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (rename the file, e.g. with `convmv`, or link it under a UTF-8 name)"
    return None


def check_path_text(path: str | os.PathLike) -> None:
    problem = path_text_problem(os.fspath(path))
    if problem:
        raise UserError(f"{printable(path)}: file name {problem}")


def printable(path: str | os.PathLike) -> str:
    """The path as text that can be printed on any terminal (undecodable bytes as \\xNN)."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def regular_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file, or None; never opens it (a FIFO's open would block)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "no such file (a parent is not a folder)"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or str(exc)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def check_input_file(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a Path when it is a readable regular file with a usable name; UserError otherwise."""
    check_path_text(path)
    problem = regular_file_problem(Path(path))
    if problem:
        raise UserError(f"{printable(path)}: {what + ' ' if what else ''}{problem}")
    return Path(path)


def input_file(text: str) -> Path:
    try:
        return check_input_file(text)
    except UserError as exc:
        _fail(str(exc))


def input_dir(text: str) -> Path:
    problem = path_text_problem(text)
    if problem:
        _fail(f"{printable(text)}: name {problem}")
    path = Path(text)
    if not path.exists():
        _fail(f"{text}: no such folder")
    if not path.is_dir():
        _fail(f"{text}: not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        _fail(f"{text}: permission denied")
    return path


def _writable_parent(path: Path) -> str | None:
    """Why files cannot be created at ``path`` (its nearest existing ancestor decides), or None."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        try:
            read_only = os.statvfs(parent).f_flag & os.ST_RDONLY
        except OSError:
            read_only = False
        return f"{parent} is on a read-only file system" if read_only else f"{parent} is not writable"
    return None


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """UserError when files cannot be created at ``path`` (or inside it, for a ``folder``): for outputs
    named inside other arguments (``--sink file:PATH``), checked when those are parsed."""
    check_path_text(path)
    path = Path(path)
    reason = _writable_parent(path / "x" if folder else path)
    if reason:
        raise UserError(f"{path}: cannot write here ({reason})")


def output_file(text: str) -> Path:
    problem = path_text_problem(text)
    if problem:
        _fail(f"{printable(text)}: name {problem}")
    path = Path(text)
    if text.endswith(os.sep) or path.is_dir():
        _fail(f"{text}: is a folder; give a file name")
    reason = _writable_parent(path)
    if reason:
        _fail(f"{text}: cannot write here ({reason})")
    return path


def output_dir(text: str) -> Path:
    problem = path_text_problem(text)
    if problem:
        _fail(f"{printable(text)}: name {problem}")
    path = Path(text)
    if path.exists() and not path.is_dir():
        _fail(f"{text}: exists and is not a folder")
    reason = _writable_parent(path / "x")
    if reason:
        _fail(f"{text}: cannot write here ({reason})")
    return path


def output_path(text: str) -> Path:
    """A file or a folder (decided later by the command, e.g. ``upscale -o``)."""
    problem = path_text_problem(text)
    if problem:
        _fail(f"{printable(text)}: name {problem}")
    path = Path(text)
    reason = _writable_parent(path / "x" if path.is_dir() else path)
    if reason:
        _fail(f"{text}: cannot write here ({reason})")
    return path


# ------------------------------------------------------------------------------------------- overwrite


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist "
                        "(default: refuse to run when one does)")


def check_new_output(path: str | os.PathLike, overwrite: bool, what: str = "output") -> None:
    """UserError when ``path`` exists and ``--overwrite`` was not given."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise UserError(f"{path}: {what} already exists; pass --overwrite to replace it")


def add_image_limits(parser: argparse.ArgumentParser) -> None:
    """--max-image-pixels / --max-image-mb: the limits read_image checks before decoding (cli.main applies them)."""
    g = parser.add_argument_group("image limits")
    g.add_argument("--max-image-pixels", type=int_range(1), default=None, metavar="N",
                   help="refuse images declaring more pixels (default $MAMBALITESR_MAX_IMAGE_PIXELS or 8192*8192)")
    g.add_argument("--max-image-mb", type=int_range(1), default=None, metavar="MB",
                   help="refuse image files larger than this (default $MAMBALITESR_MAX_IMAGE_MB or 512)")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tile(text: str) -> int:
    """A tile side in LR pixels: 0 (no tiling along that side) or in [8, MAX_SIDE]."""
    value = int_range(0, MAX_SIDE)(text)
    if 0 < value < 8:
        _fail(f"must be 0 (no tiling) or at least 8, got {value}")
    return value


def csv_of(item: Callable[[str], object], name: str = "list") -> Callable[[str], str]:
    """Comma-separated values, each checked by ``item``; returns the text unchanged (the command parses it)."""

    def parse(text: str) -> str:
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not items:
            _fail("give at least one value")
        for x in items:
            item(x)
        return text

    return _typed(parse, name, [",", ""] + [f"{v}" for v in getattr(item, "bad_values", []) if "," not in v and v])


def sizes_text(text: str) -> str:
    """'WxH,WxH,...' (or 'all'), each size checked; the text is returned as given."""
    return text if text == "all" else csv_of(size(), "sizes")(text)


_typed(tile, "tile", ["3", "-1", "1.5", str(MAX_SIDE + 1)])
_typed(sizes_text, "sizes", ["100000x100000", "axb", ",", "4x4"])
for _fn in (input_file, input_dir, output_file, output_dir, output_path):
    _typed(_fn, _fn.__name__, kind=_fn.__name__)


def size_text(text: str) -> str:
    """One 'WxH', checked like :func:`size`; the text is returned as given (the command parses it)."""
    try:
        parse_size(text)
    except ValueError as exc:
        _fail(str(exc))
    return text


def _path_text(kind: Callable[[str], Path]) -> Callable[[str], str]:
    """``kind``'s checks, the text returned as given: for commands whose code takes paths as text."""

    def parse(text: str) -> str:
        kind(text)
        return text

    return _typed(parse, kind.__name__, kind=kind.__name__)


_typed(size_text, "size", ["100000x100000", "axb", "4x4", "640"])
input_file_text = _path_text(input_file)
output_dir_text = _path_text(output_dir)
