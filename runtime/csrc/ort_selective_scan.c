/* ONNX Runtime kernel of the mambalitesr::SelectiveScan node (the plugin form's scan) on the native C scan.
 *
 * Glossary (code name -> paper symbol; shape letters):
 *   B batch, D scan channels, K directions, N d_state, H x W token grid, L = H * W, NP = N padded to SCAN_LANES
 *   u -> x_t, delta -> Delta_t (raw), A -> A, Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate
 *
 * The node contract is the one export/onnx_plugin_scan.py writes (and runtime/backends/ort_ops.py documents):
 *   u (B, D, H, W), delta (B, K*D, H, W), A (K*D, N), Bm / Cm (B, K, N, H, W), Dskip (K*D), z (B, D, H, W),
 *   delta_bias (K*D); attributes directions, d_state, delta_softplus -> y (B, D, H, W).
 *
 * K = 1 runs mixer_scan_forward (models/csrc/mixer_cpu.c), which reads the node's channel-major tensors in
 * place; K = 4 runs selective_scan_fwd (models/csrc/selective_scan_cpu.c) after reordering B_t / C_t
 * token-major, the layout that kernel vectorises over. Registered by ort_register.c.
 */
#include <stdlib.h>

#include "ort_common.h"

#include "../../models/csrc/mixer_cpu.h"
#include "../../models/csrc/selective_scan_cpu.h"

#define OP "SelectiveScan"
#define N_INPUTS 8

enum { IN_U, IN_DELTA, IN_A, IN_BM, IN_CM, IN_DSKIP, IN_Z, IN_DELTA_BIAS };

typedef struct {
    MlsrKernel base; /* first member: api, nthreads, the locked workspace */
    int64_t directions, dstate, delta_softplus;
} ScanKernel;

static OrtStatus *ORT_API_CALL create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                             void **out) {
    OrtStatus *status = NULL;
    ScanKernel *k = mlsr_kernel_new(sizeof *k, op, api, OP, &status);
    if (k == NULL) return status;
    status = api->KernelInfoGetAttribute_int64(info, "directions", &k->directions);
    if (status == NULL) status = api->KernelInfoGetAttribute_int64(info, "d_state", &k->dstate);
    if (status == NULL) status = api->KernelInfoGetAttribute_int64(info, "delta_softplus", &k->delta_softplus);
    if (status == NULL && k->directions != 1 && k->directions != 4)
        status = mlsr_fail(api, OP ": directions must be 1 or 4, got %lld", (long long)k->directions);
    if (status == NULL && (k->dstate < 1 || k->dstate > MIXER_MAX_STATE))
        status = mlsr_fail(api, OP ": d_state must be in 1..%d, got %lld", MIXER_MAX_STATE, (long long)k->dstate);
    if (status != NULL) {
        mlsr_kernel_destroy(k);
        return status;
    }
    *out = k;
    return NULL;
}

/* K = 4: B_t / C_t from (B, K, N, L) to the token-major (B, K, L, NP) that selective_scan_fwd reads. */
static void token_major(const float *src, float *dst, int64_t BK, int64_t N, int64_t L, int64_t NP) {
    for (int64_t g = 0; g < BK; ++g) {
        const float *s = src + g * N * L;
        float *d = dst + g * L * NP;
        for (int64_t l = 0; l < L; ++l) {
            for (int64_t n = 0; n < N; ++n) d[l * NP + n] = s[n * L + l];
            for (int64_t n = N; n < NP; ++n) d[l * NP + n] = 0.0f;
        }
    }
}

/* The scan itself, under the kernel's lock (it owns the workspace). */
static OrtStatus *run_scan(ScanKernel *k, const MlsrTensor *in, float *y, int64_t B, int64_t D, int64_t H,
                           int64_t W) {
    const OrtApi *api = k->base.api;
    const MlsrTensor *u = &in[IN_U];
    const int64_t L = H * W, K = k->directions, N = k->dstate, KD = K * D;
    int status;
    if (K == 1) {
        TRY(mlsr_workspace_grow(api, &k->base.ws, (size_t)mixer_scan_workspace_floats(D, N), OP));
        ChannelScanParams p = {.batch = B, .dim = D, .dstate = N, .length = L, .delta_softplus = k->delta_softplus,
                               .nthreads = k->base.nthreads, .workspace_floats = (int64_t)k->base.ws.floats,
                               .u = u->data, .delta = in[IN_DELTA].data, .A = in[IN_A].data, .Bm = in[IN_BM].data,
                               .Cm = in[IN_CM].data, .Dskip = in[IN_DSKIP].data, .z = in[IN_Z].data,
                               .delta_bias = in[IN_DELTA_BIAS].data, .out = y, .workspace = k->base.ws.data};
        status = mixer_scan_forward(&p);
    } else {
        const int64_t NP = (N + SCAN_LANES - 1) / SCAN_LANES * SCAN_LANES, per = B * K * L * NP;
        TRY(mlsr_workspace_grow(api, &k->base.ws, (size_t)(2 * per), OP));
        float *bt = k->base.ws.data, *ct = k->base.ws.data + per;
        token_major(in[IN_BM].data, bt, B * K, N, L, NP);
        token_major(in[IN_CM].data, ct, B * K, N, L, NP);
        ScanParams p = {.batch = B, .dim = D, .dstate = N, .length = L, .directions = K, .height = H, .width = W,
                        .groups = K, .delta_softplus = k->delta_softplus, .nthreads = k->base.nthreads,
                        .x_batch_stride = D * L, .x_dim_stride = L, .delta_batch_stride = KD * L,
                        .delta_dim_stride = L, .bc_batch_stride = K * L * NP, .bc_group_stride = L * NP,
                        .bc_token_stride = NP, .u = u->data, .delta = in[IN_DELTA].data, .A = in[IN_A].data,
                        .Bm = bt, .Cm = ct, .Dskip = in[IN_DSKIP].data, .z = in[IN_Z].data,
                        .delta_bias = in[IN_DELTA_BIAS].data, .out = y};
        status = selective_scan_fwd(&p);
    }
    if (status != 0)
        return mlsr_fail(api, OP ": the C scan refused its arguments (status %d, K = %lld)", status, (long long)K);
    return NULL;
}

static OrtStatus *ORT_API_CALL compute(void *kernel, OrtKernelContext *ctx) {
    ScanKernel *k = kernel;
    const OrtApi *api = k->base.api;
    MlsrTensor in[N_INPUTS];
    for (size_t i = 0; i < N_INPUTS; ++i) TRY(mlsr_input(api, ctx, i, OP, &in[i]));
    const MlsrTensor *u = &in[IN_U];
    if (u->data == NULL || u->rank != 4)
        return mlsr_fail(api, OP ": u must be (B, D, H, W), got rank %zu", u->rank);
    const int64_t B = u->dims[0], D = u->dims[1], H = u->dims[2], W = u->dims[3], L = H * W;
    const int64_t K = k->directions, N = k->dstate, KD = K * D;
    const int64_t want_delta[4] = {B, KD, H, W}, want_A[2] = {KD, N}, want_bc[5] = {B, K, N, H, W};
    if (!mlsr_same_dims(&in[IN_DELTA], 4, want_delta))
        return mlsr_fail(api, OP ": delta must be (B, K*D, H, W) = (%lld, %lld, %lld, %lld)", (long long)B,
                         (long long)KD, (long long)H, (long long)W);
    if (!mlsr_same_dims(&in[IN_A], 2, want_A))
        return mlsr_fail(api, OP ": A must be (K*D, N) = (%lld, %lld)", (long long)KD, (long long)N);
    if (!mlsr_same_dims(&in[IN_BM], 5, want_bc) || !mlsr_same_dims(&in[IN_CM], 5, want_bc))
        return mlsr_fail(api, OP ": Bm and Cm must be (B, K, N, H, W) with K = %lld, N = %lld", (long long)K,
                         (long long)N);
    for (int i = IN_DSKIP; i <= IN_DELTA_BIAS; i += 2)
        if (in[i].data != NULL && !mlsr_same_dims(&in[i], 1, &KD))
            return mlsr_fail(api, OP ": Dskip and delta_bias must be (K*D,) = (%lld,)", (long long)KD);
    if (in[IN_Z].data != NULL && !mlsr_same_dims(&in[IN_Z], 4, u->dims))
        return mlsr_fail(api, OP ": z must be shaped like u (B, D, H, W)");

    OrtValue *y_value = NULL;
    TRY(api->KernelContext_GetOutput(ctx, 0, u->dims, 4, &y_value));
    void *y = NULL;
    TRY(api->GetTensorMutableData(y_value, &y));
    if (B * D * L == 0) return NULL;

    pthread_mutex_lock(&k->base.ws.lock);
    OrtStatus *failure = run_scan(k, in, y, B, D, H, W);
    pthread_mutex_unlock(&k->base.ws.lock);
    return failure;
}

OrtCustomOp *mlsr_selective_scan_op(int64_t nthreads) {
    return mlsr_new_op(OP, N_INPUTS, IN_DSKIP, nthreads, create_kernel, compute, mlsr_kernel_destroy);
}
