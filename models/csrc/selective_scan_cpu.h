/* Native CPU selective scan: forward and backward, plain C11 + OpenMP.
 *
 * Glossary (code name -> paper symbol; shape letters):
 *   B batch, D scan channels (d_inner), N state size, L tokens (= H * W),
 *   K scan directions (1, or 4 for the cross-scan), G groups sharing B_t / C_t,
 *   T chunk length (SCAN_CHUNK), Lc = ceil(L / T) chunks.
 *   u -> x_t, delta -> Delta_t, A -> A, Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate, h -> h_t.
 *
 *   h_t = exp(Delta_t * A) * h_{t-1} + Delta_t * B_t * x_t,    h_{-1} = 0
 *   y_t = <C_t, h_t> + D * x_t;  out = (sum over directions of y) * SiLU(z)
 *
 * Layouts (fp32; the state axis N and the token axis L have stride 1 where named):
 *   u, z, out, y_pregate, dout, du, dz   (B, D, L)    strides x_batch_stride, x_dim_stride, 1
 *   delta, ddelta                        (B, K*D, L)  strides delta_batch_stride, delta_dim_stride, 1
 *   A, dA_part[b]                        (K*D, N)     contiguous
 *   Bm, Cm, dB, dC                       (B, G, L, NP) contiguous, strides bc_batch_stride, bc_group_stride,
 *                                        bc_token_stride = NP, 1: token-major, so one token's state
 *                                        values are contiguous; NP = N rounded up to a multiple of
 *                                        SCAN_LANES and the padding lanes of Bm and Cm are zero
 *   Dskip, delta_bias                    (K*D,) or NULL
 *   checkpoints                          (B, K*D, Lc, NP) the state entering each chunk
 *   dA_part (B, K*D, N), dD_part and dbias_part (B, K*D): per-batch partial sums in
 *   double (fp64), the caller sums them over B in double and rounds to fp32 once.
 *
 * All inputs are in row-major token order; direction k reads them through index
 * arithmetic (see scan_directions.py): 0 row-major, 1 column-major, 2 and 3 reversed.
 * Channel c = k * D + d of K*D uses group c / (K*D / G).
 */
#ifndef MAMBALITESR_SELECTIVE_SCAN_CPU_H
#define MAMBALITESR_SELECTIVE_SCAN_CPU_H

#include <stdint.h>

#define SCAN_ABI_VERSION 3 /* 3: dA_part, dD_part, dbias_part are double */
#define SCAN_CHUNK 64
#define SCAN_MAX_STATE 256
/* Floats per state vector (NP is a multiple of it): the width of the target's vector registers. 8 on x86-64 (one
 * AVX2 ymm; the SSE4.2 baseline clone runs them as pairs), 4 elsewhere (NEON's q registers on aarch64): a GCC vector
 * wider than the registers has no register mode and would live on the stack. */
#if defined(__x86_64__) || defined(__i386__)
#define SCAN_LANES 8
#else
#define SCAN_LANES 4
#endif

/* Status codes returned by the entry points. */
#define SCAN_OK 0
#define SCAN_BAD_ARGUMENT 1
#define SCAN_OUT_OF_MEMORY 2

typedef struct {
    int64_t batch, dim, dstate, length; /* B, D, N, L */
    int64_t directions, height, width;  /* K; H, W only read when K = 4 */
    int64_t groups;                     /* G, divides K*D; G = K when K = 4 */
    int64_t delta_softplus;             /* nonzero: Delta = softplus(delta + delta_bias) */
    int64_t nthreads;                   /* OpenMP threads; <= 0 uses the OpenMP default */
    int64_t x_batch_stride, x_dim_stride;
    int64_t delta_batch_stride, delta_dim_stride;
    int64_t bc_batch_stride, bc_group_stride, bc_token_stride;

    const float *u, *delta, *A, *Bm, *Cm;
    const float *Dskip, *z, *delta_bias; /* optional, NULL when absent */

    float *out;         /* forward output (B, D, L) */
    float *y_pregate;   /* optional: the sum before the z gate, kept for the backward */
    float *checkpoints; /* optional: chunk-entry states, required by the backward */
} ScanParams;

typedef struct {
    const float *dout; /* (B, D, L) gradient of out */
    float *du, *ddelta, *dB, *dC, *dz;
    double *dA_part, *dD_part, *dbias_part; /* double: see the layout notes above */
} ScanGrads;

int selective_scan_abi_version(void);
int selective_scan_chunk(void);
int selective_scan_lanes(void);

/* out (and y_pregate / checkpoints if given) from the inputs. */
int selective_scan_fwd(const ScanParams *p);

/* Gradients from p (with y_pregate when z is given, and checkpoints from the forward). */
int selective_scan_bwd(const ScanParams *p, const ScanGrads *g);

#endif
