/*
 * MambaLiteSR selective scan, CUDA forward: kernels, dispatch and the C launch function.
 *
 * Glossary and the parallelisation are described in selective_scan_core.cuh; the C interface and the
 * shape contract in selective_scan_kernel.h. Per call: pass 1 (chunk summaries) and pass 2 (carries)
 * when L spans more than one chunk, then one pass-3 launch per direction, all on the caller's stream.
 * The host-only entry points (validate, workspace size, strides) are in selective_scan_host_api.cpp.
 */
#include "selective_scan_core.cuh"

namespace mambalitesr
{
namespace scan
{
namespace
{

constexpr int kThreads = 128; // a multiple of every G, so a group never straddles two warps

// Sum over the G lanes of this thread's group with an xor butterfly; every lane gets the same bits
// (each level adds a + b on one lane and b + a on its partner, and IEEE addition commutes).
template <int G>
struct WarpGroupSum
{
    unsigned mask;

    __device__ __forceinline__ float operator()(float x) const
    {
#pragma unroll
        for (int offset = G / 2; offset > 0; offset >>= 1)
            x += __shfl_xor_sync(mask, x, offset, G);
        return x;
    }
};

template <int G>
__device__ __forceinline__ unsigned group_mask()
{
    const unsigned group_in_warp = (threadIdx.x & 31u) / G;
    return (0xffffffffu >> (32 - G)) << (group_in_warp * G);
}

template <typename T, int G, int S>
__global__ void __launch_bounds__(kThreads) summary_kernel(SelectiveScanParams p, Plan plan, int64_t items)
{
    const int64_t thread = (int64_t)blockIdx.x * kThreads + threadIdx.x;
    const int64_t item = thread / G;
    if (item >= items)
        return; // whole groups leave together: all G lanes share the item
    chunk_summary_item<T, G, S>(p, plan, item, (int)(thread % G));
}

__global__ void __launch_bounds__(kThreads) carry_kernel(Plan plan, int64_t items)
{
    const int64_t item = (int64_t)blockIdx.x * kThreads + threadIdx.x;
    if (item < items)
        chunk_carry_item(plan, item);
}

template <typename T, int G, int S>
__global__ void __launch_bounds__(kThreads)
    output_kernel(SelectiveScanParams p, Plan plan, int k, int stage, int64_t items)
{
    const int64_t thread = (int64_t)blockIdx.x * kThreads + threadIdx.x;
    const int64_t item = thread / G;
    if (item >= items)
        return;
    chunk_output_item<T, G, S>(p, plan, k, stage, item, (int)(thread % G), WarpGroupSum<G>{group_mask<G>()});
}

inline unsigned blocks_for(int64_t threads)
{
    return (unsigned)((threads + kThreads - 1) / kThreads);
}

template <typename T, int G, int S>
cudaError_t run(const SelectiveScanParams& p, const Plan& plan, cudaStream_t stream)
{
    if (plan.n_chunks > 1)
    {
        const int64_t summaries = plan.B * plan.KD * (plan.n_chunks - 1);
        summary_kernel<T, G, S><<<blocks_for(summaries * G), kThreads, 0, stream>>>(p, plan, summaries);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return err;
        const int64_t carries = plan.B * plan.KD * plan.N;
        carry_kernel<<<blocks_for(carries), kThreads, 0, stream>>>(plan, carries);
        err = cudaGetLastError();
        if (err != cudaSuccess)
            return err;
    }
    const int64_t items = plan.B * plan.D * plan.n_chunks;
    for (int k = 0; k < plan.K; ++k)
    {
        output_kernel<T, G, S>
            <<<blocks_for(items * G), kThreads, 0, stream>>>(p, plan, k, stage_of(k, (int)plan.K), items);
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return err;
    }
    return cudaSuccess;
}

template <typename T>
cudaError_t dispatch_state(const SelectiveScanParams& p, const Plan& plan, cudaStream_t stream)
{
    // G = lanes per group (next power of two >= N, at least 4), S = states per lane.
    const int N = p.d_state;
    if (N <= 4)
        return run<T, 4, 1>(p, plan, stream);
    if (N <= 8)
        return run<T, 8, 1>(p, plan, stream);
    if (N <= 16)
        return run<T, 16, 1>(p, plan, stream);
    if (N <= 32)
        return run<T, 32, 1>(p, plan, stream);
    return run<T, 32, 2>(p, plan, stream); // N <= 64, checked by validate()
}

} // namespace
} // namespace scan
} // namespace mambalitesr

extern "C" {

MAMBALITESR_API int mambalitesr_selective_scan_fwd(const SelectiveScanParams* p, cudaStream_t stream)
{
    using namespace mambalitesr::scan;
    if (validate(p))
        return (int)cudaErrorInvalidValue;
    const Plan plan = make_plan(*p);
    if (plan.B * plan.D * plan.L == 0)
        return (int)cudaSuccess;
    const cudaError_t err = p->act_dtype == MAMBALITESR_FLOAT16 ? dispatch_state<__half>(*p, plan, stream)
                                                                : dispatch_state<float>(*p, plan, stream);
    return (int)err;
}

} // extern "C"
