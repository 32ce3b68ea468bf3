/*
 * bench_gf256.c - microbenchmark of every GF(2^8) kernel this CPU supports.
 *
 * Build and run (from the repository root; same flags as setup.py):
 *   gcc -std=c99 -D_GNU_SOURCE -O3 -Icsrc bench/bench_gf256.c csrc/ck_gf256*.c \
 *       -lpthread -o /tmp/bench_gf256 && /tmp/bench_gf256 [repeats]
 *
 * Each figure is the median over `repeats` (default 41) timed batches, each
 * batch long enough (~2 ms) for the clock to be accurate.  Data is warm in
 * cache.  GB/s counts source bytes: len for the region ops, cols * len for
 * matmul (the data an encoder reads), 1 GB = 1e9 bytes.
 */
#include "ck_gf256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPEATS 1001

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint8_t rng_byte(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 32);
}

enum { OP_MUL, OP_MULADD, OP_MATMUL };

struct job {
    int op;
    size_t len, rows, cols;
};

/* Buffers shared by all jobs, sized for the largest. */
static uint8_t *src_buf, *dst_buf, *coef_buf;
static const uint8_t *in_ptrs[256];
static uint8_t *out_ptrs[256];

static void run_once(const ck_gf256_kernel *k, const struct job *j)
{
    switch (j->op) {
    case OP_MUL: k->mul_region(dst_buf, src_buf, 0x8e, j->len); break;
    case OP_MULADD: k->muladd_region(dst_buf, src_buf, 0x8e, j->len); break;
    default:
        k->matmul(j->len, j->rows, j->cols, coef_buf, in_ptrs, out_ptrs, 0);
        break;
    }
}

/* Median seconds per call. */
static double time_job(const ck_gf256_kernel *k, const struct job *j, int repeats)
{
    static double samples[MAX_REPEATS];
    size_t iters = 1;
    /* Calibrate the batch to about 2 ms; bounded in case the clock misbehaves. */
    for (int step = 0; step < 40; step++) {
        double t0 = now_ns();
        for (size_t i = 0; i < iters; i++)
            run_once(k, j);
        if (now_ns() - t0 > 2e6)
            break;
        iters *= 2;
    }
    for (int r = 0; r < repeats; r++) {
        double t0 = now_ns();
        for (size_t i = 0; i < iters; i++)
            run_once(k, j);
        samples[r] = (now_ns() - t0) / (double)iters;
    }
    qsort(samples, (size_t)repeats, sizeof samples[0], cmp_double);
    return samples[repeats / 2] * 1e-9;
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 41;
    if (repeats < 1 || repeats > MAX_REPEATS) {
        fprintf(stderr, "usage: %s [repeats 1..%d]\n", argv[0], MAX_REPEATS);
        return 2;
    }
    ck_gf256_init();

    static const struct job jobs[] = {
        {OP_MUL, 1200, 0, 0},      {OP_MUL, 65536, 0, 0},       {OP_MULADD, 1200, 0, 0},
        {OP_MULADD, 65536, 0, 0},  {OP_MATMUL, 1200, 8, 32},    {OP_MATMUL, 1200, 4, 10},
        {OP_MATMUL, 1200, 50, 200},
    };
    const size_t max_len = 65536, max_rows = 50, max_cols = 200, stride = 1216;

    /* Packets at a 1216-byte stride (64-byte multiple) with the 1200-byte
     * packets of a block contiguous, as a codec's packet pool would have them. */
    src_buf = malloc(max_cols * stride > max_len ? max_cols * stride : max_len);
    dst_buf = malloc(max_rows * stride > max_len ? max_rows * stride : max_len);
    coef_buf = malloc(max_rows * max_cols);
    if (!src_buf || !dst_buf || !coef_buf)
        return 1;
    for (size_t i = 0; i < max_cols * stride || i < max_len; i++)
        src_buf[i] = rng_byte();
    for (size_t i = 0; i < max_rows * max_cols; i++)
        coef_buf[i] = (uint8_t)(rng_byte() | 2); /* never 0 or 1: no easy coefficients */
    for (size_t c = 0; c < max_cols; c++)
        in_ptrs[c] = src_buf + c * stride;
    for (size_t r = 0; r < max_rows; r++)
        out_ptrs[r] = dst_buf + r * stride;

    printf("%-12s %-28s %10s %9s\n", "kernel", "operation", "us/call", "GB/s");
    const ck_gf256_kernel *const *all = ck_gf256_kernels_compiled();
    for (size_t ki = 0; all[ki]; ki++) {
        const ck_gf256_kernel *k = all[ki];
        if (!ck_gf256_kernel_supported(k)) {
            printf("%-12s (not supported on this CPU)\n", k->name);
            continue;
        }
        for (size_t ji = 0; ji < sizeof jobs / sizeof jobs[0]; ji++) {
            const struct job *j = &jobs[ji];
            char what[64];
            size_t bytes = j->len;
            if (j->op == OP_MATMUL) {
                snprintf(what, sizeof what, "matmul %zux%zu len %zu", j->rows, j->cols, j->len);
                bytes = j->cols * j->len;
            } else {
                snprintf(what, sizeof what, "%s len %zu", j->op == OP_MUL ? "mul_region" : "muladd_region",
                         j->len);
            }
            double s = time_job(k, j, repeats);
            printf("%-12s %-28s %10.3f %9.2f\n", k->name, what, s * 1e6, (double)bytes / s * 1e-9);
            fflush(stdout);
        }
    }
    free(src_buf);
    free(dst_buf);
    free(coef_buf);
    return 0;
}
