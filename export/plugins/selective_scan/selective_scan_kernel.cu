/*
 * MambaLiteSR selective scan, CUDA forward: kernels, dispatch and the C launch function.
 *
 * Glossary and the parallelisation are described in selective_scan_core.cuh; the C interface and the
 * shape contract in selective_scan_kernel.h. Per call, all on the caller's stream: the single pass
 * (chunk_len = 0), one launch per direction; or the chunked scan, pass 1 (chunk summaries) and pass 2
 * (carries) when L spans more than one chunk, then one pass-3 launch per direction.
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

constexpr unsigned kFullWarp = 0xffffffffu;

// One block per sequence (b, d) of direction k; the tiles of the sequence in order (selective_scan_core.cuh).
// Every thread stays to the end, past-the-end ones with identity steps: all of them take part in the
// shuffles and barriers.
template <typename T>
__global__ void __launch_bounds__(kTileThreads, kTileMinBlocksPerSM)
    single_pass_kernel(SelectiveScanParams p, Plan plan, int k, int stage)
{
    // Double-buffered so one barrier per (tile, state) suffices: a buffer is rewritten two rounds later,
    // after every thread has passed the barrier between (and so finished its reads).
    __shared__ float total_a[2][kTileWarps], total_b[2][kTileWarps];
    __shared__ float carried[2][MAMBALITESR_SCAN_MAX_STATE]; // by tile parity: state entering the tile
    const int thread = (int)threadIdx.x;
    const int lane = thread & 31;
    const int warp = thread >> 5;
    const Sequence<T> seq(p, plan, k, (int64_t)blockIdx.x);
    if (thread < plan.N)
        carried[0][thread] = 0.f; // first read after the first barrier
    const int64_t tiles = (plan.L + kTile - 1) / kTile;
    unsigned round = 0;
    for (int64_t tile = 0; tile < tiles; ++tile)
    {
        TileTokens in;
        tile_tokens<T>(p, plan, seq, k, tile, thread, in);
        float y[kTileItems];
#pragma unroll
        for (int j = 0; j < kTileItems; ++j)
            y[j] = 0.f;
        const float* carry_in = carried[tile & 1];
        float* carry_out = carried[(tile + 1) & 1];
        for (int64_t n = 0; n < plan.N; ++n, ++round)
        {
            const float A_n = load_param(p.A, p.A_dtype, seq.kd * p.A_row_stride + n * p.A_state_stride);
            Affine step[kTileItems];
            Affine inclusive = state_steps<T>(p, seq, in, A_n, n, step);
#pragma unroll
            for (int offset = 1; offset < 32; offset <<= 1)
            {
                const float a = __shfl_up_sync(kFullWarp, inclusive.a, offset);
                const float b = __shfl_up_sync(kFullWarp, inclusive.b, offset);
                if (lane >= offset)
                    inclusive = then(Affine{a, b}, inclusive);
            }
            const Affine before{__shfl_up_sync(kFullWarp, inclusive.a, 1), __shfl_up_sync(kFullWarp, inclusive.b, 1)};
            float* ta = total_a[round & 1];
            float* tb = total_b[round & 1];
            if (lane == 31)
            {
                ta[warp] = inclusive.a;
                tb[warp] = inclusive.b;
            }
            __syncthreads();
            float h = state_entering_warp(carry_in[n], ta, tb, warp);
            if (lane > 0)
                h = apply(before, h);
            if (thread == 0)
                carry_out[n] = state_entering_warp(carry_in[n], ta, tb, kTileWarps);
            state_replay<T>(p, seq, in, n, step, h, y);
        }
        tile_emit<T>(p, plan, stage, seq, in, y);
    }
}

template <typename T>
cudaError_t run_single_pass(const SelectiveScanParams& p, const Plan& plan, cudaStream_t stream)
{
    for (int k = 0; k < plan.K; ++k)
    {
        single_pass_kernel<T>
            <<<(unsigned)(plan.B * plan.D), kTileThreads, 0, stream>>>(p, plan, k, stage_of(k, (int)plan.K));
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return err;
    }
    return cudaSuccess;
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
    if (plan.chunk == 0)
        return run_single_pass<T>(p, plan, stream);
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
