/*
 * ck_rsc.c - reedsolo-compatible byte-level Reed-Solomon codec (see ck_rsc.h).
 *
 * Decoding a chunk, for erasure positions with locators X = alpha^(n-1-pos):
 *   1. zero the erased bytes (as reedsolo does) and compute the syndromes
 *      S_j = c(alpha^j); all zero means a codeword: done;
 *   2. erasure locator G(x) = prod (1 + X x); Forney syndromes: the
 *      coefficients s..nsym-1 of G(x) S(x), which see only the errors;
 *   3. Berlekamp-Massey on them gives the error locator; the errata locator
 *      is L(x) = error locator * G(x);
 *   4. Chien search: the roots alpha^q of L give the positions; fewer roots
 *      than deg L means the chunk is beyond repair;
 *   5. Forney: with O(x) = S(x) L(x) mod x^nsym, the value at locator X is
 *      X * O(1/X) / L'(1/X) (fcr = 0);
 *   6. recompute the syndromes: any nonzero one means the chunk is beyond
 *      repair.
 */
#include "ck_rsc.h"

#include "ck_gf256.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 255

struct ck_rsc {
    unsigned nsym, nsize, k;   /* k = nsize - nsym message bytes per chunk */
    size_t stride;             /* nsym rounded up to 32: matmul length */
    uint8_t *parity_cols;      /* k columns of stride bytes: x^d mod g, d = nsym.. */
    const uint8_t **parity_in; /* parity_in[u] = column of degree nsym + k - 1 - u */
};

/* vandermonde[p][j] = alpha^(p * j mod 255); row p is the syndrome column
 * of a byte of degree p, and also the powers used by the Chien search. */
static uint8_t vandermonde[256][256];
/* syndrome_in[t] = vandermonde[254 - t]: inputs for a 255-byte codeword;
 * a shorter one of n bytes uses the suffix syndrome_in + 255 - n. */
static const uint8_t *syndrome_in[MAX_N];
/* power_rows[i] = vandermonde[i]: the Chien search's inputs, one per
 * locator coefficient. */
static const uint8_t *power_rows[MAX_N + 1];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    ck_gf256_init();
    for (unsigned p = 0; p < 256; p++)
        for (unsigned j = 0; j < 256; j++)
            vandermonde[p][j] = ck_gf256_exp[(p * j) % 255u];
    for (unsigned t = 0; t < MAX_N; t++)
        syndrome_in[t] = vandermonde[254 - t];
    for (unsigned i = 0; i <= MAX_N; i++)
        power_rows[i] = vandermonde[i];
}

static size_t round_up_32(size_t n)
{
    return (n + 31u) & ~(size_t)31u;
}

int ck_rsc_new(unsigned nsym, unsigned nsize, ck_rsc **out)
{
    if (!out || nsym < 1 || nsym >= nsize || nsize > MAX_N)
        return CK_EINVAL;
    pthread_once(&tables_once, build_tables);
    ck_rsc *rsc = calloc(1, sizeof *rsc);
    if (!rsc)
        return CK_ENOMEM;
    rsc->nsym = nsym;
    rsc->nsize = nsize;
    rsc->k = nsize - nsym;
    rsc->stride = round_up_32(nsym);
    rsc->parity_cols = calloc(rsc->k, rsc->stride);
    rsc->parity_in = malloc(rsc->k * sizeof *rsc->parity_in);
    if (!rsc->parity_cols || !rsc->parity_in) {
        ck_rsc_free(rsc);
        return CK_ENOMEM;
    }

    /* g(x) = prod_{j < nsym} (x + alpha^j), gen[i] = coefficient of x^i. */
    uint8_t gen[MAX_N + 1] = {1};
    for (unsigned j = 0; j < nsym; j++) {
        uint8_t root = ck_gf256_exp[j];
        for (unsigned i = j + 1; i > 0; i--)
            gen[i] = gen[i - 1] ^ ck_gf256_mul(gen[i], root);
        gen[0] = ck_gf256_mul(gen[0], root);
    }
    /* Columns r_d = x^d mod g for d = nsym, nsym + 1, ...: r_nsym = g - x^nsym,
     * r_{d+1} = x r_d reduced by g.  col[q] holds the coefficient of
     * x^(nsym-1-q), the order in which parity bytes are written. */
    uint8_t r[MAX_N];
    for (unsigned q = 0; q < nsym; q++)
        r[q] = gen[nsym - 1 - q];
    for (unsigned c = 0; c < rsc->k; c++) {
        memcpy(rsc->parity_cols + (size_t)c * rsc->stride, r, nsym);
        uint8_t top = r[0];
        memmove(r, r + 1, nsym - 1);
        r[nsym - 1] = 0;
        for (unsigned q = 0; q < nsym; q++)
            r[q] ^= ck_gf256_mul(top, gen[nsym - 1 - q]);
    }
    for (unsigned u = 0; u < rsc->k; u++)
        rsc->parity_in[u] = rsc->parity_cols + (size_t)(rsc->k - 1 - u) * rsc->stride;
    *out = rsc;
    return CK_OK;
}

void ck_rsc_free(ck_rsc *rsc)
{
    if (rsc) {
        free(rsc->parity_cols);
        free((void *)rsc->parity_in);
        free(rsc);
    }
}

size_t ck_rsc_chunks(const ck_rsc *rsc, size_t codeword_len)
{
    return (codeword_len + rsc->nsize - 1) / rsc->nsize;
}

size_t ck_rsc_encoded_len(const ck_rsc *rsc, size_t len)
{
    size_t chunks = (len + rsc->k - 1) / rsc->k;
    return len + chunks * rsc->nsym;
}

size_t ck_rsc_decoded_len(const ck_rsc *rsc, size_t len)
{
    size_t full = len / rsc->nsize, tail = len % rsc->nsize;
    if (tail && tail <= rsc->nsym)
        return (size_t)-1;
    return full * rsc->k + (tail ? tail - rsc->nsym : 0);
}

/* One chunk: n = mlen + nsym bytes of out get msg and its parity. */
static void encode_chunk(const ck_rsc *rsc, const uint8_t *msg, size_t mlen, uint8_t *out)
{
    uint8_t parity[256] __attribute__((aligned(32)));
    uint8_t *dst = parity;
    ck_gf256_active()->matmul(rsc->stride, 1, mlen, msg, rsc->parity_in + (rsc->k - mlen), &dst,
                              0);
    memmove(out, msg, mlen);
    memcpy(out + mlen, parity, rsc->nsym);
}

int ck_rsc_encode(const ck_rsc *rsc, const uint8_t *msg, size_t len, uint8_t *out)
{
    if (!rsc || (len && (!msg || !out)))
        return CK_EINVAL;
    for (size_t off = 0; off < len; off += rsc->k) {
        size_t mlen = len - off < rsc->k ? len - off : rsc->k;
        encode_chunk(rsc, msg + off, mlen, out);
        out += mlen + rsc->nsym;
    }
    return CK_OK;
}

/* synd[j] = c(alpha^j) for j < stride (only j < nsym matter); returns nonzero
 * if any of the first nsym is nonzero. */
static int syndromes(const ck_rsc *rsc, const uint8_t *cw, size_t n, uint8_t *synd)
{
    ck_gf256_active()->matmul(rsc->stride, 1, n, cw, syndrome_in + (MAX_N - n), &synd, 0);
    uint8_t any = 0;
    for (unsigned j = 0; j < rsc->nsym; j++)
        any |= synd[j];
    return any != 0;
}

/* a(x) * b(x) truncated to degree < limit; coefficients ascending. */
static unsigned poly_mul(const uint8_t *a, unsigned na, const uint8_t *b, unsigned nb,
                         uint8_t *out, unsigned limit)
{
    unsigned no = na + nb - 1 < limit ? na + nb - 1 : limit;
    memset(out, 0, no);
    for (unsigned i = 0; i < na; i++) {
        if (!a[i])
            continue;
        const uint8_t *row = ck_gf256_mul_table[a[i]];
        for (unsigned j = 0; j < nb && i + j < no; j++)
            out[i + j] ^= row[b[j]];
    }
    return no;
}

/* Berlekamp-Massey: shortest LFSR c (c[0] = 1, ascending) generating u[0..len). */
static unsigned berlekamp_massey(const uint8_t *u, unsigned len, uint8_t *c)
{
    uint8_t b[MAX_N + 1] = {1}, t[MAX_N + 1];
    unsigned nl = 0, shift = 1, size = len + 1;
    uint8_t last = 1;
    memset(c, 0, size);
    c[0] = 1;
    for (unsigned i = 0; i < len; i++) {
        uint8_t d = u[i];
        for (unsigned j = 1; j <= nl; j++)
            d ^= ck_gf256_mul(c[j], u[i - j]);
        if (d == 0) {
            shift++;
            continue;
        }
        uint8_t scale = ck_gf256_div(d, last);
        const uint8_t *row = ck_gf256_mul_table[scale];
        if (2 * nl <= i) {
            memcpy(t, c, size);
            for (unsigned j = 0; j + shift < size; j++)
                c[j + shift] ^= row[b[j]];
            nl = i + 1 - nl;
            memcpy(b, t, size);
            last = d;
            shift = 1;
        } else {
            for (unsigned j = 0; j + shift < size; j++)
                c[j + shift] ^= row[b[j]];
            shift++;
        }
    }
    return nl;
}

/* Horner evaluation of p (ascending, n coefficients) at x. */
static uint8_t poly_eval(const uint8_t *p, unsigned n, uint8_t x)
{
    uint8_t acc = 0;
    const uint8_t *row = ck_gf256_mul_table[x];
    for (unsigned i = n; i > 0; i--)
        acc = row[acc] ^ p[i - 1];
    return acc;
}

/* Correct one chunk cw[0..n) in place; erase holds positions within it. */
static int correct_chunk(const ck_rsc *rsc, uint8_t *cw, unsigned n, const uint32_t *erase,
                         unsigned nerase, size_t *corrected)
{
    const unsigned nsym = rsc->nsym;
    uint8_t synd[256] __attribute__((aligned(32)));
    if (nerase > nsym)
        return CK_EUNCORRECTABLE;
    for (unsigned i = 0; i < nerase; i++)
        cw[erase[i]] = 0;
    if (!syndromes(rsc, cw, n, synd))
        return CK_OK;

    /* Erasure locator G(x) = prod (1 + X_i x), X_i = alpha^(n - 1 - pos). */
    uint8_t gamma[MAX_N + 1] = {1};
    for (unsigned i = 0; i < nerase; i++) {
        uint8_t x = ck_gf256_exp[n - 1 - erase[i]];
        for (unsigned j = i + 1; j > 0; j--)
            gamma[j] ^= ck_gf256_mul(gamma[j - 1], x);
    }
    /* Forney syndromes: coefficients nerase..nsym-1 of G(x) S(x). */
    uint8_t gs[MAX_N + 1], errloc[MAX_N + 1], lambda[MAX_N + 1], omega[MAX_N + 1];
    poly_mul(gamma, nerase + 1, synd, nsym, gs, nsym);
    unsigned nerr = berlekamp_massey(gs + nerase, nsym - nerase, errloc);
    if (2 * nerr + nerase > nsym)
        return CK_EUNCORRECTABLE;
    unsigned deg = nerr + nerase;
    poly_mul(errloc, nerr + 1, gamma, nerase + 1, lambda, deg + 1);
    if (lambda[deg] == 0)
        return CK_EUNCORRECTABLE;

    /* Chien search: eval[q] = L(alpha^q) for q < 256 in one matmul. */
    uint8_t eval[256] __attribute__((aligned(32)));
    uint8_t *dst = eval;
    ck_gf256_active()->matmul(256, 1, deg + 1, lambda, power_rows, &dst, 0);
    unsigned roots[MAX_N], nroots = 0;
    for (unsigned q = 0; q < 255 && nroots <= deg; q++) {
        if (eval[q])
            continue;
        unsigned p = (255 - q) % 255; /* root alpha^q = 1/X with X = alpha^p */
        if (p >= n)
            return CK_EUNCORRECTABLE; /* a locator outside the (shortened) chunk */
        roots[nroots++] = q;
    }
    if (nroots != deg)
        return CK_EUNCORRECTABLE;

    /* Forney: O(x) = S(x) L(x) mod x^nsym; value = X O(1/X) / L'(1/X). */
    unsigned nomega = poly_mul(synd, nsym, lambda, deg + 1, omega, nsym);
    uint8_t deriv[MAX_N + 1];
    for (unsigned i = 0; i < deg; i++)
        deriv[i] = (i & 1) ? 0 : lambda[i + 1]; /* d/dx x^(i+1) = (i+1) x^i */
    for (unsigned r = 0; r < nroots; r++) {
        uint8_t xinv = ck_gf256_exp[roots[r]];
        uint8_t den = poly_eval(deriv, deg, xinv);
        if (den == 0)
            return CK_EUNCORRECTABLE;
        unsigned p = (255 - roots[r]) % 255;
        uint8_t value = ck_gf256_div(ck_gf256_mul(ck_gf256_exp[p], poly_eval(omega, nomega, xinv)),
                                     den);
        if (value) {
            cw[n - 1 - p] ^= value;
            if (corrected)
                (*corrected)++;
        }
    }
    if (syndromes(rsc, cw, n, synd))
        return CK_EUNCORRECTABLE;
    return CK_OK;
}

int ck_rsc_decode(const ck_rsc *rsc, const uint8_t *in, size_t len, const uint32_t *erase_pos,
                  size_t nerase, uint8_t *out, size_t *bad_chunk, size_t *corrected)
{
    if (!rsc || (len && !in) || (nerase && !erase_pos))
        return CK_EINVAL;
    if (ck_rsc_decoded_len(rsc, len) == (size_t)-1)
        return CK_EINVAL;
    for (size_t i = 0; i < nerase; i++)
        if (erase_pos[i] >= len || (i && erase_pos[i] <= erase_pos[i - 1]))
            return CK_EINVAL;
    uint8_t cw[MAX_N];
    uint32_t local[MAX_N];
    size_t e = 0;
    for (size_t off = 0, chunk = 0; off < len; off += rsc->nsize, chunk++) {
        unsigned n = (unsigned)(len - off < rsc->nsize ? len - off : rsc->nsize);
        unsigned ne = 0;
        while (e < nerase && erase_pos[e] < off + n) {
            if (ne < MAX_N)
                local[ne] = (uint32_t)(erase_pos[e] - off);
            ne++;
            e++;
        }
        memcpy(cw, in + off, n);
        int status = correct_chunk(rsc, cw, n, local, ne, corrected);
        if (status != CK_OK) {
            if (bad_chunk)
                *bad_chunk = chunk;
            return status;
        }
        memcpy(out, cw, n - rsc->nsym);
        out += n - rsc->nsym;
    }
    return CK_OK;
}

int ck_rsc_check(const ck_rsc *rsc, const uint8_t *in, size_t len, uint8_t *ok)
{
    uint8_t synd[256] __attribute__((aligned(32)));
    if (!rsc || (len && (!in || !ok)))
        return CK_EINVAL;
    for (size_t off = 0, chunk = 0; off < len; off += rsc->nsize, chunk++) {
        size_t n = len - off < rsc->nsize ? len - off : rsc->nsize;
        ok[chunk] = !syndromes(rsc, in + off, n, synd);
    }
    return CK_OK;
}
