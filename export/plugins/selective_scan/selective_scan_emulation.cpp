/*
 * CPU emulation of the CUDA selective scan, for tests on machines without a GPU. Not part of the
 * plugin library.
 *
 * It runs the kernels' own bodies from selective_scan_core.cuh, in launch order:
 *  - the single pass (chunk_len = 0): each block of kTileThreads threads one thread after another per
 *    phase (tile tokens, state steps, block scan, replay, emit), the block scan done in the order of the
 *    kernel's shuffles (an inclusive Kogge-Stone scan within each warp, then the warp totals in order), so
 *    it checks the tiling, the positions past the end, the carried state and the scan's association;
 *  - the chunked scan (chunk_len > 0): pass 1 summaries, pass 2 carries, pass 3 outputs, with one lane
 *    owning all N states (G = 1);
 * and so the direction index arithmetic, the workspace layout, the fused bias / softplus / D skip / gate
 * and the fixed-order direction sum, against the PyTorch oracle.
 * What only a GPU can check: the shuffles and __syncthreads themselves, and the lane-to-state mapping of
 * the chunked scan for G > 1 (benchmarks/gpu_check.sh does that).
 *
 * Glossary and shapes as in selective_scan_kernel.h; every pointer in the params is host memory here.
 */
#include <algorithm>
#include <vector>

#include "selective_scan_core.cuh"

namespace
{

using namespace mambalitesr::scan;

constexpr int kAllStates = MAMBALITESR_SCAN_MAX_STATE;

struct ThreadSteps
{
    Affine step[kTileItems];
};

struct ThreadOutputs
{
    float y[kTileItems];
};

// One block (one sequence of direction k) of the single-pass kernel, phase by phase.
template <typename T>
void emulate_block(const SelectiveScanParams& p, const Plan& plan, int k, int stage, int64_t item)
{
    const Sequence<T> seq(p, plan, k, item);
    std::vector<TileTokens> in(kTileThreads);
    std::vector<ThreadSteps> steps(kTileThreads);
    std::vector<Affine> inclusive(kTileThreads), before(kTileThreads);
    std::vector<ThreadOutputs> out(kTileThreads);
    std::vector<float> carried((size_t)plan.N, 0.f);
    float total_a[kTileWarps], total_b[kTileWarps];
    const int64_t tiles = (plan.L + kTile - 1) / kTile;
    for (int64_t tile = 0; tile < tiles; ++tile)
    {
        for (int t = 0; t < kTileThreads; ++t)
            tile_tokens<T>(p, plan, seq, k, tile, t, in[t]);
        std::fill(out.begin(), out.end(), ThreadOutputs{});
        for (int64_t n = 0; n < plan.N; ++n)
        {
            const float A_n = load_param(p.A, p.A_dtype, seq.kd * p.A_row_stride + n * p.A_state_stride);
            for (int t = 0; t < kTileThreads; ++t)
                inclusive[t] = state_steps<T>(p, seq, in[t], A_n, n, steps[t].step);
            for (int offset = 1; offset < 32; offset <<= 1) // __shfl_up_sync: every lane reads the old values
            {
                before = inclusive;
                for (int t = 0; t < kTileThreads; ++t)
                    if ((t & 31) >= offset)
                        inclusive[t] = then(before[t - offset], before[t]);
            }
            for (int w = 0; w < kTileWarps; ++w)
            {
                total_a[w] = inclusive[w * 32 + 31].a;
                total_b[w] = inclusive[w * 32 + 31].b;
            }
            for (int t = 0; t < kTileThreads; ++t)
            {
                float h = state_entering_warp(carried[(size_t)n], total_a, total_b, t >> 5);
                if ((t & 31) > 0)
                    h = apply(inclusive[t - 1], h);
                state_replay<T>(p, seq, in[t], n, steps[t].step, h, out[t].y);
            }
            carried[(size_t)n] = state_entering_warp(carried[(size_t)n], total_a, total_b, kTileWarps);
        }
        for (int t = 0; t < kTileThreads; ++t)
            tile_emit<T>(p, plan, stage, seq, in[t], out[t].y);
    }
}

template <typename T>
void emulate(const SelectiveScanParams& p, const Plan& plan)
{
    if (plan.chunk == 0)
    {
        for (int k = 0; k < plan.K; ++k)
            for (int64_t item = 0; item < plan.B * plan.D; ++item)
                emulate_block<T>(p, plan, k, stage_of(k, (int)plan.K), item);
        return;
    }
    if (plan.n_chunks > 1)
    {
        const int64_t summaries = plan.B * plan.KD * (plan.n_chunks - 1);
        for (int64_t item = 0; item < summaries; ++item)
            chunk_summary_item<T, 1, kAllStates>(p, plan, item, 0);
        for (int64_t item = 0; item < plan.B * plan.KD * plan.N; ++item)
            chunk_carry_item(plan, item);
    }
    const int64_t items = plan.B * plan.D * plan.n_chunks;
    for (int k = 0; k < plan.K; ++k)
        for (int64_t item = 0; item < items; ++item)
            chunk_output_item<T, 1, kAllStates>(p, plan, k, stage_of(k, (int)plan.K), item, 0, SingleLaneSum{});
}

} // namespace

extern "C" MAMBALITESR_API int mambalitesr_selective_scan_emulate(const SelectiveScanParams* p)
{
    if (validate(p))
        return 1;
    const Plan plan = make_plan(*p);
    if (plan.B * plan.D * plan.L == 0)
        return 0;
    if (p->act_dtype == MAMBALITESR_FLOAT16)
        emulate<__half>(*p, plan);
    else
        emulate<float>(*p, plan);
    return 0;
}
