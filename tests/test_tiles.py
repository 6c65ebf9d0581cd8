"""Tiling with the real network: strips match the untiled result, and memory does not grow with the image.

Glossary: strips = tiles of ``--tile`` LR rows by the full width (the default of ``mambalitesr upscale``);
diff = |tiled - untiled| of the uint8 SR images, in 1/255 steps; peak = the rise of the process's peak RSS
(VmHWM, reset through /proc/self/clear_refs) during one upscale.

The shipped student scans each frame row-major as one token sequence, so a tile cut on the left changes
the output far into the tile, while rows a few pixels away do not matter: see runtime/core/processing.py
for the figures. The acceptance (a 1920x1080 image within 1/255 of untiled) was run once by hand; here
the same code path runs on the largest image that keeps the test near 30 s on the CI's two cores.
"""
from __future__ import annotations

import ctypes
import gc
import glob
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, native_scan_available

torch = pytest.importorskip("torch")

from mambalitesr.cli import main  # noqa: E402
from mambalitesr.imageio import read_image, write_image  # noqa: E402
from mambalitesr.models.registry import get_entry  # noqa: E402

CROPS = SHARED / "data" / "train" / "DIV2K_valid_crop256"
STUDENT = get_entry("mambalitesr_x4")
BORDER = 4  # SR pixels at the image border left out of the comparison ("away from the borders")
SIZE = (640, 360)  # LR (W, H): untiled + tiled about 30 s on the shared 2-core machine


def natural_image(width: int, height: int) -> np.ndarray:
    """RGB uint8 (height, width, 3): a mosaic of DIV2K validation crops (natural detail at its own scale)."""
    files = sorted(glob.glob(str(CROPS / "*.png")))
    nx, ny = -(-width // 256), -(-height // 256)
    rows = [np.concatenate([read_image(files[(i * nx + j) % len(files)]) for j in range(nx)], axis=1)
            for i in range(ny)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


@pytest.mark.skipif(not STUDENT.weights_path.is_file(), reason=f"shipped weights missing: {STUDENT.weights_path}")
@pytest.mark.skipif(not CROPS.is_dir(), reason=f"DIV2K crops not found at {CROPS} (set MAMBALITESR_SHARED)")
@pytest.mark.skipif(not native_scan_available(), reason="native scan library not built (pip install -e .)")
def test_default_tiling_of_the_shipped_student_equals_untiled(tmp_path, capsys):
    src = tmp_path / "in.png"
    write_image(src, natural_image(*SIZE))
    common = ["upscale", str(src), "--backend", "torch", "--threads", "1", "--no-progress"]
    t0 = time.perf_counter()
    assert main([*common, "-o", str(tmp_path / "tiled.png")]) == 0  # the defaults: strips, overlap 16
    t1 = time.perf_counter()
    assert main([*common, "-o", str(tmp_path / "whole.png"), "--tile", "0"]) == 0
    t2 = time.perf_counter()
    tiled = read_image(tmp_path / "tiled.png").astype(np.int16)
    whole = read_image(tmp_path / "whole.png").astype(np.int16)
    assert tiled.shape == whole.shape == (4 * SIZE[1], 4 * SIZE[0], 3)
    diff = np.abs(tiled - whole).max(axis=2)
    inner = diff[BORDER:-BORDER, BORDER:-BORDER]
    with capsys.disabled():
        print(f"\n  student {SIZE[0]}x{SIZE[1]}: tiled (default strips) vs untiled: max {inner.max()}/255 away from a "
              f"{BORDER} SR px border ({diff.max()}/255 anywhere), {np.mean(inner > 0) * 100:.2f}% of pixels differ; "
              f"tiled {t1 - t0:.1f} s, untiled {t2 - t1:.1f} s")
    assert inner.max() <= 1


@pytest.mark.parametrize("args,message", [
    (["--tile-width", "3"], "argument --tile-width: must be 0 (no tiling) or at least 8"),
    (["--tile", "64", "--tile-width", "16", "--tile-overlap", "16"], "--tile-overlap must be in [0, tile)"),
])
def test_bad_tile_options_are_one_line_errors(tmp_path, capsys, args, message):
    src = tmp_path / "in.png"
    write_image(src, np.zeros((32, 32, 3), np.uint8))
    assert main(["upscale", str(src), "-o", str(tmp_path / "out.png"), "--no-progress", *args]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


# -- memory --------------------------------------------------------------------------------------
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS, so that reusing them shows in the RSS again."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed blocks resident otherwise
    except (OSError, AttributeError):  # not glibc: the untiled control below then says if RSS cannot see growth
        pass


def _peak_rise(fn) -> int:
    """Bytes the process's peak RSS rose above its RSS at the start while ``fn`` ran."""
    _release_free_memory()
    CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    base = _status_bytes("VmRSS")
    fn()
    return _status_bytes("VmHWM") - base


def _can_reset_peak() -> bool:
    try:
        _peak_rise(lambda: None)
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux /proc/self/clear_refs to reset the peak RSS")
def test_peak_memory_of_a_tiled_run_does_not_grow_with_the_image(capsys):
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.core.banded import upscale_image
    from mambalitesr.runtime.core.processing import FrameProcessor
    from mambalitesr.runtime.core.frames import Frame

    backend = create_backend("torch", model="test_x4", threads=1)  # the student's architecture, tiny
    rng = np.random.default_rng(0)
    mib = 2**20

    def rises(processor, sizes):
        frames = [Frame(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 0, 0.0, "rgb") for h, w in sizes]
        for frame in frames:  # warm-up: the allocator's first growth is not the run's
            upscale_image(processor, frame)
        # the uint8 result (48 bytes per LR pixel) is the one buffer that must scale with the image;
        # the smaller of two runs leaves out one-off allocator moves
        return [min(_peak_rise(lambda f=f: upscale_image(processor, f)) for _ in range(2)) - f.image.size * 16
                for f in frames]

    strips = rises(FrameProcessor(backend, tile=32, overlap=8), [(128, 128), (1024, 128)])  # 8x taller
    tiles = rises(FrameProcessor(backend, tile=32, overlap=8, tile_width=64), [(128, 128), (512, 256)])  # 8x
    whole = rises(FrameProcessor(backend), [(128, 128), (1024, 128)])  # the control: untiled does grow
    text = ", ".join(f"{name} {a / mib:+.1f} -> {b / mib:+.1f} MiB" for name, (a, b) in
                     (("strips", strips), ("tiles", tiles), ("untiled", whole)))
    with capsys.disabled():
        print(f"\n  peak RSS rise beyond the uint8 result, small -> large image: {text}")
    assert strips[1] - strips[0] < 8 * mib, text
    # Narrow tiles run one per call; what still grows is the band of merged SR rows, float32 of the full
    # width (3 x s*th x s floats = 6 KiB per LR column per buffer here), not the network's working set.
    assert tiles[1] - tiles[0] < 12 * mib, text
    assert whole[1] - whole[0] > 32 * mib, text  # else this measurement could not see growth at all
