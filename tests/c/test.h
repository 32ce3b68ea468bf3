/*
 * test.h - a minimal harness for the C unit tests in tests/c/.
 *
 * Each test_*.c is its own program: it includes this header, runs its
 * checks and ends main() with `return test_finish();`, which prints a summary
 * and returns nonzero if any check failed.  A failing check prints
 * file:line and what failed, and testing goes on, so one run shows every
 * failure.  After TEST_MAX_REPORTS failures only the count grows: a broken
 * kernel fails the same way thousands of times.
 *
 *   CHECK(cond)                   cond is true
 *   CHECKF(cond, fmt, ...)        same, with printf-style context on failure
 *   CHECK_EQ(a, b)                two integers are equal (both printed if not)
 *   CHECK_MEM(a, b, n)            n bytes are equal (first difference printed)
 *   CHECK_MEMF(a, b, n, fmt, ...) same, with context
 *
 * Each evaluates to 1 when the check passed and 0 otherwise, so a test can
 * stop a sweep at its first failure: `if (!CHECK(...)) break;`.
 */
#ifndef CK_TEST_H
#define CK_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TEST_MAX_REPORTS 30

static struct {
    unsigned long checks, failures;
} test_state;

#if defined(__GNUC__)
#define TEST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TEST_PRINTF(f, a)
#endif

/* Count a check; when it failed, print where, what, and the context if any. */
static inline int test_vcheck(int ok, const char *file, int line, const char *what,
                              const char *fmt, va_list ap)
{
    test_state.checks++;
    if (ok)
        return 1;
    test_state.failures++;
    if (test_state.failures <= TEST_MAX_REPORTS) {
        fprintf(stderr, "%s:%d: FAIL: %s\n", file, line, what);
        if (fmt) {
            fputs("    ", stderr);
            vfprintf(stderr, fmt, ap);
            fputc('\n', stderr);
        }
        if (test_state.failures == TEST_MAX_REPORTS)
            fprintf(stderr, "(further failures are counted, not shown)\n");
    }
    return 0;
}

static inline TEST_PRINTF(5, 6) int test_check(int ok, const char *file, int line,
                                               const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = test_vcheck(ok, file, line, what, fmt, ap);
    va_end(ap);
    return r;
}

static inline int test_check_eq(long long a, long long b, const char *file, int line,
                                const char *what)
{
    return test_check(a == b, file, line, what, "%lld != %lld", a, b);
}

/* Like test_check; fmt (may be NULL) adds context after the first difference. */
static inline TEST_PRINTF(6, 7) int test_check_mem(const void *a, const void *b, size_t n,
                                                   const char *file, int line,
                                                   const char *fmt, ...)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t i = 0;
    if (n && memcmp(x, y, n) == 0)
        i = n;
    while (i < n && x[i] == y[i])
        i++;
    char what[96] = "";
    if (i < n) /* formatting every passing check would dominate the run time */
        snprintf(what, sizeof what, "%zu-byte buffers differ, first at byte %zu (0x%02x != 0x%02x)",
                 n, i, x[i], y[i]);
    va_list ap;
    va_start(ap, fmt);
    int r = test_vcheck(i == n, file, line, what, fmt, ap);
    va_end(ap);
    return r;
}

#define CHECK(cond) test_check(!!(cond), __FILE__, __LINE__, #cond, NULL)
#define CHECKF(cond, ...) test_check(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)
#define CHECK_EQ(a, b) \
    test_check_eq((long long)(a), (long long)(b), __FILE__, __LINE__, #a " == " #b)
#define CHECK_MEM(a, b, n) test_check_mem((a), (b), (n), __FILE__, __LINE__, NULL)
#define CHECK_MEMF(a, b, n, ...) test_check_mem((a), (b), (n), __FILE__, __LINE__, __VA_ARGS__)

/* Deterministic pseudo-random numbers (xorshift64, fixed seed): every run
 * of a test sees the same inputs. */
static uint64_t test_rng_state = 0x2545f4914f6cdd1dULL;

static inline uint64_t test_rnd(void)
{
    test_rng_state ^= test_rng_state << 13;
    test_rng_state ^= test_rng_state >> 7;
    test_rng_state ^= test_rng_state << 17;
    return test_rng_state;
}

/* Uniform enough in [0, n); n must be nonzero. */
static inline size_t test_rnd_below(size_t n)
{
    return (size_t)(test_rnd() % n);
}

static inline void test_rnd_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(test_rnd() >> 24);
}

/* Print the summary; returns the exit status for main(). */
static inline int test_finish(void)
{
    fprintf(stderr, "%lu checks, %lu failed\n", test_state.checks, test_state.failures);
    return test_state.failures ? 1 : 0;
}

#endif /* CK_TEST_H */
