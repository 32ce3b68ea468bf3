/*
 * test_gf256.c - GF(2^8) tables, kernel selection, and every SIMD kernel
 * that runs on this CPU against the scalar reference.
 *
 * The tables are checked against arithmetic done bit by bit here (carry-less
 * multiply reduced by 0x11d, and gf2p8affineqb as the Intel SDM defines it),
 * so they are not tested against themselves.  Kernels must match the scalar
 * kernel byte for byte for every constant, every length 0..300 and a few
 * large ones, at unaligned addresses, without touching a byte outside the
 * regions they were given (guard bytes around each buffer, and exact-size
 * allocations so that AddressSanitizer sees any over-read).
 */
#include "ck_gf256.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


/* A coefficient, 0 and 1 (the special cases) an eighth of the time each. */
static uint8_t rnd_coef(void)
{
    switch (test_rnd_below(8)) {
    case 0: return 0;
    case 1: return 1;
    default: return (uint8_t)(test_rnd() >> 40);
    }
}

/* Zeroed, and never NULL (also for n = 0). */
static void *xmalloc(size_t n)
{
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* ---- independent field arithmetic ---- */

/* a * b in GF(2)[x] / (x^8 + x^4 + x^3 + x^2 + 1): carry-less product, then
 * reduce from the top bit down. */
static uint8_t slow_mul(uint8_t a, uint8_t b)
{
    unsigned p = 0;
    for (unsigned i = 0; i < 8; i++)
        if ((b >> i) & 1u)
            p ^= (unsigned)a << i;
    for (unsigned i = 14; i >= 8; i--)
        if ((p >> i) & 1u)
            p ^= 0x11du << (i - 8);
    return (uint8_t)p;
}

/* gf2p8affineqb on one byte, Intel SDM vol. 2 "GF2P8AFFINEQB",
 * affine_byte(): result bit i = parity(matrix.byte[7 - i] AND x) XOR imm8 bit i
 * (imm8 = 0 in our kernels). */
static uint8_t sdm_affine_byte(uint64_t matrix, uint8_t x)
{
    unsigned r = 0;
    for (unsigned i = 0; i < 8; i++) {
        unsigned row = (unsigned)(matrix >> (8 * (7 - i))) & 0xffu;
        unsigned v = row & x, parity = 0;
        for (unsigned j = 0; j < 8; j++)
            parity ^= (v >> j) & 1u;
        r |= parity << i;
    }
    return (uint8_t)r;
}

static void test_tables(void)
{
    CHECK_EQ(CK_GF256_POLY, 0x11d);
    CHECK_EQ(ck_gf256_exp[0], 1);
    CHECK_EQ(ck_gf256_exp[1], CK_GF256_GENERATOR);
    /* alpha generates the whole multiplicative group: 255 distinct powers. */
    unsigned seen[256] = {0};
    for (unsigned i = 0; i < 255; i++) {
        seen[ck_gf256_exp[i]]++;
        CHECK_EQ(ck_gf256_log[ck_gf256_exp[i]], i);
        CHECK_EQ(ck_gf256_exp[i + 1], slow_mul(ck_gf256_exp[i], CK_GF256_GENERATOR));
    }
    CHECK_EQ(seen[0], 0);
    for (unsigned a = 1; a < 256; a++) {
        CHECKF(seen[a] == 1, "a = %u", a);
        CHECK_EQ(ck_gf256_exp[ck_gf256_log[a]], a);
    }
    for (unsigned i = 255; i < 512; i++)
        CHECK_EQ(ck_gf256_exp[i], ck_gf256_exp[i - 255]);

    unsigned bad_mul = 0, bad_div = 0, bad_split = 0, bad_affine = 0;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            uint8_t p = slow_mul((uint8_t)a, (uint8_t)b);
            bad_mul += ck_gf256_mul_table[a][b] != p || ck_gf256_mul((uint8_t)a, (uint8_t)b) != p;
            if (b)
                bad_div += ck_gf256_div(p, (uint8_t)b) != a;
            /* a * b from the nibble tables, as the pshufb/tbl kernels do it */
            bad_split += (ck_gf256_split_table[a][b & 15] ^ ck_gf256_split_table[a][16 + (b >> 4)]) != p;
            bad_affine += sdm_affine_byte(ck_gf256_affine_table[a], (uint8_t)b) != p;
        }
        for (unsigned j = 0; j < 16; j++) {
            bad_split += ck_gf256_split_table[a][j] != slow_mul((uint8_t)a, (uint8_t)j);
            bad_split += ck_gf256_split_table[a][16 + j] != slow_mul((uint8_t)a, (uint8_t)(j << 4));
        }
    }
    CHECK_EQ(bad_mul, 0);
    CHECK_EQ(bad_div, 0);
    CHECK_EQ(bad_split, 0);
    CHECK_EQ(bad_affine, 0);

    CHECK_EQ(ck_gf256_inv(0), 0);
    for (unsigned a = 1; a < 256; a++)
        CHECKF(slow_mul((uint8_t)a, ck_gf256_inv((uint8_t)a)) == 1, "a = %u", a);
    /* The identity matrix is 0x0102040810204080 (row i selects bit i). */
    CHECK_EQ(ck_gf256_affine_table[1], 0x0102040810204080ULL);
    CHECK_EQ(ck_gf256_affine_table[0], 0);
}

/* ---- kernel selection ---- */

static const ck_gf256_kernel *fastest_supported(void)
{
    const ck_gf256_kernel *const *all = ck_gf256_kernels_compiled(), *best = NULL;
    for (size_t i = 0; all[i]; i++)
        if (ck_gf256_kernel_supported(all[i]))
            best = all[i];
    return best;
}

static const ck_gf256_kernel *first_unsupported(void)
{
    const ck_gf256_kernel *const *all = ck_gf256_kernels_compiled();
    for (size_t i = 0; all[i]; i++)
        if (!ck_gf256_kernel_supported(all[i]))
            return all[i];
    return NULL;
}

/*
 * The kernel is picked once per process, on first use, so each value of
 * CLOUDKERNEL_GF_KERNEL is tried in a forked child that sets it before
 * touching the library.  Returns 1 if the child saw the expected kernel and
 * env status.
 */
static int env_picks(const char *value, const ck_gf256_kernel *want, int want_status)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0) {
        if (value)
            setenv("CLOUDKERNEL_GF_KERNEL", value, 1);
        else
            unsetenv("CLOUDKERNEL_GF_KERNEL");
        const ck_gf256_kernel *k = ck_gf256_active();
        int status = ck_gf256_env_status();
        if (k != want || status != want_status) {
            fprintf(stderr, "CLOUDKERNEL_GF_KERNEL=%s: active %s, status %d; want %s, %d\n",
                    value ? value : "(unset)", k->name, status, want->name, want_status);
            _exit(1);
        }
        _exit(0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Must run before anything in this process picks the kernel. */
static void test_env_selection(void)
{
    const ck_gf256_kernel *const *all = ck_gf256_kernels_compiled();
    const ck_gf256_kernel *best = fastest_supported(), *unsup = first_unsupported();

    CHECK(env_picks(NULL, best, CK_OK));
    CHECK(env_picks("", best, CK_OK));
    CHECK(env_picks("no_such_kernel", best, CK_EINVAL));
    CHECK(env_picks("SCALAR", best, CK_EINVAL)); /* names are case-sensitive */
    for (size_t i = 0; all[i]; i++)
        if (ck_gf256_kernel_supported(all[i]))
            CHECKF(env_picks(all[i]->name, all[i], CK_OK), "kernel %s", all[i]->name);
    if (unsup)
        CHECKF(env_picks(unsup->name, best, CK_EUNSUPPORTED), "kernel %s", unsup->name);
    else
        printf("note: every compiled kernel is supported here; CK_EUNSUPPORTED via the "
               "environment not tested\n");
}

static void test_select(void)
{
    const ck_gf256_kernel *const *all = ck_gf256_kernels_compiled();
    const ck_gf256_kernel *unsup = first_unsupported();
    size_t n = 0;

    CHECK(all[0] == &ck_gf256_kernel_scalar);
    for (n = 0; all[n] && n < 64; n++) {
        CHECK(all[n]->name && all[n]->mul_region && all[n]->muladd_region && all[n]->matmul);
        for (size_t j = 0; j < n; j++)
            CHECKF(strcmp(all[j]->name, all[n]->name) != 0, "duplicate name %s", all[n]->name);
    }
    CHECKF(n < 64, "compiled kernel list not NULL-terminated");
    CHECK(ck_gf256_kernel_supported(&ck_gf256_kernel_scalar));

    CHECK(ck_gf256_kernel_by_name("scalar") == &ck_gf256_kernel_scalar);
    CHECK(ck_gf256_kernel_by_name("no_such_kernel") == NULL);
    CHECK(ck_gf256_kernel_by_name(NULL) == NULL);
    if (unsup)
        CHECK(ck_gf256_kernel_by_name(unsup->name) == NULL);

    const ck_gf256_kernel *before = ck_gf256_active();
    CHECK_EQ(ck_gf256_select("no_such_kernel"), CK_EINVAL);
    CHECK_EQ(ck_gf256_select(NULL), CK_EINVAL);
    CHECK(ck_gf256_active() == before);
    if (unsup) {
        CHECK_EQ(ck_gf256_select(unsup->name), CK_EUNSUPPORTED);
        CHECK(ck_gf256_active() == before);
    }
    for (size_t i = 0; all[i]; i++) {
        if (!ck_gf256_kernel_supported(all[i]))
            continue;
        CHECK(ck_gf256_kernel_by_name(all[i]->name) == all[i]);
        CHECK_EQ(ck_gf256_select(all[i]->name), CK_OK);
        CHECK(ck_gf256_active() == all[i]);
    }
    CHECK_EQ(ck_gf256_select(before->name), CK_OK);
}

/* ---- region kernels ---- */

enum { REGION_MAX = 300, GUARD = 40 };

/* One mul_region / muladd_region / in-place mul_region run against the
 * reference, on copies of pool data at the given offsets.  0 on failure. */
static int region_case(const ck_gf256_kernel *k, const uint8_t *pool, size_t pool_len,
                       uint8_t c, size_t len, size_t soff, size_t doff)
{
    /* Each buffer: GUARD + 3 bytes of slack + len + GUARD, checked whole. */
    enum { SIZE = 2 * GUARD + 3 + 65536 + 64 };
    static uint8_t src[SIZE], src0[SIZE], dst[SIZE], exp[SIZE];
    const size_t size = 2 * GUARD + 3 + len;
    int ok = 1;

    memcpy(src, pool + test_rnd_below(pool_len - size), size);
    memcpy(src0, src, size);
    memcpy(dst, pool + test_rnd_below(pool_len - size), size);
    memcpy(exp, dst, size);

    ck_gf256_mul_region_base(exp + GUARD + doff, src + GUARD + soff, c, len);
    k->mul_region(dst + GUARD + doff, src + GUARD + soff, c, len);
    ok &= CHECK_MEMF(dst, exp, size, "%s mul_region c=%u len=%zu src+%zu dst+%zu", k->name, c,
                     len, soff, doff);
    ok &= CHECK_MEMF(src, src0, size, "%s mul_region wrote to src", k->name);

    ck_gf256_muladd_region_base(exp + GUARD + doff, src + GUARD + soff, c, len);
    k->muladd_region(dst + GUARD + doff, src + GUARD + soff, c, len);
    ok &= CHECK_MEMF(dst, exp, size, "%s muladd_region c=%u len=%zu src+%zu dst+%zu", k->name,
                     c, len, soff, doff);
    ok &= CHECK_MEMF(src, src0, size, "%s muladd_region wrote to src", k->name);

    /* In place: dst == src. */
    memcpy(exp, src, size);
    ck_gf256_mul_region_base(exp + GUARD + soff, src0 + GUARD + soff, c, len);
    k->mul_region(src + GUARD + soff, src + GUARD + soff, c, len);
    ok &= CHECK_MEMF(src, exp, size, "%s in-place mul_region c=%u len=%zu at +%zu", k->name, c,
                     len, soff);
    return ok;
}

static void test_region(const ck_gf256_kernel *k, const uint8_t *pool, size_t pool_len)
{
    /* (src, dst) offsets from a 4-byte-aligned base: same and different
     * misalignments. */
    static const size_t offs[][2] = {{0, 0}, {1, 3}, {2, 2}, {3, 1}};
    int ok = 1;

    for (unsigned c = 0; c < 256 && ok; c++)
        for (size_t len = 0; len <= REGION_MAX && ok; len++)
            for (size_t o = 0; o < 4 && ok; o++)
                ok = region_case(k, pool, pool_len, (uint8_t)c, len, offs[o][0], offs[o][1]);

    static const size_t big[] = {1023, 4096, 4097 + 64, 65536 + 63};
    for (size_t i = 0; i < sizeof big / sizeof big[0] && ok; i++)
        for (size_t j = 0; j < 6 && ok; j++)
            ok = region_case(k, pool, pool_len, rnd_coef(), big[i], j % 4, (j * 3) % 4);
}

/* ---- matmul ---- */

/* One matmul against ck_gf256_matmul_base.  Every input and output buffer is
 * its own allocation: inputs are exactly off + len bytes (an over-read is an
 * ASan error), outputs have guard bytes before and, every other case, after
 * (or end exactly, for ASan). */
static int matmul_case(const ck_gf256_kernel *k, size_t rows, size_t cols, size_t len,
                       int accumulate, int coef_kind)
{
    uint8_t *coef = xmalloc(rows * cols);
    const uint8_t **in = xmalloc((cols ? cols : 1) * sizeof *in);
    uint8_t **in_alloc = xmalloc((cols ? cols : 1) * sizeof *in_alloc);
    uint8_t **out = xmalloc(rows * sizeof *out), **ref = xmalloc(rows * sizeof *ref);
    uint8_t **out_alloc = xmalloc(rows * sizeof *out_alloc);
    uint8_t **ref_alloc = xmalloc(rows * sizeof *ref_alloc);
    size_t *out_size = xmalloc(rows * sizeof *out_size);
    int ok = 1;

    for (size_t i = 0; i < rows * cols; i++)
        coef[i] = coef_kind == 0 ? rnd_coef() : coef_kind == 1 ? 0 : 1;
    for (size_t c = 0; c < cols; c++) {
        size_t off = test_rnd_below(8);
        in_alloc[c] = xmalloc(off + len);
        test_rnd_fill(in_alloc[c], off + len);
        in[c] = in_alloc[c] + off;
    }
    for (size_t r = 0; r < rows; r++) {
        size_t off = 1 + test_rnd_below(16), after = (r + len) % 2 ? 16 : 0;
        out_size[r] = off + len + after;
        out_alloc[r] = xmalloc(out_size[r]);
        ref_alloc[r] = xmalloc(out_size[r]);
        test_rnd_fill(out_alloc[r], out_size[r]);
        memcpy(ref_alloc[r], out_alloc[r], out_size[r]);
        out[r] = out_alloc[r] + off;
        ref[r] = ref_alloc[r] + off;
    }

    ck_gf256_matmul_base(len, rows, cols, coef, in, ref, accumulate);
    k->matmul(len, rows, cols, coef, in, out, accumulate);

    for (size_t r = 0; r < rows && ok; r++)
        ok = CHECK_MEMF(out_alloc[r], ref_alloc[r], out_size[r],
                        "%s matmul rows=%zu cols=%zu len=%zu accumulate=%d: output row %zu "
                        "(from %zu bytes before it)",
                        k->name, rows, cols, len, accumulate, r, (size_t)(out[r] - out_alloc[r]));

    for (size_t c = 0; c < cols; c++)
        free(in_alloc[c]);
    for (size_t r = 0; r < rows; r++) {
        free(out_alloc[r]);
        free(ref_alloc[r]);
    }
    free(coef);
    free(in);
    free(in_alloc);
    free(out);
    free(ref);
    free(out_alloc);
    free(ref_alloc);
    free(out_size);
    return ok;
}

static void test_matmul(const ck_gf256_kernel *k)
{
    static const size_t cols_list[] = {0, 1, 2, 3, 5, 8, 17, 40};
    static const size_t len_list[] = {0,  1,  2,  15, 16,  17,  31,  32,  33,  47,  48,   63,  64,
                                      65, 95, 96, 97, 127, 128, 129, 191, 255, 300, 1200, 4097};
    int ok = 1;

    /* Every row count across group boundaries, lengths around each width. */
    for (size_t rows = 1; rows <= 12 && ok; rows++)
        for (size_t ci = 0; ci < sizeof cols_list / sizeof cols_list[0] && ok; ci++)
            for (size_t li = 0; li < sizeof len_list / sizeof len_list[0] && ok; li++)
                for (int acc = 0; acc <= 1 && ok; acc++)
                    ok = matmul_case(k, rows, cols_list[ci], len_list[li], acc, 0);

    /* Every length 0..300 with uneven groups (5 = 4 + 1 or one group of 5,
     * 9 = 5 + 4 or 3 x 3) and more than one input. */
    for (size_t len = 0; len <= REGION_MAX && ok; len++)
        for (int acc = 0; acc <= 1 && ok; acc++) {
            ok = matmul_case(k, 5, 3, len, acc, 0);
            ok = ok && matmul_case(k, 9, 2, len, acc, 0);
        }

    /* All-zero and all-one coefficients. */
    for (int kind = 1; kind <= 2 && ok; kind++)
        for (int acc = 0; acc <= 1 && ok; acc++)
            ok = matmul_case(k, 7, 6, 333, acc, kind);

    /* Random shapes. */
    for (int i = 0; i < 400 && ok; i++)
        ok = matmul_case(k, 1 + test_rnd_below(12), 1 + test_rnd_below(40), test_rnd_below(REGION_MAX + 1),
                         (int)test_rnd_below(2), 0);

    /* No rows. */
    ok = ok && matmul_case(k, 0, 4, 100, 0, 0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_env_selection();

    ck_gf256_init();
    test_tables();
    test_select();

    enum { POOL = 3 * 65536 };
    uint8_t *pool = xmalloc(POOL);
    test_rnd_fill(pool, POOL);

    const ck_gf256_kernel *const *all = ck_gf256_kernels_compiled();
    for (size_t i = 0; all[i]; i++) {
        const ck_gf256_kernel *k = all[i];
        if (k == &ck_gf256_kernel_scalar)
            continue; /* the reference itself */
        if (!ck_gf256_kernel_supported(k)) {
            printf("SKIP kernel %s: not supported by this CPU\n", k->name);
            continue;
        }
        unsigned long failures = test_state.failures;
        test_region(k, pool, POOL);
        test_matmul(k);
        printf("%s kernel %s\n", test_state.failures == failures ? "ok  " : "FAIL", k->name);
    }
    free(pool);
    return test_finish();
}
