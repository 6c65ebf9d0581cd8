/* Fused Mamba mixer core for CPU inference: causal depthwise conv1d + SiLU, x_proj, dt_proj + softplus,
 * selective scan, skip term and gate, in the channel-major layout of its neighbours (no transposes).
 *
 * Glossary (code name -> paper symbol; shape letters):
 *   B batch, D scan channels (d_inner), N state size, R dt_rank, L tokens (= H * W, row-major),
 *   Kc d_conv (causal conv kernel), S tokens per block (MIXER_BLOCK), T tokens per tile (MIXER_TILE).
 *   xz -> (x, z) = W_in u, conv_w / conv_b -> conv1d, w_x -> W_x (R + 2N, D), w_dt -> W_Delta (D, R),
 *   dt_bias -> Delta bias, A -> A (D, N) = -exp(A_log), Dskip -> D, h -> h_t.
 *
 *   x'_t  = SiLU(conv_b + sum_k conv_w[k] x_{t - Kc + 1 + k})          (x_s = 0 for s < 0)
 *   (dt_low, B_t, C_t) = W_x x'_t;   Delta_t = softplus(W_Delta dt_low + dt_bias)
 *   h_t   = exp(Delta_t A) h_{t-1} + Delta_t B_t x'_t,   h_{-1} = 0
 *   out_t = (<C_t, h_t> + D x'_t) * SiLU(z_t)
 *
 * Layouts (fp32, contiguous, channel-major: the token axis has stride 1):
 *   xz   (B, 2D, L): rows 0..D-1 are x, rows D..2D-1 are z (what W_in (2D, C) @ tokens (C, L) writes)
 *   out  (B, D, L):  what W_out (C, D) @ out (D, L) reads
 *   With w_in / w_out the kernel also runs those projections block by block (for a low-rank W_in = U V:
 *   xz = V u from torch, w_in = U), so the (2D, L) and (D, L) intermediates never leave L2.
 *   conv_w (D, Kc), conv_b (D), w_x (R + 2N, D), w_dt (D, R), dt_bias (D), A (D, N), Dskip (D)
 *
 * Work: L is cut into blocks of S tokens. Per block, phase 1 computes x' (threads over channels), then
 * Delta, B_t and C_t (threads over tiles of T tokens) into a workspace that stays in L2; phase 2 (threads over channels)
 * runs the recurrence over the block with each channel's state carried between blocks. The workspace is
 * allocated by the caller (mixer_workspace_floats) and reused across calls, so no call touches fresh pages.
 * The PyTorch reference twin is MambaMixer.forward with any scan backend; tests/test_mixer_native.py.
 */
#ifndef MAMBALITESR_MIXER_CPU_H
#define MAMBALITESR_MIXER_CPU_H

#include <stdint.h>

#define MIXER_ABI_VERSION 4 /* 2: in-kernel projections w_in / w_out; 3: mixer_scan_forward; 4: widths */
#define MIXER_TILE 64    /* T */
#define MIXER_BLOCK 1024 /* S, a multiple of T */
#define MIXER_LANES 16   /* N is padded to a multiple of it inside the kernel (a whole vector at every width) */
#define MIXER_MAX_STATE 64
#define MIXER_MAX_CONV 8
#define MIXER_MAX_RANK 64
#define MIXER_HALO 16 /* columns of x kept before a block: the conv's history (>= Kc - 1), whole vectors */

#define MIXER_OK 0
#define MIXER_BAD_ARGUMENT 1
#define MIXER_SMALL_WORKSPACE 2

typedef struct {
    int64_t batch, dim, dstate, dt_rank, length, d_conv; /* B, D, N, R, L, Kc */
    int64_t in_dim;   /* Ci: with w_in, xz holds the input a (B, Ci, L) and x, z = w_in a; else 0 */
    int64_t out_dim;  /* Co: with w_out, out = w_out (gated y) is (B, Co, L); else 0 and out is (B, D, L) */
    int64_t nthreads;                                    /* OpenMP threads; <= 0: the OpenMP default */
    int64_t workspace_floats;                            /* size of workspace, >= mixer_workspace_floats() */

    const float *xz;                           /* (B, 2D, L), or a (B, Ci, L) with w_in */
    const float *w_in, *w_out;                 /* optional (2D, Ci), (Co, D): a low-rank factor or a full W */
    const float *conv_w, *conv_b;              /* (D, Kc), (D) */
    const float *w_x, *w_dt, *dt_bias;         /* (R + 2N, D), (D, R), (D) */
    const float *A, *Dskip;                    /* (D, N), (D) */
    float *out;                                /* (B, D, L) */
    float *workspace;                          /* caller-owned scratch, 64-byte aligned */
} MixerParams;

int mixer_abi_version(void);
/* Floats per vector the kernels use: 16 (AVX-512), 8 (AVX2 + FMA) or 4 (SSE4.2, NEON); by default the widest whose
 * registers this CPU has, else what MAMBALITESR_MIXER_WIDTH or mixer_use_width named. */
int mixer_vector_width(void);
/* Use width 4, 8 or 16 from now on (0: the CPU's widest); returns the width, or 0 (nothing changed) when this
 * build has no such width (x86-64 builds have all three: a width wider than the CPU's registers runs correctly
 * but slowly, for tests). */
int mixer_use_width(int width);
/* Floats of workspace the call with these sizes needs (independent of L and B). */
int64_t mixer_workspace_floats(int64_t dim, int64_t dstate, int64_t dt_rank, int64_t in_dim, int64_t out_dim,
                               int64_t nthreads);
int mixer_forward(const MixerParams *p);
/* The selective scan alone (one direction) on channel-major rows, for callers that form its inputs
 * themselves (an ONNX Runtime SelectiveScan node): u, delta (raw), z, out (B, D, L); A (D, N); Bm, Cm (B, N, L);
 * Dskip, delta_bias (D) or NULL; z NULL: no gate. Same blocks and vectorised recurrence as mixer_forward. */
typedef struct {
    int64_t batch, dim, dstate, length; /* B, D, N, L */
    int64_t delta_softplus;             /* nonzero: Delta = softplus(delta + delta_bias) */
    int64_t nthreads, workspace_floats;
    const float *u, *delta, *A, *Bm, *Cm, *Dskip, *z, *delta_bias;
    float *out, *workspace;
} ChannelScanParams;
int64_t mixer_scan_workspace_floats(int64_t dim, int64_t dstate);
int mixer_scan_forward(const ChannelScanParams *p);

/* LayerNorm over channels of a channel-major (B, C, L) tensor: out = (x - mean) / sqrt(var + eps) * w + b. */
int channel_layernorm(const float *x, const float *w, const float *b, float *out, int64_t batch, int64_t channels,
                      int64_t length, float eps, int64_t nthreads);

#endif
