/* What the ONNX Runtime kernels of the mambalitesr domain share: status helpers, reading an input tensor, a
 * locked workspace kept across calls, and the op-description callbacks that are the same for every op
 * (CPU provider, float tensors, one required output), built by mlsr_new_op.
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

/* What every kernel of the domain starts with (each kernel struct has it as its first member). One kernel serves
 * every Run() of its session; ws is its locked workspace. */
typedef struct {
    const OrtApi *api;
    int64_t nthreads; /* from the op (the session's "mambalitesr.scan_threads") */
    MlsrWorkspace ws;
} MlsrKernel;

/* A zeroed kernel struct of `size` bytes (>= sizeof(MlsrKernel)) with its head filled in, or NULL with *status set.
 * mlsr_kernel_destroy (the ops' KernelDestroy) frees its workspace and the struct. */
void *mlsr_kernel_new(size_t size, const OrtCustomOp *op, const OrtApi *api, const char *name, OrtStatus **status);
void ORT_API_CALL mlsr_kernel_destroy(void *kernel);

/* One op of the domain: ORT hands &op back to every callback, which is this struct (op is its first member), so
 * the callbacks the ops share read the name, the input count and the threads from here. */
typedef OrtStatus *(ORT_API_CALL *MlsrCreateKernel)(const OrtCustomOp *op, const OrtApi *api,
                                                    const OrtKernelInfo *info, void **kernel);
typedef OrtStatus *(ORT_API_CALL *MlsrCompute)(void *kernel, OrtKernelContext *ctx);
typedef void(ORT_API_CALL *MlsrDestroyKernel)(void *kernel);
typedef struct {
    OrtCustomOp op;
    const char *name;
    size_t n_inputs, first_optional; /* inputs from first_optional on may be absent */
    int64_t nthreads;                /* OpenMP threads of the kernels; 0: the OpenMP default */
} MlsrOp;

/* A float-in, float-out CPU op with one output; NULL when out of memory. ORT keeps it for the process's life. */
OrtCustomOp *mlsr_new_op(const char *name, size_t n_inputs, size_t first_optional, int64_t nthreads,
                         MlsrCreateKernel create, MlsrCompute compute, MlsrDestroyKernel destroy);

/* The ops, built by ort_register.c's RegisterCustomOps for one registration (nthreads: the kernels' OpenMP
 * threads, 0 for the OpenMP default). */
OrtCustomOp *mlsr_selective_scan_op(int64_t nthreads);
OrtCustomOp *mlsr_mamba_mixer_op(int64_t nthreads);

#endif
