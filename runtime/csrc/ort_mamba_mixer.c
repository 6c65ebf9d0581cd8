/* ONNX Runtime kernel of the mambalitesr::MambaMixer node (the fused form: one node per one-direction mixer)
 * on the fused C mixer core, the same kernel the torch backend runs on the CPU.
 *
 * Glossary (code name -> paper symbol; shape letters):
 *   B batch, D scan channels (d_inner), N d_state, R dt_rank, Kc d_conv, H x W token grid, L = H * W,
 *   Ci / Co the node's input / output channels. a -> V u (a low-rank W_in's first factor applied) or u,
 *   w_in -> U (or the full W_in), conv_w / conv_b -> conv1d, w_x -> W_x, w_dt -> W_Delta, dt_bias -> its bias,
 *   A -> A = -exp(A_log), Dskip -> D, w_out -> V of a low-rank W_out (or the full W_out)
 *
 * The node contract is the one export/onnx_mixer_node.py writes:
 *   a (B, Ci, H, W), w_in (2D, Ci), conv_w (D, Kc), conv_b (D), w_x (R + 2N, D), w_dt (D, R), dt_bias (D),
 *   A (D, N), Dskip (D), w_out (Co, D) -> y (B, Co, H, W)
 *   y = w_out ((<C_t, h_t> + D x'_t) * SiLU(z_t)), x'_t = SiLU(causal conv1d of x), (x, z) = w_in a.
 *
 * Why a second node: the SelectiveScan graph leaves the causal depthwise conv1d (about 6 ms per mixer in ONNX
 * Runtime's grouped Conv at 320x180, a memory-bound pass that should take under 1), its SiLU, the R = 2 W_Delta
 * MatMul and the split of W_x's rows to standard operators, each a full pass over (D, L). mixer_forward
 * (models/csrc/mixer_cpu.c) does all of them block by block in cache. TensorRT has no plugin for this node: the
 * fused form is for ONNX Runtime on the CPU (export refuses to build an engine from it).
 */
#include <stdlib.h>

#include "ort_common.h"

#include "../../models/csrc/mixer_cpu.h"

#define OP "MambaMixer"
#define N_INPUTS 10

enum { IN_A_IN, IN_W_IN, IN_CONV_W, IN_CONV_B, IN_W_X, IN_W_DT, IN_DT_BIAS, IN_A, IN_DSKIP, IN_W_OUT };

typedef MlsrKernel MixerKernel; /* nothing beyond the common head: the weights' shapes say D, N, R, Kc */

static OrtStatus *ORT_API_CALL create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                             void **out) {
    (void)info;
    OrtStatus *status = NULL;
    *out = mlsr_kernel_new(sizeof(MixerKernel), op, api, OP, &status);
    return status;
}

/* The sizes the node's inputs imply, each checked against the contract and the C core's limits. */
typedef struct {
    int64_t B, Ci, H, W, D, N, R, Kc, Co;
} Sizes;

static OrtStatus *check_inputs(const OrtApi *api, const MlsrTensor *in, Sizes *s) {
    const MlsrTensor *a = &in[IN_A_IN];
    for (int i = 0; i < N_INPUTS; ++i)
        if (in[i].data == NULL) return mlsr_fail(api, OP ": input %d is missing (every input is required)", i);
    if (a->rank != 4) return mlsr_fail(api, OP ": a must be (B, Ci, H, W), got rank %zu", a->rank);
    if (in[IN_CONV_B].rank != 1 || in[IN_A].rank != 2 || in[IN_W_DT].rank != 2 || in[IN_CONV_W].rank != 2 ||
        in[IN_W_OUT].rank != 2)
        return mlsr_fail(api, OP ": conv_b must be (D,), and A, w_dt, conv_w, w_out matrices");
    *s = (Sizes){.B = a->dims[0], .Ci = a->dims[1], .H = a->dims[2], .W = a->dims[3], .D = in[IN_CONV_B].dims[0],
                 .N = in[IN_A].dims[1], .R = in[IN_W_DT].dims[1], .Kc = in[IN_CONV_W].dims[1],
                 .Co = in[IN_W_OUT].dims[0]};
    const int64_t D = s->D, N = s->N, R = s->R;
    if (N < 1 || N > MIXER_MAX_STATE) return mlsr_fail(api, OP ": d_state must be in 1..%d, got %lld", MIXER_MAX_STATE, (long long)N);
    if (R < 1 || R > MIXER_MAX_RANK) return mlsr_fail(api, OP ": dt_rank must be in 1..%d, got %lld", MIXER_MAX_RANK, (long long)R);
    if (s->Kc < 1 || s->Kc > MIXER_MAX_CONV) return mlsr_fail(api, OP ": d_conv must be in 1..%d, got %lld", MIXER_MAX_CONV, (long long)s->Kc);
    if (s->Ci < 1 || s->Co < 1) return mlsr_fail(api, OP ": a and w_out need at least one channel");
    const int64_t w_in[2] = {2 * D, s->Ci}, conv_w[2] = {D, s->Kc}, w_x[2] = {R + 2 * N, D}, w_dt[2] = {D, R},
                  A[2] = {D, N}, w_out[2] = {s->Co, D};
    if (!mlsr_same_dims(&in[IN_W_IN], 2, w_in))
        return mlsr_fail(api, OP ": w_in must be (2D, Ci) = (%lld, %lld)", (long long)(2 * D), (long long)s->Ci);
    if (!mlsr_same_dims(&in[IN_CONV_W], 2, conv_w) || !mlsr_same_dims(&in[IN_W_DT], 2, w_dt) ||
        !mlsr_same_dims(&in[IN_A], 2, A) || !mlsr_same_dims(&in[IN_W_OUT], 2, w_out))
        return mlsr_fail(api, OP ": conv_w, w_dt, A and w_out must be (D, Kc), (D, R), (D, N), (Co, D) with D = %lld",
                         (long long)D);
    if (!mlsr_same_dims(&in[IN_W_X], 2, w_x))
        return mlsr_fail(api, OP ": w_x must be (R + 2N, D) = (%lld, %lld)", (long long)(R + 2 * N), (long long)D);
    for (int i = IN_DT_BIAS; i <= IN_DSKIP; i += IN_DSKIP - IN_DT_BIAS)
        if (!mlsr_same_dims(&in[i], 1, &D)) return mlsr_fail(api, OP ": dt_bias and Dskip must be (D,) = (%lld,)", (long long)D);
    return NULL;
}

static OrtStatus *run_mixer(MixerKernel *k, const MlsrTensor *in, const Sizes *s, float *y) {
    const OrtApi *api = k->api;
    const int64_t floats = mixer_workspace_floats(s->D, s->N, s->R, s->Ci, s->Co, k->nthreads);
    TRY(mlsr_workspace_grow(api, &k->ws, (size_t)floats, OP));
    MixerParams p = {.batch = s->B, .dim = s->D, .dstate = s->N, .dt_rank = s->R, .length = s->H * s->W,
                     .d_conv = s->Kc, .in_dim = s->Ci, .out_dim = s->Co, .nthreads = k->nthreads,
                     .workspace_floats = (int64_t)k->ws.floats, .xz = in[IN_A_IN].data, .w_in = in[IN_W_IN].data,
                     .w_out = in[IN_W_OUT].data, .conv_w = in[IN_CONV_W].data, .conv_b = in[IN_CONV_B].data,
                     .w_x = in[IN_W_X].data, .w_dt = in[IN_W_DT].data, .dt_bias = in[IN_DT_BIAS].data,
                     .A = in[IN_A].data, .Dskip = in[IN_DSKIP].data, .out = y, .workspace = k->ws.data};
    const int status = mixer_forward(&p);
    return status == 0 ? NULL : mlsr_fail(api, OP ": the C mixer refused its arguments (status %d)", status);
}

static OrtStatus *ORT_API_CALL compute(void *kernel, OrtKernelContext *ctx) {
    MixerKernel *k = kernel;
    const OrtApi *api = k->api;
    MlsrTensor in[N_INPUTS];
    for (size_t i = 0; i < N_INPUTS; ++i) TRY(mlsr_input(api, ctx, i, OP, &in[i]));
    Sizes s = {0}; /* check_inputs fills it before any use; zeroed for the compiler, which cannot see that */
    TRY(check_inputs(api, in, &s));
    const int64_t out_dims[4] = {s.B, s.Co, s.H, s.W};
    OrtValue *y_value = NULL;
    TRY(api->KernelContext_GetOutput(ctx, 0, out_dims, 4, &y_value));
    void *y = NULL;
    TRY(api->GetTensorMutableData(y_value, &y));
    if (s.B * s.H * s.W == 0) return NULL;

    pthread_mutex_lock(&k->ws.lock);
    OrtStatus *failure = run_mixer(k, in, &s, y);
    pthread_mutex_unlock(&k->ws.lock);
    return failure;
}

OrtCustomOp *mlsr_mamba_mixer_op(int64_t nthreads) {
    return mlsr_new_op(OP, N_INPUTS, N_INPUTS, nthreads, create_kernel, compute, mlsr_kernel_destroy);
}
