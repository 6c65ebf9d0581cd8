/* Result records for the aarch64 self-test drivers: one run writes them, another compares against them.
 *
 *   driver --write FILE     run the kernels, write every result as a record
 *   driver --compare FILE   run the kernels, compare every result with FILE's record of the same name
 *
 * A record is: name (char[48]), kind (int32: DUMP_F32, DUMP_F64, DUMP_F16 bits, DUMP_U8), count (int64), data.
 * Tolerances are the caller's, per record: |a - b| <= atol + rtol * |b| for floats, <= ulps for float16
 * bit patterns (same sign), <= atol for bytes. Plain C11, header only; the drivers include no torch headers.
 */
#ifndef MAMBALITESR_AARCH64_DUMP_H
#define MAMBALITESR_AARCH64_DUMP_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DUMP_F32 = 0, DUMP_F64 = 1, DUMP_F16 = 2, DUMP_U8 = 3 };

typedef struct {
    FILE *file;
    int compare; /* 0: write, 1: compare */
    int failures, records;
} Dump;

static const size_t dump_elem_size[] = {4, 8, 2, 1};

static int dump_open(Dump *d, int argc, char **argv) {
    memset(d, 0, sizeof *d);
    if (argc != 3 || (strcmp(argv[1], "--write") && strcmp(argv[1], "--compare"))) {
        fprintf(stderr, "usage: %s --write FILE | --compare FILE\n", argv[0]);
        return 2;
    }
    d->compare = strcmp(argv[1], "--compare") == 0;
    d->file = fopen(argv[2], d->compare ? "rb" : "wb");
    if (!d->file) {
        perror(argv[2]);
        return 2;
    }
    return 0;
}

/* Fail the run with a message (a self-check inside the driver, not a comparison). */
static void dump_expect(Dump *d, int ok, const char *what) {
    if (!ok) {
        printf("SELF-CHECK FAILED: %s\n", what);
        d->failures++;
    }
}

static double dump_value(int kind, const void *data, int64_t i) {
    switch (kind) {
    case DUMP_F32: return ((const float *)data)[i];
    case DUMP_F64: return ((const double *)data)[i];
    case DUMP_U8: return ((const uint8_t *)data)[i];
    default: return ((const uint16_t *)data)[i];
    }
}

/* A checksum that is stable across machines for identical data: sum and sum of |x| in double. */
static void dump_record(Dump *d, const char *name, int kind, const void *data, int64_t count, double atol,
                        double rtol) {
    char label[48] = {0};
    strncpy(label, name, sizeof label - 1);
    double sum = 0;
    for (int64_t i = 0; i < count; ++i) sum += dump_value(kind, data, i);
    d->records++;
    if (!d->compare) {
        int32_t k = kind;
        fwrite(label, 1, sizeof label, d->file);
        fwrite(&k, sizeof k, 1, d->file);
        fwrite(&count, sizeof count, 1, d->file);
        fwrite(data, dump_elem_size[kind], (size_t)count, d->file);
        printf("%-40s n=%-8lld sum=%.9g\n", label, (long long)count, sum);
        return;
    }
    char ref_label[48];
    int32_t ref_kind;
    int64_t ref_count;
    if (fread(ref_label, 1, sizeof ref_label, d->file) != sizeof ref_label || fread(&ref_kind, sizeof ref_kind, 1, d->file) != 1
        || fread(&ref_count, sizeof ref_count, 1, d->file) != 1) {
        printf("MISMATCH %s: the reference file ends early\n", label);
        d->failures++;
        return;
    }
    if (strncmp(ref_label, label, sizeof label) || ref_kind != kind || ref_count != count) {
        printf("MISMATCH %s: the reference has %s (kind %d, %lld values)\n", label, ref_label, ref_kind,
               (long long)ref_count);
        d->failures++;
        return;
    }
    void *ref = malloc(dump_elem_size[kind] * (size_t)count + 1);
    if (!ref || fread(ref, dump_elem_size[kind], (size_t)count, d->file) != (size_t)count) {
        printf("MISMATCH %s: the reference data is short\n", label);
        d->failures++;
        free(ref);
        return;
    }
    int64_t bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < count; ++i) {
        double a = dump_value(kind, data, i), b = dump_value(kind, ref, i), err;
        int ok;
        if (kind == DUMP_F16) {
            uint16_t ha = (uint16_t)a, hb = (uint16_t)b;
            err = (ha & 0x8000) == (hb & 0x8000) ? fabs((double)(ha & 0x7fff) - (double)(hb & 0x7fff)) : 65536.0;
            ok = err <= atol;
        } else if (isnan(a) || isnan(b)) {
            err = isnan(a) && isnan(b) ? 0 : INFINITY;
            ok = err == 0;
        } else {
            err = a == b ? 0 : fabs(a - b);
            ok = a == b || err <= atol + rtol * fabs(b); /* a == b first: equal infinities (0 * inf is NaN) */
        }
        if (!ok) {
            if (first < 0) first = i;
            bad++;
        }
        if (err > worst) worst = err;
    }
    if (bad) {
        printf("MISMATCH %-31s %lld of %lld values out of tolerance (first at %lld: %.9g here, %.9g reference), "
               "worst |diff| %.3g\n", label, (long long)bad, (long long)count, (long long)first,
               dump_value(kind, data, first), dump_value(kind, ref, first), worst);
        d->failures++;
    } else {
        printf("match    %-31s n=%-8lld worst |diff| %.3g\n", label, (long long)count, worst);
    }
    free(ref);
}

static int dump_close(Dump *d, const char *driver) {
    if (d->compare) {
        char extra;
        if (fread(&extra, 1, 1, d->file) == 1) {
            printf("MISMATCH: the reference has more records than this run\n");
            d->failures++;
        }
    }
    fclose(d->file);
    printf("%s: %d records, %d failure(s)\n", driver, d->records, d->failures);
    return d->failures ? 1 : 0;
}

/* Deterministic inputs: a 32-bit LCG, the same sequence on every machine. */
typedef struct { uint32_t s; } Lcg;
static uint32_t lcg_next(Lcg *g) { return g->s = g->s * 1664525u + 1013904223u; }
static float lcg_uniform(Lcg *g, float lo, float hi) {
    return lo + (hi - lo) * (float)(lcg_next(g) >> 8) * (1.0f / 16777216.0f);
}

#endif
