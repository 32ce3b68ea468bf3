/*
 * ck_rank.h - stable ranks of a small array of doubles, for sorting by
 * counting.
 *
 * rank[i] = #{j : keys[j] < keys[i]} + #{j < i : keys[j] == keys[i]}
 *
 * is the position keys[i] takes in a stable ascending sort.  Computing it
 * costs n^2 comparisons but no branch that depends on the data and no chain
 * of dependent loads, so with 4-wide vector compares it beats a comparison
 * sort up to a few hundred keys: at the sizes of a consensus topic (tens of
 * sources) a comparison sort of random keys spends most of its time on
 * mispredicted branches.  Keys must not be NaN (the ranks would not be a
 * permutation); -0.0 and 0.0 are equal, as == has them.
 *
 * ck_rank_scalar is the reference; each vector kernel is tested against it.
 * It is not used for sorting: without vector compares a comparison sort is
 * faster, so ck_rank_kernel() returns NULL where no vector kernel runs.
 */
#ifndef CK_RANK_H
#define CK_RANK_H

#include <stddef.h>
#include <stdint.h>

typedef void (*ck_rank_fn)(const double *keys, size_t n, uint32_t *rank);

/* Largest n a kernel is used for by ck_rank_kernel's callers: beyond it the
 * n^2 comparisons cost more than a comparison sort. */
#define CK_RANK_MAX 256

void ck_rank_scalar(const double *keys, size_t n, uint32_t *rank);

/* NULL when this build has no AVX2 kernel or the CPU cannot run it. */
ck_rank_fn ck_rank_avx2(void);

/* The kernel to sort with on this CPU, or NULL: use a comparison sort.
 * CLOUDKERNEL_RANK_KERNEL=none in the environment disables it (for tests
 * and benchmarks of the comparison sort). */
ck_rank_fn ck_rank_kernel(void);

#endif
