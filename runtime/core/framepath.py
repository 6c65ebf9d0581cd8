"""The frame path: camera frames -> the model's planar input, SR output -> BGR, tile split and merge.

Glossary (code name -> symbol):
    H, W     frame size;  C = 3 planes, always R, G, B
    fmt      camera format: "bgr", "rgb" (uint8 H x W x 3), "nv12" (Y + interleaved UV, 4:2:0),
             "yuyv" (uint8 H x W x 2, 4:2:2), both YUV formats BT.601 limited range
    scale, mean   pack: x = rgb * scale - mean[c] (default 1/255 and 0: the model subtracts
                  its own mean inside); unpack: u8 = floor((x + mean[c]) * scale + 0.5), clamped
    th, tw, s, N  tile size (LR), scale factor, tile count: see mambalitesr.runtime.core.tiles

Every call goes to the C library (runtime/csrc/framepath.c, loaded with ctypes) and writes into
`out` when given, e.g. a batch slot ``batch[k]`` or pinned memory, so no frame-sized temporary is
made. Without the built library a MissingDependency is raised; there is no numpy fallback (the
numpy twins in framepath_ref exist for the tests).

`pip install -e .` builds the library. During development, compile and link in two steps, so that
-ffast-math never reaches the link (a one-step `gcc -ffast-math -shared` links GCC's crtfastmath,
which turns on flush-to-zero for the whole Python process as soon as the library loads):

    gcc -O3 -std=c11 -fopenmp -ffast-math -fno-finite-math-only -march=x86-64-v2 -fPIC \
        -c runtime/csrc/framepath.c -o /tmp/framepath.o
    gcc -shared -fopenmp /tmp/framepath.o -o runtime/_framepath$(python3-config --extension-suffix)
"""
from __future__ import annotations

import ctypes
import importlib.util
from typing import Sequence

import numpy as np

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.core.tiles import TileGrid

ABI_VERSION = 2
FORMATS = {"bgr": 0, "rgb": 1, "nv12": 2, "yuyv": 3}
_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
_ERRORS = {-1: "unknown format or dtype", -2: "inconsistent sizes or tile geometry", -3: "a buffer is missing (or out of memory)"}

_f32x3 = ctypes.c_float * 3
_i32, _i64, _ptr = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p


class _PackParams(ctypes.Structure):
    _fields_ = [
        ("format", _i32), ("dtype", _i32), ("height", _i32), ("width", _i32),
        ("src0", _ptr), ("src0_stride", _i64), ("src1", _ptr), ("src1_stride", _i64),
        ("dst", _ptr), ("dst_plane_stride", _i64), ("dst_row_stride", _i64),
        ("scale", ctypes.c_float), ("mean", _f32x3),
    ]


class _UnpackParams(ctypes.Structure):
    _fields_ = [
        ("dtype", _i32), ("height", _i32), ("width", _i32), ("swap_rb", _i32),
        ("src", _ptr), ("src_plane_stride", _i64), ("src_row_stride", _i64),
        ("dst", _ptr), ("dst_stride", _i64),
        ("scale", ctypes.c_float), ("mean", _f32x3),
    ]


class _TileGrid(ctypes.Structure):
    _fields_ = [
        ("height", _i32), ("width", _i32), ("tile_h", _i32), ("tile_w", _i32),
        ("n_y", _i32), ("n_x", _i32), ("y0", _ptr), ("x0", _ptr), ("channels", _i32),
    ]


class _SplitParams(ctypes.Structure):
    _fields_ = [
        ("grid", _TileGrid), ("elem_size", _i32), ("src", _ptr),
        ("src_plane_stride", _i64), ("src_row_stride", _i64), ("tiles", _ptr),
    ]


class _MergeParams(ctypes.Structure):
    _fields_ = [
        ("grid", _TileGrid), ("scale", _i32), ("dtype", _i32), ("tiles", _ptr),
        ("ratio_y", _ptr), ("ratio_x", _ptr),
        ("dst", _ptr), ("dst_plane_stride", _i64), ("dst_row_stride", _i64),
    ]


class _AreaParams(ctypes.Structure):
    _fields_ = [
        ("dtype", _i32), ("channels", _i32), ("src_h", _i32), ("src_w", _i32), ("dst_h", _i32), ("dst_w", _i32),
        ("src", _ptr), ("src_plane_stride", _i64), ("src_row_stride", _i64),
        ("dst", _ptr), ("dst_plane_stride", _i64), ("dst_row_stride", _i64),
    ]


_LIB: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """The loaded C library; MissingDependency when it was not built."""
    global _LIB
    if _LIB is not None:
        return _LIB
    spec = importlib.util.find_spec("mambalitesr.runtime._framepath")
    if spec is None or not spec.origin:
        raise MissingDependency("frame-path library not built: run `pip install -e .`")
    lib = ctypes.CDLL(spec.origin)
    if lib.mlsr_fp_abi_version() != ABI_VERSION:
        raise MissingDependency(
            f"frame-path library {spec.origin} is stale (ABI {lib.mlsr_fp_abi_version()}, need {ABI_VERSION}): "
            "run `pip install -e .`"
        )
    for name, params in (
        ("mlsr_fp_pack", _PackParams), ("mlsr_fp_unpack", _UnpackParams),
        ("mlsr_fp_split", _SplitParams), ("mlsr_fp_merge", _MergeParams), ("mlsr_fp_area", _AreaParams),
    ):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(params)]
        fn.restype = ctypes.c_int
    lib.mlsr_fp_f32_to_f16.argtypes, lib.mlsr_fp_f32_to_f16.restype = [ctypes.c_float], ctypes.c_uint16
    lib.mlsr_fp_f16_to_f32.argtypes, lib.mlsr_fp_f16_to_f32.restype = [ctypes.c_uint16], ctypes.c_float
    lib.mlsr_fp_set_hw_f16.argtypes, lib.mlsr_fp_set_hw_f16.restype = [ctypes.c_int], None
    lib.mlsr_fp_hw_f16.argtypes, lib.mlsr_fp_hw_f16.restype = [], ctypes.c_int
    _LIB = lib
    return lib


def _call(name: str, params: ctypes.Structure) -> None:
    rc = getattr(library(), name)(ctypes.byref(params))
    if rc != 0:  # the Python checks below should make this unreachable
        raise ValueError(f"{name}: {_ERRORS.get(rc, f'error {rc}')}")


def _ptr_of(a: np.ndarray) -> int:
    return a.ctypes.data


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_u8(a: np.ndarray, name: str, ndim: int, last: int | None) -> None:
    _require(isinstance(a, np.ndarray) and a.dtype == np.uint8, f"{name} must be a uint8 numpy array")
    _require(a.ndim == ndim, f"{name} must have {ndim} axes, got shape {a.shape}")
    if last is not None:
        _require(a.shape[-1] == last, f"{name} must have {last} values per pixel, got shape {a.shape}")
    inner = a.shape[-1] if ndim == 3 else 1
    _require(
        a.strides[-1] == 1 and (ndim == 2 or a.strides[1] == inner),
        f"{name} rows must be contiguous (np.ascontiguousarray); strides {a.strides}",
    )


def _check_planar(a: np.ndarray, name: str, dtypes=_DTYPES) -> None:
    _require(isinstance(a, np.ndarray) and a.dtype in dtypes, f"{name} must be float32 or float16")
    _require(a.ndim == 3 and a.shape[0] == 3, f"{name} must be (3, H, W), got shape {a.shape}")
    _require(
        a.strides[2] == a.itemsize and a.flags.aligned and a.strides[0] % a.itemsize == 0 and a.strides[1] % a.itemsize == 0,
        f"{name} rows must be contiguous and aligned; strides {a.strides}",
    )
    _require(a.flags.writeable or name != "out", "out is read-only")


def _f32x3_of(values: Sequence[float]) -> ctypes.Array:
    vals = [float(v) for v in values]
    _require(len(vals) == 3, f"mean needs 3 values (R, G, B), got {len(vals)}")
    return _f32x3(*vals)


def nv12_planes(buf: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One contiguous NV12 buffer (H * 3/2, W) as OpenCV and V4L2 lay it out -> views Y (H, W), UV (H/2, W/2, 2)."""
    _require(height % 2 == 0 and width % 2 == 0, f"a single-buffer NV12 frame needs even H and W, got {height}x{width}")
    _check_u8(buf, "NV12 buffer", 2, None)
    _require(buf.shape == (height * 3 // 2, width), f"NV12 buffer must be ({height * 3 // 2}, {width}), got {buf.shape}")
    return buf[:height], buf[height:].reshape(height // 2, width // 2, 2)


def _planar_out(out: np.ndarray | None, h: int, w: int, dtype) -> np.ndarray:
    if out is None:
        return np.empty((3, h, w), dtype=np.dtype(dtype or np.float32))
    _check_planar(out, "out")
    _require(out.shape[1:] == (h, w), f"out must be (3, {h}, {w}), got {out.shape}")
    _require(dtype is None or np.dtype(dtype) == out.dtype, f"out is {out.dtype} but dtype={np.dtype(dtype)} was asked")
    return out


def pack(
    frame: np.ndarray,
    fmt: str = "bgr",
    *,
    uv: np.ndarray | None = None,
    out: np.ndarray | None = None,
    dtype=None,
    scale: float = 1 / 255,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """A camera frame -> (3, H, W) planar R, G, B float32/float16, written into `out` when given.

    frame: "bgr"/"rgb" (H, W, 3) uint8; "yuyv" (H, W, 2) uint8 (W even); "nv12" the Y plane
    (H, W) with `uv` (ceil(H/2), ceil(W/2), 2), or, with uv=None, one (H * 3/2, W) buffer.
    """
    _require(fmt in FORMATS, f"unknown frame format {fmt!r}; known: {', '.join(FORMATS)}")
    src1, src1_stride = None, 0
    if fmt in ("bgr", "rgb"):
        _check_u8(frame, f"{fmt} frame", 3, 3)
        h, w = frame.shape[:2]
    elif fmt == "yuyv":
        _check_u8(frame, "YUYV frame", 3, 2)
        h, w = frame.shape[:2]
        _require(w % 2 == 0, f"YUYV frames have an even width, got {w}")
    else:
        if uv is None:
            _check_u8(frame, "NV12 buffer", 2, None)
            _require(frame.shape[0] % 3 == 0, f"an (H * 3/2, W) NV12 buffer has a row count divisible by 3, got {frame.shape}")
            frame, uv = nv12_planes(frame, frame.shape[0] * 2 // 3, frame.shape[1])
        _check_u8(frame, "NV12 Y plane", 2, None)
        h, w = frame.shape
        _check_u8(uv, "NV12 UV plane", 3, 2)
        _require(uv.shape[:2] == ((h + 1) // 2, (w + 1) // 2), f"NV12 UV plane must be ({(h + 1) // 2}, {(w + 1) // 2}, 2), got {uv.shape}")
        src1, src1_stride = _ptr_of(uv), uv.strides[0]
    _require(h > 0 and w > 0, f"empty frame {frame.shape}")
    out = _planar_out(out, h, w, dtype)
    params = _PackParams(
        FORMATS[fmt], _DTYPES[out.dtype], h, w,
        _ptr_of(frame), frame.strides[0], src1, src1_stride,
        _ptr_of(out), out.strides[0] // out.itemsize, out.strides[1] // out.itemsize,
        float(scale), _f32x3_of(mean),
    )
    _call("mlsr_fp_pack", params)
    return out


def unpack(
    planar: np.ndarray,
    *,
    out: np.ndarray | None = None,
    order: str = "bgr",
    scale: float = 255.0,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """(3, H, W) planar R, G, B float32/float16 -> (H, W, 3) uint8 in `order` ("bgr" or "rgb").

    Rounds by floor(v + 0.5) after clamping to [0, 255] (= half away from zero there); NaN -> 0.
    """
    _require(order in ("bgr", "rgb"), f"order must be 'bgr' or 'rgb', got {order!r}")
    _check_planar(planar, "planar input")
    _, h, w = planar.shape
    _require(h > 0 and w > 0, f"empty input {planar.shape}")
    if out is None:
        out = np.empty((h, w, 3), dtype=np.uint8)
    else:
        _check_u8(out, "out", 3, 3)
        _require(out.shape[:2] == (h, w) and out.flags.writeable, f"out must be a writable ({h}, {w}, 3) uint8 array")
    params = _UnpackParams(
        _DTYPES[planar.dtype], h, w, int(order == "rgb"),
        _ptr_of(planar), planar.strides[0] // planar.itemsize, planar.strides[1] // planar.itemsize,
        _ptr_of(out), out.strides[0], float(scale), _f32x3_of(mean),
    )
    _call("mlsr_fp_unpack", params)
    return out


def downscale(planar: np.ndarray, height: int, width: int, *, out: np.ndarray | None = None, dtype=None) -> np.ndarray:
    """(C, H, W) float32 -> (C, height, width) float32/float16 by area average (h <= H, w <= W), into `out`."""
    _require(isinstance(planar, np.ndarray) and planar.ndim == 3 and planar.dtype == np.float32,
             f"downscale input must be a (C, H, W) float32 array, got {getattr(planar, 'shape', None)}")
    _require(planar.strides[2] == planar.itemsize, "downscale input rows must be contiguous")
    c, h, w = planar.shape
    _require(0 < height <= h and 0 < width <= w, f"downscale {w}x{h} -> {width}x{height}: the target must be "
             "positive and no larger than the source")
    if out is None:
        out = np.empty((c, height, width), dtype=np.dtype(dtype or np.float32))
    else:
        _check_planar(out, "out")
        _require(out.shape == (c, height, width), f"out must be ({c}, {height}, {width}), got {out.shape}")
    params = _AreaParams(
        _DTYPES[out.dtype], c, h, w, height, width,
        _ptr_of(planar), planar.strides[0] // planar.itemsize, planar.strides[1] // planar.itemsize,
        _ptr_of(out), out.strides[0] // out.itemsize, out.strides[1] // out.itemsize,
    )
    _call("mlsr_fp_area", params)
    return out


def _grid_struct(grid: TileGrid, channels: int) -> _TileGrid:
    return _TileGrid(
        grid.height, grid.width, grid.tile_h, grid.tile_w, grid.n_y, grid.n_x,
        _ptr_of(grid.y0_array), _ptr_of(grid.x0_array), channels,
    )


def split_tiles(planar: np.ndarray, grid: TileGrid, *, out: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) LR planar float32/float16 -> (N, C, th, tw) tiles, k = i * n_x + j (copy, same dtype)."""
    _require(isinstance(planar, np.ndarray) and planar.dtype in _DTYPES, "planar input must be float32 or float16")
    _require(planar.ndim == 3 and planar.strides[2] == planar.itemsize, f"planar input must be (C, H, W) with contiguous rows, got {planar.shape}")
    c, h, w = planar.shape
    _require((h, w) == (grid.height, grid.width), f"frame is {h}x{w} but the tile grid was planned for {grid.height}x{grid.width}")
    shape = (grid.count, c, grid.tile_h, grid.tile_w)
    if out is None:
        out = np.empty(shape, dtype=planar.dtype)
    _require(out.shape == shape and out.dtype == planar.dtype, f"out must be {shape} {planar.dtype}, got {out.shape} {out.dtype}")
    _require(out.flags.c_contiguous and out.flags.writeable, "out must be a writable C-contiguous array")
    params = _SplitParams(
        _grid_struct(grid, c), planar.itemsize, _ptr_of(planar),
        planar.strides[0] // planar.itemsize, planar.strides[1] // planar.itemsize, _ptr_of(out),
    )
    _call("mlsr_fp_split", params)
    return out


def merge_tiles(tiles: np.ndarray, grid: TileGrid, *, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C, s*th, s*tw) SR tiles float32/float16 -> (C, s*H, s*W) float32, feathered (weights sum to 1)."""
    _require(isinstance(tiles, np.ndarray) and tiles.dtype in _DTYPES, "tiles must be float32 or float16")
    s = grid.scale
    _require(
        tiles.ndim == 4 and tiles.shape[0] == grid.count and tiles.shape[2:] == (grid.tile_h * s, grid.tile_w * s),
        f"tiles must be ({grid.count}, C, {grid.tile_h * s}, {grid.tile_w * s}), got {tiles.shape}",
    )
    _require(tiles.flags.c_contiguous, "tiles must be C-contiguous")
    c = tiles.shape[1]
    shape = (c, *grid.sr_shape)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    _require(out.shape == shape and out.dtype == np.float32, f"out must be {shape} float32, got {out.shape} {out.dtype}")
    _require(out.strides[2] == 4 and out.flags.writeable, "out must be writable with contiguous rows")
    params = _MergeParams(
        _grid_struct(grid, c), s, _DTYPES[tiles.dtype], _ptr_of(tiles),
        _ptr_of(grid.ratios_y), _ptr_of(grid.ratios_x),
        _ptr_of(out), out.strides[0] // 4, out.strides[1] // 4,
    )
    _call("mlsr_fp_merge", params)
    return out
