/* Self-test of models/csrc/selective_scan_cpu.c on deterministic inputs, for the aarch64 cross-build under qemu.
 *
 * Calls the kernel only through its public params-struct API (selective_scan_cpu.h), so it keeps working when
 * the kernel's internals change (vectorisation, fused mixers). Forward for one and four directions, checked here
 * against a plain double-precision loop over the recurrence
 *     h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t,   y_t = <C_t, h_t> + D x_t,   out = (sum_k y) SiLU(z)
 * and the backward's gradients; everything is written or compared as records (dump.h) against another build.
 * Shapes: B batch, D channels, N state (padded to NP lanes), L = H * W tokens, K directions, G groups.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "selective_scan_cpu.h"

enum { B = 2, D = 6, N = 5, HH = 9, WW = 15, L = HH * WW };

static float *randn(Lcg *g, size_t n, float lo, float hi) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; ++i) p[i] = lcg_uniform(g, lo, hi);
    return p;
}

/* Row-major token index of sequence position t of direction k (0 row-major, 1 column-major, 2, 3 reversed). */
static int64_t token(int k, int64_t t) {
    int64_t p = k >= 2 ? L - 1 - t : t;
    if (!(k & 1)) return p;
    return (p % HH) * WW + p / HH;
}

static void reference(int K, int G, int64_t NP, const float *u, const float *delta, const float *A, const float *Bm,
                      const float *Cm, const float *Dskip, const float *z, const float *bias, double *out) {
    const int KD = K * D;
    double *ysum = calloc((size_t)B * D * L, sizeof(double));
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < KD; ++c) {
            const int k = c / D, d = c % D, g = c / (KD / G);
            double h[N] = {0};
            for (int64_t t = 0; t < L; ++t) {
                const int64_t tok = token(k, t);
                double dt = (double)delta[((size_t)b * KD + c) * L + tok] + bias[c];
                dt = dt > 20 ? dt : log1p(exp(dt)); /* softplus */
                const double x = u[((size_t)b * D + d) * L + tok];
                const float *Bt = Bm + (((size_t)b * G + g) * L + tok) * NP, *Ct = Cm + (((size_t)b * G + g) * L + tok) * NP;
                double y = Dskip[c] * x;
                for (int n = 0; n < N; ++n) {
                    h[n] = exp(dt * A[c * N + n]) * h[n] + dt * Bt[n] * x;
                    y += Ct[n] * h[n];
                }
                ysum[((size_t)b * D + d) * L + tok] += y;
            }
        }
    for (size_t i = 0; i < (size_t)B * D * L; ++i) out[i] = ysum[i] * z[i] / (1.0 + exp(-(double)z[i]));
    free(ysum);
}

static void run_case(Dump *d, int K, int G) {
    const int KD = K * D;
    const int64_t NP = selective_scan_lanes() * ((N + selective_scan_lanes() - 1) / selective_scan_lanes());
    const int64_t Lc = (L + selective_scan_chunk() - 1) / selective_scan_chunk();
    Lcg g = {(uint32_t)(100 + K)};
    float *u = randn(&g, (size_t)B * D * L, -1, 1), *z = randn(&g, (size_t)B * D * L, -2, 2);
    float *delta = randn(&g, (size_t)B * KD * L, -3, 1), *A = randn(&g, (size_t)KD * N, -2, -0.1f);
    float *Bm = calloc((size_t)B * G * L * NP, sizeof(float)), *Cm = calloc((size_t)B * G * L * NP, sizeof(float));
    for (size_t i = 0; i < (size_t)B * G * L; ++i)
        for (int n = 0; n < N; ++n) { /* padding lanes stay 0, as the header requires */
            Bm[i * NP + n] = lcg_uniform(&g, -1, 1);
            Cm[i * NP + n] = lcg_uniform(&g, -1, 1);
        }
    float *Dskip = randn(&g, KD, -1, 1), *bias = randn(&g, KD, -0.5f, 0.5f);
    float *out = calloc((size_t)B * D * L, sizeof(float)), *pre = calloc((size_t)B * D * L, sizeof(float));
    float *ckpt = calloc((size_t)B * KD * Lc * NP, sizeof(float));

    ScanParams p = {0};
    p.batch = B, p.dim = D, p.dstate = N, p.length = L, p.directions = K, p.height = HH, p.width = WW, p.groups = G;
    p.delta_softplus = 1, p.nthreads = 2;
    p.x_batch_stride = (int64_t)D * L, p.x_dim_stride = L;
    p.delta_batch_stride = (int64_t)KD * L, p.delta_dim_stride = L;
    p.bc_batch_stride = (int64_t)G * L * NP, p.bc_group_stride = L * NP, p.bc_token_stride = NP;
    p.u = u, p.delta = delta, p.A = A, p.Bm = Bm, p.Cm = Cm, p.Dskip = Dskip, p.z = z, p.delta_bias = bias;
    p.out = out, p.y_pregate = pre, p.checkpoints = ckpt;
    char name[48];
    snprintf(name, sizeof name, "fwd K=%d", K);
    dump_expect(d, selective_scan_fwd(&p) == SCAN_OK, name);

    double *ref = malloc(sizeof(double) * B * D * L);
    reference(K, G, NP, u, delta, A, Bm, Cm, Dskip, z, bias, ref);
    double worst = 0;
    for (size_t i = 0; i < (size_t)B * D * L; ++i) {
        double e = fabs(out[i] - ref[i]) / (1e-3 + fabs(ref[i]));
        if (!(e <= worst)) worst = e;
    }
    printf("%s: worst relative error against the double-precision reference %.3g\n", name, worst);
    dump_expect(d, worst < 1e-4, "forward matches the double-precision reference (rel 1e-4)");
    dump_record(d, name, DUMP_F32, out, (int64_t)B * D * L, 1e-5, 1e-4);
    snprintf(name, sizeof name, "fwd K=%d y_pregate", K);
    dump_record(d, name, DUMP_F32, pre, (int64_t)B * D * L, 1e-5, 1e-4);

    /* Backward from a deterministic upstream gradient. */
    float *dout = randn(&g, (size_t)B * D * L, -1, 1);
    float *du = calloc((size_t)B * D * L, 4), *dz = calloc((size_t)B * D * L, 4), *ddelta = calloc((size_t)B * KD * L, 4);
    float *dB = calloc((size_t)B * G * L * NP, 4), *dC = calloc((size_t)B * G * L * NP, 4);
    double *dA = calloc((size_t)B * KD * N, 8), *dD = calloc((size_t)B * KD, 8), *dbias = calloc((size_t)B * KD, 8);
    ScanGrads gr = {dout, du, ddelta, dB, dC, dz, dA, dD, dbias};
    snprintf(name, sizeof name, "bwd K=%d", K);
    dump_expect(d, selective_scan_bwd(&p, &gr) == SCAN_OK, name);
    const struct { const char *what; int kind; const void *data; int64_t n; } grads[] = {
        {"du", DUMP_F32, du, (int64_t)B * D * L},         {"dz", DUMP_F32, dz, (int64_t)B * D * L},
        {"ddelta", DUMP_F32, ddelta, (int64_t)B * KD * L}, {"dB", DUMP_F32, dB, (int64_t)B * G * L * NP},
        {"dC", DUMP_F32, dC, (int64_t)B * G * L * NP},     {"dA_part", DUMP_F64, dA, (int64_t)B * KD * N},
        {"dD_part", DUMP_F64, dD, (int64_t)B * KD},        {"dbias_part", DUMP_F64, dbias, (int64_t)B * KD},
    };
    for (size_t i = 0; i < sizeof grads / sizeof grads[0]; ++i) {
        snprintf(name, sizeof name, "bwd K=%d %s", K, grads[i].what);
        dump_record(d, name, grads[i].kind, grads[i].data, grads[i].n, 1e-4, 1e-3);
    }
    void *all[] = {u, z, delta, A, Bm, Cm, Dskip, bias, out, pre, ckpt, ref, dout, du, dz, ddelta, dB, dC, dA, dD, dbias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) free(all[i]);
}

int main(int argc, char **argv) {
    Dump d;
    int rc = dump_open(&d, argc, argv);
    if (rc) return rc;
    printf("scan self-test: abi %d, chunk %d, lanes %d\n", selective_scan_abi_version(), selective_scan_chunk(),
           selective_scan_lanes());
    run_case(&d, 1, 1);
    run_case(&d, 4, 4);
    return dump_close(&d, "scan");
}
