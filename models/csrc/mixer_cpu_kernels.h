/* The mixer's kernels at one vector width: included by mixer_cpu.c once per width it builds, so no include guard.
 *
 * Why widths: a GCC vector type wider than the target's registers has no register mode and lives on the stack
 * (every splat and accumulator a store and a reload: measured 10x slower on an AVX2 core for 16 lanes). So each
 * instruction set gets the width of its registers: 16 floats for AVX-512 (zmm), 8 for AVX2 (ymm), 4 for SSE and
 * NEON (xmm / q). The state stays padded to MIXER_LANES (16) in every width, so the workspace layout is one.
 *
 * The includer defines VL (floats per vector), WIDE(name) (this width's name for a definition, e.g.
 * name##_w8) and KERNEL (the target clones of the hot functions; the always-inline helpers are compiled into
 * each clone). Everything defined here is renamed through WIDE, so the widths coexist in one translation unit.
 * Entry points: forward, scan_forward, layernorm (mixer_cpu.c checks the arguments and picks the width).
 */
#define vf WIDE(vf)
#define vi WIDE(vi)
#define vr WIDE(vr)
#define vri WIDE(vri)
#define vsplat WIDE(vsplat)
#define vload WIDE(vload)
#define vstore WIDE(vstore)
#define vmax WIDE(vmax)
#define vselect WIDE(vselect)
#define vexp2 WIDE(vexp2)
#define vexp WIDE(vexp)
#define vsigmoid WIDE(vsigmoid)
#define vsoftplus WIDE(vsoftplus)
#define vload_row WIDE(vload_row)
#define row_sums WIDE(row_sums)
#define fold_store WIDE(fold_store)
#define gemm_tile WIDE(gemm_tile)
#define tile_project_in WIDE(tile_project_in)
#define tile_project_out WIDE(tile_project_out)
#define conv_silu_row WIDE(conv_silu_row)
#define tile_phase1 WIDE(tile_phase1)
#define scan_rows WIDE(scan_rows)
#define channel_scan WIDE(channel_scan)
#define channel_scan_p16 WIDE(channel_scan_p16)
#define channel_scan_p32 WIDE(channel_scan_p32)
#define channel_scan_any WIDE(channel_scan_any)
#define delta_row WIDE(delta_row)
#define transpose_bc WIDE(transpose_bc)
#define scan_row_p16 WIDE(scan_row_p16)
#define scan_row_p32 WIDE(scan_row_p32)
#define scan_row_any WIDE(scan_row_any)
#define layernorm_tile WIDE(layernorm_tile)
#define forward WIDE(forward)
#define scan_forward WIDE(scan_forward)
#define layernorm WIDE(layernorm)

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
_Static_assert(T % VL == 0 && MIXER_LANES % VL == 0, "a tile and a padded state are whole vectors");

VECTOR_BASICS(vf)
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
    const vf series = ATANH_SERIES(s2);
    const vi positive = x > zero, pass = x > 20.0f;
    return vselect(pass, x, vselect(positive, x, zero) + 2.0f * sv * series);
}

/* Horizontal sums: each token's VL-lane partial sum of C_t h_t is stored as one row of RW floats (VL = 16 is
 * folded to 8 first), and RW rows at a time are summed by a transpose-and-add tree of shuffles (log2(RW) adds
 * per row instead of a chain of RW - 1). */
#if VL == 4
#define RW 4
#else
#define RW 8
#endif
typedef float vr __attribute__((vector_size(RW * 4)));
typedef int32_t vri __attribute__((vector_size(RW * 4)));
#if defined(__clang__)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (vri){__VA_ARGS__})
#endif
ALWAYS_INLINE vr vload_row(const float *p) {
    vr v;
    memcpy(&v, p, sizeof v);
    return v;
}
#if RW == 4
ALWAYS_INLINE void row_sums(const float *rows, float *out) { /* 4 rows of 4 */
    const vr r0 = vload_row(rows), r1 = vload_row(rows + 4), r2 = vload_row(rows + 8), r3 = vload_row(rows + 12);
    const vr a = SHUF(r0, r1, 0, 4, 2, 6) + SHUF(r0, r1, 1, 5, 3, 7), b = SHUF(r2, r3, 0, 4, 2, 6) + SHUF(r2, r3, 1, 5, 3, 7);
    const vr s = SHUF(a, b, 0, 1, 4, 5) + SHUF(a, b, 2, 3, 6, 7);
    memcpy(out, &s, sizeof s);
}
#else
/* Pairwise lane sums of a and b, interleaved: level 1 pairs lanes, 2 pairs of pairs, 3 halves. */
#define SUMS1(a, b) (SHUF(a, b, 0, 8, 2, 10, 4, 12, 6, 14) + SHUF(a, b, 1, 9, 3, 11, 5, 13, 7, 15))
#define SUMS2(a, b) (SHUF(a, b, 0, 1, 8, 9, 4, 5, 12, 13) + SHUF(a, b, 2, 3, 10, 11, 6, 7, 14, 15))
#define SUMS3(a, b) (SHUF(a, b, 0, 1, 2, 3, 8, 9, 10, 11) + SHUF(a, b, 4, 5, 6, 7, 12, 13, 14, 15))
ALWAYS_INLINE void row_sums(const float *rows, float *out) { /* 8 rows of 8 */
    const vr r0 = vload_row(rows), r1 = vload_row(rows + 8), r2 = vload_row(rows + 16), r3 = vload_row(rows + 24);
    const vr r4 = vload_row(rows + 32), r5 = vload_row(rows + 40), r6 = vload_row(rows + 48), r7 = vload_row(rows + 56);
    const vr a = SUMS1(r0, r1), b = SUMS1(r2, r3), c = SUMS1(r4, r5), d = SUMS1(r6, r7);
    const vr ab = SUMS2(a, b), cd = SUMS2(c, d);
    const vr s = SUMS3(ab, cd);
    memcpy(out, &s, sizeof s);
}
#undef SUMS1
#undef SUMS2
#undef SUMS3
#endif
/* v as one row of RW floats at out: VL = 16 folded (lane i + lane i + 8), else as it is. */
ALWAYS_INLINE void fold_store(float *out, vf v) {
#if VL == 16
    vr lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    lo += hi;
    memcpy(out, &lo, sizeof lo);
#else
    memcpy(out, &v, sizeof v);
#endif
}

/* out[o, 0:T] (row stride os) = sum_k w[o K + k] in[k, 0:T] (row stride is), o < O: a small GEMM over one
 * tile, two output rows and two vectors of tokens per step (4 accumulators: registers on AVX2 and NEON too). */
ALWAYS_INLINE void gemm_tile(const float *w, int64_t O, int64_t K, const float *in, int64_t is, float *out,
                             int64_t os) {
    for (int64_t t0 = 0; t0 < T; t0 += 2 * VL) {
        int64_t o = 0;
        for (; o + 2 <= O; o += 2) {
            vf a00 = vsplat(0.0f), a01 = a00, a10 = a00, a11 = a00;
            const float *w0 = w + o * K, *w1 = w0 + K;
            for (int64_t k = 0; k < K; k++) {
                const vf x0 = vload(in + k * is + t0), x1 = vload(in + k * is + t0 + VL);
                a00 += w0[k] * x0;
                a01 += w0[k] * x1;
                a10 += w1[k] * x0;
                a11 += w1[k] * x1;
            }
            vstore(out + o * os + t0, a00);
            vstore(out + o * os + t0 + VL, a01);
            vstore(out + (o + 1) * os + t0, a10);
            vstore(out + (o + 1) * os + t0 + VL, a11);
        }
        if (o < O) {
            vf a0 = vsplat(0.0f), a1 = a0;
            for (int64_t k = 0; k < K; k++) {
                a0 += w[o * K + k] * vload(in + k * is + t0);
                a1 += w[o * K + k] * vload(in + k * is + t0 + VL);
            }
            vstore(out + o * os + t0, a0);
            vstore(out + o * os + t0 + VL, a1);
        }
    }
}

/* x (HALO + i0 ..) and z (i0 ..) of one tile of the block from the input a: [x; z] = w_in a. A tail tile
 * (tn < T) reads a through a zero-padded copy: a's rows end at L. */
KERNEL static void tile_project_in(const MixerParams *p, const Workspace *w, int64_t b, int64_t blk0, int64_t i0,
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
KERNEL static void tile_project_out(const MixerParams *p, const Workspace *w, int64_t b, int64_t blk0, int64_t i0,
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
KERNEL static void conv_silu_row(const float *xrow, const float *w, float bias, int64_t Kc, int history, int64_t bn,
                                 float *u) {
    int64_t i = 0;
    for (; !history && i < bn && i < Kc - 1; i++) { /* the first Kc - 1 tokens read the zero padding */
        float acc = bias;
        for (int64_t k = 0; k < Kc; k++)
            if (i - (Kc - 1) + k >= 0) acc += w[k] * xrow[i - (Kc - 1) + k];
        u[i] = silu1(acc);
    }
    for (; i + VL <= bn; i += VL) { /* every tap in range: whole vectors */
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

KERNEL static void tile_phase1(const MixerParams *p, const Workspace *w, int64_t i0, float *xdbl) {
    const int64_t D = p->dim, N = p->dstate, R = p->dt_rank;
    const int64_t NP = padded_state(N);
    const float *u = w->u + i0;
    float *delta = w->delta + i0;
    /* A tail tile computes on the zeros conv_silu_row left past the block's end. */
    gemm_tile(p->w_x, R + 2 * N, D, u, S, xdbl, T); /* (R + 2N, T) = W_x x' */
    /* Delta = softplus(W_Delta dt_low + bias), (D, T). */
    for (int64_t d = 0; d < D; d++) {
        const float *wd = p->w_dt + d * R;
        for (int64_t i = 0; i < T; i += VL) {
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

ALWAYS_INLINE void scan_rows(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn,
                             const int NV) {
    const int64_t NP = (int64_t)NV * VL;
    enum { MV = MIXER_MAX_STATE / VL };
    vf h[MV], A2[MV];
    float abuf[MIXER_MAX_STATE] = {0};
    for (int64_t n = 0; n < N; n++) abuf[n] = r->A[n] * LOG2E; /* exp(Delta A) = 2^(Delta A log2 e) */
    for (int j = 0; j < NV; j++) {
        A2[j] = vload(abuf + j * VL);
        h[j] = vload(r->h + j * VL);
    }
    const float *u = r->u, *delta = r->delta, *z = r->z;
    float *out = r->out;
    const float skip = r->skip;
    float rows[T * RW] = {0}, ysum[T];
    for (int64_t i0 = 0; i0 < bn; i0 += T) {
        const int64_t tn = bn - i0 < T ? bn - i0 : T;
        for (int64_t i = 0; i < tn; i++) {
            const float dt = delta[i0 + i], dtu = dt * u[i0 + i];
            const float *Bi = Bt + (i0 + i) * NP, *Ci = Ct + (i0 + i) * NP;
            vf acc = vsplat(0.0f);
            for (int j = 0; j < NV; j++) {
                h[j] = vexp2(dt * A2[j]) * h[j] + dtu * vload(Bi + j * VL);
                acc += vload(Ci + j * VL) * h[j];
            }
            fold_store(rows + i * RW, acc);
        }
        for (int64_t i = 0; i < tn; i += RW) row_sums(rows + i * RW, ysum + i); /* rows past tn: unused */
        if (tn == T) {
            for (int64_t i = 0; i < T; i += VL) {
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
    for (int j = 0; j < NV; j++) vstore(r->h + j * VL, h[j]);
}

ALWAYS_INLINE void channel_scan(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                int64_t bn, const int NV) {
    const int64_t D = p->dim, L = p->length, NP = (int64_t)NV * VL;
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

KERNEL static void channel_scan_p16(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                    int64_t bn) {
    channel_scan(p, w, b, d, blk0, bn, 16 / VL);
}
KERNEL static void channel_scan_p32(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                    int64_t bn) {
    channel_scan(p, w, b, d, blk0, bn, 32 / VL);
}
KERNEL static void channel_scan_any(const MixerParams *p, const Workspace *w, int64_t b, int64_t d, int64_t blk0,
                                    int64_t bn) {
    channel_scan(p, w, b, d, blk0, bn, (int)(padded_state(p->dstate) / VL));
}

/* Delta = softplus?(delta + bias) of one channel over a block, read as one run of the row. */
KERNEL static void delta_row(const float *in, float bias, int softplus, int64_t bn, float *out) {
    int64_t i = 0;
    for (; i + VL <= bn; i += VL) {
        const vf x = vload(in + i) + bias;
        vstore(out + i, softplus ? vsoftplus(x) : x);
    }
    for (; i < bn; i++) out[i] = softplus ? softplus1(in[i] + bias) : in[i] + bias;
}

/* B_t, C_t of tokens i0 .. i0 + tn - 1 of the block, (N, L) rows -> token-major (T, NP), zero padded. */
KERNEL static void transpose_bc(const float *Bm, const float *Cm, int64_t N, int64_t L, int64_t tn, int64_t NP,
                                float *Bt, float *Ct) {
    for (int64_t i = 0; i < T; i++)
        for (int64_t n = 0; n < NP; n++) {
            const int in = i < tn && n < N;
            Bt[i * NP + n] = in ? Bm[n * L + i] : 0.0f;
            Ct[i * NP + n] = in ? Cm[n * L + i] : 0.0f;
        }
}

KERNEL static void scan_row_p16(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn) {
    scan_rows(r, Bt, Ct, N, bn, 16 / VL);
}
KERNEL static void scan_row_p32(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn) {
    scan_rows(r, Bt, Ct, N, bn, 32 / VL);
}
KERNEL static void scan_row_any(const ChannelRows *r, const float *Bt, const float *Ct, int64_t N, int64_t bn) {
    scan_rows(r, Bt, Ct, N, bn, (int)(padded_state(N) / VL));
}

KERNEL static void layernorm_tile(const float *x, const float *w, const float *b, float *out, int64_t C,
                                  int64_t L, int64_t l0, float eps) {
    /* Two passes over a (C, T) tile that stays in L1: the mean, then the variance about it (as torch). */
    vf mean[T / VL], rstd[T / VL];
    for (int v = 0; v < T / VL; v++) mean[v] = rstd[v] = vsplat(0.0f);
    for (int64_t c = 0; c < C; c++)
        for (int v = 0; v < T / VL; v++) mean[v] += vload(x + c * L + l0 + v * VL);
    for (int v = 0; v < T / VL; v++) mean[v] *= 1.0f / (float)C;
    for (int64_t c = 0; c < C; c++)
        for (int v = 0; v < T / VL; v++) {
            const vf dx = vload(x + c * L + l0 + v * VL) - mean[v];
            rstd[v] += dx * dx;
        }
    for (int v = 0; v < T / VL; v++) {
        float tmp[VL];
        vstore(tmp, rstd[v] * (1.0f / (float)C) + eps);
        for (int i = 0; i < VL; i++) tmp[i] = 1.0f / sqrtf(tmp[i]);
        rstd[v] = vload(tmp);
    }
    for (int64_t c = 0; c < C; c++)
        for (int v = 0; v < T / VL; v++) {
            const vf dx = vload(x + c * L + l0 + v * VL) - mean[v];
            vstore(out + c * L + l0 + v * VL, dx * rstd[v] * w[c] + b[c]);
        }
}

/* ---------------------------------------------------------------- drivers: the block loops */

static int forward(const MixerParams *p, const int threads) {
    const Workspace w = carve(p);
    const int64_t D = p->dim, L = p->length, NP = padded_state(p->dstate);
    void (*scan)(const MixerParams *, const Workspace *, int64_t, int64_t, int64_t, int64_t) =
        NP == 16 ? channel_scan_p16 : NP == 32 ? channel_scan_p32 : channel_scan_any;
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

static int scan_forward(const ChannelScanParams *p, const int threads) {
    const int64_t D = p->dim, N = p->dstate, L = p->length, NP = padded_state(N);
    float *delta_ws = p->workspace, *Bt = delta_ws + D * S, *Ct = Bt + S * NP, *hs = Ct + S * NP;
    void (*scan)(const ChannelRows *, const float *, const float *, int64_t, int64_t) =
        NP == 16 ? scan_row_p16 : NP == 32 ? scan_row_p32 : scan_row_any;
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

static void layernorm(const float *x, const float *w, const float *b, float *out, int64_t batch, int64_t C,
                      int64_t L, float eps, const int threads) {
    const int64_t full = L / T * T;
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
}

#undef RW
#undef SHUF
#undef LOG2E
#undef vf
#undef vi
#undef vr
#undef vri
#undef vsplat
#undef vload
#undef vstore
#undef vmax
#undef vselect
#undef vexp2
#undef vexp
#undef vsigmoid
#undef vsoftplus
#undef vload_row
#undef row_sums
#undef fold_store
#undef gemm_tile
#undef tile_project_in
#undef tile_project_out
#undef conv_silu_row
#undef tile_phase1
#undef scan_rows
#undef channel_scan
#undef channel_scan_p16
#undef channel_scan_p32
#undef channel_scan_any
#undef delta_row
#undef transpose_bc
#undef scan_row_p16
#undef scan_row_p32
#undef scan_row_any
#undef layernorm_tile
#undef forward
#undef scan_forward
#undef layernorm
