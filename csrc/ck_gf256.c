/*
 * ck_gf256.c - GF(2^8) tables and the scalar reference kernel.
 *
 * The tables are computed, not pasted: alpha = 2 generates the multiplicative
 * group of GF(2)[x]/(0x11d), so exp[i] = 2^i walks all 255 nonzero elements
 * (multiplying by x is a shift, reduced by XOR with the polynomial when bit 8
 * is set) and log is its inverse.  Everything else derives from exp/log.
 */
#include "ck_gf256.h"
#include "ck_gf256_simd.h"

#include <pthread.h>
#include <string.h>

uint8_t ck_gf256_exp[512];
uint8_t ck_gf256_log[256];
uint8_t ck_gf256_inv_table[256];
uint8_t ck_gf256_mul_table[256][256];
uint8_t ck_gf256_split_table[256][32];
uint64_t ck_gf256_affine_table[256];

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    unsigned x = 1;
    for (unsigned i = 0; i < 255; i++) {
        ck_gf256_exp[i] = (uint8_t)x;
        ck_gf256_log[x] = (uint8_t)i;
        x <<= 1;
        if (x & 0x100)
            x ^= CK_GF256_POLY;
    }
    /* exp is periodic with period 255; extend so log[a]+log[b] (<= 508) indexes directly. */
    for (unsigned i = 255; i < 512; i++)
        ck_gf256_exp[i] = ck_gf256_exp[i - 255];
    ck_gf256_log[0] = 0; /* undefined; never read for a = 0 */

    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++)
            ck_gf256_mul_table[a][b] =
                (a && b) ? ck_gf256_exp[ck_gf256_log[a] + ck_gf256_log[b]] : 0;
        ck_gf256_inv_table[a] = a ? ck_gf256_exp[255 - ck_gf256_log[a]] : 0;
    }
    for (unsigned c = 0; c < 256; c++) {
        for (unsigned j = 0; j < 16; j++) {
            ck_gf256_split_table[c][j] = ck_gf256_mul_table[c][j];
            ck_gf256_split_table[c][16 + j] = ck_gf256_mul_table[c][j << 4];
        }
        /* Multiplication by c is GF(2)-linear: column j of its bit matrix is
         * c * x^j.  gf2p8affineqb computes result bit i from byte 7 - i. */
        uint64_t m = 0;
        for (unsigned i = 0; i < 8; i++) {
            unsigned row = 0;
            for (unsigned j = 0; j < 8; j++)
                row |= (unsigned)((ck_gf256_mul_table[c][1u << j] >> i) & 1u) << j;
            m |= (uint64_t)row << (8 * (7 - i));
        }
        ck_gf256_affine_table[c] = m;
    }
}

void ck_gf256_init(void)
{
    pthread_once(&tables_once, build_tables);
}

const char *ck_status_str(int status)
{
    switch (status) {
    case CK_OK: return "ok";
    case CK_EINVAL: return "invalid argument";
    case CK_ENOMEM: return "out of memory";
    case CK_ETOOFEW: return "too few packets to rebuild the block";
    case CK_EUNCORRECTABLE: return "too many errors to correct";
    case CK_EUNSUPPORTED: return "not supported on this CPU";
    default: return "unknown status";
    }
}

void ck_gf256_mul_region_base(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    const uint8_t *row = ck_gf256_mul_table[c];
    for (size_t i = 0; i < len; i++)
        dst[i] = row[src[i]];
}

void ck_gf256_muladd_region_base(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len)
{
    const uint8_t *row = ck_gf256_mul_table[c];
    for (size_t i = 0; i < len; i++)
        dst[i] ^= row[src[i]];
}

void ck_gf256_matmul_base_range(size_t start, size_t len, size_t rows, size_t cols,
                                const uint8_t *coef, const uint8_t *const *in,
                                uint8_t *const *out, int accumulate)
{
    for (size_t r = 0; r < rows; r++) {
        uint8_t *o = out[r] + start;
        if (!accumulate && len)
            memset(o, 0, len);
        for (size_t c = 0; c < cols; c++) {
            const uint8_t *row = ck_gf256_mul_table[coef[r * cols + c]];
            const uint8_t *s = in[c] + start;
            for (size_t i = 0; i < len; i++)
                o[i] ^= row[s[i]];
        }
    }
}

void ck_gf256_matmul_base(size_t len, size_t rows, size_t cols, const uint8_t *coef,
                          const uint8_t *const *in, uint8_t *const *out, int accumulate)
{
    ck_gf256_matmul_base_range(0, len, rows, cols, coef, in, out, accumulate);
}

/* whole() reads only the first cols and rows pointers, all set here; gcc
 * cannot see that through the function pointer and warns. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
void ck_gf256_matmul_short(ck_gf256_matmul_fn whole, size_t width, size_t len, size_t rows,
                           size_t cols, const uint8_t *coef, const uint8_t *const *in,
                           uint8_t *const *out, int accumulate)
{
    /* packed at the vector width, so the copies span as few lines as can be */
    uint8_t vin[256 * CK_GF256_SHORT_MAX], vout[256 * CK_GF256_SHORT_MAX];
    const uint8_t *pin[256];
    uint8_t *pout[256];
    for (size_t c = 0; c < cols; c++) {
        uint8_t *v = vin + c * width;
        memcpy(v, in[c], len);
        memset(v + len, 0, width - len);
        pin[c] = v;
    }
    for (size_t r = 0; r < rows; r++) {
        pout[r] = vout + r * width;
        if (accumulate) {
            memcpy(pout[r], out[r], len);
            memset(pout[r] + len, 0, width - len);
        }
    }
    whole(width, rows, cols, coef, pin, pout, accumulate);
    for (size_t r = 0; r < rows; r++)
        memcpy(out[r], pout[r], len);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

const ck_gf256_kernel ck_gf256_kernel_scalar = {
    "scalar",
    ck_gf256_mul_region_base,
    ck_gf256_muladd_region_base,
    ck_gf256_matmul_base,
};
