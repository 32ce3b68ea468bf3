/*
 * ck_rs.c - Cauchy Reed-Solomon erasure code (see ck_rs.h for the contract).
 */
#include "ck_rs.h"

#include "ck_gf256.h"

#include <stdlib.h>
#include <string.h>

struct ck_rs {
    unsigned k, m;
    uint8_t *enc; /* m x k, row-major: enc[j * k + i] = C(k + j, i) */
};

int ck_rs_new(unsigned k, unsigned m, ck_rs **out)
{
    if (!out || k < 1 || k + m > 256)
        return CK_EINVAL;
    ck_gf256_init();
    ck_rs *rs = malloc(sizeof *rs);
    if (!rs)
        return CK_ENOMEM;
    rs->k = k;
    rs->m = m;
    rs->enc = malloc((size_t)m * k + 1);
    if (!rs->enc) {
        free(rs);
        return CK_ENOMEM;
    }
    for (unsigned j = 0; j < m; j++)
        for (unsigned i = 0; i < k; i++)
            rs->enc[j * k + i] = ck_gf256_inv((uint8_t)((k + j) ^ i));
    *out = rs;
    return CK_OK;
}

void ck_rs_free(ck_rs *rs)
{
    if (rs) {
        free(rs->enc);
        free(rs);
    }
}

unsigned ck_rs_k(const ck_rs *rs) { return rs->k; }
unsigned ck_rs_m(const ck_rs *rs) { return rs->m; }

uint8_t ck_rs_coefficient(const ck_rs *rs, unsigned r, unsigned i)
{
    (void)rs;
    return ck_gf256_inv((uint8_t)(r ^ i));
}

int ck_rs_encode(const ck_rs *rs, const uint8_t *const *sources, uint8_t *const *repairs,
                 size_t len)
{
    if (!rs || (!sources && rs->k) || (!repairs && rs->m))
        return CK_EINVAL;
    if (rs->m && len)
        ck_gf256_active()->matmul(len, rs->m, rs->k, rs->enc, sources, repairs, 0);
    return CK_OK;
}

/* out[i] = log( prod_k (b_i + a_k) / prod_{k != i} (b_i + b_k) ) mod 255:
 * with (a, b) = (x, y) the row factor P(y_i) / Q'(y_i) of the inverse, with
 * (a, b) = (y, x) the column factor Q(x_j) / P'(x_j). */
static void log_ratio(const uint8_t *a, const uint8_t *b, unsigned e, unsigned *out)
{
    const uint8_t *lg = ck_gf256_log;
    for (unsigned i = 0; i < e; i++) {
        unsigned num = 0, den = 0;
        for (unsigned k = 0; k < e; k++) {
            num += lg[a[k] ^ b[i]];
            if (k != i)
                den += lg[b[k] ^ b[i]];
        }
        out[i] = (num + 255u * 256u - den) % 255u;
    }
}

/*
 * Closed-form inverse of the e x e Cauchy matrix A[j][i] = 1 / (x_j + y_i)
 * (rows j: the chosen repairs x_j = R[j]; columns i: the lost sources
 * y_i = L[i]).  With P(t) = prod_k (t + x_k) and Q(t) = prod_k (t + y_k),
 * the inverse (rows i, columns j) is
 *
 *     inv[i][j] = P(y_i) Q(x_j) / ((x_j + y_i) P'(x_j) Q'(y_i))
 *
 * where P'(x_j) = prod_{k != j} (x_j + x_k) and Q'(y_i) = prod_{k != i}
 * (y_i + y_k): Schechter's formula, in characteristic 2 where every sign
 * is +.  Computed in the log domain: O(e^2) table lookups.
 */
static void cauchy_inverse(const uint8_t *x, const uint8_t *y, unsigned e, uint8_t *inv)
{
    unsigned row_log[256], col_log[256];
    const uint8_t *lg = ck_gf256_log;
    log_ratio(x, y, e, row_log);
    log_ratio(y, x, e, col_log);
    for (unsigned i = 0; i < e; i++)
        for (unsigned j = 0; j < e; j++)
            inv[i * e + j] =
                ck_gf256_exp[(row_log[i] + col_log[j] + 255u - lg[x[j] ^ y[i]]) % 255u];
}

int ck_rs_decode_with(const ck_rs *rs, const uint8_t *const *packets, uint8_t *const *out,
                      size_t len, int strategy)
{
    if (!rs || !packets)
        return CK_EINVAL;
    const unsigned k = rs->k, n = rs->k + rs->m;
    uint8_t lost[256], repair[256], known[256];
    unsigned e = 0, nknown = 0, nrepair = 0;
    for (unsigned p = 0; p < k; p++) {
        if (packets[p])
            known[nknown++] = (uint8_t)p;
        else
            lost[e++] = (uint8_t)p;
    }
    for (unsigned p = k; p < n && nrepair < e; p++)
        if (packets[p])
            repair[nrepair++] = (uint8_t)p;
    if (nrepair < e)
        return CK_ETOOFEW;
    if (e == 0)
        return CK_OK;
    if (!out)
        return CK_EINVAL;
    for (unsigned i = 0; i < e; i++)
        if (!out[lost[i]])
            return CK_EINVAL;
    if (len == 0)
        return CK_OK;

    if (strategy == CK_RS_DECODE_AUTO) {
        /* DIRECT folds the inverse into the known sources' coefficients: an
         * e x e matmul over rows of k - e bytes.  STAGED instead applies the
         * inverse to the data: an e x e matmul over rows of len bytes, plus
         * copies.  The region work is otherwise the same (e x k pairs).  In
         * theory DIRECT wins whenever k - e < len; measured (AVX2, 1200-byte
         * packets) STAGED is ~10% faster from k - e = 150 on, and equal
         * near k - e = len / 10. */
        strategy = (size_t)nknown * 10 <= len ? CK_RS_DECODE_DIRECT : CK_RS_DECODE_STAGED;
    }

    /* One allocation for the matrices, pointer arrays and (STAGED) the
     * intermediate regions; decode must not share state between threads. */
    size_t staged = strategy == CK_RS_DECODE_STAGED && nknown ? (size_t)e * len : 0;
    size_t need = (size_t)e * e + (size_t)e * k + (size_t)e * nknown +
                  3 * 256 * sizeof(uint8_t *) + staged;
    uint8_t *mem = malloc(need);
    if (!mem)
        return CK_ENOMEM;
    const uint8_t **in = (const uint8_t **)mem;
    uint8_t **dst = (uint8_t **)(mem + 256 * sizeof(uint8_t *));
    uint8_t **tmp = (uint8_t **)(mem + 2 * 256 * sizeof(uint8_t *));
    uint8_t *inv = mem + 3 * 256 * sizeof(uint8_t *);
    uint8_t *coef = inv + (size_t)e * e;
    uint8_t *cauchy = coef + (size_t)e * k; /* C[R][known], e x nknown */
    uint8_t *regions = cauchy + (size_t)e * nknown;

    cauchy_inverse(repair, lost, e, inv);
    for (unsigned i = 0; i < e; i++)
        dst[i] = out[lost[i]];

    /* For each chosen repair r: repair_r = sum_known C(r,s) src_s + sum_lost
     * C(r,l) src_l, so src_lost = inv * (repair - C[R][known] src_known). */
    const ck_gf256_kernel *kern = ck_gf256_active();
    for (unsigned j = 0; j < e; j++)
        for (unsigned s = 0; s < nknown; s++)
            cauchy[(size_t)j * nknown + s] = ck_gf256_inv((uint8_t)(repair[j] ^ known[s]));
    if (strategy == CK_RS_DECODE_DIRECT) {
        /* Row i of the decode matrix over inputs (repairs..., known...) is
         * inv[i][*] for the repairs, then (inv * C[R][known])[i][*] (minus is
         * plus here): computed as one small matmul over rows of C. */
        for (unsigned j = 0; j < e; j++) {
            in[j] = packets[repair[j]];
            tmp[j] = cauchy + (size_t)j * nknown;
            memcpy(coef + (size_t)j * k, inv + (size_t)j * e, e);
            dst[e + j] = coef + (size_t)j * k + e;
        }
        if (nknown)
            kern->matmul(nknown, e, e, inv, (const uint8_t *const *)tmp, dst + e, 0);
        for (unsigned s = 0; s < nknown; s++)
            in[e + s] = packets[known[s]];
        kern->matmul(len, e, k, coef, in, dst, 0);
    } else {
        if (nknown) {
            for (unsigned j = 0; j < e; j++) {
                tmp[j] = regions + (size_t)j * len;
                memcpy(tmp[j], packets[repair[j]], len);
            }
            for (unsigned s = 0; s < nknown; s++)
                in[s] = packets[known[s]];
            kern->matmul(len, e, nknown, cauchy, in, tmp, 1);
        } else {
            /* Every source lost: the repairs themselves are the right-hand side. */
            for (unsigned j = 0; j < e; j++)
                tmp[j] = (uint8_t *)packets[repair[j]];
        }
        kern->matmul(len, e, e, inv, (const uint8_t *const *)tmp, dst, 0);
    }
    free(mem);
    return CK_OK;
}

int ck_rs_decode(const ck_rs *rs, const uint8_t *const *packets, uint8_t *const *out,
                 size_t len)
{
    return ck_rs_decode_with(rs, packets, out, len, CK_RS_DECODE_AUTO);
}
