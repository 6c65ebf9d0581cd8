/* Self-test of runtime/csrc/framepath.c on deterministic frames, for the aarch64 cross-build under qemu.
 *
 * Every entry point runs through its public params struct (framepath.h): pack (BGR24, RGB24, NV12, YUYV to
 * float32 and float16), unpack (float32 and float16), split and merge. The float16 rows run twice, with the
 * CPU's float16 instructions (mlsr_fp_set_hw_f16(1): AArch64's __fp16 path, which only an aarch64 build
 * compiles) and with the portable bit arithmetic; the two must agree bit for bit (both round to nearest even).
 * Scalar conversions are checked on special values. Results are written or compared as records (dump.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "framepath.h"

enum { H = 37, W = 54, TH = 16, TW = 24, S = 2, C = 3 };

static void fill_u8(uint8_t *p, size_t n, uint32_t seed) {
    Lcg g = {seed};
    for (size_t i = 0; i < n; ++i) p[i] = (uint8_t)(lcg_next(&g) >> 24);
}

/* Runs fn(d, buffers...) twice for a float16 case, with the portable and the hardware float16 rows, expects
 * the two outputs to agree bit for bit (both round to nearest even) and records the hardware one. */
typedef int (*run_fn)(const void *params);

static void both_paths(Dump *d, const char *name, int kind, run_fn fn, const void *params, void *out, size_t bytes,
                       int64_t count, double atol, double rtol) {
    void *soft = malloc(bytes);
    mlsr_fp_set_hw_f16(0);
    dump_expect(d, fn(params) == 0, name);
    memcpy(soft, out, bytes);
    mlsr_fp_set_hw_f16(1);
    memset(out, 0x55, bytes);
    dump_expect(d, fn(params) == 0, name);
    if (memcmp(soft, out, bytes) != 0) {
        printf("SELF-CHECK FAILED: %s: hardware and portable float16 rows differ\n", name);
        d->failures++;
    }
    dump_record(d, name, kind, out, count, atol, rtol);
    free(soft);
}

static int run_pack(const void *p) { return mlsr_fp_pack(p); }
static int run_unpack(const void *p) { return mlsr_fp_unpack(p); }
static int run_merge(const void *p) { return mlsr_fp_merge(p); }

static void pack_all(Dump *d) {
    static uint8_t packed[H * W * 3], nv12_y[H * W], nv12_uv[((H + 1) / 2) * ((W + 1) / 2) * 2], yuyv[H * W * 2];
    fill_u8(packed, sizeof packed, 1);
    fill_u8(nv12_y, sizeof nv12_y, 2);
    fill_u8(nv12_uv, sizeof nv12_uv, 3);
    fill_u8(yuyv, sizeof yuyv, 4);
    const char *names[] = {"bgr24", "rgb24", "nv12", "yuyv"};
    for (int format = 0; format < 4; ++format) {
        for (int dtype = 0; dtype < 2; ++dtype) {
            size_t elem = dtype == MLSR_FP_F16 ? 2 : 4, bytes = elem * C * H * W;
            void *dst = calloc(1, bytes);
            mlsr_fp_pack_params p = {0};
            p.format = format;
            p.dtype = dtype;
            p.height = H;
            p.width = W;
            if (format == MLSR_FP_NV12) {
                p.src0 = nv12_y;
                p.src0_stride = W;
                p.src1 = nv12_uv;
                p.src1_stride = ((W + 1) / 2) * 2;
            } else if (format == MLSR_FP_YUYV) {
                p.src0 = yuyv;
                p.src0_stride = W * 2;
            } else {
                p.src0 = packed;
                p.src0_stride = W * 3;
            }
            p.dst = dst;
            p.dst_plane_stride = (int64_t)H * W;
            p.dst_row_stride = W;
            p.scale = 1.0f / 255.0f;
            p.mean[0] = 0.1f;
            p.mean[1] = 0.2f;
            p.mean[2] = 0.3f;
            char name[48];
            snprintf(name, sizeof name, "pack %s %s", names[format], dtype ? "f16" : "f32");
            if (dtype == MLSR_FP_F16) {
                both_paths(d, name, DUMP_F16, run_pack, &p, dst, bytes, (int64_t)C * H * W, 1, 0); /* 1 ulp */
            } else {
                dump_expect(d, mlsr_fp_pack(&p) == 0, name);
                dump_record(d, name, DUMP_F32, dst, (int64_t)C * H * W, 1e-6, 1e-5);
            }
            free(dst);
        }
    }
}

static void unpack_all(Dump *d) {
    static float planes[C * H * W];
    static uint16_t planes16[C * H * W];
    static uint8_t out[H * W * 3];
    Lcg g = {5};
    for (int i = 0; i < C * H * W; ++i) planes[i] = lcg_uniform(&g, -0.1f, 1.1f);
    for (int i = 0; i < C * H * W; ++i) planes16[i] = mlsr_fp_f32_to_f16(planes[i]);
    for (int dtype = 0; dtype < 2; ++dtype) {
        mlsr_fp_unpack_params p = {0};
        p.dtype = dtype;
        p.height = H;
        p.width = W;
        p.swap_rb = dtype; /* both byte orders */
        p.src = dtype ? (const void *)planes16 : (const void *)planes;
        p.src_plane_stride = (int64_t)H * W;
        p.src_row_stride = W;
        p.dst = out;
        p.dst_stride = W * 3;
        p.scale = 255.0f;
        if (dtype == MLSR_FP_F16) {
            both_paths(d, "unpack f16", DUMP_U8, run_unpack, &p, out, sizeof out, (int64_t)sizeof out, 1, 0);
        } else {
            dump_expect(d, mlsr_fp_unpack(&p) == 0, "unpack f32");
            dump_record(d, "unpack f32", DUMP_U8, out, (int64_t)sizeof out, 1, 0); /* 1: a .5 boundary may flip */
        }
    }
}

static void split_merge(Dump *d) {
    static float lr[C * H * W];
    Lcg g = {6};
    for (int i = 0; i < C * H * W; ++i) lr[i] = lcg_uniform(&g, 0.0f, 1.0f);
    const int32_t y0[] = {0, H - TH - 4, H - TH}, x0[] = {0, (W - TW) / 2, W - TW};
    mlsr_fp_tile_grid grid = {H, W, TH, TW, 3, 3, y0, x0, C};
    const int n = 9;
    float *tiles = calloc((size_t)n * C * TH * TW, sizeof(float));
    mlsr_fp_split_params sp = {grid, 4, lr, (int64_t)H * W, W, tiles};
    dump_expect(d, mlsr_fp_split(&sp) == 0, "split");
    dump_record(d, "split f32", DUMP_F32, tiles, (int64_t)n * C * TH * TW, 0, 0);

    /* SR tiles: each LR tile upscaled by pixel repetition, plus a per-tile offset so the feathering shows. */
    const int STH = S * TH, STW = S * TW;
    const size_t sr_n = (size_t)n * C * STH * STW;
    float *sr = malloc(sizeof(float) * sr_n);
    uint16_t *sr16 = malloc(sizeof(uint16_t) * sr_n);
    for (int t = 0; t < n; ++t)
        for (int c = 0; c < C; ++c)
            for (int y = 0; y < STH; ++y)
                for (int x = 0; x < STW; ++x)
                    sr[(((size_t)t * C + c) * STH + y) * STW + x] =
                        tiles[(((size_t)t * C + c) * TH + y / S) * TW + x / S] + 0.01f * (float)t;
    for (size_t i = 0; i < sr_n; ++i) sr16[i] = mlsr_fp_f32_to_f16(sr[i]);
    /* Linear ramps over the overlaps: ratio = w_j / (sum of w of tiles 0..j), on the SR grid. */
    float ratio_y[3 * STH], ratio_x[3 * STW];
    for (int axis = 0; axis < 2; ++axis) {
        const int32_t *start = axis ? x0 : y0;
        int len = axis ? STW : STH, total = axis ? S * W : S * H;
        float *ratio = axis ? ratio_x : ratio_y;
        float *acc = calloc((size_t)total, sizeof(float));
        for (int j = 0; j < 3; ++j)
            for (int q = 0; q < len; ++q) {
                int edge = q < len - 1 - q ? q : len - 1 - q;
                float w = (float)(edge + 1);
                int at = S * start[j] + q;
                acc[at] += w;
                ratio[j * len + q] = w / acc[at];
            }
        free(acc);
    }
    const size_t out_n = (size_t)C * S * H * S * W;
    float *out = calloc(out_n, sizeof(float));
    for (int dtype = 0; dtype < 2; ++dtype) {
        mlsr_fp_merge_params mp = {grid, S, dtype, dtype ? (const void *)sr16 : (const void *)sr, ratio_y, ratio_x,
                                   out, (int64_t)S * H * S * W, S * W};
        if (dtype == MLSR_FP_F16) {
            both_paths(d, "merge f16", DUMP_F32, run_merge, &mp, out, out_n * sizeof(float), (int64_t)out_n, 1e-6, 1e-5);
        } else {
            dump_expect(d, mlsr_fp_merge(&mp) == 0, "merge f32");
            dump_record(d, "merge f32", DUMP_F32, out, (int64_t)out_n, 1e-6, 1e-5);
        }
    }
    free(out);
    free(sr16);
    free(sr);
    free(tiles);
}

/* Every float16 bit pattern through the merge's float16 row load (one tile, ratio 1: out = tile), with
 * the hardware and the portable conversion, against the scalar reference conversion. */
static void every_half(Dump *d) {
    enum { EH = 256, EW = 256 }; /* 65536 halves in one plane of 1 channel */
    static uint16_t halves[EH * EW];
    static float out[EH * EW], ref[EH * EW];
    for (int i = 0; i < EH * EW; ++i) halves[i] = (uint16_t)i;
    for (int i = 0; i < EH * EW; ++i) ref[i] = mlsr_fp_f16_to_f32(halves[i]);
    const int32_t zero = 0;
    mlsr_fp_tile_grid grid = {EH, EW, EH, EW, 1, 1, &zero, &zero, 1};
    static float ones_y[EH], ones_x[EW];
    for (int i = 0; i < EH; ++i) ones_y[i] = 1.0f;
    for (int i = 0; i < EW; ++i) ones_x[i] = 1.0f;
    mlsr_fp_merge_params mp = {grid, 1, MLSR_FP_F16, halves, ones_y, ones_x, out, (int64_t)EH * EW, EW};
    both_paths(d, "every half f16->f32", DUMP_F32, run_merge, &mp, out, sizeof out, EH * EW, 0, 0);
    int bad = 0;
    for (int i = 0; i < EH * EW; ++i) {
        int nan_a = out[i] != out[i], nan_b = ref[i] != ref[i];
        if (nan_a != nan_b || (!nan_a && out[i] != ref[i])) bad++; /* -0 blends to +0: equal values */
    }
    if (bad) {
        printf("SELF-CHECK FAILED: every half: %d float16 values load differently from the scalar conversion\n", bad);
        d->failures++;
    }
}

int main(int argc, char **argv) {
    Dump d;
    int rc = dump_open(&d, argc, argv);
    if (rc) return rc;
    mlsr_fp_set_hw_f16(1);
    printf("framepath self-test: abi %d, float16 rows in hardware: %s\n", mlsr_fp_abi_version(),
           mlsr_fp_hw_f16() ? "yes" : "no");
    pack_all(&d);
    unpack_all(&d);
    split_merge(&d);
    every_half(&d);
    return dump_close(&d, "framepath");
}
