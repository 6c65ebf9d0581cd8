/* Native CPU selective scan (forward + backward); contract in selective_scan_cpu.h.
 *
 * Glossary: see the header (B, D, N, L, K, G, T; u -> x_t, delta -> Delta_t, h -> h_t).
 *
 * Work split: one OpenMP item per (batch b, channel d); the item runs the K
 * directions of channel d one after another, so y[b, d, :] and du[b, d, :] have a
 * single writer and the cross-scan sum needs no atomics. Inside an item the scan is
 * sequential in t and vectorised over the state axis N (B_t, C_t are token-major).
 *
 * Backward recomputes instead of storing per-token states: the forward keeps the
 * state entering every chunk of T tokens; the backward walks the chunks in reverse,
 * recomputes the T states and decays of one chunk from its checkpoint into a small
 * buffer (2 * T * N floats, stays in L1) and runs the adjoint recurrence over it.
 * B_t and C_t are shared by the channels of a group: the items are cut into a few
 * contiguous parts; a batch inside one part gets dB / dC written in place, a batch cut
 * between parts is summed from per-part copies in part order (deterministic).
 */
#include "selective_scan_cpu.h"
#include "atanh_series.h"
#include "vector_basics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* The vector helpers are always inlined, so the 256-bit-vector ABI note does not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The state axis is processed SCAN_LANES floats at a time with GCC/Clang vector
 * extensions: one 256-bit vector on AVX2, one 128-bit NEON register on aarch64 (see the header).
 * The caller pads N to a multiple of SCAN_LANES with zeros (A = 0, B = C = 0 keeps
 * the padded lanes of h at 0), so there is no remainder loop. */
typedef float vf __attribute__((vector_size(SCAN_LANES * 4)));
typedef int32_t vi __attribute__((vector_size(SCAN_LANES * 4)));
/* Half a state vector in double, for the backward's sums over tokens (see bwd_item). Halves,
 * not one double vector of SCAN_LANES: that is wider than the registers and GCC lowers it lane by
 * lane (measured: the whole backward 2x slower); a half is one vcvtps2pd (fcvtl on NEON). */
#define SCAN_HALF (SCAN_LANES / 2)
typedef float vfhalf __attribute__((vector_size(SCAN_HALF * 4)));
typedef double vdhalf __attribute__((vector_size(SCAN_HALF * 8)));

/* On x86-64 every item function also gets an x86-64-v3 (AVX2 + FMA) clone picked at
 * load time; the default clone keeps the -march baseline (SSE4.2). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define SCAN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SCAN_CLONES
#endif

VECTOR_BASICS(vf)
/* The first (half 0) or second (half 1) SCAN_HALF lanes of v, widened to double. */
ALWAYS_INLINE vdhalf vwiden(vf v, int half) {
    vfhalf h;
    memcpy(&h, (const char *)&v + half * sizeof h, sizeof h);
    return __builtin_convertvector(h, vdhalf);
}
/* out[i] = sum of the SCAN_LANES lanes of rows[i], SCAN_LANES rows at a time: a transpose-and-add
 * tree of shuffles (log2(SCAN_LANES) adds per row instead of a chain of SCAN_LANES - 1). */
typedef int32_t vmask __attribute__((vector_size(SCAN_LANES * 4)));
#if defined(__clang__)
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (vmask){__VA_ARGS__})
#endif
#if SCAN_LANES == 8
/* Pairwise lane sums of a and b, interleaved: level 1 pairs lanes, 2 pairs of pairs, 3 halves. */
#define SUMS1(a, b) (SHUFFLE(a, b, 0, 8, 2, 10, 4, 12, 6, 14) + SHUFFLE(a, b, 1, 9, 3, 11, 5, 13, 7, 15))
#define SUMS2(a, b) (SHUFFLE(a, b, 0, 1, 8, 9, 4, 5, 12, 13) + SHUFFLE(a, b, 2, 3, 10, 11, 6, 7, 14, 15))
#define SUMS3(a, b) (SHUFFLE(a, b, 0, 1, 2, 3, 8, 9, 10, 11) + SHUFFLE(a, b, 4, 5, 6, 7, 12, 13, 14, 15))
ALWAYS_INLINE void row_sums_block(const float *rows, float *out) {
    const vf r0 = vload(rows), r1 = vload(rows + 8), r2 = vload(rows + 16), r3 = vload(rows + 24);
    const vf r4 = vload(rows + 32), r5 = vload(rows + 40), r6 = vload(rows + 48), r7 = vload(rows + 56);
    const vf a = SUMS1(r0, r1), b = SUMS1(r2, r3), c = SUMS1(r4, r5), d = SUMS1(r6, r7);
    const vf ab = SUMS2(a, b), cd = SUMS2(c, d);
    vstore(out, SUMS3(ab, cd));
}
#elif SCAN_LANES == 4
ALWAYS_INLINE void row_sums_block(const float *rows, float *out) {
    const vf r0 = vload(rows), r1 = vload(rows + 4), r2 = vload(rows + 8), r3 = vload(rows + 12);
    const vf a = SHUFFLE(r0, r1, 0, 4, 2, 6) + SHUFFLE(r0, r1, 1, 5, 3, 7);
    const vf b = SHUFFLE(r2, r3, 0, 4, 2, 6) + SHUFFLE(r2, r3, 1, 5, 3, 7);
    vstore(out, SHUFFLE(a, b, 0, 1, 4, 5) + SHUFFLE(a, b, 2, 3, 6, 7));
}
#else
#error "row_sums_block is written for 4 or 8 lanes"
#endif
ALWAYS_INLINE void row_sums(const float *rows, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i += SCAN_LANES) row_sums_block(rows + i * SCAN_LANES, out + i);
}

/* exp for the decay exp(Delta * A), lane-wise: Cody-Waite reduction by ln 2 and a
 * degree-6 polynomial (Cephes expf). -ffast-math may reassociate the two-part
 * reduction; the error it leaves is at most half an ulp of x, the same as the
 * rounding already in the product Delta * A, so the result is as good as expf of
 * that product (for x <= 0 the absolute error stays below 3e-8). */
ALWAYS_INLINE vf vexp(vf x) {
    const vf lo = vsplat(-87.0f), hi = vsplat(88.0f);
    vi below = x < lo, above = x > hi;
    x = (vf)(((vi)x & ~below) | ((vi)lo & below)); /* exp(-87) ~ 1.6e-38: below that h is dust */
    x = (vf)(((vi)x & ~above) | ((vi)hi & above));
    /* floor(x log2(e) + 0.5) by truncating a positive number (x >= -87 so t > 0). */
    const vi t = __builtin_convertvector(x * 1.44269504088896341f + 128.5f, vi);
    const vi ni = t - 128;
    const vf n = __builtin_convertvector(ni, vf);
    vf r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * (vf)((ni + 127) << 23);
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

ALWAYS_INLINE vf vselect(vi mask, vf yes, vf no) { return (vf)(((vi)yes & mask) | ((vi)no & ~mask)); }

/* Delta = softplus(x) as torch computes it (beta 1, threshold 20: x above 20 passes
 * through) and its derivative sigmoid(x), 8 lanes at a time. softplus(x) =
 * max(x, 0) + log1p(e) with e = exp(-|x|) in (0, 1]; log1p(e) = 2 atanh(s), s = e / (2 + e)
 * <= 1/3, summed as the odd series to s^13 (truncation < 1e-8 relative). No 1 + e is
 * ever formed, so tiny e keep their full relative precision. */
ALWAYS_INLINE vf vsoftplus(vf x, vf *dsig) {
    const vf zero = vsplat(0.0f), one = vsplat(1.0f);
    const vf e = vexp((vf)((vi)x | INT32_MIN)); /* exp(-|x|): set the sign bit */
    const vf sv = e / (2.0f + e), s2 = sv * sv;
    const vf series = ATANH_SERIES(s2);
    const vi positive = x > zero, pass = x > 20.0f;
    const vf sp = vselect(positive, x, zero) + 2.0f * sv * series;
    const vf inv = one / (one + e);
    *dsig = vselect(pass, one, vselect(positive, inv, e * inv));
    return vselect(pass, x, sp);
}

ALWAYS_INLINE vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

/* out = y * SiLU(z) in place over a row of L, keeping y in pre when given. */
ALWAYS_INLINE void gate_forward(float *y, const float *z, float *pre, int64_t L) {
    int64_t l = 0;
    for (; l + SCAN_LANES <= L; l += SCAN_LANES) {
        const vf yv = vload(y + l), zv = vload(z + l);
        if (pre) vstore(pre + l, yv);
        vstore(y + l, yv * zv * vsigmoid(zv));
    }
    for (; l < L; l++) {
        if (pre) pre[l] = y[l];
        y[l] = y[l] * z[l] * sigmoidf(z[l]);
    }
}

/* Through out = y * SiLU(z): dy = dout SiLU(z), dz = dout y SiLU'(z), SiLU' = s (1 + z (1 - s)). */
ALWAYS_INLINE void gate_backward(const float *dout, const float *z, const float *pre, float *dy, float *dz,
                                 int64_t L) {
    int64_t l = 0;
    for (; l + SCAN_LANES <= L; l += SCAN_LANES) {
        const vf zv = vload(z + l), sg = vsigmoid(zv), g = vload(dout + l);
        vstore(dy + l, g * zv * sg);
        vstore(dz + l, g * vload(pre + l) * sg * (1.0f + zv * (1.0f - sg)));
    }
    for (; l < L; l++) {
        const float sg = sigmoidf(z[l]);
        dy[l] = dout[l] * z[l] * sg;
        dz[l] = dout[l] * pre[l] * sg * (1.0f + z[l] * (1.0f - sg));
    }
}

static int thread_count(const ScanParams *p) {
#ifdef _OPENMP
    return p->nthreads > 0 ? (int)p->nthreads : omp_get_max_threads();
#else
    (void)p;
    return 1;
#endif
}

static int check_params(const ScanParams *p) {
    if (p->batch < 0 || p->dim < 0 || p->length < 0) return SCAN_BAD_ARGUMENT;
    if (p->dstate < 1 || p->dstate > SCAN_MAX_STATE) return SCAN_BAD_ARGUMENT;
    if (p->bc_token_stride < p->dstate || p->bc_token_stride % SCAN_LANES) return SCAN_BAD_ARGUMENT;
    if (p->directions != 1 && p->directions != 4) return SCAN_BAD_ARGUMENT;
    if (p->groups < 1 || (p->directions * p->dim) % p->groups != 0) return SCAN_BAD_ARGUMENT;
    if (p->directions == 4 && (p->height < 1 || p->width < 1 || p->height * p->width != p->length))
        return SCAN_BAD_ARGUMENT;
    if (!p->u || !p->delta || !p->A || !p->Bm || !p->Cm || !p->out) return SCAN_BAD_ARGUMENT;
    return SCAN_OK;
}

/* Per-token scalars of one chunk of direction k of channel c. */
typedef struct {
    int64_t tok[SCAN_CHUNK]; /* row-major token index of sequence position t0 + i */
    float dt[SCAN_CHUNK];    /* Delta_t */
    float dtu[SCAN_CHUNK];   /* Delta_t * x_t */
    float dsig[SCAN_CHUNK];  /* d Delta_t / d delta_t */
} ChunkTokens;

/* Token indices of positions t0 .. t0 + tn - 1 of direction k (scan_directions.py):
 * 0 row-major, 1 column-major (p = w H + h -> h W + w), 2 and 3 the same reversed.
 * Column orders step (h, w) incrementally: one division per chunk, not per token. */
static inline void chunk_tokens(int64_t k, int64_t t0, int64_t tn, int64_t H, int64_t W, int64_t L, int64_t *tok) {
    const int reversed = k >= 2;
    const int64_t p0 = reversed ? L - 1 - t0 : t0;
    if (!(k & 1)) {
        for (int64_t i = 0; i < tn; i++) tok[i] = reversed ? p0 - i : p0 + i;
        return;
    }
    int64_t h = p0 % H, w = p0 / H;
    for (int64_t i = 0; i < tn; i++) {
        tok[i] = h * W + w;
        if (reversed) {
            if (--h < 0) h = H - 1, w--;
        } else if (++h == H) {
            h = 0, w++;
        }
    }
}

ALWAYS_INLINE void load_chunk(const ScanParams *p, int64_t k, const float *urow, const float *drow, float bias,
                              int64_t t0, int64_t tn, ChunkTokens *ct) {
    chunk_tokens(k, t0, tn, p->height, p->width, p->length, ct->tok);
    float ubuf[SCAN_CHUNK];
    if (k == 0) { /* row-major: plain contiguous loads the compiler vectorises */
        for (int64_t i = 0; i < tn; i++) {
            ct->dt[i] = drow[t0 + i] + bias;
            ubuf[i] = urow[t0 + i];
        }
    } else {
        for (int64_t i = 0; i < tn; i++) {
            ct->dt[i] = drow[ct->tok[i]] + bias;
            ubuf[i] = urow[ct->tok[i]];
        }
    }
    for (int64_t i = tn; i < SCAN_CHUNK; i++) ct->dt[i] = ubuf[i] = 0.0f; /* whole vectors below */
    for (int64_t i = 0; i < SCAN_CHUNK; i += SCAN_LANES) {
        vf x = vload(ct->dt + i), ds = vsplat(1.0f);
        if (p->delta_softplus) x = vsoftplus(x, &ds);
        vstore(ct->dt + i, x);
        vstore(ct->dtu + i, x * vload(ubuf + i));
        vstore(ct->dsig + i, ds);
    }
}

/* A row of channel c, zero-padded to NV vectors. */
ALWAYS_INLINE void load_A(const ScanParams *p, int64_t c, int NV, vf *Av) {
    float buf[SCAN_MAX_STATE] = {0};
    memcpy(buf, p->A + c * p->dstate, sizeof(float) * p->dstate);
    for (int j = 0; j < NV; j++) Av[j] = vload(buf + j * SCAN_LANES);
}

/* ---------------------------------------------------------------- forward */

/* One item (b, d): all K directions, summed into out[b, d, :], then the gate. */
ALWAYS_INLINE void fwd_item(const ScanParams *p, int64_t b, int64_t d, const int NV) {
    const int64_t L = p->length, K = p->directions, KD = K * p->dim, NP = (int64_t)NV * SCAN_LANES;
    const int64_t per_group = KD / p->groups, n_chunks = (L + SCAN_CHUNK - 1) / SCAN_CHUNK;
    const float *urow = p->u + b * p->x_batch_stride + d * p->x_dim_stride;
    float *y = p->out + b * p->x_batch_stride + d * p->x_dim_stride;
    ChunkTokens ct;
    vf h[SCAN_MAX_STATE / SCAN_LANES], Av[SCAN_MAX_STATE / SCAN_LANES];
    float acc_rows[SCAN_CHUNK * SCAN_LANES] = {0}, ysum[SCAN_CHUNK]; /* <C_t, h_t> lane partials */

    for (int64_t k = 0; k < K; k++) {
        const int64_t c = k * p->dim + d, g = c / per_group;
        const float *drow = p->delta + b * p->delta_batch_stride + c * p->delta_dim_stride;
        const float *Bg = p->Bm + b * p->bc_batch_stride + g * p->bc_group_stride;
        const float *Cg = p->Cm + b * p->bc_batch_stride + g * p->bc_group_stride;
        const int64_t ts = p->bc_token_stride;
        const float skip = p->Dskip ? p->Dskip[c] : 0.0f;
        const float bias = p->delta_bias ? p->delta_bias[c] : 0.0f;
        float *ck = p->checkpoints ? p->checkpoints + ((b * KD + c) * n_chunks) * NP : NULL;
        load_A(p, c, NV, Av);
        for (int j = 0; j < NV; j++) h[j] = vsplat(0.0f);

        for (int64_t ci = 0; ci < n_chunks; ci++) {
            const int64_t t0 = ci * SCAN_CHUNK;
            const int64_t tn = L - t0 < SCAN_CHUNK ? L - t0 : SCAN_CHUNK;
            if (ck)
                for (int j = 0; j < NV; j++) vstore(ck + ci * NP + j * SCAN_LANES, h[j]);
            load_chunk(p, k, urow, drow, bias, t0, tn, &ct);
            for (int64_t i = 0; i < tn; i++) {
                const float dt = ct.dt[i], dtu = ct.dtu[i];
                const float *Bt = Bg + ct.tok[i] * ts, *Ct = Cg + ct.tok[i] * ts;
                vf acc = vsplat(0.0f);
                for (int j = 0; j < NV; j++) {
                    h[j] = vexp(dt * Av[j]) * h[j] + dtu * vload(Bt + j * SCAN_LANES);
                    acc += vload(Ct + j * SCAN_LANES) * h[j];
                }
                vstore(acc_rows + i * SCAN_LANES, acc);
            }
            row_sums(acc_rows, tn, ysum);
            if (k == 0) { /* row-major and the first direction: plain stores */
                for (int64_t i = 0; i < tn; i++) y[t0 + i] = ysum[i] + skip * urow[t0 + i];
            } else {
                for (int64_t i = 0; i < tn; i++) {
                    const int64_t tok = ct.tok[i];
                    y[tok] += ysum[i] + skip * urow[tok];
                }
            }
        }
    }
    if (p->z) {
        const float *zrow = p->z + b * p->x_batch_stride + d * p->x_dim_stride;
        float *pre = p->y_pregate ? p->y_pregate + b * p->x_batch_stride + d * p->x_dim_stride : NULL;
        gate_forward(y, zrow, pre, L);
    }
}

/* ---------------------------------------------------------------- backward */

typedef struct {
    float *dy;       /* (L) gradient of the summed y of the current channel */
    float *a;        /* (T, NP) decays of the current chunk */
    float *h;        /* (T, NP) states of the current chunk */
    float *dB, *dC;  /* the outputs (B, G, L, NP) */
    /* Batches this part shares with another part accumulate dB / dC into private
     * copies (dB then dC, bc_batch_stride each), summed after the parallel region. */
    int64_t shared_b[2];
    float *priv[2];
} BwdScratch;

/* Where the dB / dC rows of batch b go for this part. */
ALWAYS_INLINE void bc_grad_rows(const ScanParams *p, const BwdScratch *s, int64_t b, float **dB, float **dC) {
    for (int i = 0; i < 2; i++)
        if (s->priv[i] && s->shared_b[i] == b) {
            *dB = s->priv[i];
            *dC = s->priv[i] + p->bc_batch_stride;
            return;
        }
    *dB = s->dB + b * p->bc_batch_stride;
    *dC = s->dC + b * p->bc_batch_stride;
}

ALWAYS_INLINE void bwd_item(const ScanParams *p, const ScanGrads *gr, int64_t b, int64_t d, BwdScratch *s,
                            const int NV) {
    const int64_t L = p->length, K = p->directions, KD = K * p->dim, N = p->dstate;
    const int64_t NP = (int64_t)NV * SCAN_LANES;
    const int64_t per_group = KD / p->groups, n_chunks = (L + SCAN_CHUNK - 1) / SCAN_CHUNK;
    const int64_t xo = b * p->x_batch_stride + d * p->x_dim_stride;
    const float *urow = p->u + xo, *dout = gr->dout + xo;
    float *durow = gr->du + xo, *dy = s->dy;
    ChunkTokens ct;
    enum { MV = SCAN_MAX_STATE / SCAN_LANES };
    vf Av[MV], h0[MV], carry[MV];
    /* The per-channel sums over tokens (dA, dD, ddelta_bias) are accumulated term by term in
     * double: their terms cancel (a result can be ~1000x smaller than the sum of the terms'
     * magnitudes), so an fp32 running sum's rounding, ~eps * sum|terms|, can exceed the result's
     * own fp32 resolution; in double it stays far below it. */
    vdhalf dA_acc[2 * MV]; /* state lanes SCAN_HALF j .. SCAN_HALF (j + 1) - 1 in dA_acc[j] */
    /* Lane partials of sum_n g A h_{t-1} a and sum_n g B per token, summed per chunk. */
    float a_rows[SCAN_CHUNK * SCAN_LANES] = {0}, b_rows[SCAN_CHUNK * SCAN_LANES] = {0};
    float sum_a[SCAN_CHUNK], sum_b[SCAN_CHUNK];

    if (p->z) {
        gate_backward(dout, p->z + xo, p->y_pregate + xo, dy, gr->dz + xo, L);
    } else {
        memcpy(dy, dout, sizeof(float) * L);
    }
    memset(durow, 0, sizeof(float) * L);

    for (int64_t k = 0; k < K; k++) {
        const int64_t c = k * p->dim + d, g = c / per_group;
        const float *drow = p->delta + b * p->delta_batch_stride + c * p->delta_dim_stride;
        float *ddrow = gr->ddelta + b * p->delta_batch_stride + c * p->delta_dim_stride;
        const int64_t bco = b * p->bc_batch_stride + g * p->bc_group_stride, ts = p->bc_token_stride;
        const float *Bg = p->Bm + bco, *Cg = p->Cm + bco;
        float *dBg, *dCg;
        bc_grad_rows(p, s, b, &dBg, &dCg);
        dBg += g * p->bc_group_stride;
        dCg += g * p->bc_group_stride;
        const float skip = p->Dskip ? p->Dskip[c] : 0.0f;
        const float bias = p->delta_bias ? p->delta_bias[c] : 0.0f;
        const float *ck = p->checkpoints + ((b * KD + c) * n_chunks) * NP;
        double dD_acc = 0.0, dbias_acc = 0.0;
        load_A(p, c, NV, Av);
        for (int j = 0; j < NV; j++) carry[j] = vsplat(0.0f);
        for (int j = 0; j < 2 * NV; j++) dA_acc[j] = (vdhalf){0};

        for (int64_t ci = n_chunks - 1; ci >= 0; ci--) {
            const int64_t t0 = ci * SCAN_CHUNK;
            const int64_t tn = L - t0 < SCAN_CHUNK ? L - t0 : SCAN_CHUNK;
            load_chunk(p, k, urow, drow, bias, t0, tn, &ct);
            /* Recompute the chunk's decays and states from its checkpoint. */
            for (int j = 0; j < NV; j++) h0[j] = vload(ck + ci * NP + j * SCAN_LANES);
            for (int64_t i = 0; i < tn; i++) {
                const float dt = ct.dt[i], dtu = ct.dtu[i];
                const float *Bt = Bg + ct.tok[i] * ts;
                float *ai = s->a + i * NP, *hi = s->h + i * NP;
                for (int j = 0; j < NV; j++) {
                    const vf hp = i ? vload(hi - NP + j * SCAN_LANES) : h0[j];
                    const vf a = vexp(dt * Av[j]);
                    vstore(ai + j * SCAN_LANES, a);
                    vstore(hi + j * SCAN_LANES, a * hp + dtu * vload(Bt + j * SCAN_LANES));
                }
            }
            /* Adjoint: g_t = dy_t C_t + a_{t+1} g_{t+1}; carry holds a_{t+1} g_{t+1}. */
            for (int64_t i = tn - 1; i >= 0; i--) {
                const int64_t tok = ct.tok[i];
                const float dt = ct.dt[i], dtu = ct.dtu[i], dyt = dy[tok];
                const float *Bt = Bg + tok * ts, *Ct = Cg + tok * ts;
                float *dBt = dBg + tok * ts, *dCt = dCg + tok * ts;
                const float *ai = s->a + i * NP, *hi = s->h + i * NP;
                vf va = vsplat(0.0f), vb = va;
                for (int j = 0; j < NV; j++) {
                    const int o = j * SCAN_LANES;
                    const vf a = vload(ai + o), hp = i ? vload(hi - NP + o) : h0[j];
                    const vf gn = dyt * vload(Ct + o) + carry[j];
                    const vf ga = gn * hp * a; /* dL/dh_t * h_{t-1} * a_t */
                    va += ga * Av[j];
                    vb += gn * vload(Bt + o);
                    dA_acc[2 * j] += vwiden(ga, 0) * (double)dt;
                    dA_acc[2 * j + 1] += vwiden(ga, 1) * (double)dt;
                    vstore(dBt + o, vload(dBt + o) + gn * dtu);
                    vstore(dCt + o, vload(dCt + o) + dyt * vload(hi + o));
                    carry[j] = a * gn;
                }
                vstore(a_rows + i * SCAN_LANES, va);
                vstore(b_rows + i * SCAN_LANES, vb);
            }
            row_sums(a_rows, tn, sum_a);
            row_sums(b_rows, tn, sum_b);
            /* Per-token gradients; the row-major direction gets a contiguous (vectorised) copy. */
#define TOKEN_GRADS(TOK)                                                        \
    for (int64_t i = 0; i < tn; i++) {                                          \
        const int64_t tok = (TOK);                                              \
        const float dyt = dy[tok], ut = urow[tok];                              \
        const float dx = (sum_a[i] + ut * sum_b[i]) * ct.dsig[i];               \
        ddrow[tok] = dx;                                                        \
        dbias_acc += dx;                                                        \
        durow[tok] += ct.dt[i] * sum_b[i] + dyt * skip;                         \
        dD_acc += (double)dyt * ut; /* exact: a float product fits a double */ \
    }
            if (k == 0)
                TOKEN_GRADS(t0 + i)
            else
                TOKEN_GRADS(ct.tok[i])
#undef TOKEN_GRADS
        }
        /* Left in double: the caller sums the batches in double and rounds once. */
        for (int64_t n = 0; n < N; n++) gr->dA_part[(b * KD + c) * N + n] = dA_acc[n / SCAN_HALF][n % SCAN_HALF];
        gr->dD_part[b * KD + c] = dD_acc;
        gr->dbias_part[b * KD + c] = dbias_acc;
    }
}

/* Item functions for 1, 2 and 4 vectors of state (N <= 8, 16, 32 on x86-64; 4, 8, 16 on NEON) with the state
 * loop unrolled, and one for any padded N up to SCAN_MAX_STATE. */
#define INSTANTIATE(NV)                                                                             \
    SCAN_CLONES static void fwd_item_##NV(const ScanParams *p, int64_t b, int64_t d, int nv) {     \
        (void)nv;                                                                                 \
        fwd_item(p, b, d, NV);                                                                    \
    }                                                                                             \
    SCAN_CLONES static void bwd_item_##NV(const ScanParams *p, const ScanGrads *g, int64_t b,      \
                                          int64_t d, BwdScratch *s, int nv) {                     \
        (void)nv;                                                                                 \
        bwd_item(p, g, b, d, s, NV);                                                              \
    }
INSTANTIATE(1)
INSTANTIATE(2)
INSTANTIATE(4)

SCAN_CLONES static void fwd_item_any(const ScanParams *p, int64_t b, int64_t d, int nv) { fwd_item(p, b, d, nv); }
SCAN_CLONES static void bwd_item_any(const ScanParams *p, const ScanGrads *g, int64_t b, int64_t d, BwdScratch *s,
                                     int nv) {
    bwd_item(p, g, b, d, s, nv);
}

typedef void (*FwdItemFn)(const ScanParams *, int64_t, int64_t, int);
typedef void (*BwdItemFn)(const ScanParams *, const ScanGrads *, int64_t, int64_t, BwdScratch *, int);

static int vectors_per_state(const ScanParams *p) { return (int)(p->bc_token_stride / SCAN_LANES); }

static void pick_items(int nv, FwdItemFn *f, BwdItemFn *bw) {
    switch (nv) {
        case 1: *f = fwd_item_1; *bw = bwd_item_1; break;
        case 2: *f = fwd_item_2; *bw = bwd_item_2; break;
        case 4: *f = fwd_item_4; *bw = bwd_item_4; break;
        default: *f = fwd_item_any; *bw = bwd_item_any; break;
    }
}

/* ---------------------------------------------------------------- entry points */

int selective_scan_abi_version(void) { return SCAN_ABI_VERSION; }
int selective_scan_chunk(void) { return SCAN_CHUNK; }
int selective_scan_lanes(void) { return SCAN_LANES; }

int selective_scan_fwd(const ScanParams *p) {
    const int status = check_params(p);
    if (status != SCAN_OK) return status;
    FwdItemFn f;
    BwdItemFn unused;
    const int nv = vectors_per_state(p);
    pick_items(nv, &f, &unused);
    const int64_t items = p->batch * p->dim;
    const int nthreads = thread_count(p);
    (void)nthreads; /* unused without OpenMP */
    /* Dynamic: on a shared machine a descheduled thread's items go to the others
     * (every item writes its own rows, so the result does not depend on the split). */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t it = 0; it < items; it++) f(p, it / p->dim, it % p->dim, nv);
    return SCAN_OK;
}

int selective_scan_bwd(const ScanParams *p, const ScanGrads *g) {
    int status = check_params(p);
    if (status != SCAN_OK) return status;
    if (!p->checkpoints || !g->dout || !g->du || !g->ddelta || !g->dB || !g->dC || !g->dA_part || !g->dD_part ||
        !g->dbias_part)
        return SCAN_BAD_ARGUMENT;
    if (p->z && (!p->y_pregate || !g->dz)) return SCAN_BAD_ARGUMENT;
    FwdItemFn unused;
    BwdItemFn f;
    const int nv = vectors_per_state(p);
    pick_items(nv, &unused, &f);
    const int64_t NP = p->bc_token_stride, L = p->length, items = p->batch * p->dim;
    int nthreads = thread_count(p);
    if (nthreads > items) nthreads = items > 0 ? (int)items : 1;

    /* Items are split into nparts contiguous ranges, fixed by the thread count, and the
     * parts are handed out dynamically (a descheduled thread's parts go to the others). A batch
     * whose items fall in one part gets its dB / dC rows written in place; a batch split
     * between parts (at most nparts - 1 of them) is accumulated in per-part copies and summed
     * in part order, so the result does not depend on which thread ran which part. */
    const int nparts = nthreads == 1 ? 1 : (int)(items < 4 * nthreads ? items : 4 * nthreads);
    const int64_t D = p->dim, bbs = p->bc_batch_stride;
#define PART_LO(t) ((int64_t)(t) * items / nparts)
#define OWNER_OF(it, out)                                                       \
    do {                                                                        \
        int _t = 0;                                                             \
        while (_t + 1 < nparts && PART_LO(_t + 1) <= (it)) _t++;                \
        (out) = _t;                                                             \
    } while (0)
    float *priv = calloc((size_t)(nparts * 2 * 2 * bbs) + 1, sizeof(float));
    if (!priv) return SCAN_OUT_OF_MEMORY;

#pragma omp parallel num_threads(nthreads) reduction(| : status)
    {
        BwdScratch s;
        s.dy = malloc(sizeof(float) * (L + 1));
        s.a = malloc(sizeof(float) * SCAN_CHUNK * NP);
        s.h = malloc(sizeof(float) * SCAN_CHUNK * NP);
        s.dB = g->dB;
        s.dC = g->dC;
        const int ok = s.dy && s.a && s.h;
        if (!ok) status |= SCAN_OUT_OF_MEMORY;
#pragma omp for schedule(dynamic, 1)
        for (int part = 0; part < nparts; part++) {
            const int64_t lo = PART_LO(part), hi = PART_LO(part + 1);
            if (!ok || lo >= hi) continue;
            for (int i = 0; i < 2; i++) s.priv[i] = NULL;
            for (int64_t b = lo / D; b <= (hi - 1) / D; b++) {
                int first, last;
                OWNER_OF(b * D, first);
                OWNER_OF((b + 1) * D - 1, last);
                if (first == last) { /* this part alone writes batch b */
                    memset(g->dB + b * bbs, 0, sizeof(float) * bbs);
                    memset(g->dC + b * bbs, 0, sizeof(float) * bbs);
                } else {
                    const int slot = b == lo / D ? 0 : 1;
                    s.shared_b[slot] = b;
                    s.priv[slot] = priv + (int64_t)(part * 2 + slot) * 2 * bbs;
                }
            }
            for (int64_t it = lo; it < hi; it++) f(p, g, it / D, it % D, &s, nv);
        }
        free(s.dy);
        free(s.a);
        free(s.h);
    }

    /* Shared batches: sum the parts' copies in part order. */
    if (status == SCAN_OK) {
        for (int64_t b = 0; b < p->batch; b++) {
            int first, last;
            OWNER_OF(b * D, first);
            OWNER_OF((b + 1) * D - 1, last);
            if (first == last) continue;
            float *dBb = g->dB + b * bbs, *dCb = g->dC + b * bbs;
#pragma omp parallel for schedule(static) num_threads(nthreads)
            for (int64_t e = 0; e < bbs; e++) {
                float sb = 0.0f, sc = 0.0f;
                for (int part = first; part <= last; part++) {
                    const int slot = b == PART_LO(part) / D ? 0 : 1;
                    const float *src = priv + (int64_t)(part * 2 + slot) * 2 * bbs;
                    sb += src[e];
                    sc += src[bbs + e];
                }
                dBb[e] = sb;
                dCb[e] = sc;
            }
        }
    }
#undef OWNER_OF
#undef PART_LO
    free(priv);
    return status;
}
