/*
 * The selective scan's arithmetic, shared by the CUDA kernels and the CPU emulation used in tests.
 *
 * Glossary as in selective_scan_kernel.h (B, D, K, N, H, W, L; u, delta, A, Bm, Cm, Dskip, z, y, h).
 * T = chunk length, Lc = ceil(L / T) chunks, G = lanes per group, S = states per lane (N <= G * S).
 *
 * Two algorithms, chosen by params.chunk_len:
 *
 * chunk_len = 0, the single pass (the default, the plugin's): one thread block of kTileThreads threads owns
 *   one sequence (b, k, d) and walks it in tiles of kTile = kTileThreads x kTileItems tokens, tile after tile;
 *   thread i holds the kTileItems consecutive positions i * kTileItems .. of the tile. For each state n:
 *     every thread forms its tokens' affine steps h -> a h + b, a = exp(Delta_t A_n), b = Delta_t B_t u_t
 *     (the only exponentials of the whole scan: one per token and state), folds them into one step,
 *     the block scans those steps (warp shuffles, then the kTileWarps warp totals through shared memory)
 *     from the state the previous tile left, and every thread replays its own steps from the state
 *     entering it, adding C_t h_t into its tokens' y. The state leaving the tile is carried in shared
 *     memory to the next tile. No workspace (K = 1), one launch per direction.
 *   Why: the chunked scan below runs the recurrence, and its exponentials, twice (pass 1 and pass 3); here
 *   each exponential is computed once and the cross-token dependency is resolved by multiplications
 *   (the associative scan of reference Mamba's CUDA kernel, written afresh for this layout).
 *
 * chunk_len = T > 0, the chunked three-pass scan (kept for comparison in benchmarks/gpu_check.py):
 *   a "group" of G lanes (G = next power of two >= N, at most 32; a warp holds 32 / G groups) owns one
 *   work item; lane j keeps states n = j, j + G, ... in registers. Every lane chains its states over
 *   the tokens of a chunk sequentially and the group sums <C_t, h_t> over n with an xor butterfly of
 *   warp shuffles. L is cut into chunks of T tokens (Lc chunks per (b, k*D + d)):
 *     pass 1  summary: for every chunk but the last, scan from h = 0 and keep the end state and the
 *             chunk's decay exp(A * sum Delta)            -> workspace (B, K*D, Lc-1, N) x 2
 *     pass 2  carry:   one thread per (b, k*D + d, n) folds the summaries in order, leaving the state
 *             that enters each chunk (Lc-1 fused multiply-adds)
 *     pass 3  output:  rescan every chunk from its entering state and emit y_t.
 *   Outputs are written G at a time: lane j keeps the token of step j (mod G).
 *
 * Both: one launch per direction k = 0..K-1 in stream order, so the direction sum is deterministic
 * without atomics: each token of each (b, d) is written by exactly one thread per launch, acc = y_0,
 * acc += y_1, acc += y_2, and the last launch writes (acc + y_3) * SiLU(z). K = 1 writes y directly.
 *
 * Numerics: inputs are read as fp32 or fp16 and everything is computed in fp32 (state, the direction
 * sum, the gate); y is rounded to the activation type once at the end.
 */
#ifndef MAMBALITESR_SELECTIVE_SCAN_CORE_CUH
#define MAMBALITESR_SELECTIVE_SCAN_CORE_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_fp16.h>

#include "selective_scan_kernel.h"

#if defined(__CUDACC__)
#define MLSR_HD __host__ __device__ __forceinline__
#else
#define MLSR_HD inline
#endif
#if defined(__CUDA_ARCH__)
#define MLSR_UNROLL _Pragma("unroll")
#else
#define MLSR_UNROLL
#endif

namespace mambalitesr
{
namespace scan
{

// ---------------------------------------------------------------------------------------------------
// Host-side planning: sizes derived from the params and the carve-up of the workspace.

constexpr size_t kWorkspaceAlign = 256;

inline size_t align_up(size_t bytes)
{
    return (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
}

struct Plan
{
    int64_t B, D, K, KD, N, H, W, L;
    int64_t chunk;    // T of the chunked scan; 0 = the single pass
    int64_t n_chunks; // Lc (chunked scan); 1 for the single pass
    float* decay;     // (B, K*D, Lc-1, N): exp(A * sum of Delta over chunk c)
    float* state;     // (B, K*D, Lc-1, N): end state of chunk c from h = 0, then (pass 2) the carried state
    float* acc;       // (B, D, L): running direction sum, K > 1 only
};

// Chunks of the chunked scan, 1 for the single pass (which needs no chunk summaries).
inline int64_t chunk_count(const SelectiveScanParams& p)
{
    const int64_t L = p.height * p.width;
    if (L <= 0)
        return 0;
    return p.chunk_len > 0 ? (L + p.chunk_len - 1) / p.chunk_len : 1;
}

struct WorkspaceLayout
{
    size_t summary_bytes; // each of decay and state
    size_t acc_bytes;
    size_t total;
};

inline WorkspaceLayout workspace_layout(const SelectiveScanParams& p)
{
    const int64_t L = p.height * p.width;
    const int64_t n_chunks = chunk_count(p);
    const int64_t kd = (int64_t)p.directions * p.channels;
    WorkspaceLayout w{};
    if (n_chunks > 1)
        w.summary_bytes = align_up(sizeof(float) * (size_t)(p.batch * kd * (n_chunks - 1) * p.d_state));
    if (p.directions > 1)
        w.acc_bytes = align_up(sizeof(float) * (size_t)(p.batch * p.channels * L));
    w.total = 2 * w.summary_bytes + w.acc_bytes;
    if (w.total)
        w.total += kWorkspaceAlign; // room to align a base pointer that is not 256-byte aligned
    return w;
}

inline const char* validate(const SelectiveScanParams* p)
{
    if (!p)
        return "params pointer is NULL";
    if (p->directions != 1 && p->directions != 4)
        return "directions must be 1 or 4";
    if (p->d_state < 1 || p->d_state > MAMBALITESR_SCAN_MAX_STATE)
        return "d_state must be in 1..64";
    if (p->batch < 0 || p->channels < 0 || p->height < 0 || p->width < 0)
        return "sizes must not be negative";
    if (p->delta_softplus != 0 && p->delta_softplus != 1)
        return "delta_softplus must be 0 or 1";
    if (p->chunk_len < 0)
        return "chunk_len must be >= 0 (0 = the single pass)";
    const MambaLiteSRDType types[4] = {p->act_dtype, p->A_dtype, p->Dskip_dtype, p->delta_bias_dtype};
    for (MambaLiteSRDType t : types)
        if (t != MAMBALITESR_FLOAT32 && t != MAMBALITESR_FLOAT16)
            return "dtypes must be MAMBALITESR_FLOAT32 or MAMBALITESR_FLOAT16";
    if (p->batch * p->channels * p->height * p->width == 0)
        return nullptr; // empty problem: nothing is read or written
    if (!p->u || !p->delta || !p->A || !p->Bm || !p->Cm || !p->y)
        return "u, delta, A, Bm, Cm and y must not be NULL";
    const size_t need = workspace_layout(*p).total;
    if (need && (!p->workspace || p->workspace_bytes < need))
        return "workspace is missing or smaller than mambalitesr_selective_scan_workspace_size()";
    return nullptr;
}

inline Plan make_plan(const SelectiveScanParams& p)
{
    Plan plan{};
    plan.B = p.batch;
    plan.D = p.channels;
    plan.K = p.directions;
    plan.KD = plan.K * plan.D;
    plan.N = p.d_state;
    plan.H = p.height;
    plan.W = p.width;
    plan.L = p.height * p.width;
    plan.chunk = p.chunk_len;
    plan.n_chunks = chunk_count(p);
    const WorkspaceLayout w = workspace_layout(p);
    if (w.total)
    {
        const uintptr_t base = ((uintptr_t)p.workspace + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
        plan.decay = w.summary_bytes ? (float*)base : nullptr;
        plan.state = w.summary_bytes ? (float*)(base + w.summary_bytes) : nullptr;
        plan.acc = w.acc_bytes ? (float*)(base + 2 * w.summary_bytes) : nullptr;
    }
    return plan;
}

inline void set_dense_strides(SelectiveScanParams* p)
{
    const int64_t L = p->height * p->width;
    const int64_t N = p->d_state;
    const int64_t K = p->directions;
    p->u_channel_stride = L;
    p->u_batch_stride = p->channels * L;
    p->delta_channel_stride = L;
    p->delta_batch_stride = K * p->channels * L;
    p->A_state_stride = 1;
    p->A_row_stride = N;
    p->B_state_stride = L;
    p->B_direction_stride = N * L;
    p->B_batch_stride = K * N * L;
    p->C_state_stride = L;
    p->C_direction_stride = N * L;
    p->C_batch_stride = K * N * L;
    p->z_channel_stride = L;
    p->z_batch_stride = p->channels * L;
    p->y_channel_stride = L;
    p->y_batch_stride = p->channels * L;
}

// ---------------------------------------------------------------------------------------------------
// Element access.

MLSR_HD float to_float(float x)
{
    return x;
}

MLSR_HD float to_float(__half x)
{
    return __half2float(x);
}

template <typename T>
MLSR_HD T from_float(float x);

template <>
MLSR_HD float from_float<float>(float x)
{
    return x;
}

template <>
MLSR_HD __half from_float<__half>(float x)
{
    return __float2half_rn(x);
}

// Parameters (A, Dskip, delta_bias) are read once per lane, so a runtime type switch costs nothing.
MLSR_HD float load_param(const void* ptr, MambaLiteSRDType type, int64_t index)
{
    return type == MAMBALITESR_FLOAT16 ? __half2float(static_cast<const __half*>(ptr)[index])
                                       : static_cast<const float*>(ptr)[index];
}

// The decay exp(Delta A) of the recurrence, one place to choose its exp. expf by default: __expf (one
// ex2.approx of x log2 e on the special-function unit) is faster, but its error near x = 0 need not average
// out, and a decay a hair off 1 compounds over a long memory (on the CPU, a polynomial whose value at 0 was
// 1 + 1.2e-7 put the teacher's output 1.5e-4 off float64: models/csrc/mixer_cpu.c, vexp2). A build with
// -DMAMBALITESR_SCAN_FAST_EXP uses __expf in device code; benchmarks/gpu_check.py builds both and reports the
// fast build's error and time beside the default's, so the first device run decides.
MLSR_HD float decay_exp(float x)
{
#if defined(__CUDA_ARCH__) && defined(MAMBALITESR_SCAN_FAST_EXP)
    return __expf(x);
#else
    return expf(x);
#endif
}

MLSR_HD float softplus(float x)
{
    return x > 20.f ? x : log1pf(expf(x)); // the threshold of torch.nn.functional.softplus
}

MLSR_HD float silu(float x)
{
    return x / (1.f + expf(-x));
}

// ---------------------------------------------------------------------------------------------------
// Direction k's visiting order of the H x W grid, walked one position at a time without divisions.

struct TokenWalker
{
    int64_t token; // row-major index h * W + w of the current position
    int64_t row;   // h, tracked for the column-major directions
    int64_t H, W;
    int k;

    MLSR_HD TokenWalker(int k_, int64_t position, int64_t H_, int64_t W_)
        : token(0)
        , row(0)
        , H(H_)
        , W(W_)
        , k(k_)
    {
        const int64_t q = k >= 2 ? H * W - 1 - position : position; // position in the unreversed order
        if (k == 0 || k == 2)
        {
            token = q;
        }
        else
        {
            row = q % H;
            token = row * W + q / H;
        }
    }

    MLSR_HD void advance()
    {
        switch (k)
        {
        case 0: ++token; break;
        case 2: --token; break;
        case 1: // down the column; past the bottom row, to the top of the next column
            if (++row == H)
            {
                row = 0;
                token -= (H - 1) * W - 1;
            }
            else
            {
                token += W;
            }
            break;
        default: // 3: up the column; past the top row, to the bottom of the previous column
            if (row-- == 0)
            {
                row = H - 1;
                token += (H - 1) * W - 1;
            }
            else
            {
                token -= W;
            }
            break;
        }
    }
};

// ---------------------------------------------------------------------------------------------------
// Per-item bodies. `lane` is in [0, G); lane j owns states n = j + s * G, s < S.

struct LaneStates
{
    int64_t count; // N
    int lane;
    int G;

    MLSR_HD bool owns(int s) const
    {
        return lane + (int64_t)s * G < count;
    }

    MLSR_HD int64_t n(int s) const
    {
        return lane + (int64_t)s * G;
    }
};

MLSR_HD float delta_value(float raw, float bias, int softplus_on)
{
    const float x = raw + bias;
    return softplus_on ? softplus(x) : x;
}

// Pass 1. item -> (b, kd, c) with c < Lc - 1.
template <typename T, int G, int S>
MLSR_HD void chunk_summary_item(const SelectiveScanParams& p, const Plan& plan, int64_t item, int lane)
{
    const int64_t summaries = plan.n_chunks - 1;
    const int64_t c = item % summaries;
    const int64_t bkd = item / summaries;
    const int64_t kd = bkd % plan.KD;
    const int64_t b = bkd / plan.KD;
    const int k = (int)(kd / plan.D);
    const int64_t d = kd % plan.D;

    const T* u = static_cast<const T*>(p.u) + b * p.u_batch_stride + d * p.u_channel_stride;
    const T* delta = static_cast<const T*>(p.delta) + b * p.delta_batch_stride + kd * p.delta_channel_stride;
    const T* Bm = static_cast<const T*>(p.Bm) + b * p.B_batch_stride + k * p.B_direction_stride;
    const float bias = p.delta_bias ? load_param(p.delta_bias, p.delta_bias_dtype, kd) : 0.f;

    const LaneStates own{plan.N, lane, G};
    float A[S], h[S];
MLSR_UNROLL
    for (int s = 0; s < S; ++s)
    {
        A[s] = own.owns(s) ? load_param(p.A, p.A_dtype, kd * p.A_row_stride + own.n(s) * p.A_state_stride) : 0.f;
        h[s] = 0.f;
    }

    const int64_t begin = c * plan.chunk;
    const int64_t end = begin + plan.chunk < plan.L ? begin + plan.chunk : plan.L;
    TokenWalker walk(k, begin, plan.H, plan.W);
    float delta_sum = 0.f;
    for (int64_t pos = begin; pos < end; ++pos, walk.advance())
    {
        const int64_t t = walk.token;
        const float dt = delta_value(to_float(delta[t]), bias, p.delta_softplus);
        const float du = dt * to_float(u[t]);
MLSR_UNROLL
        for (int s = 0; s < S; ++s)
            if (own.owns(s))
                h[s] = decay_exp(dt * A[s]) * h[s] + du * to_float(Bm[own.n(s) * p.B_state_stride + t]);
        delta_sum += dt;
    }
MLSR_UNROLL
    for (int s = 0; s < S; ++s)
    {
        if (!own.owns(s))
            continue;
        const int64_t at = (bkd * summaries + c) * plan.N + own.n(s);
        plan.decay[at] = expf(A[s] * delta_sum); // = product of exp(Delta_t A) over the chunk
        plan.state[at] = h[s];
    }
}

// Pass 2. item -> (b, kd, n): state[c] becomes the state leaving chunk c (= entering chunk c + 1).
MLSR_HD void chunk_carry_item(const Plan& plan, int64_t item)
{
    const int64_t summaries = plan.n_chunks - 1;
    const int64_t n = item % plan.N;
    const int64_t bkd = item / plan.N;
    float carry = 0.f;
    for (int64_t c = 0; c < summaries; ++c)
    {
        const int64_t at = (bkd * summaries + c) * plan.N + n;
        carry = plan.decay[at] * carry + plan.state[at];
        plan.state[at] = carry;
    }
}

enum Stage : int
{
    kStageOnly = 0,   // K = 1: gate and store y
    kStageFirst = 1,  // acc = y_0
    kStageMiddle = 2, // acc += y_k
    kStageLast = 3    // y = (acc + y_{K-1}) * SiLU(z)
};

template <typename T>
MLSR_HD void emit(const SelectiveScanParams& p, const Plan& plan, int stage, int64_t b, int64_t d, int64_t t, float y)
{
    if (stage != kStageOnly)
    {
        float* acc = plan.acc + (b * plan.D + d) * plan.L + t;
        if (stage == kStageFirst)
        {
            *acc = y;
            return;
        }
        if (stage == kStageMiddle)
        {
            *acc += y;
            return;
        }
        y = *acc + y;
    }
    if (p.z)
        y *= silu(to_float(static_cast<const T*>(p.z)[b * p.z_batch_stride + d * p.z_channel_stride + t]));
    static_cast<T*>(p.y)[b * p.y_batch_stride + d * p.y_channel_stride + t] = from_float<T>(y);
}

// Pass 3 for direction k. item -> (b, d, c) with c < Lc. group_sum(x) returns the sum of x over the
// G lanes of the group, the same value in every lane.
template <typename T, int G, int S, typename GroupSum>
MLSR_HD void chunk_output_item(
    const SelectiveScanParams& p, const Plan& plan, int k, int stage, int64_t item, int lane, const GroupSum& group_sum)
{
    const int64_t c = item % plan.n_chunks;
    const int64_t bd = item / plan.n_chunks;
    const int64_t d = bd % plan.D;
    const int64_t b = bd / plan.D;
    const int64_t kd = k * plan.D + d;

    const T* u = static_cast<const T*>(p.u) + b * p.u_batch_stride + d * p.u_channel_stride;
    const T* delta = static_cast<const T*>(p.delta) + b * p.delta_batch_stride + kd * p.delta_channel_stride;
    const T* Bm = static_cast<const T*>(p.Bm) + b * p.B_batch_stride + k * p.B_direction_stride;
    const T* Cm = static_cast<const T*>(p.Cm) + b * p.C_batch_stride + k * p.C_direction_stride;
    const float bias = p.delta_bias ? load_param(p.delta_bias, p.delta_bias_dtype, kd) : 0.f;
    const float skip = p.Dskip ? load_param(p.Dskip, p.Dskip_dtype, kd) : 0.f;

    const LaneStates own{plan.N, lane, G};
    const int64_t summaries = plan.n_chunks - 1;
    float A[S], h[S];
MLSR_UNROLL
    for (int s = 0; s < S; ++s)
    {
        const bool on = own.owns(s);
        A[s] = on ? load_param(p.A, p.A_dtype, kd * p.A_row_stride + own.n(s) * p.A_state_stride) : 0.f;
        h[s] = (on && c > 0) ? plan.state[((b * plan.KD + kd) * summaries + (c - 1)) * plan.N + own.n(s)] : 0.f;
    }

    const int64_t begin = c * plan.chunk;
    const int64_t end = begin + plan.chunk < plan.L ? begin + plan.chunk : plan.L;
    TokenWalker walk(k, begin, plan.H, plan.W);
    int slot = 0; // (pos - begin) mod G: which lane keeps this step's output
    int64_t kept_token = 0;
    float kept_y = 0.f;
    for (int64_t pos = begin; pos < end; ++pos, walk.advance())
    {
        const int64_t t = walk.token;
        const float dt = delta_value(to_float(delta[t]), bias, p.delta_softplus);
        const float x = to_float(u[t]);
        const float du = dt * x;
        float partial = 0.f;
MLSR_UNROLL
        for (int s = 0; s < S; ++s)
        {
            if (!own.owns(s))
                continue;
            const int64_t n = own.n(s);
            h[s] = decay_exp(dt * A[s]) * h[s] + du * to_float(Bm[n * p.B_state_stride + t]);
            partial += h[s] * to_float(Cm[n * p.C_state_stride + t]);
        }
        const float y = group_sum(partial) + skip * x;
        if (slot == lane)
        {
            kept_token = t;
            kept_y = y;
        }
        if (slot == G - 1 || pos == end - 1)
        {
            if (lane <= slot)
                emit<T>(p, plan, stage, b, d, kept_token, kept_y);
            slot = 0;
        }
        else
        {
            ++slot;
        }
    }
}

// One lane owning every state (G = 1): the CPU emulation's group.
struct SingleLaneSum
{
    MLSR_HD float operator()(float x) const
    {
        return x;
    }
};

// ---------------------------------------------------------------------------------------------------
// The single pass (chunk_len = 0). Per thread and tile: TileTokens; per state: fold, block scan, replay.

// Sizes: a student mixer at batch 1 is B x D = 64 blocks, so an Orin Nano (8 SMs) runs it in one wave only
// with 8 blocks of 128 threads per SM, i.e. at most 64 registers a thread (the kernel's launch bounds).
// Four positions a thread fit in that without spilling (eight need ~92 registers); more positions per
// thread would spread the block scan's cost over more tokens. benchmarks/gpu_check.py times the result.
constexpr int kTileThreads = 128;                   // threads per block (four warps)
constexpr int kTileWarps = kTileThreads / 32;
constexpr int kTileMinBlocksPerSM = 8;              // launch bounds: <= 65536 / (8 x 128) = 64 registers
constexpr int kTileItems = 4;                       // consecutive positions per thread and tile
constexpr int kTile = kTileThreads * kTileItems;    // tokens per tile

// One step of the recurrence as a map h -> a h + b; the identity is {1, 0}.
struct Affine
{
    float a, b;
};

// `first` then `second`: h -> second.a (first.a h + first.b) + second.b. Associative, not commutative.
MLSR_HD Affine then(Affine first, Affine second)
{
    return Affine{second.a * first.a, second.a * first.b + second.b};
}

MLSR_HD float apply(Affine step, float h)
{
    return step.a * h + step.b;
}

// A thread's positions of one tile, read once for all states: token index, Delta_t (bias and softplus
// applied) and u_t; count < kTileItems only in the last tile (0 for threads past the end).
struct TileTokens
{
    int64_t token[kTileItems];
    float dt[kTileItems];
    float x[kTileItems];
    int count;
};

// The sequence a block owns: item -> (b, d) for direction k, and its rows of every tensor.
template <typename T>
struct Sequence
{
    int64_t b, d, kd;
    const T* u;
    const T* delta;
    const T* Bm;
    const T* Cm;
    float bias, skip;

    MLSR_HD Sequence(const SelectiveScanParams& p, const Plan& plan, int k, int64_t item)
        : b(item / plan.D)
        , d(item % plan.D)
        , kd(k * plan.D + item % plan.D)
    {
        u = static_cast<const T*>(p.u) + b * p.u_batch_stride + d * p.u_channel_stride;
        delta = static_cast<const T*>(p.delta) + b * p.delta_batch_stride + kd * p.delta_channel_stride;
        Bm = static_cast<const T*>(p.Bm) + b * p.B_batch_stride + k * p.B_direction_stride;
        Cm = static_cast<const T*>(p.Cm) + b * p.C_batch_stride + k * p.C_direction_stride;
        bias = p.delta_bias ? load_param(p.delta_bias, p.delta_bias_dtype, kd) : 0.f;
        skip = p.Dskip ? load_param(p.Dskip, p.Dskip_dtype, kd) : 0.f;
    }
};

template <typename T>
MLSR_HD void tile_tokens(const SelectiveScanParams& p, const Plan& plan, const Sequence<T>& seq, int k,
                         int64_t tile, int thread, TileTokens& in)
{
    const int64_t first = tile * kTile + (int64_t)thread * kTileItems;
    const int64_t left = plan.L - first;
    in.count = left <= 0 ? 0 : (left < kTileItems ? (int)left : kTileItems);
    if (in.count == 0)
        return;
    TokenWalker walk(k, first, plan.H, plan.W);
MLSR_UNROLL
    for (int j = 0; j < kTileItems; ++j)
    {
        if (j < in.count)
        {
            const int64_t t = walk.token;
            in.token[j] = t;
            in.dt[j] = delta_value(to_float(seq.delta[t]), seq.bias, p.delta_softplus);
            in.x[j] = to_float(seq.u[t]);
            if (j + 1 < in.count)
                walk.advance();
        }
    }
}

// State n: this thread's steps (kept for the replay) and their fold; positions past count are identities.
// (Indexing Bm per item, rather than passing state n's row, keeps the kernel within 64 registers.)
template <typename T>
MLSR_HD Affine state_steps(const SelectiveScanParams& p, const Sequence<T>& seq, const TileTokens& in, float A_n,
                           int64_t n, Affine (&step)[kTileItems])
{
    Affine fold{1.f, 0.f};
MLSR_UNROLL
    for (int j = 0; j < kTileItems; ++j)
    {
        step[j] = Affine{1.f, 0.f};
        if (j < in.count)
        {
            const float bt = to_float(seq.Bm[n * p.B_state_stride + in.token[j]]);
            step[j] = Affine{decay_exp(in.dt[j] * A_n), in.dt[j] * in.x[j] * bt};
            fold = then(fold, step[j]);
        }
    }
    return fold;
}

// State n: replay this thread's steps from the state entering it, adding C_t h_t into y.
template <typename T>
MLSR_HD void state_replay(const SelectiveScanParams& p, const Sequence<T>& seq, const TileTokens& in, int64_t n,
                          const Affine (&step)[kTileItems], float h, float (&y)[kTileItems])
{
MLSR_UNROLL
    for (int j = 0; j < kTileItems; ++j)
    {
        if (j < in.count)
        {
            h = apply(step[j], h);
            y[j] += to_float(seq.Cm[n * p.C_state_stride + in.token[j]]) * h;
        }
    }
}

// The state entering warp `warp` of the block: the carried state through the totals of the warps before it.
MLSR_HD float state_entering_warp(float carried, const float* total_a, const float* total_b, int warp)
{
    float h = carried;
    for (int w = 0; w < warp; ++w)
        h = apply(Affine{total_a[w], total_b[w]}, h);
    return h;
}

template <typename T>
MLSR_HD void tile_emit(const SelectiveScanParams& p, const Plan& plan, int stage, const Sequence<T>& seq,
                       const TileTokens& in, const float (&y)[kTileItems])
{
MLSR_UNROLL
    for (int j = 0; j < kTileItems; ++j) // a constant trip count keeps y and in in registers
        if (j < in.count)
            emit<T>(p, plan, stage, seq.b, seq.d, in.token[j], y[j] + seq.skip * in.x[j]);
}

inline int stage_of(int k, int K)
{
    if (K == 1)
        return kStageOnly;
    if (k == 0)
        return kStageFirst;
    return k == K - 1 ? kStageLast : kStageMiddle;
}

} // namespace scan
} // namespace mambalitesr

#endif // MAMBALITESR_SELECTIVE_SCAN_CORE_CUH
