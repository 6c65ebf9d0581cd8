/* ONNX Runtime custom-op library: the mambalitesr::SelectiveScan node as a native CPU kernel.
 *
 * Glossary (code name -> paper symbol; shape letters):
 *   B batch, D scan channels, K directions, N d_state, H x W token grid, L = H * W, NP = N padded to SCAN_LANES
 *   u -> x_t, delta -> Delta_t (raw), A -> A, Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate
 *
 * The node contract is the one export/onnx_plugin_scan.py writes (and runtime/backends/ort_ops.py documents):
 *   u (B, D, H, W), delta (B, K*D, H, W), A (K*D, N), Bm / Cm (B, K, N, H, W), Dskip (K*D), z (B, D, H, W),
 *   delta_bias (K*D); attributes directions, d_state, delta_softplus -> y (B, D, H, W).
 *
 * Why native: the Python kernel (onnxruntime-extensions) crosses into the interpreter for every node. Here ONNX
 * Runtime calls C directly. K = 1 runs mixer_scan_forward (models/csrc/mixer_cpu.c), which reads the node's
 * channel-major tensors in place; K = 4 runs selective_scan_fwd (models/csrc/selective_scan_cpu.c) after
 * reordering B_t / C_t token-major, the layout that kernel vectorises over. Both are compiled into this library.
 *
 * Built against ONNX Runtime's C API header only (onnxruntime_c_api.h, fetched from a package registry at
 * build time: runtime/csrc/ort_headers.py); the library never links libonnxruntime: the running ONNX Runtime
 * hands its API table to RegisterCustomOps. We ask for API version MLSR_ORT_API (1.16), so any ONNX Runtime
 * from 1.16 on (JetPack 6's wheels included) loads it.
 *
 * Threads: the session config entry "mambalitesr.scan_threads" (set by ort_ops.session_options from the
 * backend's --threads) caps the scan's OpenMP threads; absent or 0, the OpenMP default.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxruntime_c_api.h"

#include "../../models/csrc/mixer_cpu.h"
#include "../../models/csrc/selective_scan_cpu.h"

#define MLSR_ORT_API 16 /* the oldest ONNX Runtime API whose entry points this library uses */
#define MLSR_ORT_ABI_VERSION 1
#define N_INPUTS 8
#define THREADS_KEY "mambalitesr.scan_threads"

enum { IN_U, IN_DELTA, IN_A, IN_BM, IN_CM, IN_DSKIP, IN_Z, IN_DELTA_BIAS };

typedef struct {
    OrtCustomOp op; /* first member: ORT hands back &op, which is this struct */
    int64_t nthreads;
} ScanOp;

typedef struct {
    const OrtApi *api;
    int64_t directions, dstate, delta_softplus, nthreads;
    /* Grown on demand and kept across calls, so no run touches fresh pages. One kernel serves every Run() of
     * its session, and ONNX Runtime allows concurrent Run() calls: the lock keeps two calls off one workspace. */
    pthread_mutex_t lock;
    float *workspace;
    size_t workspace_floats;
} ScanKernel;

int mambalitesr_ort_abi_version(void) { return MLSR_ORT_ABI_VERSION; }

static OrtStatus *fail(const OrtApi *api, const char *fmt, ...) {
    char msg[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(msg, sizeof msg, fmt, args);
    va_end(args);
    return api->CreateStatus(ORT_INVALID_ARGUMENT, msg);
}

#define TRY(expr)                           \
    do {                                    \
        OrtStatus *status_ = (expr);        \
        if (status_ != NULL) return status_; \
    } while (0)

/* ------------------------------------------------------------------ kernel */

static OrtStatus *ORT_API_CALL create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                             void **out) {
    ScanKernel *k = calloc(1, sizeof *k);
    if (k == NULL) return api->CreateStatus(ORT_FAIL, "SelectiveScan: out of memory");
    k->api = api;
    k->nthreads = ((const ScanOp *)op)->nthreads;
    OrtStatus *status = api->KernelInfoGetAttribute_int64(info, "directions", &k->directions);
    if (status == NULL) status = api->KernelInfoGetAttribute_int64(info, "d_state", &k->dstate);
    if (status == NULL) status = api->KernelInfoGetAttribute_int64(info, "delta_softplus", &k->delta_softplus);
    if (status == NULL && k->directions != 1 && k->directions != 4)
        status = fail(api, "SelectiveScan: directions must be 1 or 4, got %lld", (long long)k->directions);
    if (status == NULL && (k->dstate < 1 || k->dstate > MIXER_MAX_STATE))
        status = fail(api, "SelectiveScan: d_state must be in 1..%d, got %lld", MIXER_MAX_STATE, (long long)k->dstate);
    if (status == NULL && pthread_mutex_init(&k->lock, NULL) != 0)
        status = api->CreateStatus(ORT_FAIL, "SelectiveScan: could not create the workspace lock");
    if (status != NULL) {
        free(k);
        return status;
    }
    *out = k;
    return NULL;
}

static void ORT_API_CALL destroy_kernel(void *kernel) {
    ScanKernel *k = kernel;
    if (k == NULL) return;
    pthread_mutex_destroy(&k->lock);
    free(k->workspace);
    free(k);
}

typedef struct {
    const float *data;
    int64_t dims[5];
    size_t rank;
} Tensor;

/* Input i as a float tensor; data NULL when an optional input is absent. */
static OrtStatus *input(const OrtApi *api, OrtKernelContext *ctx, size_t i, Tensor *t) {
    const OrtValue *value = NULL;
    memset(t, 0, sizeof *t);
    TRY(api->KernelContext_GetInput(ctx, i, &value));
    if (value == NULL) return NULL;
    OrtTensorTypeAndShapeInfo *info = NULL;
    TRY(api->GetTensorTypeAndShape(value, &info));
    OrtStatus *status = api->GetDimensionsCount(info, &t->rank);
    if (status == NULL && t->rank > 5) status = fail(api, "SelectiveScan: input %zu has rank %zu", i, t->rank);
    if (status == NULL) status = api->GetDimensions(info, t->dims, t->rank);
    api->ReleaseTensorTypeAndShapeInfo(info);
    TRY(status);
    void *data = NULL;
    TRY(api->GetTensorMutableData((OrtValue *)value, &data));
    t->data = data;
    return NULL;
}

static int same_dims(const Tensor *t, size_t rank, const int64_t *dims) {
    if (t->rank != rank) return 0;
    for (size_t i = 0; i < rank; ++i)
        if (t->dims[i] != dims[i]) return 0;
    return 1;
}

static OrtStatus *grow_workspace(ScanKernel *k, size_t floats) {
    if (floats <= k->workspace_floats) return NULL;
    free(k->workspace);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64; /* aligned_alloc: a multiple of the alignment */
    k->workspace = aligned_alloc(64, bytes);
    k->workspace_floats = k->workspace ? floats : 0;
    return k->workspace ? NULL : k->api->CreateStatus(ORT_FAIL, "SelectiveScan: out of memory for the workspace");
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
static OrtStatus *run_scan(ScanKernel *k, const Tensor *in, float *y, int64_t B, int64_t D, int64_t H, int64_t W) {
    const OrtApi *api = k->api;
    const Tensor *u = &in[IN_U];
    const int64_t L = H * W, K = k->directions, N = k->dstate, KD = K * D;
    int status;
    if (K == 1) {
        const int64_t floats = mixer_scan_workspace_floats(D, N);
        TRY(grow_workspace(k, (size_t)floats));
        ChannelScanParams p = {.batch = B, .dim = D, .dstate = N, .length = L, .delta_softplus = k->delta_softplus,
                               .nthreads = k->nthreads, .workspace_floats = (int64_t)k->workspace_floats,
                               .u = u->data, .delta = in[IN_DELTA].data, .A = in[IN_A].data, .Bm = in[IN_BM].data,
                               .Cm = in[IN_CM].data, .Dskip = in[IN_DSKIP].data, .z = in[IN_Z].data,
                               .delta_bias = in[IN_DELTA_BIAS].data, .out = y, .workspace = k->workspace};
        status = mixer_scan_forward(&p);
    } else {
        const int64_t NP = (N + SCAN_LANES - 1) / SCAN_LANES * SCAN_LANES, per = B * K * L * NP;
        TRY(grow_workspace(k, (size_t)(2 * per)));
        float *bt = k->workspace, *ct = k->workspace + per;
        token_major(in[IN_BM].data, bt, B * K, N, L, NP);
        token_major(in[IN_CM].data, ct, B * K, N, L, NP);
        ScanParams p = {.batch = B, .dim = D, .dstate = N, .length = L, .directions = K, .height = H, .width = W,
                        .groups = K, .delta_softplus = k->delta_softplus, .nthreads = k->nthreads,
                        .x_batch_stride = D * L, .x_dim_stride = L, .delta_batch_stride = KD * L,
                        .delta_dim_stride = L, .bc_batch_stride = K * L * NP, .bc_group_stride = L * NP,
                        .bc_token_stride = NP, .u = u->data, .delta = in[IN_DELTA].data, .A = in[IN_A].data,
                        .Bm = bt, .Cm = ct, .Dskip = in[IN_DSKIP].data, .z = in[IN_Z].data,
                        .delta_bias = in[IN_DELTA_BIAS].data, .out = y};
        status = selective_scan_fwd(&p);
    }
    if (status != 0) return fail(api, "SelectiveScan: the C scan refused its arguments (status %d, K = %lld)", status, (long long)K);
    return NULL;
}

static OrtStatus *ORT_API_CALL compute(void *kernel, OrtKernelContext *ctx) {
    ScanKernel *k = kernel;
    const OrtApi *api = k->api;
    Tensor in[N_INPUTS];
    for (size_t i = 0; i < N_INPUTS; ++i) TRY(input(api, ctx, i, &in[i]));
    const Tensor *u = &in[IN_U];
    if (u->data == NULL || u->rank != 4)
        return fail(api, "SelectiveScan: u must be (B, D, H, W), got rank %zu", u->rank);
    const int64_t B = u->dims[0], D = u->dims[1], H = u->dims[2], W = u->dims[3], L = H * W;
    const int64_t K = k->directions, N = k->dstate, KD = K * D;
    const int64_t want_delta[4] = {B, KD, H, W}, want_A[2] = {KD, N}, want_bc[5] = {B, K, N, H, W};
    if (in[IN_DELTA].data == NULL || !same_dims(&in[IN_DELTA], 4, want_delta))
        return fail(api, "SelectiveScan: delta must be (B, K*D, H, W) = (%lld, %lld, %lld, %lld)", (long long)B, (long long)KD, (long long)H, (long long)W);
    if (in[IN_A].data == NULL || !same_dims(&in[IN_A], 2, want_A))
        return fail(api, "SelectiveScan: A must be (K*D, N) = (%lld, %lld)", (long long)KD, (long long)N);
    if (in[IN_BM].data == NULL || !same_dims(&in[IN_BM], 5, want_bc) || in[IN_CM].data == NULL ||
        !same_dims(&in[IN_CM], 5, want_bc))
        return fail(api, "SelectiveScan: Bm and Cm must be (B, K, N, H, W) with K = %lld, N = %lld", (long long)K, (long long)N);
    for (int i = IN_DSKIP; i <= IN_DELTA_BIAS; i += 2)
        if (in[i].data != NULL && !same_dims(&in[i], 1, &KD))
            return fail(api, "SelectiveScan: Dskip and delta_bias must be (K*D,) = (%lld,)", (long long)KD);
    if (in[IN_Z].data != NULL && !same_dims(&in[IN_Z], 4, u->dims))
        return fail(api, "SelectiveScan: z must be shaped like u (B, D, H, W)");

    OrtValue *y_value = NULL;
    TRY(api->KernelContext_GetOutput(ctx, 0, u->dims, 4, &y_value));
    void *y = NULL;
    TRY(api->GetTensorMutableData(y_value, &y));
    if (B * D * L == 0) return NULL;

    pthread_mutex_lock(&k->lock);
    OrtStatus *failure = run_scan(k, in, y, B, D, H, W);
    pthread_mutex_unlock(&k->lock);
    return failure;
}

/* ------------------------------------------------------------------ op description */

static const char *ORT_API_CALL op_name(const OrtCustomOp *op) {
    (void)op;
    return "SelectiveScan";
}

static const char *ORT_API_CALL op_provider(const OrtCustomOp *op) {
    (void)op;
    return "CPUExecutionProvider";
}

static ONNXTensorElementDataType ORT_API_CALL float_type(const OrtCustomOp *op, size_t index) {
    (void)op, (void)index;
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

static size_t ORT_API_CALL input_count(const OrtCustomOp *op) {
    (void)op;
    return N_INPUTS;
}

static size_t ORT_API_CALL output_count(const OrtCustomOp *op) {
    (void)op;
    return 1;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL input_kind(const OrtCustomOp *op, size_t index) {
    (void)op;
    return index >= IN_DSKIP ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL output_kind(const OrtCustomOp *op, size_t index) {
    (void)op, (void)index;
    return INPUT_OUTPUT_REQUIRED;
}

static OrtMemType ORT_API_CALL input_memory(const OrtCustomOp *op, size_t index) {
    (void)op, (void)index;
    return OrtMemTypeDefault;
}

static int64_t threads_from(const OrtApi *api, const OrtSessionOptions *options) {
    char value[32];
    size_t size = sizeof value;
    int has = 0;
    OrtStatus *status = api->HasSessionConfigEntry(options, THREADS_KEY, &has);
    if (status != NULL || !has) {
        if (status) api->ReleaseStatus(status);
        return 0;
    }
    status = api->GetSessionConfigEntry(options, THREADS_KEY, value, &size);
    if (status != NULL) {
        api->ReleaseStatus(status);
        return 0;
    }
    return strtoll(value, NULL, 10);
}

/* Called by ONNX Runtime (SessionOptions.register_custom_ops_library): one op struct per registration, kept for
 * the process's life as ONNX Runtime requires (sessions may outlive the options). */
OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *api_base) {
    const OrtApi *api = api_base->GetApi(MLSR_ORT_API);
    if (api == NULL) return NULL; /* older than 1.16: nothing we can call, not even CreateStatus */
    ScanOp *op = calloc(1, sizeof *op);
    if (op == NULL) return api->CreateStatus(ORT_FAIL, "mambalitesr: out of memory");
    op->nthreads = threads_from(api, options);
    op->op = (OrtCustomOp){
        .version = MLSR_ORT_API, /* ORT reads only the members that existed in this version */
        .GetName = op_name, .GetExecutionProviderType = op_provider,
        .GetInputType = float_type, .GetInputTypeCount = input_count, .GetInputCharacteristic = input_kind,
        .GetInputMemoryType = input_memory,
        .GetOutputType = float_type, .GetOutputTypeCount = output_count, .GetOutputCharacteristic = output_kind,
        .CreateKernelV2 = create_kernel, .KernelComputeV2 = compute, .KernelDestroy = destroy_kernel,
    };
    OrtCustomOpDomain *domain = NULL;
    TRY(api->CreateCustomOpDomain("mambalitesr", &domain));
    TRY(api->CustomOpDomain_Add(domain, &op->op));
    return api->AddCustomOpDomain(options, domain);
}
