/* The helpers of ort_common.h. */
#include "ort_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

OrtStatus *mlsr_fail(const OrtApi *api, const char *fmt, ...) {
    char msg[320];
    va_list args;
    va_start(args, fmt);
    vsnprintf(msg, sizeof msg, fmt, args);
    va_end(args);
    return api->CreateStatus(ORT_INVALID_ARGUMENT, msg);
}

OrtStatus *mlsr_input(const OrtApi *api, OrtKernelContext *ctx, size_t i, const char *op, MlsrTensor *t) {
    const OrtValue *value = NULL;
    memset(t, 0, sizeof *t);
    TRY(api->KernelContext_GetInput(ctx, i, &value));
    if (value == NULL) return NULL;
    OrtTensorTypeAndShapeInfo *info = NULL;
    TRY(api->GetTensorTypeAndShape(value, &info));
    OrtStatus *status = api->GetDimensionsCount(info, &t->rank);
    if (status == NULL && t->rank > MLSR_MAX_RANK) status = mlsr_fail(api, "%s: input %zu has rank %zu", op, i, t->rank);
    if (status == NULL) status = api->GetDimensions(info, t->dims, t->rank);
    api->ReleaseTensorTypeAndShapeInfo(info);
    TRY(status);
    void *data = NULL;
    TRY(api->GetTensorMutableData((OrtValue *)value, &data));
    t->data = data;
    return NULL;
}

int mlsr_same_dims(const MlsrTensor *t, size_t rank, const int64_t *dims) {
    if (t->data == NULL || t->rank != rank) return 0;
    for (size_t i = 0; i < rank; ++i)
        if (t->dims[i] != dims[i]) return 0;
    return 1;
}

int mlsr_workspace_init(MlsrWorkspace *w) {
    memset(w, 0, sizeof *w);
    return pthread_mutex_init(&w->lock, NULL);
}

void mlsr_workspace_free(MlsrWorkspace *w) {
    pthread_mutex_destroy(&w->lock);
    free(w->data);
    w->data = NULL;
    w->floats = 0;
}

OrtStatus *mlsr_workspace_grow(const OrtApi *api, MlsrWorkspace *w, size_t floats, const char *op) {
    if (floats <= w->floats) return NULL;
    free(w->data);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64; /* aligned_alloc: a multiple of the alignment */
    w->data = aligned_alloc(64, bytes);
    w->floats = w->data ? floats : 0;
    if (w->data != NULL) return NULL;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: out of memory for the workspace (%zu bytes)", op, bytes);
    return api->CreateStatus(ORT_FAIL, msg);
}

void *mlsr_kernel_new(size_t size, const OrtCustomOp *op, const OrtApi *api, const char *name, OrtStatus **status) {
    char msg[160];
    MlsrKernel *k = calloc(1, size);
    if (k != NULL && mlsr_workspace_init(&k->ws) == 0) {
        k->api = api;
        k->nthreads = ((const MlsrOp *)op)->nthreads;
        *status = NULL;
        return k;
    }
    snprintf(msg, sizeof msg, "%s: %s", name, k == NULL ? "out of memory" : "could not create the workspace lock");
    free(k);
    *status = api->CreateStatus(ORT_FAIL, msg);
    return NULL;
}

void ORT_API_CALL mlsr_kernel_destroy(void *kernel) {
    MlsrKernel *k = kernel;
    if (k == NULL) return;
    mlsr_workspace_free(&k->ws);
    free(k);
}

static const char *ORT_API_CALL op_name(const OrtCustomOp *op) { return ((const MlsrOp *)op)->name; }

static const char *ORT_API_CALL cpu_provider(const OrtCustomOp *op) {
    (void)op;
    return "CPUExecutionProvider";
}

static ONNXTensorElementDataType ORT_API_CALL float_type(const OrtCustomOp *op, size_t index) {
    (void)op, (void)index;
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

static size_t ORT_API_CALL input_count(const OrtCustomOp *op) { return ((const MlsrOp *)op)->n_inputs; }

static size_t ORT_API_CALL one(const OrtCustomOp *op) {
    (void)op;
    return 1;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL input_kind(const OrtCustomOp *op, size_t index) {
    return index >= ((const MlsrOp *)op)->first_optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL required(const OrtCustomOp *op, size_t index) {
    (void)op, (void)index;
    return INPUT_OUTPUT_REQUIRED;
}

static OrtMemType ORT_API_CALL default_memory(const OrtCustomOp *op, size_t index) {
    (void)op, (void)index;
    return OrtMemTypeDefault;
}

OrtCustomOp *mlsr_new_op(const char *name, size_t n_inputs, size_t first_optional, int64_t nthreads,
                         MlsrCreateKernel create, MlsrCompute compute, MlsrDestroyKernel destroy) {
    MlsrOp *op = calloc(1, sizeof *op);
    if (op == NULL) return NULL;
    *op = (MlsrOp){.name = name, .n_inputs = n_inputs, .first_optional = first_optional, .nthreads = nthreads};
    op->op = (OrtCustomOp){
        .version = MLSR_ORT_API, /* ORT reads only the members that existed in this version */
        .GetName = op_name, .GetExecutionProviderType = cpu_provider,
        .GetInputType = float_type, .GetInputTypeCount = input_count, .GetInputCharacteristic = input_kind,
        .GetInputMemoryType = default_memory,
        .GetOutputType = float_type, .GetOutputTypeCount = one, .GetOutputCharacteristic = required,
        .CreateKernelV2 = create, .KernelComputeV2 = compute, .KernelDestroy = destroy,
    };
    return &op->op;
}
