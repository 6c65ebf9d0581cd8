/*
 * CPU emulation of the CUDA selective scan, for tests on machines without a GPU. Not part of the
 * plugin library.
 *
 * It runs the kernels' own per-item bodies from selective_scan_core.cuh (pass 1 summaries, pass 2
 * carries, pass 3 outputs per direction, in launch order) with one lane owning all N states (G = 1),
 * so it checks the direction index arithmetic, the chunk carries, the workspace layout, the fused
 * bias / softplus / D skip / gate and the fixed-order direction sum against the PyTorch oracle.
 * What only a GPU can check: the warp-shuffle group sum and the lane-to-state mapping for G > 1
 * (benchmarks/gpu_check.sh does that).
 *
 * Glossary and shapes as in selective_scan_kernel.h; every pointer in the params is host memory here.
 */
#include "selective_scan_core.cuh"

namespace
{

using namespace mambalitesr::scan;

constexpr int kAllStates = MAMBALITESR_SCAN_MAX_STATE;

template <typename T>
void emulate(const SelectiveScanParams& p, const Plan& plan)
{
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
