/*
 * ck_rank.c - stable ranks by counting (see ck_rank.h): the scalar
 * reference and an AVX2 kernel chosen at run time.
 */
#include "ck_rank.h"

#include <stdlib.h>
#include <string.h>

void ck_rank_scalar(const double *keys, size_t n, uint32_t *rank)
{
    for (size_t i = 0; i < n; i++) {
        double x = keys[i];
        uint32_t r = 0;
        for (size_t j = 0; j < i; j++)
            r += keys[j] <= x;
        for (size_t j = i + 1; j < n; j++)
            r += keys[j] < x;
        rank[i] = r;
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CK_HAVE_RANK_AVX2 1
#include <immintrin.h>

#define RANK_AVX2 __attribute__((target("avx2")))

/* Counts into c_* and d_* the keys[j .. end) that compare PRED with x_lo
 * and x_hi, advancing j; two accumulators per half break the add chain.
 * (A macro: the compare predicate must be an immediate.) */
#define COUNT_KEYS(end, PRED)                                                                     \
    do {                                                                                          \
        for (; j + 1 < (end); j += 2) {                                                           \
            __m256d a_ = _mm256_broadcast_sd(keys + j), b_ = _mm256_broadcast_sd(keys + j + 1);   \
            c_lo = _mm256_sub_epi64(c_lo, _mm256_castpd_si256(_mm256_cmp_pd(a_, x_lo, PRED)));    \
            c_hi = _mm256_sub_epi64(c_hi, _mm256_castpd_si256(_mm256_cmp_pd(a_, x_hi, PRED)));    \
            d_lo = _mm256_sub_epi64(d_lo, _mm256_castpd_si256(_mm256_cmp_pd(b_, x_lo, PRED)));    \
            d_hi = _mm256_sub_epi64(d_hi, _mm256_castpd_si256(_mm256_cmp_pd(b_, x_hi, PRED)));    \
        }                                                                                         \
        if (j < (end)) {                                                                          \
            __m256d a_ = _mm256_broadcast_sd(keys + j);                                           \
            c_lo = _mm256_sub_epi64(c_lo, _mm256_castpd_si256(_mm256_cmp_pd(a_, x_lo, PRED)));    \
            c_hi = _mm256_sub_epi64(c_hi, _mm256_castpd_si256(_mm256_cmp_pd(a_, x_hi, PRED)));    \
            j++;                                                                                  \
        }                                                                                         \
    } while (0)

/* Eight keys keys[i0 .. i0+8) at a time against every key: keys before the
 * block count when <= x, keys after it when < x, and inside the block a
 * key counts for lane t when it comes before lane t (<=) or after it (<),
 * which leaves each key's comparison with itself out. */
RANK_AVX2 static void rank_avx2(const double *keys, size_t n, uint32_t *rank)
{
    const __m256i lane_lo = _mm256_set_epi64x(3, 2, 1, 0);
    const __m256i lane_hi = _mm256_set_epi64x(7, 6, 5, 4);
    for (size_t i0 = 0; i0 < n; i0 += 8) {
        size_t width = n - i0 < 8 ? n - i0 : 8, end = i0 + width;
        __m256i lanes = _mm256_set1_epi64x((long long)width);
        __m256i in_lo = _mm256_cmpgt_epi64(lanes, lane_lo), in_hi = _mm256_cmpgt_epi64(lanes, lane_hi);
        __m256d x_lo = _mm256_maskload_pd(keys + i0, in_lo);
        __m256d x_hi = _mm256_maskload_pd(keys + i0 + 4, in_hi);
        __m256i c_lo = _mm256_setzero_si256(), c_hi = _mm256_setzero_si256();
        __m256i d_lo = _mm256_setzero_si256(), d_hi = _mm256_setzero_si256();
        /* before the block */
        size_t j = 0;
        COUNT_KEYS(i0, _CMP_LE_OQ);
        /* the block itself */
        for (; j < end; j++) {
            __m256d a = _mm256_broadcast_sd(keys + j);
            __m256i at = _mm256_set1_epi64x((long long)(j - i0));
            __m256d before_lo = _mm256_castsi256_pd(_mm256_cmpgt_epi64(lane_lo, at));
            __m256d before_hi = _mm256_castsi256_pd(_mm256_cmpgt_epi64(lane_hi, at));
            __m256d le_lo = _mm256_cmp_pd(a, x_lo, _CMP_LE_OQ), lt_lo = _mm256_cmp_pd(a, x_lo, _CMP_LT_OQ);
            __m256d le_hi = _mm256_cmp_pd(a, x_hi, _CMP_LE_OQ), lt_hi = _mm256_cmp_pd(a, x_hi, _CMP_LT_OQ);
            c_lo = _mm256_sub_epi64(c_lo, _mm256_castpd_si256(_mm256_blendv_pd(lt_lo, le_lo, before_lo)));
            c_hi = _mm256_sub_epi64(c_hi, _mm256_castpd_si256(_mm256_blendv_pd(lt_hi, le_hi, before_hi)));
        }
        /* after the block */
        COUNT_KEYS(n, _CMP_LT_OQ);
        long long counts[8];
        _mm256_storeu_si256((__m256i *)counts, _mm256_add_epi64(c_lo, d_lo));
        _mm256_storeu_si256((__m256i *)(counts + 4), _mm256_add_epi64(c_hi, d_hi));
        for (size_t t = 0; i0 + t < end; t++)
            rank[i0 + t] = (uint32_t)counts[t];
    }
}
#endif

ck_rank_fn ck_rank_avx2(void)
{
#if defined(CK_HAVE_RANK_AVX2)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        return rank_avx2;
#endif
    return NULL;
}

ck_rank_fn ck_rank_kernel(void)
{
    const char *want = getenv("CLOUDKERNEL_RANK_KERNEL");
    if (want && strcmp(want, "none") == 0)
        return NULL;
    return ck_rank_avx2();
}
