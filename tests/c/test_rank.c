/*
 * test_rank.c - the rank kernels (ck_rank.h): the scalar reference against a
 * stable sort written out here, and each vector kernel against the scalar
 * one, on random keys, many ties, signed zeros, huge magnitudes and every
 * length up to past CK_RANK_MAX (the kernels work in blocks of 8, so the
 * tails matter).
 */
#include "ck_rank.h"
#include "test.h"

#include <stdlib.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t next_u64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double unit(void)
{
    return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0);
}

enum { SHAPES = 5, MAX_N = CK_RANK_MAX + 40 };

/* keys of one shape: spread, few distinct values, signed zeros, huge, sorted descending */
static void fill(double *keys, size_t n, int shape)
{
    for (size_t i = 0; i < n; i++) {
        switch (shape) {
        case 0:
            keys[i] = unit() * 2.0 - 1.0;
            break;
        case 1:
            keys[i] = (double)(next_u64() % 4);
            break;
        case 2:
            keys[i] = next_u64() & 1 ? -0.0 : 0.0;
            break;
        case 3:
            keys[i] = (unit() - 0.5) * 1e300;
            break;
        default:
            keys[i] = (double)(n - i) + (next_u64() % 3 == 0 ? 0.0 : 0.5);
            break;
        }
    }
}

/* Stable insertion sort of positions by key: the ranks every kernel must give. */
static void stable_ranks(const double *keys, size_t n, uint32_t *rank)
{
    static uint32_t order[MAX_N];
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)i;
        size_t j = i;
        while (j > 0 && keys[v] < keys[order[j - 1]]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    for (size_t r = 0; r < n; r++)
        rank[order[r]] = (uint32_t)r;
}

static void test_scalar_is_a_stable_sort(void)
{
    static double keys[MAX_N];
    static uint32_t want[MAX_N], got[MAX_N];
    for (size_t n = 0; n <= MAX_N; n++) {
        for (int shape = 0; shape < SHAPES; shape++) {
            fill(keys, n, shape);
            stable_ranks(keys, n, want);
            ck_rank_scalar(keys, n, got);
            if (!CHECK_MEMF(got, want, n * sizeof *got, "n=%zu shape=%d", n, shape))
                return;
        }
    }
}

static void test_kernel_matches_scalar(const char *name, ck_rank_fn kernel)
{
    static double keys[MAX_N + 8];
    static uint32_t want[MAX_N], got[MAX_N + 8];
    for (int round = 0; round < 20; round++) {
        for (size_t n = 0; n <= MAX_N; n++) {
            for (int shape = 0; shape < SHAPES; shape++) {
                fill(keys, n, shape);
                for (size_t i = n; i < n + 8; i++) {
                    keys[i] = -1.0; /* past the end: must not be counted */
                    got[i] = 0xdeadbeefu;
                }
                ck_rank_scalar(keys, n, want);
                kernel(keys, n, got);
                if (!CHECK_MEMF(got, want, n * sizeof *got, "%s n=%zu shape=%d round=%d", name,
                                n, shape, round))
                    return;
                for (size_t i = n; i < n + 8; i++)
                    if (!CHECKF(got[i] == 0xdeadbeefu, "%s wrote rank[%zu] (n=%zu)", name, i, n))
                        return;
            }
        }
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_scalar_is_a_stable_sort();
    ck_rank_fn avx2 = ck_rank_avx2();
    if (avx2)
        test_kernel_matches_scalar("avx2", avx2);
    else
        printf("  avx2 kernel: not run (not built for this target, or the CPU lacks AVX2)\n");
    /* the environment switch turns the kernel off */
    setenv("CLOUDKERNEL_RANK_KERNEL", "none", 1);
    CHECK(ck_rank_kernel() == NULL);
    unsetenv("CLOUDKERNEL_RANK_KERNEL");
    CHECK(ck_rank_kernel() == avx2);
    return test_finish();
}
