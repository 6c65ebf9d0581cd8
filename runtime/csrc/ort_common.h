/* What the ONNX Runtime kernels of the mambalitesr domain share: status helpers, reading an input tensor, a
 * locked workspace kept across calls, and the op-description callbacks that are the same for every op
 * (CPU provider, float tensors, one required output).
 *
 * Every op's kernel owns one workspace, grown on demand and kept across calls so no run touches fresh pages.
 * One kernel serves every Run() of its session, and ONNX Runtime allows concurrent Run() calls: the lock keeps
 * two calls off one workspace.
 */
#ifndef MAMBALITESR_ORT_COMMON_H
#define MAMBALITESR_ORT_COMMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxruntime_c_api.h"

#define MLSR_ORT_API 16 /* the oldest ONNX Runtime API whose entry points these kernels use */
#define MLSR_MAX_RANK 5

#define TRY(expr)                            \
    do {                                     \
        OrtStatus *status_ = (expr);         \
        if (status_ != NULL) return status_; \
    } while (0)

/* An ORT_INVALID_ARGUMENT status with a printf-formatted message. */
OrtStatus *mlsr_fail(const OrtApi *api, const char *fmt, ...);

typedef struct {
    const float *data; /* NULL: an optional input that is absent */
    int64_t dims[MLSR_MAX_RANK];
    size_t rank;
} MlsrTensor;

/* Input i of the node as a float tensor; `op` names the node in errors. */
OrtStatus *mlsr_input(const OrtApi *api, OrtKernelContext *ctx, size_t i, const char *op, MlsrTensor *t);
/* 1 when t is present with exactly these dims. */
int mlsr_same_dims(const MlsrTensor *t, size_t rank, const int64_t *dims);

typedef struct {
    pthread_mutex_t lock;
    float *data; /* 64-byte aligned */
    size_t floats;
} MlsrWorkspace;

int mlsr_workspace_init(MlsrWorkspace *w);     /* 0 on success */
void mlsr_workspace_free(MlsrWorkspace *w);
/* Grow to at least `floats` (call with the lock held); `op` names the node in errors. */
OrtStatus *mlsr_workspace_grow(const OrtApi *api, MlsrWorkspace *w, size_t floats, const char *op);

/* Callbacks shared by every op of the domain. */
const char *ORT_API_CALL mlsr_cpu_provider(const OrtCustomOp *op);
ONNXTensorElementDataType ORT_API_CALL mlsr_float_type(const OrtCustomOp *op, size_t index);
size_t ORT_API_CALL mlsr_one(const OrtCustomOp *op);
OrtCustomOpInputOutputCharacteristic ORT_API_CALL mlsr_required(const OrtCustomOp *op, size_t index);
OrtMemType ORT_API_CALL mlsr_default_memory(const OrtCustomOp *op, size_t index);

/* The ops, built by ort_register.c's RegisterCustomOps for one registration (threads: the scan's OpenMP
 * threads, 0 for the OpenMP default). ORT keeps them for the process's life. */
OrtCustomOp *mlsr_selective_scan_op(int64_t nthreads);
OrtCustomOp *mlsr_mamba_mixer_op(int64_t nthreads);

#endif
