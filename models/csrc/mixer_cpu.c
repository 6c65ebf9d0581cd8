/* Fused Mamba mixer core for CPU inference; contract and glossary in mixer_cpu.h.
 *
 * Why this shape: around the scan, PyTorch spends more time moving the token-major (B, L, 2D) output of
 * in_proj into the channel-major rows the conv and the scan read than in the scan itself. Here every
 * array the matmuls produce or consume stays channel-major (a token row per channel), and the only
 * transposes left are of B_t and C_t (2N rows per tile of T tokens, shared by all D channels) into the
 * token-major form the state-vectorised recurrence reads: N lanes of one token are one vector.
 */
#include "mixer_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* the vector helpers are always inlined */
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define LANES MIXER_LANES
#define T MIXER_TILE
#define S MIXER_BLOCK
_Static_assert(S % T == 0 && T % LANES == 0, "a block is whole tiles, a tile whole vectors");

/* One 16-float vector: a zmm register on AVX-512, two ymm on AVX2, four q registers on NEON. */
typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

/* Clones picked at load time on x86-64 (the -march baseline is SSE4.2): AVX-512, AVX2 + FMA, default. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

ALWAYS_INLINE vf vsplat(float s) {
    const vf zero = {0};
    return zero + s;
}
ALWAYS_INLINE vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
ALWAYS_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
ALWAYS_INLINE vf vmax(vf a, vf b) {
    const vi m = a > b;
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}
ALWAYS_INLINE vf vselect(vi mask, vf yes, vf no) { return (vf)(((vi)yes & mask) | ((vi)no & ~mask)); }

/* 2^x lane-wise for x <= 128: round x to n (the 1.5 * 2^23 trick leaves n in the low mantissa bits),
 * 2^f = 1 + f q(f) on f = x - n in [-1/2, 1/2] with q of degree 5 (relative error 9e-8 in float, fitted for this
 * kernel), and n added to the exponent bits. The constant term is exactly 1, so a decay close to 1 (small
 * Delta A, a long memory) carries only rounding error: a polynomial whose value at 0 was 1 + 1.2e-7 (a plain
 * minimax fit) compounded over the teacher's long memories to 1.5e-4 in its output. x is clamped at -125
 * (2^-125 ~ 2.4e-38: below it a decay is dust); callers keep x <= 127 (the scan's Delta A <= 0; the
 * sigmoids clamp their argument). */
ALWAYS_INLINE vf vexp2(vf x) {
    x = vmax(x, vsplat(-125.0f));
    /* n comes from the bits of t, never as (x + magic) - magic, which -ffast-math may fold to x. */
    const vf t = x + 12582912.0f;
    const vi ni = (vi)t - 0x4B400000;
    const vf f = x - __builtin_convertvector(ni, vf);
    vf q = f * 1.5403455472551286e-4f + 1.3390735257416964e-3f;
    q = q * f + 9.618237614631653e-3f;
    q = q * f + 5.550357326865196e-2f;
    q = q * f + 2.4022649228572845e-1f;
    q = q * f + 6.931471824645996e-1f;
    const vf p = q * f + 1.0f;
    return (vf)((vi)p + (ni << 23));
}
#define LOG2E 1.44269504088896341f
ALWAYS_INLINE vf vexp(vf x) { return vexp2(x * LOG2E); }
ALWAYS_INLINE vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-vmax(x, vsplat(-80.0f)))); }

/* softplus as torch computes it (beta 1, threshold 20): max(x, 0) + log1p(exp(-|x|)), log1p(e) summed as
 * 2 atanh(e / (2 + e)) to s^13 (as selective_scan_cpu.c does; no 1 + e is formed, tiny e stay exact). */
ALWAYS_INLINE vf vsoftplus(vf x) {
    const vf zero = vsplat(0.0f);
    const vf e = vexp((vf)((vi)x | INT32_MIN)); /* exp(-|x|) */
    const vf sv = e / (2.0f + e), s2 = sv * sv;
    vf series = s2 * (1.0f / 13.0f) + 1.0f / 11.0f;
    series = series * s2 + 1.0f / 9.0f;
    series = series * s2 + 1.0f / 7.0f;
    series = series * s2 + 1.0f / 5.0f;
    series = series * s2 + 1.0f / 3.0f;
    series = series * s2 + 1.0f;
    const vi positive = x > zero, pass = x > 20.0f;
    return vselect(pass, x, vselect(positive, x, zero) + 2.0f * sv * series);
}

static inline float softplus1(float x) {
    if (x > 20.0f) return x;
    return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
}
static inline float silu1(float x) { return x / (1.0f + expf(-x)); }

/* Row sums of 8 rows of 8 floats: a transpose-and-add tree (3 adds per row instead of 7). */
#if defined(__clang__)
#define SHUF8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7)
#else
#define SHUF8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shuffle(a, b, (vi8){i0, i1, i2, i3, i4, i5, i6, i7})
#endif
#define SUMS1(a, b) (SHUF8(a, b, 0, 8, 2, 10, 4, 12, 6, 14) + SHUF8(a, b, 1, 9, 3, 11, 5, 13, 7, 15))
#define SUMS2(a, b) (SHUF8(a, b, 0, 1, 8, 9, 4, 5, 12, 13) + SHUF8(a, b, 2, 3, 10, 11, 6, 7, 14, 15))
#define SUMS3(a, b) (SHUF8(a, b, 0, 1, 2, 3, 8, 9, 10, 11) + SHUF8(a, b, 4, 5, 6, 7, 12, 13, 14, 15))
ALWAYS_INLINE vf8 vload8(const float *p) {
    vf8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
ALWAYS_INLINE void row_sums8(const float *rows, float *out) {
    const vf8 r0 = vload8(rows), r1 = vload8(rows + 8), r2 = vload8(rows + 16), r3 = vload8(rows + 24);
    const vf8 r4 = vload8(rows + 32), r5 = vload8(rows + 40), r6 = vload8(rows + 48), r7 = vload8(rows + 56);
    const vf8 a = SUMS1(r0, r1), b = SUMS1(r2, r3), c = SUMS1(r4, r5), d = SUMS1(r6, r7);
    const vf8 ab = SUMS2(a, b), cd = SUMS2(c, d);
    const vf8 s = SUMS3(ab, cd);
    memcpy(out, &s, sizeof s);
}
/* The 16 lanes of v folded to 8 (lane i + lane i + 8), stored at out. */
ALWAYS_INLINE void fold_store8(float *out, vf v) {
    vf8 lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    lo += hi;
    memcpy(out, &lo, sizeof lo);
}

static int thread_count(int64_t nthreads) {
#ifdef _OPENMP
    return nthreads > 0 ? (int)nthreads : omp_get_max_threads();
#else
    (void)nthreads;
    return 1;
#endif
}
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int64_t padded_state(int64_t n) { return (n + LANES - 1) / LANES * LANES; }

/* Workspace layout (floats): u (D, S) | delta (D, S) | Bt (S, NP) | Ct (S, NP) | h (D, NP) | x (D, HALO + S) |
 * z (D, S) | per thread: x_dbl (R + 2N, T) and a tile (max(Ci, Co), T). Every part starts on a multiple of 16
 * floats. x and z are used with w_in only; with w_out the gated y overwrites u in place. */
typedef struct {
    float *u, *delta, *Bt, *Ct, *h, *x, *z, *scratch;
    int64_t scratch_stride, tile_offset;
} Workspace;

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
#define HALO MIXER_HALO

static int64_t per_thread_floats(int64_t dstate, int64_t dt_rank, int64_t in_dim, int64_t out_dim) {
    return round16((dt_rank + 2 * dstate) * T) + round16(max64(max64(in_dim, out_dim), 1) * T);
}

int64_t mixer_workspace_floats(int64_t dim, int64_t dstate, int64_t dt_rank, int64_t in_dim, int64_t out_dim,
                               int64_t nthreads) {
    const int64_t NP = padded_state(dstate), threads = thread_count(nthreads);
    return 2 * dim * S + 2 * S * NP + round16(dim * NP) + dim * (HALO + S) + dim * S +
           threads * per_thread_floats(dstate, dt_rank, in_dim, out_dim);
}

static Workspace carve(const MixerParams *p) {
    const int64_t D = p->dim, NP = padded_state(p->dstate);
    Workspace w;
    w.u = p->workspace;
    w.delta = w.u + D * S;
    w.Bt = w.delta + D * S;
    w.Ct = w.Bt + S * NP;
    w.h = w.Ct + S * NP;
    w.x = w.h + round16(D * NP);
    w.z = w.x + D * (HALO + S);
    w.scratch = w.z + D * S;
    w.scratch_stride = per_thread_floats(p->dstate, p->dt_rank, p->in_dim, p->out_dim);
    w.tile_offset = round16((p->dt_rank + 2 * p->dstate) * T);
    return w;
}

/* out[o, 0:T] (row stride os) = sum_k w[o K + k] in[k, 0:T] (row stride is), o < O: a small GEMM over one
 * tile, two output rows and two vectors of tokens per step (4 accumulators: registers on AVX2 and NEON too). */
ALWAYS_INLINE void gemm_tile(const float *w, int64_t O, int64_t K, const float *in, int64_t is, float *out,
                             int64_t os) {
    for (int64_t t0 = 0; t0 < T; t0 += 2 * LANES) {
        int64_t o = 0;
        for (; o + 2 <= O; o += 2) {
            vf a00 = vsplat(0.0f), a01 = a00, a10 = a00, a11 = a00;
            const float *w0 = w + o * K, *w1 = w0 + K;
            for (int64_t k = 0; k < K; k++) {
                const vf x0 = vload(in + k * is + t0), x1 = vload(in + k * is + t0 + LANES);
                a00 += w0[k] * x0;
                a01 += w0[k] * x1;
                a10 += w1[k] * x0;
                a11 += w1[k] * x1;
            }
            vstore(out + o * os + t0, a00);
            vstore(out + o * os + t0 + LANES, a01);
            vstore(out + (o + 1) * os + t0, a10);
            vstore(out + (o + 1) * os + t0 + LANES, a11);
        }
        if (o < O) {
            vf a0 = vsplat(0.0f), a1 = a0;
            for (int64_t k = 0; k < K; k++) {
                a0 += w[o * K + k] * vload(in + k * is + t0);
                a1 += w[o * K + k] * vload(in + k * is + t0 + LANES);
            }
            vstore(out + o * os + t0, a0);
            vstore(out + o * os + t0 + LANES, a1);
        }
    }
}

/* x (HALO + i0 ..) and z (i0 ..) of one tile of the block from the input a: [x; z] = w_in a. A tail tile
 * (tn < T) reads a through a zero-padded copy: a's rows end at L. */
CLONES static void tile_project_in(const MixerParams *p, const Workspace *w, int64_t b, int64_t blk0, int64_t i0,
                                   int64_t tn, float *scratch) {
    const int64_t D = p->dim, Ci = p->in_dim, L = p->length;
    const float *a = p->xz + b * Ci * L + blk0 + i0;
    int64_t is = L;
    if (tn < T) {
        for (int64_t k = 0; k < Ci; k++)
            for (int64_t i = 0; i < T; i++) scratch[k * T + i] = i < tn ? a[k * L + i] : 0.0f;
        a = scratch;
        is = T;
    }
    gemm_tile(p->w_in, D, Ci, a, is, w->x + HALO + i0, HALO + S);
    gemm_tile(p->w_in + D * Ci, D, Ci, a, is, w->z + i0, S);
}

/* out (Co rows, tokens blk0 + i0 ..) = w_out y for one tile; y is in u (D, S). */
CLONES static void tile_project_out(const MixerParams *p, const Workspace *w, int64_t b, int64_t blk0, int64_t i0,
                                    int64_t tn, float *scratch) {
    const int64_t D = p->dim, Co = p->out_dim, L = p->length;
    float *out = p->out + b * Co * L + blk0 + i0;
    if (tn == T) {
        gemm_tile(p->w_out, Co, D, w->u + i0, S, out, L);
        return;
    }
    gemm_tile(p->w_out, Co, D, w->u + i0, S, scratch, T);
    for (int64_t o = 0; o < Co; o++) memcpy(out + o * L, scratch + o * T, sizeof(float) * tn);
}

/* ---------------------------------------------------------------- phase 1: one tile of T tokens */

/* x' = SiLU(causal depthwise conv) of one channel over a block's bn tokens, into its u row. xrow points at
 * the block's first token; with history its Kc - 1 predecessors are readable (xrow[-1] ...), else they are
 * the sequence's zero padding. A whole block per channel, not a tile: x is read in runs of S tokens (4 KiB),
 * which the prefetcher follows; T-token pieces of D rows 4L bytes apart missed cache on every line. */
CLONES static void conv_silu_row(const float *xrow, const float *w, float bias, int64_t Kc, int history, int64_t bn,
                                 float *u) {
    int64_t i = 0;
    for (; !history && i < bn && i < Kc - 1; i++) { /* the first Kc - 1 tokens read the zero padding */
        float acc = bias;
        for (int64_t k = 0; k < Kc; k++)
            if (i - (Kc - 1) + k >= 0) acc += w[k] * xrow[i - (Kc - 1) + k];
        u[i] = silu1(acc);
    }
    for (; i + LANES <= bn; i += LANES) { /* every tap in range: whole vectors */
        vf acc = vsplat(bias);
        for (int64_t k = 0; k < Kc; k++) acc += w[k] * vload(xrow + i - (Kc - 1) + k);
        vstore(u + i, acc / (1.0f + vexp(-vmax(acc, vsplat(-80.0f)))));
    }
    for (; i < bn; i++) {
        float acc = bias;
        for (int64_t k = 0; k < Kc; k++) acc += w[k] * xrow[i - (Kc - 1) + k];
        u[i] = silu1(acc);
    }
    for (; i < (bn + T - 1) / T * T; i++) u[i] = 0.0f; /* the tail tile's unused tokens: defined zeros */
}

CLONES static void tile_phase1(const MixerParams *p, const Workspace *w, int64_t i0, float *xdbl) {
    const int64_t D = p->dim, N = p->dstate, R = p->dt_rank;
    const int64_t NP = padded_state(N);
    const float *u = w->u + i0;
    float *delta = w->delta + i0;
    /* A tail tile computes on the zeros conv_silu_row left past the block's end. */
    gemm_tile(p->w_x, R + 2 * N, D, u, S, xdbl, T); /* (R + 2N, T) = W_x x' */
    /* Delta = softplus(W_Delta dt_low + bias), (D, T). */
    for (int64_t d = 0; d < D; d++) {
        const float *wd = p->w_dt + d * R;
        for (int64_t i = 0; i < T; i += LANES) {
            vf acc = vsplat(p->dt_bias[d]);
            for (int64_t r = 0; r < R; r++) acc += wd[r] * vload(xdbl + r * T + i);
            vstore(delta + d * S + i, vsoftplus(acc));
        }
    }
    /* B_t, C_t token-major (T, NP) with zero padding lanes: shared by all D channels of phase 2. */
    float *Bt = w->Bt + i0 * NP, *Ct = w->Ct + i0 * NP;
    for (int64_t i = 0; i < T; i++) {
        for (int64_t n = 0; n < N; n++) {
            Bt[i * NP + n] = xdbl[(R + n) * T + i];
            Ct[i * NP + n] = xdbl[(R + N + n) * T + i];
        }
        for (int64_t n = N; n < NP; n++) Bt[i * NP + n] = Ct[i * NP + n] = 0.0f;
    }
}

/* ---------------------------------------------------------------- phase 2: one channel over a block */

/* One channel's rows over a block: u, Delta (already softplus'd), z (or NULL: no gate), out, its state h (NP
 * floats, carried between blocks), A (N), D. out may alias u (the mixer's w_out path): token i of u is read
 * before out's token i is written. */
typedef struct {
    const float *u, *delta, *z, *A;
    float *out, *h;
    float skip;
} ChannelRows;

ALWAYS_INLINE void scan_rows(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn,
                             const int NV) {
    const int64_t NP = (int64_t)NV * LANES;
    enum { MV = MIXER_MAX_STATE / LANES };
    vf h[MV], A2[MV];
    float abuf[MIXER_MAX_STATE] = {0};
    for (int64_t n = 0; n < N; n++) abuf[n] = r->A[n] * LOG2E; /* exp(Delta A) = 2^(Delta A log2 e) */
    for (int j = 0; j < NV; j++) {
        A2[j] = vload(abuf + j * LANES);
        h[j] = vload(r->h + j * LANES);
    }
    const float *u = r->u, *delta = r->delta, *z = r->z;
    float *out = r->out;
    const float skip = r->skip;
    float rows[T * 8] = {0}, ysum[T];
    for (int64_t i0 = 0; i0 < bn; i0 += T) {
        const int64_t tn = bn - i0 < T ? bn - i0 : T;
        for (int64_t i = 0; i < tn; i++) {
            const float dt = delta[i0 + i], dtu = dt * u[i0 + i];
            const float *Bi = Bt + (i0 + i) * NP, *Ci = Ct + (i0 + i) * NP;
            vf acc = vsplat(0.0f);
            for (int j = 0; j < NV; j++) {
                h[j] = vexp2(dt * A2[j]) * h[j] + dtu * vload(Bi + j * LANES);
                acc += vload(Ci + j * LANES) * h[j];
            }
            fold_store8(rows + i * 8, acc);
        }
        for (int64_t i = 0; i < tn; i += 8) row_sums8(rows + i * 8, ysum + i); /* rows past tn: unused */
        if (tn == T) {
            for (int64_t i = 0; i < T; i += LANES) {
                const vf y = vload(ysum + i) + skip * vload(u + i0 + i);
                if (z) {
                    const vf zv = vload(z + i0 + i);
                    vstore(out + i0 + i, y * zv * vsigmoid(zv));
                } else {
                    vstore(out + i0 + i, y);
                }
            }
        } else {
            for (int64_t i = 0; i < tn; i++) {
                const float y = ysum[i] + skip * u[i0 + i];
                out[i0 + i] = z ? y * silu1(z[i0 + i]) : y;
            }
        }
    }
    for (int j = 0; j < NV; j++) vstore(r->h + j * LANES, h[j]);
}

ALWAYS_INLINE void channel_scan(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                int64_t bn, const int NV) {
    const int64_t D = p->dim, L = p->length, NP = (int64_t)NV * LANES;
    ChannelRows r;
    r.u = w->u + d * S;
    r.delta = w->delta + d * S;
    r.z = p->w_in ? w->z + d * S : p->xz + b * 2 * D * L + (D + d) * L + blk0;
    r.out = p->w_out ? w->u + d * S : p->out + (b * D + d) * L + blk0; /* with w_out, y replaces u in place */
    r.A = p->A + d * p->dstate;
    r.h = w->h + d * NP;
    r.skip = p->Dskip[d];
    scan_rows(&r, w->Bt, w->Ct, p->dstate, bn, NV);
}

CLONES static void channel_scan_1(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                  int64_t bn) {
    channel_scan(p, w, b, d, blk0, bn, 1);
}
CLONES static void channel_scan_2(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                  int64_t bn) {
    channel_scan(p, w, b, d, blk0, bn, 2);
}
CLONES static void channel_scan_any(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                    int64_t bn) {
    channel_scan(p, w, b, d, blk0, bn, (int)(padded_state(p->dstate) / LANES));
}

/* ---------------------------------------------------------------- entry points */

int mixer_abi_version(void) { return MIXER_ABI_VERSION; }

static int check(const MixerParams *p) {
    if (p->batch < 0 || p->dim < 1 || p->length < 0) return MIXER_BAD_ARGUMENT;
    if (p->dstate < 1 || p->dstate > MIXER_MAX_STATE) return MIXER_BAD_ARGUMENT;
    if (p->dt_rank < 1 || p->dt_rank > MIXER_MAX_RANK) return MIXER_BAD_ARGUMENT;
    if (p->d_conv < 1 || p->d_conv > MIXER_MAX_CONV) return MIXER_BAD_ARGUMENT;
    if (!p->xz || !p->conv_w || !p->conv_b || !p->w_x || !p->w_dt || !p->dt_bias || !p->A || !p->Dskip ||
        !p->out || !p->workspace)
        return MIXER_BAD_ARGUMENT;
    if ((p->w_in != NULL) != (p->in_dim > 0) || (p->w_out != NULL) != (p->out_dim > 0)) return MIXER_BAD_ARGUMENT;
    if (p->workspace_floats <
        mixer_workspace_floats(p->dim, p->dstate, p->dt_rank, p->in_dim, p->out_dim, p->nthreads))
        return MIXER_SMALL_WORKSPACE;
    return MIXER_OK;
}

int mixer_forward(const MixerParams *p) {
    const int status = check(p);
    if (status != MIXER_OK) return status;
    const int threads = thread_count(p->nthreads);
    const Workspace w = carve(p);
    const int64_t D = p->dim, L = p->length, NP = padded_state(p->dstate), NV = NP / LANES;
    void (*scan)(const MixerParams *, const Workspace *, int64_t, int64_t, int64_t, int64_t) =
        NV == 1 ? channel_scan_1 : NV == 2 ? channel_scan_2 : channel_scan_any;
    (void)threads;
#pragma omp parallel num_threads(threads)
    {
        float *xdbl = w.scratch + thread_id() * w.scratch_stride, *tile = xdbl + w.tile_offset;
        for (int64_t b = 0; b < p->batch; b++) {
#pragma omp for schedule(static)
            for (int64_t d = 0; d < D; d++) {
                memset(w.h + d * NP, 0, sizeof(float) * NP);
                memset(w.x + d * (HALO + S), 0, sizeof(float) * HALO); /* the sequence's zero padding */
            }
            for (int64_t blk0 = 0; blk0 < L; blk0 += S) {
                const int64_t bn = L - blk0 < S ? L - blk0 : S, tiles = (bn + T - 1) / T;
                if (p->w_in) {
                    if (blk0 > 0) { /* the previous block's last tokens become this block's conv history */
#pragma omp for schedule(static)
                        for (int64_t d = 0; d < D; d++)
                            memcpy(w.x + d * (HALO + S), w.x + d * (HALO + S) + S, sizeof(float) * HALO);
                    }
#pragma omp for schedule(static)
                    for (int64_t ti = 0; ti < tiles; ti++)
                        tile_project_in(p, &w, b, blk0, ti * T, bn - ti * T < T ? bn - ti * T : T, tile);
                }
#pragma omp for schedule(static)
                for (int64_t d = 0; d < D; d++) {
                    const float *xrow = p->w_in ? w.x + d * (HALO + S) + HALO : p->xz + (b * 2 * D + d) * L + blk0;
                    conv_silu_row(xrow, p->conv_w + d * p->d_conv, p->conv_b[d], p->d_conv, p->w_in || blk0 > 0, bn,
                                  w.u + d * S);
                }
#pragma omp for schedule(static)
                for (int64_t ti = 0; ti < tiles; ti++) tile_phase1(p, &w, ti * T, xdbl);
#pragma omp for schedule(static)
                for (int64_t d = 0; d < D; d++) scan(p, &w, b, d, blk0, bn);
                if (p->w_out) {
#pragma omp for schedule(static)
                    for (int64_t ti = 0; ti < tiles; ti++)
                        tile_project_out(p, &w, b, blk0, ti * T, bn - ti * T < T ? bn - ti * T : T, tile);
                }
            }
        }
    }
    return MIXER_OK;
}

/* ---------------------------------------------------------------- the scan alone, channel-major */

/* Workspace: delta (D, S) | Bt (S, NP) | Ct (S, NP) | h (D, NP). */
int64_t mixer_scan_workspace_floats(int64_t dim, int64_t dstate) {
    const int64_t NP = padded_state(dstate);
    return dim * S + 2 * S * NP + round16(dim * NP);
}

/* Delta = softplus?(delta + bias) of one channel over a block, read as one run of the row. */
CLONES static void delta_row(const float *in, float bias, int softplus, int64_t bn, float *out) {
    int64_t i = 0;
    for (; i + LANES <= bn; i += LANES) {
        const vf x = vload(in + i) + bias;
        vstore(out + i, softplus ? vsoftplus(x) : x);
    }
    for (; i < bn; i++) out[i] = softplus ? softplus1(in[i] + bias) : in[i] + bias;
}

/* B_t, C_t of tokens i0 .. i0 + tn - 1 of the block, (N, L) rows -> token-major (T, NP), zero padded. */
CLONES static void transpose_bc(const float *Bm, const float *Cm, int64_t N, int64_t L, int64_t tn, int64_t NP,
                                float *Bt, float *Ct) {
    for (int64_t i = 0; i < T; i++)
        for (int64_t n = 0; n < NP; n++) {
            const int in = i < tn && n < N;
            Bt[i * NP + n] = in ? Bm[n * L + i] : 0.0f;
            Ct[i * NP + n] = in ? Cm[n * L + i] : 0.0f;
        }
}

CLONES static void scan_row_1(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn) {
    scan_rows(r, Bt, Ct, N, bn, 1);
}
CLONES static void scan_row_2(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn) {
    scan_rows(r, Bt, Ct, N, bn, 2);
}
CLONES static void scan_row_any(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn) {
    scan_rows(r, Bt, Ct, N, bn, (int)(padded_state(N) / LANES));
}

int mixer_scan_forward(const ChannelScanParams *p) {
    if (p->batch < 0 || p->dim < 1 || p->length < 0 || p->dstate < 1 || p->dstate > MIXER_MAX_STATE)
        return MIXER_BAD_ARGUMENT;
    if (!p->u || !p->delta || !p->A || !p->Bm || !p->Cm || !p->out || !p->workspace) return MIXER_BAD_ARGUMENT;
    if (p->workspace_floats < mixer_scan_workspace_floats(p->dim, p->dstate)) return MIXER_SMALL_WORKSPACE;
    const int64_t D = p->dim, N = p->dstate, L = p->length, NP = padded_state(N), NV = NP / LANES;
    float *delta_ws = p->workspace, *Bt = delta_ws + D * S, *Ct = Bt + S * NP, *hs = Ct + S * NP;
    void (*scan)(const ChannelRows *, const float *, const float *, int64_t, int64_t) =
        NV == 1 ? scan_row_1 : NV == 2 ? scan_row_2 : scan_row_any;
    const int threads = thread_count(p->nthreads);
    (void)threads;
#pragma omp parallel num_threads(threads)
    for (int64_t b = 0; b < p->batch; b++) {
#pragma omp for schedule(static)
        for (int64_t d = 0; d < D; d++) memset(hs + d * NP, 0, sizeof(float) * NP);
        for (int64_t blk0 = 0; blk0 < L; blk0 += S) {
            const int64_t bn = L - blk0 < S ? L - blk0 : S, tiles = (bn + T - 1) / T;
#pragma omp for schedule(static)
            for (int64_t d = 0; d < D; d++)
                delta_row(p->delta + (b * D + d) * L + blk0, p->delta_bias ? p->delta_bias[d] : 0.0f,
                          (int)p->delta_softplus, bn, delta_ws + d * S);
#pragma omp for schedule(static)
            for (int64_t ti = 0; ti < tiles; ti++) {
                const int64_t i0 = ti * T, tn = bn - i0 < T ? bn - i0 : T;
                transpose_bc(p->Bm + b * N * L + blk0 + i0, p->Cm + b * N * L + blk0 + i0, N, L, tn, NP,
                             Bt + i0 * NP, Ct + i0 * NP);
            }
#pragma omp for schedule(static)
            for (int64_t d = 0; d < D; d++) {
                const int64_t row = (b * D + d) * L + blk0;
                ChannelRows r;
                r.u = p->u + row;
                r.delta = delta_ws + d * S;
                r.z = p->z ? p->z + row : NULL;
                r.out = p->out + row;
                r.A = p->A + d * N;
                r.h = hs + d * NP;
                r.skip = p->Dskip ? p->Dskip[d] : 0.0f;
                scan(&r, Bt, Ct, N, bn);
            }
        }
    }
    return MIXER_OK;
}

/* ---------------------------------------------------------------- channel LayerNorm */

CLONES static void layernorm_tile(const float *x, const float *w, const float *b, float *out, int64_t C,
                                  int64_t L, int64_t l0, float eps) {
    /* Two passes over a (C, T) tile that stays in L1: the mean, then the variance about it (as torch). */
    vf mean[T / LANES], rstd[T / LANES];
    for (int v = 0; v < T / LANES; v++) mean[v] = rstd[v] = vsplat(0.0f);
    for (int64_t c = 0; c < C; c++)
        for (int v = 0; v < T / LANES; v++) mean[v] += vload(x + c * L + l0 + v * LANES);
    for (int v = 0; v < T / LANES; v++) mean[v] *= 1.0f / (float)C;
    for (int64_t c = 0; c < C; c++)
        for (int v = 0; v < T / LANES; v++) {
            const vf dx = vload(x + c * L + l0 + v * LANES) - mean[v];
            rstd[v] += dx * dx;
        }
    for (int v = 0; v < T / LANES; v++) {
        float tmp[LANES];
        vstore(tmp, rstd[v] * (1.0f / (float)C) + eps);
        for (int i = 0; i < LANES; i++) tmp[i] = 1.0f / sqrtf(tmp[i]);
        rstd[v] = vload(tmp);
    }
    for (int64_t c = 0; c < C; c++)
        for (int v = 0; v < T / LANES; v++) {
            const vf dx = vload(x + c * L + l0 + v * LANES) - mean[v];
            vstore(out + c * L + l0 + v * LANES, dx * rstd[v] * w[c] + b[c]);
        }
}

int channel_layernorm(const float *x, const float *w, const float *b, float *out, int64_t batch, int64_t channels,
                      int64_t length, float eps, int64_t nthreads) {
    if (!x || !w || !b || !out || batch < 0 || channels < 1 || length < 0) return MIXER_BAD_ARGUMENT;
    const int64_t C = channels, L = length, full = L / T * T;
    const int threads = thread_count(nthreads);
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t it = 0; it < batch * (full / T); it++) {
        const int64_t bi = it / (full / T), l0 = (it % (full / T)) * T;
        layernorm_tile(x + bi * C * L, w, b, out + bi * C * L, C, L, l0, eps);
    }
    for (int64_t bi = 0; bi < batch; bi++) /* the last L mod T tokens, one at a time */
        for (int64_t l = full; l < L; l++) {
            const float *xb = x + bi * C * L;
            float mean = 0.0f, var = 0.0f;
            for (int64_t c = 0; c < C; c++) mean += xb[c * L + l];
            mean /= (float)C;
            for (int64_t c = 0; c < C; c++) var += (xb[c * L + l] - mean) * (xb[c * L + l] - mean);
            const float rstd = 1.0f / sqrtf(var / (float)C + eps);
            for (int64_t c = 0; c < C; c++) out[bi * C * L + c * L + l] = (xb[c * L + l] - mean) * rstd * w[c] + b[c];
        }
    return MIXER_OK;
}
