/*
 * ck_gf256_x86.c - SSSE3, AVX2, AVX-512 and GFNI kernels for ck_gf256.h.
 *
 * Instruction sets are enabled per function with __attribute__((target(...)))
 * rather than with -m flags for the file: setup.py compiles every csrc/ file
 * with the same flags, and the library must load and run on x86 CPUs without
 * these extensions.  A kernel's code only executes after
 * ck_gf256_kernel_supported() said yes.  GCC will not inline a function into
 * one with a different target, so every helper carries its kernel's target
 * too (K_INLINE below).
 *
 * Multiplying a vector of bytes by a constant c:
 *  - pshufb kernels (ssse3, avx2, avx512): c * b = lo[b & 15] ^ hi[b >> 4],
 *    the two 16-entry tables of ck_gf256_split_table[c], looked up 16 lanes
 *    at a time by (v)pshufb, which shuffles within each 128-bit lane; hence
 *    the tables are broadcast to every lane.
 *  - GFNI kernels: multiplication by c is linear over GF(2), so one
 *    gf2p8affineqb with the 8x8 bit matrix ck_gf256_affine_table[c] does it.
 *    gf2p8mulb is of no use: it hard-wires the polynomial 0x11b, not 0x11d.
 *
 * The five kernels share one body, the template at the end of this file.
 * The file includes itself once per kernel with K_* macros naming the vector
 * type, width and operations.  So the loop and tail logic that the tests
 * exercise through the SSSE3 and AVX2 kernels on any AVX2 machine is the
 * logic the AVX-512 and GFNI kernels run too; these differ only in those
 * few macros (and AVX-512's masked loads and stores for buffers shorter
 * than a vector), which matters because few test machines can run them.
 *
 * matmul follows ISA-L's gf_Nvect_dot_prod: output rows are taken in groups
 * of up to K_GMAX, whose accumulators stay in registers while the loop runs
 * over the length, K_VPS vectors at a time, and innermost over the inputs:
 * each input vector is loaded and split into nibbles once per group, then
 * multiplied into every row of the group.  The coefficient tables are read
 * directly from the global tables (two 16-byte loads, or one 8-byte one for
 * GFNI, per row and input and step), so a call has no set-up cost.
 *
 * Lengths that are not a multiple of the width W: when len >= W, the last
 * W bytes are recomputed as one overlapping vector and only the new bytes
 * are merged in with a mask (that also keeps in-place mul_region right,
 * whose overlapping source bytes are already overwritten).  When len < W,
 * the data goes through a W-byte stack buffer, or masked loads and stores
 * on AVX-512.  No load or store ever touches a byte outside the buffers.
 */
#include "ck_gf256.h"
#include "ck_gf256_simd.h"

#if defined(__x86_64__) || defined(__i386__)

#ifndef CK_GF256_X86_TEMPLATE

#include <immintrin.h>
#include <string.h>

/* Bytes 64..127 set: loading W bytes at 64 - W + rem gives a mask of the
 * last rem bytes of a vector. */
#define CK_X86_FF8 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
static const uint8_t ck_x86_tail_mask[128] = {
    0,          0,          0,          0,          0,          0,          0,          0,
    0,          0,          0,          0,          0,          0,          0,          0,
    0,          0,          0,          0,          0,          0,          0,          0,
    0,          0,          0,          0,          0,          0,          0,          0,
    0,          0,          0,          0,          0,          0,          0,          0,
    0,          0,          0,          0,          0,          0,          0,          0,
    0,          0,          0,          0,          0,          0,          0,          0,
    0,          0,          0,          0,          0,          0,          0,          0,
    CK_X86_FF8, CK_X86_FF8, CK_X86_FF8, CK_X86_FF8,
    CK_X86_FF8, CK_X86_FF8, CK_X86_FF8, CK_X86_FF8,
};

/* Kinds of matmul step (compile-time constants in the template). */
#define CK_X86_FULL 0 /* whole vectors at an offset */
#define CK_X86_TAIL 1 /* the last W bytes, of which only the last n are new */
#define CK_X86_PART 2 /* len < W: the first n bytes */

/* Bits 0..n-1, for 1 <= n <= 63. */
#define CK_X86_MASK64(n) ((__mmask64)(~(uint64_t)0 >> (64 - (n))))

#define CK_X86_CAT_(a, b) a##_##b
#define CK_X86_CAT(a, b) CK_X86_CAT_(a, b)
#define CK_X86_KERNEL_(name) ck_gf256_kernel_##name
#define CK_X86_KERNEL(name) CK_X86_KERNEL_(name)
#define CK_X86_UNROLL _Pragma("GCC unroll 16")

#define CK_GF256_X86_TEMPLATE 1

/* ---- SSSE3: 16-byte vectors, 16 registers ---- */
#define K_NAME ssse3
#define K_LABEL "ssse3"
#define K_TARGET "ssse3"
#define K_V __m128i
#define K_W 16
#define K_GMAX 4
#define K_VPS 2
#define K_PSHUFB 1
#define K_MASKED 0
#define K_LOADU(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define K_STOREU(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))
#define K_XOR(a, b) _mm_xor_si128((a), (b))
#define K_AND(a, b) _mm_and_si128((a), (b))
#define K_ANDNOT(m, a) _mm_andnot_si128((m), (a))
#define K_OR(a, b) _mm_or_si128((a), (b))
#define K_SET1_8(b) _mm_set1_epi8((char)(b))
#define K_SRLI64_4(x) _mm_srli_epi64((x), 4)
#define K_SHUF(t, i) _mm_shuffle_epi8((t), (i))
#define K_BCAST16(p) K_LOADU(p)
#include "ck_gf256_x86.c"

/* ---- AVX2: 32-byte vectors, 16 registers ---- */
#define K_NAME avx2
#define K_LABEL "avx2"
#define K_TARGET "avx2"
#define K_V __m256i
#define K_W 32
#define K_GMAX 4
#define K_VPS 2
#define K_PSHUFB 1
#define K_MASKED 0
#define K_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define K_STOREU(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))
#define K_XOR(a, b) _mm256_xor_si256((a), (b))
#define K_AND(a, b) _mm256_and_si256((a), (b))
#define K_ANDNOT(m, a) _mm256_andnot_si256((m), (a))
#define K_OR(a, b) _mm256_or_si256((a), (b))
#define K_SET1_8(b) _mm256_set1_epi8((char)(b))
#define K_SRLI64_4(x) _mm256_srli_epi64((x), 4)
#define K_SHUF(t, i) _mm256_shuffle_epi8((t), (i))
#define K_BCAST16(p) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#include "ck_gf256_x86.c"

/* ---- AVX-512 F+BW: 64-byte vectors, 32 registers ---- */
#define K_NAME avx512
#define K_LABEL "avx512"
#define K_TARGET "avx512f,avx512bw"
#define K_V __m512i
#define K_W 64
#define K_GMAX 8
#define K_VPS 2
#define K_PSHUFB 1
#define K_MASKED 1
#define K_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define K_STOREU(p, v) _mm512_storeu_si512((void *)(p), (v))
#define K_XOR(a, b) _mm512_xor_si512((a), (b))
#define K_AND(a, b) _mm512_and_si512((a), (b))
#define K_ANDNOT(m, a) _mm512_andnot_si512((m), (a))
#define K_OR(a, b) _mm512_or_si512((a), (b))
#define K_SET1_8(b) _mm512_set1_epi8((char)(b))
#define K_SRLI64_4(x) _mm512_srli_epi64((x), 4)
#define K_SHUF(t, i) _mm512_shuffle_epi8((t), (i))
#define K_BCAST16(p) _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(p)))
/* vpternlogq with truth table 0x96 = a ^ b ^ c: one op where XOR takes two. */
#define K_XOR3(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0x96)
#define K_MASK_LOAD(p, n) _mm512_maskz_loadu_epi8(CK_X86_MASK64(n), (const void *)(p))
#define K_MASK_STORE(p, v, n) _mm512_mask_storeu_epi8((void *)(p), CK_X86_MASK64(n), (v))
#include "ck_gf256_x86.c"

/* ---- GFNI with AVX2: 32-byte vectors, VEX-encoded vgf2p8affineqb ---- */
#define K_NAME gfni
#define K_LABEL "gfni"
#define K_TARGET "gfni,avx2"
#define K_V __m256i
#define K_W 32
#define K_GMAX 4
#define K_VPS 2
#define K_PSHUFB 0
#define K_MASKED 0
#define K_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define K_STOREU(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))
#define K_XOR(a, b) _mm256_xor_si256((a), (b))
#define K_AND(a, b) _mm256_and_si256((a), (b))
#define K_ANDNOT(m, a) _mm256_andnot_si256((m), (a))
#define K_OR(a, b) _mm256_or_si256((a), (b))
#define K_SET1_64(q) _mm256_set1_epi64x((long long)(q))
#define K_AFFINE(x, m) _mm256_gf2p8affine_epi64_epi8((x), (m), 0)
#include "ck_gf256_x86.c"

/* ---- GFNI with AVX-512 F+BW: 64-byte vectors, 32 registers ---- */
#define K_NAME gfni_avx512
#define K_LABEL "gfni_avx512"
#define K_TARGET "gfni,avx512f,avx512bw"
#define K_V __m512i
#define K_W 64
#define K_GMAX 8
#define K_VPS 2
#define K_PSHUFB 0
#define K_MASKED 1
#define K_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define K_STOREU(p, v) _mm512_storeu_si512((void *)(p), (v))
#define K_XOR(a, b) _mm512_xor_si512((a), (b))
#define K_AND(a, b) _mm512_and_si512((a), (b))
#define K_ANDNOT(m, a) _mm512_andnot_si512((m), (a))
#define K_OR(a, b) _mm512_or_si512((a), (b))
#define K_SET1_64(q) _mm512_set1_epi64((long long)(q))
#define K_AFFINE(x, m) _mm512_gf2p8affine_epi64_epi8((x), (m), 0)
#define K_MASK_LOAD(p, n) _mm512_maskz_loadu_epi8(CK_X86_MASK64(n), (const void *)(p))
#define K_MASK_STORE(p, v, n) _mm512_mask_storeu_epi8((void *)(p), CK_X86_MASK64(n), (v))
#include "ck_gf256_x86.c"

#else /* CK_GF256_X86_TEMPLATE: one kernel, described by the K_* macros */

#if K_VPS != 1 && K_VPS != 2
#error "K_VPS must be 1 or 2"
#endif
#if K_GMAX < 1 || K_GMAX > 8
#error "K_GMAX must be 1..8"
#endif

#define KFN(f) CK_X86_CAT(K_NAME, f)
#define K_ATTR __attribute__((target(K_TARGET)))
#define K_INLINE static inline __attribute__((always_inline, target(K_TARGET)))

#if K_PSHUFB
/* An input vector split into its low and high nibbles. */
typedef struct {
    K_V lo, hi;
} KFN(in_t);
/* The two nibble tables of a coefficient, broadcast to every 128-bit lane. */
typedef struct {
    K_V lo, hi;
} KFN(tab_t);

K_INLINE KFN(in_t) KFN(split)(K_V x)
{
    const K_V m = K_SET1_8(0x0f);
    KFN(in_t) s;
    s.lo = K_AND(x, m);
    /* x86 has no byte shift: the 64-bit shift pulls bits of the next byte
     * into the top nibble, which the mask clears. */
    s.hi = K_AND(K_SRLI64_4(x), m);
    return s;
}

K_INLINE KFN(tab_t) KFN(tab)(uint8_t c)
{
    KFN(tab_t) t;
    t.lo = K_BCAST16(ck_gf256_split_table[c]);
    t.hi = K_BCAST16(ck_gf256_split_table[c] + 16);
    return t;
}

K_INLINE K_V KFN(mul)(KFN(in_t) x, KFN(tab_t) t)
{
    return K_XOR(K_SHUF(t.lo, x.lo), K_SHUF(t.hi, x.hi));
}

/* acc ^ c * x.  Folding the lookups into acc one at a time keeps fewer
 * temporaries live than acc ^ (lo ^ hi): a group of 4 rows x 2 vectors
 * already needs about all 16 xmm/ymm registers. */
K_INLINE K_V KFN(mac)(K_V acc, KFN(in_t) x, KFN(tab_t) t)
{
#ifdef K_XOR3
    return K_XOR3(acc, K_SHUF(t.lo, x.lo), K_SHUF(t.hi, x.hi));
#else
    return K_XOR(K_XOR(acc, K_SHUF(t.lo, x.lo)), K_SHUF(t.hi, x.hi));
#endif
}
#else
typedef struct {
    K_V x;
} KFN(in_t);
/* The coefficient's bit matrix in every qword. */
typedef struct {
    K_V m;
} KFN(tab_t);

K_INLINE KFN(in_t) KFN(split)(K_V x)
{
    KFN(in_t) s;
    s.x = x;
    return s;
}

K_INLINE KFN(tab_t) KFN(tab)(uint8_t c)
{
    KFN(tab_t) t;
    t.m = K_SET1_64(ck_gf256_affine_table[c]);
    return t;
}

K_INLINE K_V KFN(mul)(KFN(in_t) x, KFN(tab_t) t)
{
    return K_AFFINE(x.x, t.m);
}

K_INLINE K_V KFN(mac)(K_V acc, KFN(in_t) x, KFN(tab_t) t)
{
    return K_XOR(acc, K_AFFINE(x.x, t.m));
}
#endif

/* Loads and stores of the first n < W bytes; the other lanes load as zero. */
#if K_MASKED
K_INLINE K_V KFN(load_part)(const uint8_t *p, size_t n)
{
    return K_MASK_LOAD(p, n);
}

K_INLINE void KFN(store_part)(uint8_t *p, K_V v, size_t n)
{
    K_MASK_STORE(p, v, n);
}
#else
K_INLINE K_V KFN(load_part)(const uint8_t *p, size_t n)
{
    uint8_t buf[K_W];
    memset(buf, 0, sizeof buf);
    memcpy(buf, p, n);
    return K_LOADU(buf);
}

K_INLINE void KFN(store_part)(uint8_t *p, K_V v, size_t n)
{
    uint8_t buf[K_W];
    K_STOREU(buf, v);
    memcpy(p, buf, n);
}
#endif

/* All ones in the last rem (1..W-1) bytes. */
K_INLINE K_V KFN(tail_mask)(size_t rem)
{
    return K_LOADU(ck_x86_tail_mask + 64 - K_W + rem);
}

K_ATTR static void KFN(mul_region)(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    const KFN(tab_t) t = KFN(tab)(c);
    size_t i = 0;

    if (len < K_W) {
        if (len)
            KFN(store_part)(dst, KFN(mul)(KFN(split)(KFN(load_part)(src, len)), t), len);
        return;
    }
    for (; len - i >= 2 * K_W; i += 2 * K_W) {
        K_V a = K_LOADU(src + i), b = K_LOADU(src + i + K_W);
        K_STOREU(dst + i, KFN(mul)(KFN(split)(a), t));
        K_STOREU(dst + i + K_W, KFN(mul)(KFN(split)(b), t));
    }
    if (len - i >= K_W) {
        K_STOREU(dst + i, KFN(mul)(KFN(split)(K_LOADU(src + i)), t));
        i += K_W;
    }
    if (i < len) {
        /* Overlapping last vector: the bytes before i are final in dst (and
         * may have overwritten src), so only the new ones are taken. */
        const size_t o = len - K_W;
        const K_V m = KFN(tail_mask)(len - i);
        const K_V r = KFN(mul)(KFN(split)(K_LOADU(src + o)), t);
        K_STOREU(dst + o, K_OR(K_ANDNOT(m, K_LOADU(dst + o)), K_AND(m, r)));
    }
}

K_ATTR static void KFN(muladd_region)(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    const KFN(tab_t) t = KFN(tab)(c);
    size_t i = 0;

    if (len < K_W) {
        if (len) {
            K_V r = KFN(mul)(KFN(split)(KFN(load_part)(src, len)), t);
            KFN(store_part)(dst, K_XOR(KFN(load_part)(dst, len), r), len);
        }
        return;
    }
    for (; len - i >= 2 * K_W; i += 2 * K_W) {
        K_V a = K_LOADU(src + i), b = K_LOADU(src + i + K_W);
        K_STOREU(dst + i, K_XOR(K_LOADU(dst + i), KFN(mul)(KFN(split)(a), t)));
        K_STOREU(dst + i + K_W, K_XOR(K_LOADU(dst + i + K_W), KFN(mul)(KFN(split)(b), t)));
    }
    if (len - i >= K_W) {
        K_STOREU(dst + i, K_XOR(K_LOADU(dst + i), KFN(mul)(KFN(split)(K_LOADU(src + i)), t)));
        i += K_W;
    }
    if (i < len) {
        const size_t o = len - K_W;
        const K_V m = KFN(tail_mask)(len - i);
        const K_V r = KFN(mul)(KFN(split)(K_LOADU(src + o)), t);
        K_STOREU(dst + o, K_XOR(K_LOADU(dst + o), K_AND(m, r)));
    }
}

/* Load nv input vectors at s (n bytes for CK_X86_PART) and split them. */
K_INLINE void KFN(mm_load)(const int nv, const int kind, const uint8_t *s, size_t n,
                           KFN(in_t) x[K_VPS])
{
    CK_X86_UNROLL
    for (int v = 0; v < nv; v++)
        x[v] = KFN(split)(kind == CK_X86_PART ? KFN(load_part)(s, n) : K_LOADU(s + v * K_W));
}

/*
 * One step of a group of g rows: nv vectors at byte offset off of every
 * buffer.  coef and out point at the group's first row.  For CK_X86_TAIL,
 * off = len - W and n is the number of new bytes; for CK_X86_PART, n = len.
 * cols >= 1.
 */
K_INLINE void KFN(mm_step)(const int g, const int nv, const int kind, size_t off, size_t n,
                           size_t cols, const uint8_t *coef, const uint8_t *const *in,
                           uint8_t *const *out, int accumulate)
{
    K_V acc[K_GMAX][K_VPS];
    KFN(in_t) x[K_VPS];

    KFN(mm_load)(nv, kind, in[0] + off, n, x);
    CK_X86_UNROLL
    for (int r = 0; r < g; r++) {
        const KFN(tab_t) t = KFN(tab)(coef[(size_t)r * cols]);
        CK_X86_UNROLL
        for (int v = 0; v < nv; v++)
            acc[r][v] = KFN(mul)(x[v], t);
    }
    for (size_t c = 1; c < cols; c++) {
        KFN(mm_load)(nv, kind, in[c] + off, n, x);
        const uint8_t *cc = coef + c;
        CK_X86_UNROLL
        for (int r = 0; r < g; r++) {
            const KFN(tab_t) t = KFN(tab)(cc[(size_t)r * cols]);
            CK_X86_UNROLL
            for (int v = 0; v < nv; v++)
                acc[r][v] = KFN(mac)(acc[r][v], x[v], t);
        }
    }

    CK_X86_UNROLL
    for (int r = 0; r < g; r++) {
        CK_X86_UNROLL
        for (int v = 0; v < nv; v++) {
            uint8_t *o = out[r] + off + v * K_W;
            K_V a = acc[r][v];
            if (kind == CK_X86_FULL) {
                if (accumulate)
                    a = K_XOR(a, K_LOADU(o));
                K_STOREU(o, a);
            } else if (kind == CK_X86_TAIL) {
                /* Without accumulate the overlapping bytes are recomputed
                 * to the same values (out does not overlap in). */
                if (accumulate)
                    a = K_XOR(K_LOADU(o), K_AND(KFN(tail_mask)(n), a));
                K_STOREU(o, a);
            } else {
                if (accumulate)
                    a = K_XOR(a, KFN(load_part)(o, n));
                KFN(store_part)(o, a, n);
            }
        }
    }
}

/* Rows [0, g) of coef/out over the whole length; len >= 1, cols >= 1. */
K_INLINE void KFN(mm_group)(const int g, size_t len, size_t cols, const uint8_t *coef,
                            const uint8_t *const *in, uint8_t *const *out, int accumulate)
{
    size_t i = 0;

    if (len < K_W) {
        KFN(mm_step)(g, 1, CK_X86_PART, 0, len, cols, coef, in, out, accumulate);
        return;
    }
    for (; len - i >= K_VPS * K_W; i += K_VPS * K_W)
        KFN(mm_step)(g, K_VPS, CK_X86_FULL, i, 0, cols, coef, in, out, accumulate);
#if K_VPS == 2
    if (len - i >= K_W) {
        KFN(mm_step)(g, 1, CK_X86_FULL, i, 0, cols, coef, in, out, accumulate);
        i += K_W;
    }
#endif
    if (i < len)
        KFN(mm_step)(g, 1, CK_X86_TAIL, len - K_W, len - i, cols, coef, in, out, accumulate);
}

K_INLINE void KFN(matmul_rows)(size_t len, size_t rows, size_t cols, const uint8_t *coef,
                                const uint8_t *const *in, uint8_t *const *out, int accumulate)
{
    /* As few groups as possible, of near-equal size: 9 rows with groups of
     * up to 8 go as 5 + 4, not 8 + 1 with a one-row group that loads and
     * splits every input for a single multiply. */
    const size_t groups = (rows + K_GMAX - 1) / K_GMAX;
    size_t r = 0;
    for (size_t q = 0; q < groups; q++) {
        const size_t left = groups - q;
        const size_t g = (rows - r + left - 1) / left;
        const uint8_t *cf = coef + r * cols;
        uint8_t *const *o = out + r;
        switch (g) {
#if K_GMAX >= 8
        case 8: KFN(mm_group)(8, len, cols, cf, in, o, accumulate); break;
#endif
#if K_GMAX >= 7
        case 7: KFN(mm_group)(7, len, cols, cf, in, o, accumulate); break;
#endif
#if K_GMAX >= 6
        case 6: KFN(mm_group)(6, len, cols, cf, in, o, accumulate); break;
#endif
#if K_GMAX >= 5
        case 5: KFN(mm_group)(5, len, cols, cf, in, o, accumulate); break;
#endif
#if K_GMAX >= 4
        case 4: KFN(mm_group)(4, len, cols, cf, in, o, accumulate); break;
#endif
#if K_GMAX >= 3
        case 3: KFN(mm_group)(3, len, cols, cf, in, o, accumulate); break;
#endif
#if K_GMAX >= 2
        case 2: KFN(mm_group)(2, len, cols, cf, in, o, accumulate); break;
#endif
        default: KFN(mm_group)(1, len, cols, cf, in, o, accumulate); break;
        }
        r += g;
    }
}

#if !K_MASKED
/* matmul_rows behind an address, for ck_gf256_matmul_short (masked kernels
 * load short rows directly). */
K_ATTR static void KFN(matmul_whole)(size_t len, size_t rows, size_t cols, const uint8_t *coef,
                                     const uint8_t *const *in, uint8_t *const *out,
                                     int accumulate)
{
    KFN(matmul_rows)(len, rows, cols, coef, in, out, accumulate);
}

#endif

K_ATTR static void KFN(matmul)(size_t len, size_t rows, size_t cols, const uint8_t *coef,
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
#if !K_MASKED
    if (len < K_W && rows <= 256 && cols <= 256) {
        ck_gf256_matmul_short(KFN(matmul_whole), K_W, len, rows, cols, coef, in, out,
                              accumulate);
        return;
    }
#endif
    KFN(matmul_rows)(len, rows, cols, coef, in, out, accumulate);
}

const ck_gf256_kernel CK_X86_KERNEL(K_NAME) = {
    K_LABEL,
    KFN(mul_region),
    KFN(muladd_region),
    KFN(matmul),
};

#undef KFN
#undef K_ATTR
#undef K_INLINE
#undef K_NAME
#undef K_LABEL
#undef K_TARGET
#undef K_V
#undef K_W
#undef K_GMAX
#undef K_VPS
#undef K_PSHUFB
#undef K_MASKED
#undef K_LOADU
#undef K_STOREU
#undef K_XOR
#undef K_AND
#undef K_ANDNOT
#undef K_OR
#undef K_SET1_8
#undef K_SRLI64_4
#undef K_SHUF
#undef K_XOR3
#undef K_BCAST16
#undef K_SET1_64
#undef K_AFFINE
#undef K_MASK_LOAD
#undef K_MASK_STORE

#endif /* CK_GF256_X86_TEMPLATE */

#else
/* ISO C forbids an empty translation unit. */
typedef int ck_gf256_x86_unused;
#endif
