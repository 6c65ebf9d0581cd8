/* The frame path in C: see framepath.h for the contract of every entry point.
 *
 * Glossary (code name -> symbol): H, W frame size; th, tw tile size (LR); s scale;
 * C = 3 planes R, G, B; Y, U, V the camera's 8-bit luma and chroma samples.
 *
 * Why it is written this way:
 * - Rows are independent, so every kernel is an OpenMP loop over rows (or tile rows) with
 *   a small per-thread scratch; inner loops run over contiguous x so GCC vectorises them.
 * - float16 rows are converted in hardware where there is some (AArch64; x86 with F16C, found at
 *   run time since the build targets x86-64-v2), else with integer bit arithmetic; _Float16 on
 *   x86-64-v2 would call libgcc once per element. All paths round to nearest even.
 * - Clamps are written as `v >= lo ? v : lo` so that NaN lands on the bound instead of
 *   reaching an undefined float -> int conversion.
 */
#include "framepath.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Below this many pixels a frame is converted on one thread: thread start-up would cost more. */
#define PARALLEL_MIN_PIXELS 32768

/* ---- float16 <-> float32 ------------------------------------------------------------------ */

static inline uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t a = x & 0x7fffffffu;
    /* Normal halves: rebias the exponent (127 -> 15), then round the 13 dropped bits to nearest
     * even; a carry out of the mantissa correctly bumps the exponent, up to infinity. */
    const uint32_t normal = (a + 0xC8000FFFu + ((a >> 13) & 1u)) >> 13;
    /* Subnormal halves (|f| < 2^-14): adding 0.5 lines the mantissa up with the half's
     * 2^-24 step, so the FPU does the rounding; the low bits are then the half's mantissa. */
    float af;
    memcpy(&af, &a, sizeof af);
    af += 0.5f;
    uint32_t sub;
    memcpy(&sub, &af, sizeof sub);
    sub -= 0x3F000000u;
    const uint32_t big = a > 0x7f800000u ? 0x7e00u : 0x7c00u; /* NaN stays NaN, else infinity */
    const uint32_t h = a >= 0x47800000u ? big : (a < 0x38800000u ? sub : normal);
    return (uint16_t)(h | sign);
}

static inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t em = h & 0x7fffu;
    const uint32_t normal = (em << 13) + 0x38000000u; /* rebias the exponent 15 -> 127 */
    const uint32_t infnan = (em << 13) | 0x7f800000u;
    const float subf = (float)em * 5.9604644775390625e-8f; /* em * 2^-24, exact */
    uint32_t sub;
    memcpy(&sub, &subf, sizeof sub);
    uint32_t r = em >= 0x7c00u ? infnan : (em < 0x0400u ? sub : normal);
    r |= sign;
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

uint16_t mlsr_fp_f32_to_f16(float f) { return f32_to_f16(f); }
float mlsr_fp_f16_to_f32(uint16_t h) { return f16_to_f32(h); }
int mlsr_fp_abi_version(void) { return MLSR_FP_ABI_VERSION; }

/* Row conversions, chosen once per call. AArch64 (Jetson) converts in hardware and GCC
 * vectorises the __fp16 casts; x86 uses F16C (8 lanes) when the CPU has it, else the bit
 * arithmetic above. All of them round to nearest even, so results agree bit for bit. */
typedef void (*store_f16_fn)(uint16_t *restrict, const float *restrict, int);
typedef void (*load_f16_fn)(float *restrict, const uint16_t *restrict, int);

static void store_row_f16_soft(uint16_t *restrict dst, const float *restrict src, int n) {
    for (int x = 0; x < n; ++x) dst[x] = f32_to_f16(src[x]);
}

static void load_row_f16_soft(float *restrict dst, const uint16_t *restrict src, int n) {
    for (int x = 0; x < n; ++x) dst[x] = f16_to_f32(src[x]);
}

#if defined(__aarch64__)
static void store_row_f16_hw(uint16_t *restrict dst, const float *restrict src, int n) {
    __fp16 *restrict h = (__fp16 *)(void *)dst;
    for (int x = 0; x < n; ++x) h[x] = (__fp16)src[x];
}

static void load_row_f16_hw(float *restrict dst, const uint16_t *restrict src, int n) {
    const __fp16 *restrict h = (const __fp16 *)(const void *)src;
    for (int x = 0; x < n; ++x) dst[x] = (float)h[x];
}

static int have_hw_f16(void) { return 1; }
#elif defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx,f16c"))) static void store_row_f16_hw(uint16_t *restrict dst,
                                                                  const float *restrict src, int n) {
    int x = 0;
    for (; x + 8 <= n; x += 8)
        _mm_storeu_si128((__m128i *)(dst + x),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + x), _MM_FROUND_TO_NEAREST_INT));
    for (; x < n; ++x) dst[x] = f32_to_f16(src[x]);
}

__attribute__((target("avx,f16c"))) static void load_row_f16_hw(float *restrict dst,
                                                                 const uint16_t *restrict src, int n) {
    int x = 0;
    for (; x + 8 <= n; x += 8)
        _mm256_storeu_ps(dst + x, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + x))));
    for (; x < n; ++x) dst[x] = f16_to_f32(src[x]);
}

static int have_hw_f16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
}
#else
#define store_row_f16_hw store_row_f16_soft
#define load_row_f16_hw load_row_f16_soft
static int have_hw_f16(void) { return 0; }
#endif

/* Set by mlsr_fp_set_hw_f16(0) to force the portable path, so tests can compare the two. */
static int hw_f16_allowed = 1;

void mlsr_fp_set_hw_f16(int allowed) { hw_f16_allowed = allowed; }

int mlsr_fp_hw_f16(void) { return hw_f16_allowed && have_hw_f16(); }

static store_f16_fn pick_store(void) { return mlsr_fp_hw_f16() ? store_row_f16_hw : store_row_f16_soft; }
static load_f16_fn pick_load(void) { return mlsr_fp_hw_f16() ? load_row_f16_hw : load_row_f16_soft; }

static inline float clamp255(float v) {
    v = v >= 0.0f ? v : 0.0f;
    return v <= 255.0f ? v : 255.0f;
}

/* ---- camera formats -> planar float -------------------------------------------------------- */

/* BT.601 limited range (Y in [16, 235], U and V in [16, 240]) to full-range RGB in [0, 255]. */
#define K_Y 1.164383f
#define K_RV 1.596027f
#define K_GU 0.391762f
#define K_GV 0.812968f
#define K_BU 2.017232f

/* One output pixel from its luma and precomputed chroma terms. */
#define YUV_PIXEL(Yv, X)                                                       \
    do {                                                                       \
        const float yt = K_Y * ((float)(Yv) - 16.0f);                          \
        r[X] = clamp255(yt + cr) * scale - m0;                                 \
        g[X] = clamp255(yt + cg) * scale - m1;                                 \
        b[X] = clamp255(yt + cb) * scale - m2;                                 \
    } while (0)

#define CHROMA_TERMS(Uv, Vv)                                                   \
    const float du = (float)(Uv) - 128.0f, dv = (float)(Vv) - 128.0f;          \
    const float cr = K_RV * dv;                                                \
    const float cg = -(K_GU * du + K_GV * dv);                                 \
    const float cb = K_BU * du

/* r_at is 0 for RGB and 2 for BGR; a literal at each call so both variants vectorise. */
static inline void row_packed(const uint8_t *restrict s, int w, int r_at, float *restrict r,
                              float *restrict g, float *restrict b, float scale,
                              const float *mean) {
    const float m0 = mean[0], m1 = mean[1], m2 = mean[2];
    const int b_at = 2 - r_at;
    for (int x = 0; x < w; ++x) {
        r[x] = (float)s[3 * x + r_at] * scale - m0;
        g[x] = (float)s[3 * x + 1] * scale - m1;
        b[x] = (float)s[3 * x + b_at] * scale - m2;
    }
}

static void row_nv12(const uint8_t *restrict yrow, const uint8_t *restrict uv, int w,
                     float *restrict r, float *restrict g, float *restrict b, float scale,
                     const float *mean) {
    const float m0 = mean[0], m1 = mean[1], m2 = mean[2];
    const int pairs = w / 2;
    for (int p = 0; p < pairs; ++p) {
        CHROMA_TERMS(uv[2 * p], uv[2 * p + 1]);
        YUV_PIXEL(yrow[2 * p], 2 * p);
        YUV_PIXEL(yrow[2 * p + 1], 2 * p + 1);
    }
    if (w & 1) { /* odd width: the last pixel has a chroma pair of its own */
        const int p = pairs;
        CHROMA_TERMS(uv[2 * p], uv[2 * p + 1]);
        YUV_PIXEL(yrow[2 * p], 2 * p);
    }
}

static void row_yuyv(const uint8_t *restrict s, int w, float *restrict r, float *restrict g,
                     float *restrict b, float scale, const float *mean) {
    const float m0 = mean[0], m1 = mean[1], m2 = mean[2];
    for (int p = 0; p < w / 2; ++p) {
        CHROMA_TERMS(s[4 * p + 1], s[4 * p + 3]);
        YUV_PIXEL(s[4 * p], 2 * p);
        YUV_PIXEL(s[4 * p + 2], 2 * p + 1);
    }
}

int mlsr_fp_pack(const mlsr_fp_pack_params *p) {
    if (!p || !p->src0 || !p->dst) return MLSR_FP_ENULL;
    if (p->format < MLSR_FP_BGR24 || p->format > MLSR_FP_YUYV) return MLSR_FP_EFORMAT;
    if (p->dtype != MLSR_FP_F32 && p->dtype != MLSR_FP_F16) return MLSR_FP_EFORMAT;
    if (p->height <= 0 || p->width <= 0) return MLSR_FP_ESIZE;
    if (p->format == MLSR_FP_YUYV && (p->width & 1)) return MLSR_FP_ESIZE;
    if (p->format == MLSR_FP_NV12 && !p->src1) return MLSR_FP_ENULL;

    const int H = p->height, W = p->width, f16 = p->dtype == MLSR_FP_F16;
    const int64_t ps = p->dst_plane_stride, rs = p->dst_row_stride;
    const store_f16_fn store_row_f16 = pick_store();
    int err = MLSR_FP_OK;

#pragma omp parallel if ((int64_t)H * W >= PARALLEL_MIN_PIXELS)
    {
        /* float32 rows go straight to dst; float16 rows go through this scratch first */
        float *scratch = f16 ? malloc(sizeof(float) * 3 * (size_t)W) : NULL;
        if (f16 && !scratch) {
#pragma omp atomic write
            err = MLSR_FP_ENULL;
        }
#pragma omp for schedule(dynamic, 8)
        for (int y = 0; y < H; ++y) {
            if (f16 && !scratch) continue;
            float *r, *g, *b;
            if (f16) {
                r = scratch;
                g = scratch + W;
                b = scratch + 2 * (size_t)W;
            } else {
                float *d = (float *)p->dst + y * rs;
                r = d;
                g = d + ps;
                b = d + 2 * ps;
            }
            const uint8_t *s0 = p->src0 + y * p->src0_stride;
            switch (p->format) {
                case MLSR_FP_BGR24: row_packed(s0, W, 2, r, g, b, p->scale, p->mean); break;
                case MLSR_FP_RGB24: row_packed(s0, W, 0, r, g, b, p->scale, p->mean); break;
                case MLSR_FP_NV12:
                    row_nv12(s0, p->src1 + (y / 2) * p->src1_stride, W, r, g, b, p->scale, p->mean);
                    break;
                default: row_yuyv(s0, W, r, g, b, p->scale, p->mean); break;
            }
            if (f16) {
                uint16_t *d = (uint16_t *)p->dst + y * rs;
                store_row_f16(d, r, W);
                store_row_f16(d + ps, g, W);
                store_row_f16(d + 2 * ps, b, W);
            }
        }
        free(scratch);
    }
    return err;
}

/* ---- planar float -> packed uint8 ---------------------------------------------------------- */

static inline uint8_t to_u8(float v, float m, float scale) {
    return (uint8_t)(int32_t)(clamp255((v + m) * scale) + 0.5f);
}

/* r_at is 2 for BGR output and 0 for RGB; a literal at each call so both variants vectorise. */
static inline void row_unpack(const float *restrict r, const float *restrict g,
                              const float *restrict b, uint8_t *restrict d, int w, int r_at,
                              float scale, const float *mean) {
    const float m0 = mean[0], m1 = mean[1], m2 = mean[2];
    const int b_at = 2 - r_at;
    for (int x = 0; x < w; ++x) {
        d[3 * x + r_at] = to_u8(r[x], m0, scale);
        d[3 * x + 1] = to_u8(g[x], m1, scale);
        d[3 * x + b_at] = to_u8(b[x], m2, scale);
    }
}

int mlsr_fp_unpack(const mlsr_fp_unpack_params *p) {
    if (!p || !p->src || !p->dst) return MLSR_FP_ENULL;
    if (p->dtype != MLSR_FP_F32 && p->dtype != MLSR_FP_F16) return MLSR_FP_EFORMAT;
    if (p->height <= 0 || p->width <= 0) return MLSR_FP_ESIZE;

    const int H = p->height, W = p->width, f16 = p->dtype == MLSR_FP_F16;
    const int64_t ps = p->src_plane_stride, rs = p->src_row_stride;
    const load_f16_fn load_row_f16 = pick_load();
    int err = MLSR_FP_OK;

#pragma omp parallel if ((int64_t)H * W >= PARALLEL_MIN_PIXELS)
    {
        float *scratch = f16 ? malloc(sizeof(float) * 3 * (size_t)W) : NULL;
        if (f16 && !scratch) {
#pragma omp atomic write
            err = MLSR_FP_ENULL;
        }
#pragma omp for schedule(dynamic, 8)
        for (int y = 0; y < H; ++y) {
            if (f16 && !scratch) continue;
            const float *r, *g, *b;
            if (f16) {
                const uint16_t *s = (const uint16_t *)p->src + y * rs;
                load_row_f16(scratch, s, W);
                load_row_f16(scratch + W, s + ps, W);
                load_row_f16(scratch + 2 * (size_t)W, s + 2 * ps, W);
                r = scratch;
                g = scratch + W;
                b = scratch + 2 * (size_t)W;
            } else {
                const float *s = (const float *)p->src + y * rs;
                r = s;
                g = s + ps;
                b = s + 2 * ps;
            }
            uint8_t *d = p->dst + y * p->dst_stride;
            if (p->swap_rb)
                row_unpack(r, g, b, d, W, 0, p->scale, p->mean);
            else
                row_unpack(r, g, b, d, W, 2, p->scale, p->mean);
        }
        free(scratch);
    }
    return err;
}

/* ---- tiles ---------------------------------------------------------------------------------- */

static int check_grid(const mlsr_fp_tile_grid *g) {
    if (!g->y0 || !g->x0) return MLSR_FP_ENULL;
    if (g->height <= 0 || g->width <= 0 || g->tile_h <= 0 || g->tile_w <= 0 || g->n_y <= 0 ||
        g->n_x <= 0 || g->channels <= 0)
        return MLSR_FP_ESIZE;
    for (int i = 0; i < g->n_y; ++i)
        if (g->y0[i] < 0 || g->y0[i] > g->height - g->tile_h) return MLSR_FP_ESIZE;
    for (int j = 0; j < g->n_x; ++j)
        if (g->x0[j] < 0 || g->x0[j] > g->width - g->tile_w) return MLSR_FP_ESIZE;
    return MLSR_FP_OK;
}

int mlsr_fp_split(const mlsr_fp_split_params *p) {
    if (!p || !p->src || !p->tiles) return MLSR_FP_ENULL;
    const mlsr_fp_tile_grid *g = &p->grid;
    const int err = check_grid(g);
    if (err) return err;
    if (p->elem_size != 2 && p->elem_size != 4) return MLSR_FP_EFORMAT;

    const int64_t es = p->elem_size, C = g->channels, th = g->tile_h, tw = g->tile_w;
    const int64_t rows = (int64_t)g->n_y * g->n_x * C * th; /* one memcpy per tile row */
    const char *src = (const char *)p->src;
    char *tiles = (char *)p->tiles;

#pragma omp parallel for schedule(static) if (rows * tw >= PARALLEL_MIN_PIXELS)
    for (int64_t q = 0; q < rows; ++q) {
        const int64_t ty = q % th, c = (q / th) % C, k = q / (th * C);
        const int i = (int)(k / g->n_x), j = (int)(k % g->n_x);
        const int64_t off = c * p->src_plane_stride + (g->y0[i] + ty) * p->src_row_stride + g->x0[j];
        memcpy(tiles + q * tw * es, src + off * es, (size_t)(tw * es));
    }
    return MLSR_FP_OK;
}

int mlsr_fp_merge(const mlsr_fp_merge_params *p) {
    if (!p || !p->tiles || !p->dst || !p->ratio_y || !p->ratio_x) return MLSR_FP_ENULL;
    const mlsr_fp_tile_grid *g = &p->grid;
    int err = check_grid(g);
    if (err) return err;
    if (p->scale <= 0) return MLSR_FP_ESIZE;
    if (p->dtype != MLSR_FP_F32 && p->dtype != MLSR_FP_F16) return MLSR_FP_EFORMAT;

    const int s = p->scale, C = g->channels;
    const int TH = g->tile_h * s, TW = g->tile_w * s; /* SR tile */
    const int HS = g->height * s, WS = g->width * s;  /* SR frame */
    const int f16 = p->dtype == MLSR_FP_F16;
    const int64_t tile_elems = (int64_t)C * TH * TW;
    const load_f16_fn load_row_f16 = pick_load();

#pragma omp parallel if ((int64_t)HS * WS >= PARALLEL_MIN_PIXELS)
    {
        /* tmp: one tile row folded along x; conv: one SR tile row converted from float16 */
        float *tmp = malloc(sizeof(float) * ((size_t)WS + (size_t)TW));
        float *conv = tmp ? tmp + WS : NULL;
        if (!tmp) {
#pragma omp atomic write
            err = MLSR_FP_ENULL;
        }
#pragma omp for collapse(2) schedule(dynamic, 8)
        for (int c = 0; c < C; ++c) {
            for (int Y = 0; Y < HS; ++Y) {
                if (!tmp) continue;
                float *restrict o = p->dst + c * p->dst_plane_stride + Y * p->dst_row_stride;
                for (int X = 0; X < WS; ++X) o[X] = 0.0f;
                for (int i = 0; i < g->n_y; ++i) {
                    const int ty = Y - g->y0[i] * s;
                    if (ty < 0 || ty >= TH) continue;
                    /* Zero first: the first tile with weight lands as 0 + 1 * (v - 0) = v exactly. */
                    for (int X = 0; X < WS; ++X) tmp[X] = 0.0f;
                    for (int j = 0; j < g->n_x; ++j) {
                        const int64_t at = ((int64_t)i * g->n_x + j) * tile_elems + (int64_t)c * TH * TW +
                                           (int64_t)ty * TW;
                        const float *v;
                        if (f16) {
                            load_row_f16(conv, (const uint16_t *)p->tiles + at, TW);
                            v = conv;
                        } else {
                            v = (const float *)p->tiles + at;
                        }
                        const float *restrict rx = p->ratio_x + (int64_t)j * TW;
                        float *restrict t = tmp + (int64_t)g->x0[j] * s;
                        for (int q = 0; q < TW; ++q) t[q] += rx[q] * (v[q] - t[q]);
                    }
                    const float ry = p->ratio_y[(int64_t)i * TH + ty];
                    for (int X = 0; X < WS; ++X) o[X] += ry * (tmp[X] - o[X]);
                }
            }
        }
        free(tmp);
    }
    return err;
}

/* ---- planar float -> smaller planar float (area average) ----------------------------------- */

/* One axis: output i covers source [i r, (i+1) r) with r = S / D; source pixel j (covering [j, j+1))
 * gets weight |overlap| / r. start[i], count[i] and w[i * k .. i * k + count - 1], k = ceil(r) + 1. */
static void area_axis(int S, int D, int k, int32_t *start, int32_t *count, float *w) {
    const double r = (double)S / (double)D;
    for (int i = 0; i < D; ++i) {
        const double lo = i * r, hi = (i + 1) * r;
        int j0 = (int)lo, j1 = (int)hi;
        if (j1 < hi) ++j1; /* ceil */
        if (j1 > S) j1 = S;
        start[i] = j0;
        count[i] = j1 - j0;
        for (int j = j0; j < j1; ++j) {
            const double a = j > lo ? j : lo, b = j + 1 < hi ? j + 1 : hi;
            w[(int64_t)i * k + (j - j0)] = (float)((b - a) / r);
        }
    }
}

int mlsr_fp_area(const mlsr_fp_area_params *p) {
    if (!p || !p->src || !p->dst) return MLSR_FP_ENULL;
    if (p->dtype != MLSR_FP_F32 && p->dtype != MLSR_FP_F16) return MLSR_FP_EFORMAT;
    if (p->channels <= 0 || p->dst_h <= 0 || p->dst_w <= 0 || p->dst_h > p->src_h || p->dst_w > p->src_w)
        return MLSR_FP_ESIZE;

    const int H = p->src_h, W = p->src_w, h = p->dst_h, w = p->dst_w, C = p->channels;
    const int ky = (H + h - 1) / h + 1, kx = (W + w - 1) / w + 1;
    int32_t *ys = malloc(sizeof(int32_t) * 2 * ((size_t)h + w));
    float *wy = malloc(sizeof(float) * ((size_t)h * ky + (size_t)w * kx));
    if (!ys || !wy) {
        free(ys);
        free(wy);
        return MLSR_FP_ENULL;
    }
    int32_t *yc = ys + h, *xs = ys + 2 * h, *xc = xs + w;
    float *wx = wy + (size_t)h * ky;
    area_axis(H, h, ky, ys, yc, wy);
    area_axis(W, w, kx, xs, xc, wx);

    const int f16 = p->dtype == MLSR_FP_F16;
    const store_f16_fn store_row_f16 = pick_store();
    int err = MLSR_FP_OK;
#pragma omp parallel if ((int64_t)H * W >= PARALLEL_MIN_PIXELS)
    {
        /* row: the vertical average of the source rows under one output row; out: f16 staging */
        float *row = malloc(sizeof(float) * ((size_t)W + (f16 ? (size_t)w : 0)));
        if (!row) {
#pragma omp atomic write
            err = MLSR_FP_ENULL;
        }
#pragma omp for schedule(dynamic, 4)
        for (int ci = 0; ci < C * h; ++ci) {
            if (!row) continue;
            const int c = ci / h, i = ci % h;
            const float *plane = p->src + c * p->src_plane_stride;
            const float *restrict wi = wy + (int64_t)i * ky;
            const float *s0 = plane + (int64_t)ys[i] * p->src_row_stride;
            for (int x = 0; x < W; ++x) row[x] = wi[0] * s0[x];
            for (int t = 1; t < yc[i]; ++t) {
                const float *restrict s = plane + (int64_t)(ys[i] + t) * p->src_row_stride;
                const float wt = wi[t];
                for (int x = 0; x < W; ++x) row[x] += wt * s[x];
            }
            float *o = f16 ? row + W : (float *)p->dst + c * p->dst_plane_stride + (int64_t)i * p->dst_row_stride;
            for (int j = 0; j < w; ++j) {
                const float *restrict wj = wx + (int64_t)j * kx;
                const float *restrict r = row + xs[j];
                float acc = 0.0f;
                for (int t = 0; t < xc[j]; ++t) acc += wj[t] * r[t];
                o[j] = acc;
            }
            if (f16) store_row_f16((uint16_t *)p->dst + c * p->dst_plane_stride + (int64_t)i * p->dst_row_stride, o, w);
        }
        free(row);
    }
    free(ys);
    free(wy);
    return err;
}
