/*
 * ck_gf256_arm.c - the NEON kernel for ck_gf256.h (AArch64).
 *
 * Advanced SIMD is part of every ARMv8-A CPU, so no feature test or target
 * attribute is needed.  Multiplying 16 bytes by a constant c takes two table
 * lookups: c * b = lo[b & 15] ^ hi[b >> 4] with the 16-entry tables of
 * ck_gf256_split_table[c], each one TBL (vqtbl1q_u8).
 *
 * Same structure as the x86 kernels (see ck_gf256_x86.c): matmul takes the
 * output rows in groups of up to GMAX = 8, whose 8 x 2 accumulators stay in
 * registers (32 NEON registers: 16 accumulators, 4 split inputs, 2 tables,
 * the nibble mask and temporaries) while the loop runs over the length, two
 * vectors at a time, and innermost over the inputs.  A ragged end is done
 * as one overlapping vector with only its new bytes merged in; buffers
 * shorter than a vector go through a 16-byte stack buffer.  No load or
 * store touches a byte outside the buffers.
 */
#include "ck_gf256.h"
#include "ck_gf256_simd.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <string.h>

#define W 16
#define GMAX 8
#define UNROLL _Pragma("GCC unroll 16")

/* Kinds of matmul step. */
#define STEP_FULL 0 /* whole vectors at an offset */
#define STEP_TAIL 1 /* the last W bytes, of which only the last n are new */
#define STEP_PART 2 /* len < W: the first n bytes */

#define INLINE static inline __attribute__((always_inline))

/* GCC's AArch64 instruction scheduler hoists the table loads of all 8 rows
 * to the top of the loop body, and the registers they need are then taken
 * from the accumulators, which get spilled to the stack every iteration.  A
 * compiler-only barrier after each row keeps each row's loads next to their
 * use; the out-of-order core still overlaps them. */
#define SCHED_BARRIER() __asm__ __volatile__("" ::: "memory")

/* Bytes 16..31 set: 16 bytes at 16 - W + rem = rem mask the last rem bytes. */
static const uint8_t tail_mask_bytes[32] = {
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

typedef struct {
    uint8x16_t lo, hi;
} nibbles;

typedef struct {
    uint8x16_t lo, hi;
} tables;

INLINE nibbles split(uint8x16_t x)
{
    nibbles s;
    s.lo = vandq_u8(x, vdupq_n_u8(0x0f));
    s.hi = vshrq_n_u8(x, 4);
    return s;
}

INLINE tables tab(uint8_t c)
{
    tables t;
    t.lo = vld1q_u8(ck_gf256_split_table[c]);
    t.hi = vld1q_u8(ck_gf256_split_table[c] + 16);
    return t;
}

INLINE uint8x16_t mul(nibbles x, tables t)
{
    return veorq_u8(vqtbl1q_u8(t.lo, x.lo), vqtbl1q_u8(t.hi, x.hi));
}

INLINE uint8x16_t mac(uint8x16_t acc, nibbles x, tables t)
{
    return veorq_u8(veorq_u8(acc, vqtbl1q_u8(t.lo, x.lo)), vqtbl1q_u8(t.hi, x.hi));
}

INLINE uint8x16_t load_part(const uint8_t *p, size_t n)
{
    uint8_t buf[W];
    memset(buf, 0, sizeof buf);
    memcpy(buf, p, n);
    return vld1q_u8(buf);
}

INLINE void store_part(uint8_t *p, uint8x16_t v, size_t n)
{
    uint8_t buf[W];
    vst1q_u8(buf, v);
    memcpy(p, buf, n);
}

INLINE uint8x16_t tail_mask(size_t rem)
{
    return vld1q_u8(tail_mask_bytes + rem);
}

static void neon_mul_region(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    const tables t = tab(c);
    size_t i = 0;

    if (len < W) {
        if (len)
            store_part(dst, mul(split(load_part(src, len)), t), len);
        return;
    }
    for (; len - i >= 2 * W; i += 2 * W) {
        uint8x16_t a = vld1q_u8(src + i), b = vld1q_u8(src + i + W);
        vst1q_u8(dst + i, mul(split(a), t));
        vst1q_u8(dst + i + W, mul(split(b), t));
    }
    if (len - i >= W) {
        vst1q_u8(dst + i, mul(split(vld1q_u8(src + i)), t));
        i += W;
    }
    if (i < len) {
        /* Overlapping last vector: bytes before i are final in dst (and may
         * have overwritten src), so only the new ones are taken. */
        const size_t o = len - W;
        const uint8x16_t r = mul(split(vld1q_u8(src + o)), t);
        vst1q_u8(dst + o, vbslq_u8(tail_mask(len - i), r, vld1q_u8(dst + o)));
    }
}

static void neon_muladd_region(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    const tables t = tab(c);
    size_t i = 0;

    if (len < W) {
        if (len) {
            uint8x16_t r = mul(split(load_part(src, len)), t);
            store_part(dst, veorq_u8(load_part(dst, len), r), len);
        }
        return;
    }
    for (; len - i >= 2 * W; i += 2 * W) {
        uint8x16_t a = vld1q_u8(src + i), b = vld1q_u8(src + i + W);
        vst1q_u8(dst + i, veorq_u8(vld1q_u8(dst + i), mul(split(a), t)));
        vst1q_u8(dst + i + W, veorq_u8(vld1q_u8(dst + i + W), mul(split(b), t)));
    }
    if (len - i >= W) {
        vst1q_u8(dst + i, veorq_u8(vld1q_u8(dst + i), mul(split(vld1q_u8(src + i)), t)));
        i += W;
    }
    if (i < len) {
        const size_t o = len - W;
        const uint8x16_t r = mul(split(vld1q_u8(src + o)), t);
        vst1q_u8(dst + o, veorq_u8(vld1q_u8(dst + o), vandq_u8(tail_mask(len - i), r)));
    }
}

INLINE void mm_load(const int nv, const int kind, const uint8_t *s, size_t n, nibbles x[2])
{
    UNROLL
    for (int v = 0; v < nv; v++)
        x[v] = split(kind == STEP_PART ? load_part(s, n) : vld1q_u8(s + v * W));
}

/*
 * One step of a group of g rows: nv vectors at byte offset off of every
 * buffer.  coef and out point at the group's first row.  For STEP_TAIL,
 * off = len - W and n is the number of new bytes; for STEP_PART, n = len.
 * cols >= 1.
 */
INLINE void mm_step(const int g, const int nv, const int kind, size_t off, size_t n, size_t cols,
                    const uint8_t *coef, const uint8_t *const *in, uint8_t *const *out,
                    int accumulate)
{
    uint8x16_t acc[GMAX][2];
    nibbles x[2];

    mm_load(nv, kind, in[0] + off, n, x);
    UNROLL
    for (int r = 0; r < g; r++) {
        const tables t = tab(coef[(size_t)r * cols]);
        UNROLL
        for (int v = 0; v < nv; v++)
            acc[r][v] = mul(x[v], t);
    }
    for (size_t c = 1; c < cols; c++) {
        mm_load(nv, kind, in[c] + off, n, x);
        const uint8_t *cc = coef + c;
        UNROLL
        for (int r = 0; r < g; r++) {
            const tables t = tab(cc[(size_t)r * cols]);
            UNROLL
            for (int v = 0; v < nv; v++)
                acc[r][v] = mac(acc[r][v], x[v], t);
            SCHED_BARRIER();
        }
    }

    UNROLL
    for (int r = 0; r < g; r++) {
        UNROLL
        for (int v = 0; v < nv; v++) {
            uint8_t *o = out[r] + off + v * W;
            uint8x16_t a = acc[r][v];
            if (kind == STEP_FULL) {
                if (accumulate)
                    a = veorq_u8(a, vld1q_u8(o));
                vst1q_u8(o, a);
            } else if (kind == STEP_TAIL) {
                /* Without accumulate the overlapping bytes are recomputed
                 * to the same values (out does not overlap in). */
                if (accumulate)
                    a = veorq_u8(vld1q_u8(o), vandq_u8(tail_mask(n), a));
                vst1q_u8(o, a);
            } else {
                if (accumulate)
                    a = veorq_u8(a, load_part(o, n));
                store_part(o, a, n);
            }
        }
    }
}

/* Rows [0, g) of coef/out over the whole length; len >= 1, cols >= 1. */
INLINE void mm_group(const int g, size_t len, size_t cols, const uint8_t *coef,
                     const uint8_t *const *in, uint8_t *const *out, int accumulate)
{
    size_t i = 0;

    if (len < W) {
        mm_step(g, 1, STEP_PART, 0, len, cols, coef, in, out, accumulate);
        return;
    }
    for (; len - i >= 2 * W; i += 2 * W)
        mm_step(g, 2, STEP_FULL, i, 0, cols, coef, in, out, accumulate);
    if (len - i >= W) {
        mm_step(g, 1, STEP_FULL, i, 0, cols, coef, in, out, accumulate);
        i += W;
    }
    if (i < len)
        mm_step(g, 1, STEP_TAIL, len - W, len - i, cols, coef, in, out, accumulate);
}

static void neon_matmul_rows(size_t len, size_t rows, size_t cols, const uint8_t *coef,
                             const uint8_t *const *in, uint8_t *const *out, int accumulate)
{
    /* As few groups as possible, of near-equal size (9 rows: 5 + 4). */
    const size_t groups = (rows + GMAX - 1) / GMAX;
    size_t r = 0;
    for (size_t q = 0; q < groups; q++) {
        const size_t left = groups - q;
        const size_t g = (rows - r + left - 1) / left;
        const uint8_t *cf = coef + r * cols;
        uint8_t *const *o = out + r;
        switch (g) {
        case 8: mm_group(8, len, cols, cf, in, o, accumulate); break;
        case 7: mm_group(7, len, cols, cf, in, o, accumulate); break;
        case 6: mm_group(6, len, cols, cf, in, o, accumulate); break;
        case 5: mm_group(5, len, cols, cf, in, o, accumulate); break;
        case 4: mm_group(4, len, cols, cf, in, o, accumulate); break;
        case 3: mm_group(3, len, cols, cf, in, o, accumulate); break;
        case 2: mm_group(2, len, cols, cf, in, o, accumulate); break;
        default: mm_group(1, len, cols, cf, in, o, accumulate); break;
        }
        r += g;
    }
}

static void neon_matmul(size_t len, size_t rows, size_t cols, const uint8_t *coef,
                        const uint8_t *const *in, uint8_t *const *out, int accumulate)
{
    if (len == 0 || rows == 0)
        return;
    if (cols == 0) {
        if (!accumulate)
            for (size_t r = 0; r < rows; r++)
                memset(out[r], 0, len);
        return;
    }
    if (len < W && rows <= 256 && cols <= 256) {
        ck_gf256_matmul_short(neon_matmul_rows, W, len, rows, cols, coef, in, out, accumulate);
        return;
    }
    neon_matmul_rows(len, rows, cols, coef, in, out, accumulate);
}

const ck_gf256_kernel ck_gf256_kernel_neon = {
    "neon",
    neon_mul_region,
    neon_muladd_region,
    neon_matmul,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int ck_gf256_arm_unused;
#endif
