/*
 * MambaLiteSR selective scan, CUDA forward (inference only): the plain C interface.
 *
 * Glossary (code name -> paper symbol; shape letters):
 *   batch B, channels D (d_inner), d_state N, directions K (1 or 4), height H, width W, L = H * W tokens
 *   u -> x_t, delta -> Delta_t (raw; bias and softplus are applied here), A -> A (already -exp(A_log)),
 *   Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate, y -> y_t, h -> state h_t
 *
 *   h_t = exp(Delta_t * A) * h_{t-1} + Delta_t * B_t * u_t,   y_t = <C_t, h_t> + D * u_t
 *   K = 4: direction k scans its own order of the H x W grid (0 row-major, 1 column-major,
 *   2 row-major reversed, 3 column-major reversed); the K outputs, back in row-major order,
 *   are summed in the fixed order k = 0, 1, 2, 3; then y *= SiLU(z).
 *
 * Shapes (tokens row-major over H x W; the token axis of every tensor is contiguous):
 *   u (B, D, L)  delta (B, K*D, L)  A (K*D, N)  Bm, Cm (B, K, N, L)  Dskip (K*D,)  delta_bias (K*D,)
 *   z (B, D, L)  ->  y (B, D, L)
 *
 * No torch, TensorRT or Python headers: callers (the TensorRT plugin, the torch test binding)
 * fill a SelectiveScanParams and call mambalitesr_selective_scan_fwd on their stream.
 */
#ifndef MAMBALITESR_SELECTIVE_SCAN_KERNEL_H
#define MAMBALITESR_SELECTIVE_SCAN_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MAMBALITESR_API __attribute__((visibility("default")))
#else
#define MAMBALITESR_API
#endif

/* Largest d_state N the kernel takes (lanes of a warp, two states each). */
#define MAMBALITESR_SCAN_MAX_STATE 64

typedef enum MambaLiteSRDType {
    MAMBALITESR_FLOAT32 = 0,
    MAMBALITESR_FLOAT16 = 1
} MambaLiteSRDType;

typedef struct SelectiveScanParams {
    /* sizes */
    int64_t batch;        /* B */
    int64_t channels;     /* D */
    int64_t height;       /* H */
    int64_t width;        /* W; L = H * W */
    int32_t directions;   /* K: 1 or 4 */
    int32_t d_state;      /* N: 1 .. MAMBALITESR_SCAN_MAX_STATE */
    int32_t delta_softplus; /* 0 or 1: Delta = softplus(delta + delta_bias) when 1 */
    int32_t chunk_len;    /* 0: the single pass (default); T > 0: the chunked three-pass scan with T tokens per chunk */

    /* element types: one for the activations (u, delta, Bm, Cm, z and y), one per parameter tensor */
    MambaLiteSRDType act_dtype;
    MambaLiteSRDType A_dtype;
    MambaLiteSRDType Dskip_dtype;
    MambaLiteSRDType delta_bias_dtype;

    /* device pointers; Dskip, z and delta_bias may be NULL (term left out) */
    const void* u;
    const void* delta;
    const void* A;
    const void* Bm;
    const void* Cm;
    const void* Dskip;
    const void* z;
    const void* delta_bias;
    void* y;
    void* workspace;        /* at least mambalitesr_selective_scan_workspace_size(...) bytes, 256-byte aligned */
    size_t workspace_bytes;

    /* strides in elements; within a (batch, channel) row the L tokens are contiguous */
    int64_t u_batch_stride, u_channel_stride;
    int64_t delta_batch_stride, delta_channel_stride;
    int64_t A_row_stride, A_state_stride;
    int64_t B_batch_stride, B_direction_stride, B_state_stride;
    int64_t C_batch_stride, C_direction_stride, C_state_stride;
    int64_t z_batch_stride, z_channel_stride;
    int64_t y_batch_stride, y_channel_stride;
} SelectiveScanParams;

/* Fill every stride for densely packed tensors of the sizes already set in p. */
MAMBALITESR_API void mambalitesr_selective_scan_set_dense_strides(SelectiveScanParams* p);

/* NULL when p is usable, else a static sentence naming the first problem. Touches no device memory. */
MAMBALITESR_API const char* mambalitesr_selective_scan_validate(const SelectiveScanParams* p);

/* Bytes of scratch the launch needs for these sizes; grows monotonically with B, D, H, W and K. */
MAMBALITESR_API size_t mambalitesr_selective_scan_workspace_size(const SelectiveScanParams* p);

/* sizeof(SelectiveScanParams), for bindings that mirror the struct (ctypes) to check their layout. */
MAMBALITESR_API size_t mambalitesr_selective_scan_params_size(void);

/* Enqueue the forward scan on stream; returns a cudaError_t code (0 = cudaSuccess).
 * Invalid params give cudaErrorInvalidValue without launching anything. */
MAMBALITESR_API int mambalitesr_selective_scan_fwd(const SelectiveScanParams* p, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* MAMBALITESR_SELECTIVE_SCAN_KERNEL_H */
