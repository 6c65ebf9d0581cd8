/* Self-test of models/csrc/mixer_cpu.c (the fused mixer core for CPU inference) for the aarch64 cross-build.
 *
 * Through its public API only (mixer_cpu.h): the channel-major scan (mixer_scan_forward, what the native ONNX
 * Runtime kernel runs), the whole fused mixer with in-kernel projections (mixer_forward with w_in and w_out) and
 * the channel LayerNorm, each checked here against a plain double-precision loop and written or compared as
 * records (dump.h) against another build. L is longer than one block (MIXER_BLOCK), so the state carried
 * between blocks and the conv's history across a block edge are exercised.
 * Shapes: B batch, D channels, N state, R dt_rank, Kc conv taps, L tokens, Ci / Co projection sizes.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "mixer_cpu.h"

enum { B = 2, D = 6, R = 2, KC = 4, CI = 5, CO = 4, L = MIXER_BLOCK + 301 };

static float *uniform(Lcg *g, size_t n, float lo, float hi) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; ++i) p[i] = lcg_uniform(g, lo, hi);
    return p;
}

static double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }
static double silu(double x) { return x / (1.0 + exp(-x)); }

/* One channel's recurrence over L tokens: y_t = <C_t, h_t> + skip x_t, gated by SiLU(z_t). */
static void scan_channel(int64_t N, const double *x, const double *dt, const double *A, const double *Bm,
                         const double *Cm, double skip, const double *z, double *out) {
    double h[MIXER_MAX_STATE] = {0};
    for (int64_t t = 0; t < L; ++t) {
        double y = skip * x[t];
        for (int64_t n = 0; n < N; ++n) {
            h[n] = exp(dt[t] * A[n]) * h[n] + dt[t] * Bm[n * L + t] * x[t];
            y += Cm[n * L + t] * h[n];
        }
        out[t] = z ? y * silu(z[t]) : y;
    }
}

/* max |got - want| / max |want|: the error in units of the output's size, as mambalitesr.testing judges it
 * (values near zero are judged against the whole output, where accumulated float32 error lives). */
static double scaled_error(const float *got, const double *want, size_t n) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; ++i) {
        const double e = fabs(got[i] - want[i]);
        if (!(e <= worst)) worst = e;
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    return worst / (scale > 0 ? scale : 1);
}

static float *workspace(int64_t floats) { return aligned_alloc(64, (size_t)((floats * 4 + 63) / 64 * 64)); }

static void check(Dump *d, const char *name, const float *got, const double *want, size_t n) {
    const double worst = scaled_error(got, want, n);
    printf("%s: error against the double-precision reference %.3g of max|reference|\n", name, worst);
    dump_expect(d, worst < 1e-5, name); /* the float32 row of mambalitesr.testing.TOLERANCES */
    dump_record(d, name, DUMP_F32, got, (int64_t)n, 1e-5, 1e-4);
}

static void scan_case(Dump *d, int64_t N) {
    Lcg g = {(uint32_t)(7 + N)};
    const size_t xs = (size_t)B * D * L, bc = (size_t)B * N * L;
    float *u = uniform(&g, xs, -1, 1), *delta = uniform(&g, xs, -3, 1), *z = uniform(&g, xs, -2, 2);
    float *A = uniform(&g, (size_t)D * N, -2, -0.1f), *Bm = uniform(&g, bc, -1, 1), *Cm = uniform(&g, bc, -1, 1);
    float *skip = uniform(&g, D, -1, 1), *bias = uniform(&g, D, -0.5f, 0.5f), *out = calloc(xs, sizeof(float));
    const int64_t floats = mixer_scan_workspace_floats(D, N);
    float *ws = workspace(floats);
    ChannelScanParams p = {.batch = B, .dim = D, .dstate = N, .length = L, .delta_softplus = 1, .nthreads = 2,
                           .workspace_floats = floats, .u = u, .delta = delta, .A = A, .Bm = Bm, .Cm = Cm,
                           .Dskip = skip, .z = z, .delta_bias = bias, .out = out, .workspace = ws};
    char name[48];
    snprintf(name, sizeof name, "channel scan N=%lld", (long long)N);
    dump_expect(d, mixer_scan_forward(&p) == MIXER_OK, name);

    double *x = malloc(sizeof(double) * L), *dt = malloc(sizeof(double) * L), *zz = malloc(sizeof(double) * L);
    double *a = malloc(sizeof(double) * N), *bb = malloc(sizeof(double) * N * L), *cc = malloc(sizeof(double) * N * L);
    double *ref = malloc(sizeof(double) * xs);
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t i = 0; i < N * L; ++i) bb[i] = Bm[b * N * L + i], cc[i] = Cm[b * N * L + i];
        for (int64_t c = 0; c < D; ++c) {
            const int64_t row = (b * D + c) * L;
            for (int64_t t = 0; t < L; ++t)
                x[t] = u[row + t], dt[t] = softplus((double)delta[row + t] + bias[c]), zz[t] = z[row + t];
            for (int64_t n = 0; n < N; ++n) a[n] = A[c * N + n];
            scan_channel(N, x, dt, a, bb, cc, skip[c], zz, ref + row);
        }
    }
    check(d, name, out, ref, xs);
    void *all[] = {u, delta, z, A, Bm, Cm, skip, bias, out, ws, x, dt, zz, a, bb, cc, ref};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) free(all[i]);
}

/* The fused mixer with W_in (2D, Ci) and W_out (Co, D) applied in the kernel. */
static void mixer_case(Dump *d) {
    enum { N = 5 };
    Lcg g = {99u};
    float *in = uniform(&g, (size_t)B * CI * L, -1, 1), *w_in = uniform(&g, 2 * D * CI, -0.5f, 0.5f);
    float *w_out = uniform(&g, CO * D, -0.5f, 0.5f), *conv_w = uniform(&g, D * KC, -0.5f, 0.5f);
    float *conv_b = uniform(&g, D, -0.2f, 0.2f), *w_x = uniform(&g, (R + 2 * N) * D, -0.5f, 0.5f);
    float *w_dt = uniform(&g, D * R, -0.5f, 0.5f), *dt_bias = uniform(&g, D, -3, -1);
    float *A = uniform(&g, D * N, -2, -0.1f), *skip = uniform(&g, D, -1, 1);
    float *out = calloc((size_t)B * CO * L, sizeof(float));
    const int64_t floats = mixer_workspace_floats(D, N, R, CI, CO, 2);
    float *ws = workspace(floats);
    MixerParams p = {.batch = B, .dim = D, .dstate = N, .dt_rank = R, .length = L, .d_conv = KC, .in_dim = CI,
                     .out_dim = CO, .nthreads = 2, .workspace_floats = floats, .xz = in, .w_in = w_in,
                     .w_out = w_out, .conv_w = conv_w, .conv_b = conv_b, .w_x = w_x, .w_dt = w_dt,
                     .dt_bias = dt_bias, .A = A, .Dskip = skip, .out = out, .workspace = ws};
    dump_expect(d, mixer_forward(&p) == MIXER_OK, "fused mixer");

    double *xz = malloc(sizeof(double) * 2 * D * L), *xc = malloc(sizeof(double) * D * L);
    double *proj = malloc(sizeof(double) * (R + 2 * N) * L), *dt = malloc(sizeof(double) * L);
    double *y = malloc(sizeof(double) * D * L), *ref = malloc(sizeof(double) * B * CO * L), a[N];
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t r = 0; r < 2 * D; ++r) /* xz = W_in a */
            for (int64_t t = 0; t < L; ++t) {
                double s = 0;
                for (int64_t c = 0; c < CI; ++c) s += (double)w_in[r * CI + c] * in[(b * CI + c) * L + t];
                xz[r * L + t] = s;
            }
        for (int64_t c = 0; c < D; ++c) /* x' = SiLU(causal conv) */
            for (int64_t t = 0; t < L; ++t) {
                double s = conv_b[c];
                for (int64_t k = 0; k < KC; ++k) {
                    const int64_t src = t - KC + 1 + k;
                    if (src >= 0) s += (double)conv_w[c * KC + k] * xz[c * L + src];
                }
                xc[c * L + t] = silu(s);
            }
        for (int64_t r = 0; r < R + 2 * N; ++r) /* (dt_low, B_t, C_t) = W_x x' */
            for (int64_t t = 0; t < L; ++t) {
                double s = 0;
                for (int64_t c = 0; c < D; ++c) s += (double)w_x[r * D + c] * xc[c * L + t];
                proj[r * L + t] = s;
            }
        for (int64_t c = 0; c < D; ++c) {
            for (int64_t t = 0; t < L; ++t) {
                double s = dt_bias[c];
                for (int64_t r = 0; r < R; ++r) s += (double)w_dt[c * R + r] * proj[r * L + t];
                dt[t] = softplus(s);
            }
            for (int64_t n = 0; n < N; ++n) a[n] = A[c * N + n];
            scan_channel(N, xc + c * L, dt, a, proj + R * L, proj + (R + N) * L, skip[c], xz + (D + c) * L, y + c * L);
        }
        for (int64_t o = 0; o < CO; ++o) /* out = W_out y */
            for (int64_t t = 0; t < L; ++t) {
                double s = 0;
                for (int64_t c = 0; c < D; ++c) s += (double)w_out[o * D + c] * y[c * L + t];
                ref[(b * CO + o) * L + t] = s;
            }
    }
    check(d, "fused mixer (w_in, w_out)", out, ref, (size_t)B * CO * L);
    void *all[] = {in, w_in, w_out, conv_w, conv_b, w_x, w_dt, dt_bias, A, skip, out, ws, xz, xc, proj, dt, y, ref};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) free(all[i]);
}

static void layernorm_case(Dump *d) {
    enum { C = 7 };
    Lcg g = {5u};
    float *x = uniform(&g, (size_t)B * C * L, -2, 3), *w = uniform(&g, C, 0.5f, 1.5f), *bias = uniform(&g, C, -1, 1);
    float *out = calloc((size_t)B * C * L, sizeof(float));
    double *ref = malloc(sizeof(double) * B * C * L);
    dump_expect(d, channel_layernorm(x, w, bias, out, B, C, L, 1e-5f, 2) == MIXER_OK, "channel layernorm");
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t) {
            double mean = 0, var = 0;
            for (int64_t c = 0; c < C; ++c) mean += x[(b * C + c) * L + t];
            mean /= C;
            for (int64_t c = 0; c < C; ++c) var += pow(x[(b * C + c) * L + t] - mean, 2);
            const double rstd = 1.0 / sqrt(var / C + 1e-5);
            for (int64_t c = 0; c < C; ++c)
                ref[(b * C + c) * L + t] = (x[(b * C + c) * L + t] - mean) * rstd * w[c] + bias[c];
        }
    check(d, "channel layernorm", out, ref, (size_t)B * C * L);
    free(x), free(w), free(bias), free(out), free(ref);
}

int main(int argc, char **argv) {
    Dump d;
    int rc = dump_open(&d, argc, argv);
    if (rc) return rc;
    printf("mixer self-test: abi %d, block %d, tile %d, lanes %d\n", mixer_abi_version(), MIXER_BLOCK, MIXER_TILE,
           MIXER_LANES);
    scan_case(&d, 5);
    scan_case(&d, 16);
    scan_case(&d, 33);
    mixer_case(&d);
    layernorm_case(&d);
    return dump_close(&d, "mixer");
}
