/* The frame path: camera pixels <-> the model's planar input, and tile split / feathered merge.
 *
 * Glossary (code name -> symbol):
 *   height, width   H, W   frame size in pixels (LR side for pack/split, any side for unpack)
 *   tile_h, tile_w  th, tw tile size on the LR side (the engine's fixed input shape)
 *   scale           s      SR factor: an SR tile is (s*th, s*tw)
 *   planes          C = 3  planar channels, always R, G, B in that order
 *
 * Plain C11, no Python or torch headers: every entry point takes one params struct of
 * raw pointers and strides, so the caller may hand in numpy arrays, pinned host memory
 * or mapped device memory alike. Strides are signed and counted in bytes for uint8
 * buffers and in elements for float buffers, as noted field by field. The innermost
 * axis (pixels of a packed row, x of a plane) is always contiguous.
 *
 * Every function returns 0 on success and a negative MLSR_FP_E* code when the params
 * are inconsistent; it never writes before checking them.
 */
#ifndef MAMBALITESR_FRAMEPATH_H
#define MAMBALITESR_FRAMEPATH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLSR_FP_ABI_VERSION 2

enum mlsr_fp_format {
    MLSR_FP_BGR24 = 0, /* packed B,G,R bytes per pixel (OpenCV's default) */
    MLSR_FP_RGB24 = 1, /* packed R,G,B bytes per pixel */
    MLSR_FP_NV12 = 2,  /* Y plane + interleaved U,V plane at half resolution (4:2:0) */
    MLSR_FP_YUYV = 3   /* packed Y0 U Y1 V for each horizontal pixel pair (4:2:2) */
};

enum mlsr_fp_dtype { MLSR_FP_F32 = 0, MLSR_FP_F16 = 1 };

enum mlsr_fp_error {
    MLSR_FP_OK = 0,
    MLSR_FP_EFORMAT = -1, /* unknown format or dtype */
    MLSR_FP_ESIZE = -2,   /* non-positive size, odd width for YUYV, bad tile geometry */
    MLSR_FP_ENULL = -3    /* a required pointer is NULL */
};

/* Camera frame -> planar float RGB (C, H, W):  dst[c][y][x] = rgb_c(y, x) * scale - mean[c].
 *
 * YUV formats are BT.601 limited ("studio") range, the matrix V4L2 and Argus deliver by default:
 *   R = 1.164383 (Y-16)                      + 1.596027 (V-128)
 *   G = 1.164383 (Y-16) - 0.391762 (U-128)   - 0.812968 (V-128)
 *   B = 1.164383 (Y-16) + 2.017232 (U-128)
 * clamped to [0, 255] before scaling (no intermediate rounding to 8 bits). Samples outside the
 * legal range (footroom/headroom) go through the matrix unclipped; only the RGB result is clamped
 * (OpenCV instead clips Y - 16 at 0 first, so the two differ only for Y < 16).
 * NV12 chroma at (y/2, x/2), so odd H and W are accepted (the chroma plane then has
 * ceil(H/2) rows of ceil(W/2) U,V pairs). YUYV needs an even W.
 */
typedef struct {
    int32_t format;      /* enum mlsr_fp_format */
    int32_t dtype;       /* enum mlsr_fp_dtype of dst */
    int32_t height, width;
    const uint8_t *src0; /* packed pixels, the Y plane (NV12) or the YUYV pairs */
    int64_t src0_stride; /* bytes between rows of src0 */
    const uint8_t *src1; /* NV12: the interleaved U,V plane; otherwise unused (may be NULL) */
    int64_t src1_stride; /* bytes between rows of src1 */
    void *dst;           /* planar R, G, B */
    int64_t dst_plane_stride, dst_row_stride; /* in elements */
    float scale;         /* usually 1/255 */
    float mean[3];       /* per channel R, G, B, subtracted after scaling (usually 0) */
} mlsr_fp_pack_params;

/* Planar float RGB (C, H, W) -> packed uint8 BGR (or RGB) (H, W, 3):
 *   v = (src[c][y][x] + mean[c]) * scale, then floor(v + 0.5) clamped to [0, 255];
 *   NaN gives 0. With v >= 0 after the clamp, +0.5-floor equals round-half-away-from-zero. */
typedef struct {
    int32_t dtype;       /* enum mlsr_fp_dtype of src */
    int32_t height, width;
    int32_t swap_rb;     /* 0: write B,G,R bytes; 1: write R,G,B */
    const void *src;
    int64_t src_plane_stride, src_row_stride; /* in elements */
    uint8_t *dst;
    int64_t dst_stride;  /* bytes between rows of dst */
    float scale;         /* usually 255 */
    float mean[3];       /* added back before scaling (usually 0) */
} mlsr_fp_unpack_params;

/* Tile geometry shared by split and merge. Tile k = i * n_x + j starts at LR (y0[i], x0[j]).
 * Starts must lie in [0, H - th] and [0, W - tw] (the caller places the last one on the border). */
typedef struct {
    int32_t height, width;     /* LR frame H, W */
    int32_t tile_h, tile_w;    /* th, tw */
    int32_t n_y, n_x;          /* tile rows and columns */
    const int32_t *y0, *x0;    /* starts, n_y and n_x of them, on the LR grid */
    int32_t channels;          /* C */
} mlsr_fp_tile_grid;

/* Planar (C, H, W) -> tiles (N, C, th, tw) by copy; elem_size 2 or 4, no conversion. */
typedef struct {
    mlsr_fp_tile_grid grid;
    int32_t elem_size;
    const void *src;
    int64_t src_plane_stride, src_row_stride; /* in elements */
    void *tiles;                              /* contiguous (N, C, th, tw) */
} mlsr_fp_split_params;

/* SR tiles (N, C, s*th, s*tw) -> float32 planar (C, s*H, s*W), feathered.
 *
 * The blend is separable: along x, the tiles of one tile row are folded in order into a running
 * weighted mean, out <- out + ratio_x * (tile - out), where ratio_x[j][q] = w_j / (sum of w of
 * tiles 0..j covering that column), 0 where that sum is 0 (a tile's zero-weight edge band before the
 * next tile takes over); then the tile rows are folded along y the same way with
 * ratio_y. The result is sum_ij wy_i wx_j tile_ij with normalised weights (sum 1 everywhere),
 * and a value that all covering tiles agree on comes back bit-exact (no seams, no drift). */
typedef struct {
    mlsr_fp_tile_grid grid;    /* LR geometry */
    int32_t scale;             /* s */
    int32_t dtype;             /* enum mlsr_fp_dtype of tiles */
    const void *tiles;         /* contiguous (N, C, s*th, s*tw) */
    const float *ratio_y;      /* (n_y, s*th) */
    const float *ratio_x;      /* (n_x, s*tw) */
    float *dst;                /* planar (C, s*H, s*W) */
    int64_t dst_plane_stride, dst_row_stride; /* in elements */
} mlsr_fp_merge_params;

/* Planar float32 (C, H, W) -> smaller planar float32/float16 (C, h, w), h <= H and w <= W, by area average
 * (OpenCV's INTER_AREA when shrinking): output pixel (i, j) covers the source rectangle
 * [i H/h, (i+1) H/h) x [j W/w, (j+1) W/w), and each source pixel counts with the area it shares with it,
 * divided by (H/h)(W/w). Separable: a vertical pass over the rows under one output row, then a
 * horizontal pass. This is how a camera frame larger than the engine's profile is brought to the
 * largest size the engine serves whole, instead of being tiled. */
typedef struct {
    int32_t dtype;             /* enum mlsr_fp_dtype of dst; src is float32 */
    int32_t channels;          /* C */
    int32_t src_h, src_w;      /* H, W */
    int32_t dst_h, dst_w;      /* h, w */
    const float *src;
    int64_t src_plane_stride, src_row_stride; /* in elements */
    void *dst;
    int64_t dst_plane_stride, dst_row_stride; /* in elements */
} mlsr_fp_area_params;

int mlsr_fp_abi_version(void);
int mlsr_fp_pack(const mlsr_fp_pack_params *p);
int mlsr_fp_unpack(const mlsr_fp_unpack_params *p);
int mlsr_fp_split(const mlsr_fp_split_params *p);
int mlsr_fp_merge(const mlsr_fp_merge_params *p);
int mlsr_fp_area(const mlsr_fp_area_params *p);

/* Scalar IEEE binary16 conversions (round to nearest even), exported for the tests. */
uint16_t mlsr_fp_f32_to_f16(float f);
float mlsr_fp_f16_to_f32(uint16_t h);

/* 1 when the row conversions use the CPU's float16 instructions (AArch64, or x86 with F16C). */
int mlsr_fp_hw_f16(void);
/* 0 forces the portable bit-arithmetic conversions (for tests); 1 (the default) allows hardware. */
void mlsr_fp_set_hw_f16(int allowed);

#ifdef __cplusplus
}
#endif
#endif
