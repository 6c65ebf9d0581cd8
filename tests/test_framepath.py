"""The C frame path against its numpy twins, OpenCV's colour conversions, and its exactness properties.

Glossary: H, W frame size; C = 3 planes R, G, B; th, tw LR tile size; o overlap; s scale; N tiles.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.core import framepath as fp
from mambalitesr.runtime.core import framepath_ref as ref
from mambalitesr.runtime.core.tiles import TileGrid, axis_ratios, axis_weights, edge_discard, tile_starts

DTYPES = (np.float32, np.float16)
SIZES = ((1, 2), (7, 11), (16, 32), (33, 64), (45, 2))
HYP = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module", autouse=True)
def lib():
    try:
        return fp.library()
    except MissingDependency as exc:  # a build problem, not a reason to skip
        pytest.fail(f"{exc} (or during development: gcc as in runtime/core/framepath.py's docstring)")


@pytest.fixture(params=[True, False], ids=["hw-f16", "soft-f16"])
def f16_path(request, lib):
    """Run the test with the hardware float16 rows (where the CPU has them) and with the portable ones."""
    lib.mlsr_fp_set_hw_f16(int(request.param))
    yield request.param
    lib.mlsr_fp_set_hw_f16(1)


def rng(seed=0):
    return np.random.default_rng(seed)


def assert_close_dtype(got, want):
    """float32: to 1e-6 (bit-exact on x86); float16: within half an ulp of float16."""
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    else:
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2**-10, atol=2**-24)


# ---- loading ------------------------------------------------------------------------------------


def test_missing_library_is_a_missing_dependency(monkeypatch):
    monkeypatch.setattr(fp, "_LIB", None)
    monkeypatch.setattr(fp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependency, match=r"frame-path library not built: run `pip install -e \.`"):
        fp.pack(np.zeros((2, 2, 3), np.uint8))


def test_library_does_not_switch_the_process_to_flush_to_zero():
    """A library linked with -ffast-math carries crtfastmath's set_fast_math, which sets FTZ/DAZ
    for the whole process (torch and numpy included) when it loads."""
    origin = fp.importlib.util.find_spec("mambalitesr.runtime._framepath").origin
    assert b"set_fast_math" not in Path(origin).read_bytes(), f"{origin} was linked with -ffast-math"


def test_c_rejects_inconsistent_params_without_crashing(lib):
    assert lib.mlsr_fp_pack(ctypes.byref(fp._PackParams())) == -3  # NULL buffers
    frame, out = np.zeros((2, 3, 2), np.uint8), np.zeros((3, 2, 3), np.float32)
    p = fp._PackParams(3, 0, 2, 3, frame.ctypes.data, 6, None, 0, out.ctypes.data, 6, 3, 1.0, fp._f32x3())
    assert lib.mlsr_fp_pack(ctypes.byref(p)) == -2  # YUYV with odd width
    p.format = 9
    assert lib.mlsr_fp_pack(ctypes.byref(p)) == -1


# ---- pack: C vs numpy ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["bgr", "rgb"])
@pytest.mark.parametrize("size", SIZES)
def test_pack_packed_matches_numpy(order, dtype, size, f16_path):
    frame = rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    mean = (0.1, -0.25, 0.5)
    got = fp.pack(frame, order, dtype=dtype, mean=mean)
    assert_close_dtype(got, ref.pack_packed_ref(frame, order, dtype, mean=mean))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES + ((1, 1), (5, 5)))
def test_pack_nv12_matches_numpy_odd_sizes(dtype, size, f16_path):
    h, w = size
    g = rng(2)
    y = g.integers(0, 256, (h, w), dtype=np.uint8)
    uv = g.integers(0, 256, ((h + 1) // 2, (w + 1) // 2, 2), dtype=np.uint8)
    got = fp.pack(y, "nv12", uv=uv, dtype=dtype, mean=(0.4, 0.45, 0.5))
    assert_close_dtype(got, ref.pack_nv12_ref(y, uv, dtype, mean=(0.4, 0.45, 0.5)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(h, w + w % 2) for h, w in SIZES])  # YUYV widths are even
def test_pack_yuyv_matches_numpy(dtype, size, f16_path):
    frame = rng(3).integers(0, 256, (*size, 2), dtype=np.uint8)
    assert_close_dtype(fp.pack(frame, "yuyv", dtype=dtype), ref.pack_yuyv_ref(frame, dtype))


def test_nv12_matrix_is_opencvs_bt601_limited_range():
    """OpenCV's NV12 and YUYV decoders use the same BT.601 limited-range matrix (and round to 8 bits).

    Samples stay in the legal range (Y 16..235, U/V 16..240): below it OpenCV clips Y - 16 at 0
    before the matrix, the C path does not (it clamps the RGB result)."""
    g = rng(4)
    h, w = 24, 40
    y = g.integers(16, 236, (h, w), dtype=np.uint8)
    uv = g.integers(16, 241, (h // 2, w // 2, 2), dtype=np.uint8)
    buf = np.concatenate([y, uv.reshape(h // 2, w)])
    want = cv2.cvtColor(buf, cv2.COLOR_YUV2RGB_NV12).transpose(2, 0, 1) / 255
    got = fp.pack(buf, "nv12")  # the single (H * 3/2, W) buffer form
    assert np.abs(got - want).max() <= 1.01 / 255
    yuyv = np.stack([y, uv.repeat(2, axis=0).reshape(h, w)], axis=-1)  # U, V alternate along x
    want = cv2.cvtColor(yuyv, cv2.COLOR_YUV2RGB_YUYV).transpose(2, 0, 1) / 255
    assert np.abs(fp.pack(yuyv, "yuyv") - want).max() <= 1.01 / 255


def test_pack_writes_into_a_batch_slot_from_a_strided_crop():
    g = rng(5)
    big = g.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    crop = big[3:30, 7:40]  # rows not contiguous with each other
    batch = np.full((4, 3, 27, 33), -7.0, dtype=np.float16)
    got = fp.pack(crop, "bgr", out=batch[2])
    assert np.shares_memory(got, batch)
    np.testing.assert_array_equal(batch[2], ref.pack_packed_ref(crop, "bgr", np.float16))
    assert (batch[[0, 1, 3]] == -7).all()  # neighbours untouched


def test_pack_reads_flipped_frames_through_negative_strides():
    frame = rng(10).integers(0, 256, (9, 14, 3), dtype=np.uint8)[::-1]
    np.testing.assert_array_equal(fp.pack(frame, "rgb"), ref.pack_packed_ref(frame, "rgb"))
    planar = rng(11).random((3, 9, 14), dtype=np.float32)[:, ::-1]
    np.testing.assert_array_equal(fp.unpack(planar), ref.unpack_ref(planar))


def test_pack_rejects_bad_frames():
    with pytest.raises(ValueError, match="even width"):
        fp.pack(np.zeros((4, 5, 2), np.uint8), "yuyv")
    with pytest.raises(ValueError, match="unknown frame format"):
        fp.pack(np.zeros((4, 4, 3), np.uint8), "i420")
    with pytest.raises(ValueError, match="uint8"):
        fp.pack(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        fp.pack(np.zeros((4, 4, 3), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="out must be"):
        fp.pack(np.zeros((4, 4, 3), np.uint8), out=np.zeros((3, 4, 5), np.float32))


# ---- unpack -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["bgr", "rgb"])
@pytest.mark.parametrize("size", SIZES)
def test_unpack_matches_numpy(order, dtype, size, f16_path):
    x = (rng(6).standard_normal((3, *size)) * 0.6 + 0.5).astype(dtype)
    x.flat[:: max(1, x.size // 5)] = np.nan
    mean = (0.0, 0.1, -0.1)
    np.testing.assert_array_equal(fp.unpack(x, order=order, mean=mean), ref.unpack_ref(x, order, mean=mean))


def test_unpack_rounds_half_away_from_zero_and_clamps():
    v = np.array([np.nan, np.inf, -np.inf, -3.0, 0.0, 0.5, 1.5, 2.5, 2.4999, 254.5, 255.0, 300.0], np.float32)
    planar = np.stack([v / 255] * 3).reshape(3, 1, -1).astype(np.float32)
    got = fp.unpack(planar)[0, :, 0]
    assert got.tolist() == [0, 255, 0, 0, 0, 1, 2, 3, 2, 255, 255, 255]


def test_f16_scalar_conversions_match_numpy(lib):
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    got = np.array([lib.mlsr_fp_f16_to_f32(int(h)) for h in halves], np.float32)
    np.testing.assert_array_equal(got, halves.view(np.float16).astype(np.float32))  # NaN == NaN here
    g = rng(7)
    floats = np.concatenate([
        (g.standard_normal(20000) * 10.0 ** g.integers(-9, 6, 20000)).astype(np.float32),
        np.array([65504, 65519.99, 65520, 65536, 2**-24, 2**-25, 3 * 2**-26, 2**-14, -0.0, np.inf], np.float32),
    ])
    got = np.array([lib.mlsr_fp_f32_to_f16(float(f)) for f in floats], np.uint16)
    with np.errstate(over="ignore"):
        want = floats.astype(np.float16)
    np.testing.assert_array_equal(got, want.view(np.uint16))


def test_f16_rows_cover_every_half_value(f16_path):
    """Merging one tile is a pure float16 -> float32 row conversion: check all 65536 values."""
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(1, 1, 256, 256)
    grid = TileGrid.plan(256, 256, 256, 256, 0)
    np.testing.assert_array_equal(fp.merge_tiles(halves, grid)[0], halves[0, 0].astype(np.float32))


@HYP
@given(scale=st.floats(1e-9, 1e3), mean=st.floats(-1e4, 1e4))
def test_f16_pack_rounding_matches_numpy_for_any_scale(scale, mean):
    """Every uint8 value times an arbitrary scale minus a mean, rounded to float16 like numpy."""
    frame = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    want = ref.pack_packed_ref(frame, "rgb", np.float16, scale=scale, mean=(mean,) * 3)
    for hw in (1, 0):
        fp.library().mlsr_fp_set_hw_f16(hw)
        got = fp.pack(frame, "rgb", dtype=np.float16, scale=scale, mean=(mean,) * 3)
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    fp.library().mlsr_fp_set_hw_f16(1)


# ---- properties ---------------------------------------------------------------------------------


@HYP
@given(h=st.integers(1, 24), w=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(DTYPES), order=st.sampled_from(["bgr", "rgb"]))
def test_round_trip_uint8_is_exact(h, w, seed, dtype, order):
    frame = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fp.unpack(fp.pack(frame, order, dtype=dtype), order=order), frame)


@HYP
@given(h=st.integers(1, 20), half_w=st.integers(1, 20), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES))
def test_grey_yuv_gives_equal_channels(h, half_w, seed, dtype):
    w = 2 * half_w
    y = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    uv = np.full(((h + 1) // 2, half_w, 2), 128, np.uint8)
    yuyv = np.stack([y, np.full_like(y, 128)], axis=-1)
    for planar in (fp.pack(y, "nv12", uv=uv, dtype=dtype), fp.pack(yuyv, "yuyv", dtype=dtype)):
        np.testing.assert_array_equal(planar[0], planar[1])
        np.testing.assert_array_equal(planar[1], planar[2])
        assert planar.min() >= 0 and planar.max() <= 1


# ---- tiles --------------------------------------------------------------------------------------


def test_tile_starts_cover_the_frame_with_full_tiles():
    assert tile_starts(100, 32, 8) == (0, 24, 48, 68)
    assert tile_starts(32, 32, 8) == (0,)
    assert tile_starts(33, 32, 0) == (0, 1)
    with pytest.raises(ValueError, match="smaller than the tile"):
        tile_starts(20, 32, 4)
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 32, 32)


@pytest.mark.parametrize("n,t,o,s", [(100, 32, 8, 1), (100, 32, 8, 4), (37, 16, 12, 2), (33, 32, 0, 3), (64, 64, 4, 2)])
def test_axis_weights_sum_to_one_and_skip_only_the_edge_bands(n, t, o, s):
    starts = tile_starts(n, t, o)
    w = axis_weights(starts, t, n, s)
    total = np.zeros(n * s)
    for i, a in enumerate(starts):
        total[a * s : (a + t) * s] += w[i]
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert (w >= 0).all()
    for i, a in enumerate(starts):  # weight 0 exactly on the outer quarter of each shared overlap
        left = starts[i - 1] + t - a if i else 0
        right = a + t - starts[i + 1] if i + 1 < len(starts) else 0
        lo, hi = s * edge_discard(left), t * s - s * edge_discard(right)
        assert (w[i, :lo] == 0).all() and (w[i, hi:] == 0).all() and (w[i, lo:hi] > 0).all(), (i, lo, hi)


@settings(max_examples=300, deadline=None)
@given(t=st.integers(1, 40), o=st.integers(0, 39), extra=st.integers(0, 90), s=st.integers(1, 4))
def test_every_pixel_keeps_a_positive_weight(t, o, extra, s):
    o = min(o, t - 1)
    n = t + extra
    starts = tile_starts(n, t, o)
    w = axis_weights(starts, t, n, s)  # raises if some pixel had no positive weight
    total = np.zeros(n * s)
    for i, a in enumerate(starts):
        total[a * s : (a + t) * s] += w[i]
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    r = axis_ratios(starts, t, n, s)
    assert np.isfinite(r).all() and ((r >= 0) & (r <= 1)).all()


GEOMS = [(37, 53, 16, 20, 5, 3), (64, 64, 64, 64, 0, 2), (45, 90, 20, 32, 15, 1), (31, 40, 16, 16, 2, 4)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMS)
def test_split_and_merge_match_numpy(geom, dtype, f16_path):
    h, w, th, tw, o, s = geom
    grid = TileGrid.plan(h, w, th, tw, o, scale=s)
    g = rng(8)
    img = g.random((3, h, w), dtype=np.float32).astype(dtype)
    np.testing.assert_array_equal(fp.split_tiles(img, grid), ref.split_ref(img, grid))
    sr = g.random((grid.count, 3, th * s, tw * s), dtype=np.float32).astype(dtype)
    np.testing.assert_allclose(fp.merge_tiles(sr, grid), ref.merge_ref(sr, grid), rtol=0, atol=2e-6)


def test_merge_feathers_instead_of_cutting():
    """Two tiles holding 0 and 1 cross-fade linearly over their overlap."""
    grid = TileGrid.plan(4, 12, 4, 8, 3)  # x starts 0 and 4 (last on the border): overlap columns 4..7
    tiles = np.stack([np.zeros((1, 4, 8)), np.ones((1, 4, 8))]).astype(np.float32)
    row = fp.merge_tiles(tiles, grid)[0, 0]
    # overlap 4: each tile's outer quarter (1 column) is skipped, the middle 2 columns ramp
    np.testing.assert_allclose(row, [0, 0, 0, 0, 0, 0.25, 0.75, 1, 1, 1, 1, 1], atol=1e-6)


def test_merge_skips_the_outer_quarter_of_the_overlap_and_ramps_in_the_middle():
    grid = TileGrid.plan(12, 40, 12, 24, 8, scale=2)  # x starts 0, 16: LR overlap 8, SR columns 32..47
    tiles = np.stack([np.zeros((1, 24, 48)), np.ones((1, 24, 48))]).astype(np.float32)
    row = fp.merge_tiles(tiles, grid)[0, 0]
    np.testing.assert_array_equal(row[:36], 0)  # the right tile's first 2 LR (4 SR) columns count for nothing
    np.testing.assert_allclose(row[36:44], (np.arange(8) + 0.5) / 8, atol=1e-6)
    np.testing.assert_array_equal(row[44:], 1)  # nor do the left tile's last 2 LR columns
    np.testing.assert_allclose(row, ref.merge_ref(tiles, grid)[0, 0], atol=1e-6)


def test_merge_places_scaled_tiles():
    """A nearest-neighbour "model" on every tile gives the nearest-upsampled frame exactly."""
    grid = TileGrid.plan(37, 53, 16, 20, 5, scale=3)
    img = rng(9).random((3, 37, 53), dtype=np.float32)
    sr = fp.split_tiles(img, grid).repeat(3, axis=2).repeat(3, axis=3)
    np.testing.assert_array_equal(fp.merge_tiles(sr, grid), img.repeat(3, axis=1).repeat(3, axis=2))


geometry = st.integers(4, 40).flatmap(
    lambda th: st.tuples(st.just(th), st.integers(4, 40), st.integers(0, th - 1), st.integers(0, 30), st.integers(0, 30))
)


@HYP
@given(geom=geometry, scale=st.integers(1, 4), value=st.floats(-1e3, 1e3, width=32), dtype=st.sampled_from(DTYPES))
def test_merge_of_constant_tiles_is_that_constant(geom, scale, value, dtype):
    th, tw, o, extra_h, extra_w = geom
    o = min(o, tw - 1)
    grid = TileGrid.plan(th + extra_h, tw + extra_w, th, tw, o, scale=scale)
    tiles = np.full((grid.count, 3, th * scale, tw * scale), value, dtype=dtype)
    merged = fp.merge_tiles(tiles, grid)
    assert (merged == np.float32(dtype(value))).all()


@HYP
@given(geom=geometry, seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES))
def test_merge_of_split_is_the_image(geom, seed, dtype):
    th, tw, o, extra_h, extra_w = geom
    o = min(o, tw - 1)
    grid = TileGrid.plan(th + extra_h, tw + extra_w, th, tw, o)
    img = np.random.default_rng(seed).standard_normal((3, grid.height, grid.width)).astype(dtype)
    np.testing.assert_array_equal(fp.merge_tiles(fp.split_tiles(img, grid), grid), img.astype(np.float32))


def test_tiles_reject_mismatched_shapes():
    grid = TileGrid.plan(40, 40, 16, 16, 4, scale=2)
    with pytest.raises(ValueError, match="planned for 40x40"):
        fp.split_tiles(np.zeros((3, 40, 41), np.float32), grid)
    with pytest.raises(ValueError, match="tiles must be"):
        fp.merge_tiles(np.zeros((grid.count, 3, 16, 16), np.float32), grid)
