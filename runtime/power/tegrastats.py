"""tegrastats lines -> PowerSample, and a source that runs `tegrastats --interval MS` in a thread.

Glossary: rail = a power monitor channel printed as `NAME cur/avg`; cur and avg in mW.
Formats handled (one line per interval, rails usually last):
    JetPack 5/6 (Orin):     `VDD_IN 4556mW/4556mW VDD_CPU_GPU_CV 483mW/483mW VDD_SOC 1451mW/1451mW`
    AGX Orin:               `VDD_GPU_SOC 3186mW/3186mW VDD_CPU_CV 398mW/398mW VIN_SYS_5V0 2542mW/2542mW ...`
    JetPack 4 (Nano, TX2, Xavier): `POM_5V_IN 1234/1234 POM_5V_GPU 0/0` (no unit, mW implied)
Everything else on the line (`RAM 2147/7620MB`, `EMC_FREQ 0%@2133`, `GR3D_FREQ 0%@[305]`,
`VIC off`, `CPU [off,...]`, temperatures `cpu@47.687C`) is skipped. A line without rails, with a
rail cut short, or mixing the two unit styles is malformed: the parser returns None and counts it.
Timestamps are taken when a line arrives (tegrastats prints wall-clock seconds only).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Iterator, Sequence

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.power.sample import PowerSample, total_of

_NAME = r"(?<![\w@\[,%])([A-Z][A-Z0-9_]*)"
RAIL_MW = re.compile(_NAME + r" (\d+)mW/(\d+)mW(?![\w/])", re.ASCII)
RAIL_BARE = re.compile(_NAME + r" (\d+)/(\d+)(?![\w/%.])", re.ASCII)
# Rail-like fragments that are not whole rails: a line cut short, or a unit on one side only.
_BROKEN = (
    (re.compile(_NAME + r" \d+mW(?!/\d+mW(?![\w/]))", re.ASCII), "rail without a complete `/avg mW`"),
    (re.compile(_NAME + r" \d+/\d+mW", re.ASCII), "unit on the average only"),
    (re.compile(_NAME + r" \d+(?:mW)?/(?!\d)", re.ASCII), "rail cut after the slash"),
    (re.compile(r"(?<![\w@])(?:VDD|VIN|POM)[A-Z0-9_]*(?: \d*)?\s*$", re.ASCII), "line ends inside a rail"),
)


def parse_rails(line: str) -> tuple[dict[str, tuple[float, float]] | None, str]:
    """(rails, "") for a good line, (None, why) for a malformed one; never raises on a str."""
    mw = RAIL_MW.findall(line)
    bare = RAIL_BARE.findall(line)
    if mw and bare:
        return None, "mixes `cur/avg` with and without mW"
    for pattern, why in _BROKEN:
        if pattern.search(line):
            return None, why
    found = mw or bare
    if not found:
        return None, "no power rails"
    rails: dict[str, tuple[float, float]] = {}
    for name, cur, avg in found:
        rails.setdefault(name, (float(cur), float(avg)))
    return rails, ""


def parse_line(line: str, t_monotonic: float | None = None) -> PowerSample | None:
    """One tegrastats line -> PowerSample (source "tegrastats"), or None when malformed."""
    if not isinstance(line, str):
        return None
    rails, _ = parse_rails(line)
    if rails is None:
        return None
    t = time.monotonic() if t_monotonic is None else t_monotonic
    return PowerSample(t, total_of(rails), rails, "tegrastats")


class LineParser:
    """parse_line with a count of malformed lines and the last reason, for the summary."""

    def __init__(self) -> None:
        self.good = 0
        self.malformed = 0
        self.last_error = ""

    def feed(self, line: str, t_monotonic: float | None = None) -> PowerSample | None:
        rails, why = parse_rails(line) if isinstance(line, str) else (None, "not text")
        if rails is None:
            self.malformed += 1
            self.last_error = f"{why}: {line.strip()[:80]!r}"
            return None
        self.good += 1
        t = time.monotonic() if t_monotonic is None else t_monotonic
        return PowerSample(t, total_of(rails), rails, "tegrastats")


class TegrastatsSource:
    """Runs `tegrastats --interval MS` (or `command` + `--interval MS`) and parses each line."""

    name = "tegrastats"

    def __init__(self, interval_ms: int = 100, command: str | Sequence[str] | None = None) -> None:
        if command is None:
            exe = shutil.which("tegrastats")
            if exe is None:
                raise MissingDependency(
                    "tegrastats not found: it ships with JetPack on a Jetson (/usr/bin/tegrastats); "
                    "elsewhere use --power nvml or none, or --tegrastats-cmd to point at one"
                )
            # tegrastats writes through stdio; line-buffer it so samples arrive when taken
            prefix = ["stdbuf", "-oL", exe] if shutil.which("stdbuf") else [exe]
        else:
            prefix = shlex.split(command) if isinstance(command, str) else list(command)
            if not prefix or shutil.which(prefix[0]) is None:
                raise MissingDependency(f"--tegrastats-cmd {command!r}: {prefix[0] if prefix else '(empty)'} is not an executable")
        self.argv = [*prefix, "--interval", str(int(interval_ms))]
        self.parser = LineParser()
        self.exit_reason: str | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def samples(self, stop: threading.Event) -> Iterator[PowerSample]:
        stderr = tempfile.TemporaryFile()  # a file, not a pipe: nobody must drain it
        with self._lock:
            if stop.is_set():
                return
            self._proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                text=True, errors="replace", bufsize=1,
            )
        proc = self._proc
        try:
            for line in proc.stdout:
                if stop.is_set():
                    break
                sample = self.parser.feed(line)
                if sample is not None:
                    yield sample
            rc = proc.wait()
            if not stop.is_set():
                stderr.seek(0)
                tail = stderr.read()[-300:].decode(errors="replace").strip()
                self.exit_reason = (
                    f"{shlex.join(self.argv)} exited with code {rc} after {self.parser.good} samples"
                    + (f": {tail}" if tail else "")
                )
        finally:
            stderr.close()
            self.close()

    def close(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
