/* Fused Mamba mixer core for CPU inference; contract and glossary in mixer_cpu.h.
 *
 * Why this shape: around the scan, PyTorch spends more time moving the token-major (B, L, 2D) output of
 * in_proj into the channel-major rows the conv and the scan read than in the scan itself. Here every
 * array the matmuls produce or consume stays channel-major (a token row per channel), and the only
 * transposes left are of B_t and C_t (2N rows per tile of T tokens, shared by all D channels) into the
 * token-major form the state-vectorised recurrence reads: N lanes of one token are one vector.
 */
#include "mixer_cpu.h"
#include "atanh_series.h"
#include "vector_basics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* the vector helpers are always inlined */
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define T MIXER_TILE
#define S MIXER_BLOCK
_Static_assert(S % T == 0, "a block is whole tiles");

static inline float softplus1(float x) {
    if (x > 20.0f) return x;
    return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
}
static inline float silu1(float x) { return x / (1.0f + expf(-x)); }

static int thread_count(int64_t nthreads) {
#ifdef _OPENMP
    return nthreads > 0 ? (int)nthreads : omp_get_max_threads();
#else
    (void)nthreads;
    return 1;
#endif
}
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int64_t padded_state(int64_t n) { return (n + MIXER_LANES - 1) / MIXER_LANES * MIXER_LANES; }

/* Workspace layout (floats): u (D, S) | delta (D, S) | Bt (S, NP) | Ct (S, NP) | h (D, NP) | x (D, HALO + S) |
 * z (D, S) | per thread: x_dbl (R + 2N, T) and a tile (max(Ci, Co), T). Every part starts on a multiple of 16
 * floats. x and z are used with w_in only; with w_out the gated y overwrites u in place. */
typedef struct {
    float *u, *delta, *Bt, *Ct, *h, *x, *z, *scratch;
    int64_t scratch_stride, tile_offset;
} Workspace;

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
#define HALO MIXER_HALO

static int64_t per_thread_floats(int64_t dstate, int64_t dt_rank, int64_t in_dim, int64_t out_dim) {
    return round16((dt_rank + 2 * dstate) * T) + round16(max64(max64(in_dim, out_dim), 1) * T);
}

int64_t mixer_workspace_floats(int64_t dim, int64_t dstate, int64_t dt_rank, int64_t in_dim, int64_t out_dim,
                               int64_t nthreads) {
    const int64_t NP = padded_state(dstate), threads = thread_count(nthreads);
    return 2 * dim * S + 2 * S * NP + round16(dim * NP) + dim * (HALO + S) + dim * S +
           threads * per_thread_floats(dstate, dt_rank, in_dim, out_dim);
}

static Workspace carve(const MixerParams *p) {
    const int64_t D = p->dim, NP = padded_state(p->dstate);
    Workspace w;
    w.u = p->workspace;
    w.delta = w.u + D * S;
    w.Bt = w.delta + D * S;
    w.Ct = w.Bt + S * NP;
    w.h = w.Ct + S * NP;
    w.x = w.h + round16(D * NP);
    w.z = w.x + D * (HALO + S);
    w.scratch = w.z + D * S;
    w.scratch_stride = per_thread_floats(p->dstate, p->dt_rank, p->in_dim, p->out_dim);
    w.tile_offset = round16((p->dt_rank + 2 * p->dstate) * T);
    return w;
}

/* One channel's rows over a block: u, Delta (already softplus'd), z (or NULL: no gate), out, its state h (NP
 * floats, carried between blocks), A (N), D. out may alias u (the mixer's w_out path): token i of u is read
 * before out's token i is written. */
typedef struct {
    const float *u, *delta, *z, *A;
    float *out, *h;
    float skip;
} ChannelRows;

/* ---------------------------------------------------------------- the kernels, once per vector width */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
/* x86-64: AVX-512 (16 lanes), AVX2 + FMA (8) and the -march baseline, SSE4.2 (4); the widest this CPU runs is
 * picked at run time. Each wide width also has a baseline clone, so a test can run its arithmetic on any x86 CPU
 * (slowly: there its vectors live on the stack), and the 16-lane code is checked where no AVX-512 is. */
#define MIXER_X86_WIDTHS 1
#define VL 16
#define WIDE(name) name##_w16
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "default")))
#include "mixer_cpu_kernels.h"
#undef VL
#undef WIDE
#undef KERNEL
#define VL 8
#define WIDE(name) name##_w8
#define KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#include "mixer_cpu_kernels.h"
#undef VL
#undef WIDE
#undef KERNEL
#endif
/* 4 lanes: the x86 baseline, and every other target (NEON on aarch64: 128-bit q registers). */
#define VL 4
#define WIDE(name) name##_w4
#define KERNEL
#include "mixer_cpu_kernels.h"
#undef VL
#undef WIDE
#undef KERNEL

/* The widest width whose registers this CPU has: the default. MAMBALITESR_MIXER_WIDTH (4, 8 or 16) in the
 * environment or mixer_use_width() picks another one this build has (a wider one runs its baseline clone). */
static int widest_width(void) {
#ifdef MIXER_X86_WIDTHS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return 16;
    if (__builtin_cpu_supports("x86-64-v3")) return 8;
#endif
    return 4;
}
static int chosen_width; /* 0: not chosen yet; read and written with relaxed atomics (set once, then read) */

int mixer_use_width(int width) {
    if (width == 0) width = widest_width();
#ifdef MIXER_X86_WIDTHS
    if (width != 4 && width != 8 && width != 16) return 0;
#else
    if (width != 4) return 0;
#endif
    __atomic_store_n(&chosen_width, width, __ATOMIC_RELAXED);
    return width;
}

int mixer_vector_width(void) {
    int width = __atomic_load_n(&chosen_width, __ATOMIC_RELAXED);
    if (width == 0) {
        const char *env = getenv("MAMBALITESR_MIXER_WIDTH");
        width = mixer_use_width(env ? atoi(env) : 0);
        if (width == 0) width = mixer_use_width(0); /* an unusable MAMBALITESR_MIXER_WIDTH: the widest */
    }
    return width;
}

#ifdef MIXER_X86_WIDTHS
#define DISPATCH(call) (mixer_vector_width() == 16 ? call##_w16 : mixer_vector_width() == 8 ? call##_w8 : call##_w4)
#else
#define DISPATCH(call) call##_w4
#endif

/* ---------------------------------------------------------------- entry points */

int mixer_abi_version(void) { return MIXER_ABI_VERSION; }

static int check(const MixerParams *p) {
    if (p->batch < 0 || p->dim < 1 || p->length < 0) return MIXER_BAD_ARGUMENT;
    if (p->dstate < 1 || p->dstate > MIXER_MAX_STATE) return MIXER_BAD_ARGUMENT;
    if (p->dt_rank < 1 || p->dt_rank > MIXER_MAX_RANK) return MIXER_BAD_ARGUMENT;
    if (p->d_conv < 1 || p->d_conv > MIXER_MAX_CONV) return MIXER_BAD_ARGUMENT;
    if (!p->xz || !p->conv_w || !p->conv_b || !p->w_x || !p->w_dt || !p->dt_bias || !p->A || !p->Dskip ||
        !p->out || !p->workspace)
        return MIXER_BAD_ARGUMENT;
    if ((p->w_in != NULL) != (p->in_dim > 0) || (p->w_out != NULL) != (p->out_dim > 0)) return MIXER_BAD_ARGUMENT;
    if (p->workspace_floats <
        mixer_workspace_floats(p->dim, p->dstate, p->dt_rank, p->in_dim, p->out_dim, p->nthreads))
        return MIXER_SMALL_WORKSPACE;
    return MIXER_OK;
}

int mixer_forward(const MixerParams *p) {
    const int status = check(p);
    if (status != MIXER_OK) return status;
    return DISPATCH(forward)(p, thread_count(p->nthreads));
}

/* Workspace: delta (D, S) | Bt (S, NP) | Ct (S, NP) | h (D, NP). */
int64_t mixer_scan_workspace_floats(int64_t dim, int64_t dstate) {
    const int64_t NP = padded_state(dstate);
    return dim * S + 2 * S * NP + round16(dim * NP);
}

int mixer_scan_forward(const ChannelScanParams *p) {
    if (p->batch < 0 || p->dim < 1 || p->length < 0 || p->dstate < 1 || p->dstate > MIXER_MAX_STATE)
        return MIXER_BAD_ARGUMENT;
    if (!p->u || !p->delta || !p->A || !p->Bm || !p->Cm || !p->out || !p->workspace) return MIXER_BAD_ARGUMENT;
    if (p->workspace_floats < mixer_scan_workspace_floats(p->dim, p->dstate)) return MIXER_SMALL_WORKSPACE;
    return DISPATCH(scan_forward)(p, thread_count(p->nthreads));
}

int channel_layernorm(const float *x, const float *w, const float *b, float *out, int64_t batch, int64_t channels,
                      int64_t length, float eps, int64_t nthreads) {
    if (!x || !w || !b || !out || batch < 0 || channels < 1 || length < 0) return MIXER_BAD_ARGUMENT;
    DISPATCH(layernorm)(x, w, b, out, batch, channels, length, eps, thread_count(nthreads));
    return MIXER_OK;
}
