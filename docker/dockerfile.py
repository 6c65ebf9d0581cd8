"""Reading a Dockerfile's instructions, shared by the images' check scripts and tests/test_docker.py.

    instructions(path) -> [(INSTRUCTION, arguments)]   continuation lines joined, comments and blanks dropped
    arguments(rest)    -> [word]                       exec form (a JSON list) or shell form, split into words

Plain Python with no dependencies (check.sh runs it before anything is installed).
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in Path(dockerfile).read_text().splitlines():
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
    if buf:
        raise ValueError(f"{dockerfile}: dangling line continuation")
    return out


def arguments(rest: str) -> list[str]:
    """Exec form (JSON list) or shell form, split into words."""
    if rest.startswith("["):
        return json.loads(rest)
    return shlex.split(rest)
