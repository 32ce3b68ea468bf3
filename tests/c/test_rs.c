/*
 * test_rs.c - the erasure code (ck_rs) and the byte-level codec (ck_rsc).
 *
 * Every check runs under every kernel this CPU supports, and the erasure
 * decoder under both of its strategies: they must agree with a direct
 * evaluation of the Cauchy definition, byte for byte.
 */
#include "ck_gf256.h"
#include "ck_rs.h"
#include "ck_rsc.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned rnd(size_t n)
{
    return n ? (unsigned)test_rnd_below(n) : 0;
}

/* Repairs straight from the definition: repair r = sum_i 1/(r ^ i) * src_i. */
static void naive_encode(unsigned k, unsigned m, uint8_t **src, uint8_t **rep, size_t len)
{
    for (unsigned j = 0; j < m; j++)
        for (size_t b = 0; b < len; b++) {
            uint8_t acc = 0;
            for (unsigned i = 0; i < k; i++)
                acc ^= ck_gf256_mul(ck_gf256_inv((uint8_t)((k + j) ^ i)), src[i][b]);
            rep[j][b] = acc;
        }
}

/* Encode, drop the packets whose bit is set in `lost` (or a random set),
 * decode with `strategy`, compare. */
static void roundtrip(unsigned k, unsigned m, size_t len, const uint8_t *drop, int strategy)
{
    ck_rs *rs = NULL;
    CHECK(ck_rs_new(k, m, &rs) == CK_OK);
    if (!rs)
        return;
    uint8_t *buf = malloc((size_t)(k + m) * (len + 1) + 1);
    uint8_t *outbuf = malloc((size_t)k * (len + 1) + 1);
    uint8_t *pkt[256], *out[256];
    const uint8_t *have[256];
    /* odd offsets: no alignment assumptions anywhere */
    for (unsigned p = 0; p < k + m; p++)
        pkt[p] = buf + 1 + (size_t)p * (len + 1);
    for (unsigned i = 0; i < k; i++) {
        test_rnd_fill(pkt[i], len);
        out[i] = outbuf + 1 + (size_t)i * (len + 1);
        memset(out[i], 0xAA, len);
    }
    CHECK(ck_rs_encode(rs, (const uint8_t *const *)pkt, pkt + k, len) == CK_OK);
    uint8_t *expect = malloc((size_t)m * len + 1), *exp_ptr[256];
    for (unsigned j = 0; j < m; j++)
        exp_ptr[j] = expect + (size_t)j * len;
    if ((size_t)k * m * len <= 200000) { /* the definition is slow; small blocks suffice */
        naive_encode(k, m, pkt, exp_ptr, len);
        for (unsigned j = 0; j < m; j++)
            CHECK(memcmp(exp_ptr[j], pkt[k + j], len) == 0);
    }
    unsigned present = 0;
    for (unsigned p = 0; p < k + m; p++) {
        have[p] = drop[p] ? NULL : pkt[p];
        present += !drop[p];
    }
    int status = ck_rs_decode_with(rs, have, out, len, strategy);
    if (present < k) {
        CHECK(status == CK_ETOOFEW);
    } else {
        CHECK(status == CK_OK);
        for (unsigned i = 0; i < k; i++)
            if (drop[i])
                CHECK(memcmp(out[i], pkt[i], len) == 0);
            else
                CHECK(len == 0 || out[i][0] == 0xAA); /* untouched */
    }
    free(expect);
    free(outbuf);
    free(buf);
    ck_rs_free(rs);
}

static void test_rs_exhaustive(void)
{
    /* Every loss pattern for every k + m <= 8, both strategies. */
    uint8_t drop[256];
    for (unsigned n = 1; n <= 8; n++)
        for (unsigned k = 1; k <= n; k++)
            for (unsigned mask = 0; mask < (1u << n); mask++) {
                for (unsigned p = 0; p < n; p++)
                    drop[p] = (mask >> p) & 1u;
                roundtrip(k, n - k, 1 + rnd(70), drop, CK_RS_DECODE_DIRECT);
                roundtrip(k, n - k, 1 + rnd(70), drop, CK_RS_DECODE_STAGED);
            }
}

static void test_rs_random(void)
{
    uint8_t drop[256];
    static const size_t lens[] = {0, 1, 15, 31, 33, 64, 255, 1200, 1201};
    for (int t = 0; t < 150; t++) {
        unsigned k = 1 + rnd(t % 10 == 0 ? 220 : 40);
        unsigned m = rnd(257 - k > 60 ? 60 : 257 - k);
        if (k + m > 256)
            m = 256 - k;
        size_t len = lens[rnd(sizeof lens / sizeof lens[0])];
        unsigned lose = rnd(m + 2); /* sometimes one more than can be rebuilt */
        memset(drop, 0, sizeof drop);
        for (unsigned l = 0; l < lose; l++)
            drop[rnd(k + m)] = 1;
        for (int strategy = 0; strategy <= 2; strategy++)
            roundtrip(k, m, len, drop, strategy);
    }
    /* The largest block, every source lost. */
    memset(drop, 0, sizeof drop);
    for (unsigned i = 0; i < 128; i++)
        drop[i] = 1;
    roundtrip(128, 128, 100, drop, CK_RS_DECODE_STAGED);
    roundtrip(128, 128, 100, drop, CK_RS_DECODE_DIRECT);
}

static void test_rs_bad_args(void)
{
    ck_rs *rs = NULL;
    CHECK(ck_rs_new(0, 4, &rs) == CK_EINVAL);
    CHECK(ck_rs_new(200, 57, &rs) == CK_EINVAL);
    CHECK(ck_rs_new(1, 255, &rs) == CK_OK);
    ck_rs_free(rs);
    CHECK(ck_rs_new(4, 2, &rs) == CK_OK);
    uint8_t a[8] = {0}, b[8];
    const uint8_t *have[6] = {NULL, a, a, a, a, NULL};
    uint8_t *out[4] = {NULL, NULL, NULL, NULL};
    CHECK(ck_rs_decode(rs, have, out, 8) == CK_EINVAL); /* no buffer for source 0 */
    out[0] = b;
    CHECK(ck_rs_decode(rs, have, out, 8) == CK_OK);
    have[4] = NULL;
    CHECK(ck_rs_decode(rs, have, out, 8) == CK_ETOOFEW);
    CHECK(ck_rs_coefficient(rs, 4, 0) == ck_gf256_inv(4));
    ck_rs_free(rs);
}

/* ---- byte-level codec ---------------------------------------------------- */

static void test_rsc_roundtrip(void)
{
    static const unsigned nsyms[] = {1, 2, 3, 8, 10, 16, 32, 64, 100, 254};
    uint8_t msg[2000], dec[2000];
    for (size_t s = 0; s < sizeof nsyms / sizeof nsyms[0]; s++) {
        unsigned nsym = nsyms[s];
        for (int t = 0; t < 60; t++) {
            unsigned nsize = t % 3 ? 255 : nsym + 1 + rnd(255 - nsym);
            ck_rsc *rsc = NULL;
            CHECK(ck_rsc_new(nsym, nsize, &rsc) == CK_OK);
            size_t len = 1 + rnd(t % 5 ? nsize - nsym : 1500);
            test_rnd_fill(msg, len);
            size_t elen = ck_rsc_encoded_len(rsc, len);
            uint8_t *enc = malloc(elen), *cw = malloc(elen);
            uint32_t *erase = malloc(elen * sizeof *erase);
            uint8_t *ok = malloc(ck_rsc_chunks(rsc, elen));
            CHECK(ck_rsc_encode(rsc, msg, len, enc) == CK_OK);
            memcpy(cw, enc, elen);
            /* per chunk: s erasures and e errors with 2e + s <= nsym */
            size_t ne = 0;
            for (size_t off = 0; off < elen; off += nsize) {
                unsigned n = (unsigned)(elen - off < nsize ? elen - off : nsize);
                unsigned ers = rnd(nsym + 1), errs;
                if (ers > n)
                    ers = n;
                errs = rnd((nsym - ers) / 2 + 1);
                uint8_t used[255] = {0};
                for (unsigned i = 0; i < ers + errs && i < n; i++) {
                    unsigned p;
                    do
                        p = rnd(n);
                    while (used[p]);
                    used[p] = 1;
                    cw[off + p] ^= (uint8_t)(1 + rnd(255));
                    if (i < ers)
                        erase[ne++] = (uint32_t)(off + p);
                }
            }
            /* erase_pos must be ascending */
            for (size_t a = 1; a < ne; a++)
                for (size_t b = a; b > 0 && erase[b - 1] > erase[b]; b--) {
                    uint32_t tmp = erase[b];
                    erase[b] = erase[b - 1];
                    erase[b - 1] = tmp;
                }
            size_t bad = 99, fixed = 0;
            int status = ck_rsc_decode(rsc, cw, elen, erase, ne, dec, &bad, &fixed);
            CHECK(status == CK_OK);
            CHECK(status != CK_OK || memcmp(dec, msg, len) == 0);
            CHECK(ck_rsc_check(rsc, enc, elen, ok) == CK_OK);
            for (size_t c = 0; c < ck_rsc_chunks(rsc, elen); c++)
                CHECK(ok[c] == 1);
            free(ok);
            free(erase);
            free(cw);
            free(enc);
            ck_rsc_free(rsc);
        }
    }
}

static void test_rsc_bad_args(void)
{
    ck_rsc *rsc = NULL;
    CHECK(ck_rsc_new(0, 255, &rsc) == CK_EINVAL);
    CHECK(ck_rsc_new(255, 255, &rsc) == CK_EINVAL);
    CHECK(ck_rsc_new(10, 256, &rsc) == CK_EINVAL);
    CHECK(ck_rsc_new(10, 255, &rsc) == CK_OK);
    uint8_t buf[300] = {0}, out[300];
    uint32_t er[3] = {5, 4, 6};
    CHECK(ck_rsc_decode(rsc, buf, 265, NULL, 0, out, NULL, NULL) == CK_EINVAL); /* tail 10 */
    CHECK(ck_rsc_decode(rsc, buf, 100, er, 3, out, NULL, NULL) == CK_EINVAL);   /* unsorted */
    er[1] = 200;
    CHECK(ck_rsc_decode(rsc, buf, 100, er, 2, out, NULL, NULL) == CK_EINVAL); /* out of range */
    uint32_t many[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    size_t bad = 7;
    CHECK(ck_rsc_decode(rsc, buf, 100, many, 11, out, &bad, NULL) == CK_EUNCORRECTABLE);
    CHECK(bad == 0);
    CHECK(ck_rsc_decode(rsc, buf, 0, NULL, 0, out, NULL, NULL) == CK_OK);
    ck_rsc_free(rsc);
}

static void test_rsc_garbage(void)
{
    /* Random words: decode must return OK (and then a valid codeword's
     * message) or CK_EUNCORRECTABLE, and never touch memory it should not. */
    uint8_t in[600], out[600], enc[700];
    for (int t = 0; t < 20000; t++) {
        unsigned nsym = 1 + rnd(64);
        ck_rsc *rsc = NULL;
        if (ck_rsc_new(nsym, 255, &rsc) != CK_OK) {
            CHECK(0);
            continue;
        }
        size_t len = nsym + 1 + rnd(500);
        if (ck_rsc_decoded_len(rsc, len) == (size_t)-1)
            len = 255;
        test_rnd_fill(in, len);
        int status = ck_rsc_decode(rsc, in, len, NULL, 0, out, NULL, NULL);
        CHECK(status == CK_OK || status == CK_EUNCORRECTABLE);
        if (status == CK_OK) {
            size_t dlen = ck_rsc_decoded_len(rsc, len);
            CHECK(ck_rsc_encode(rsc, out, dlen, enc) == CK_OK);
            uint8_t ok[4];
            CHECK(ck_rsc_check(rsc, enc, len, ok) == CK_OK && ok[0]);
        }
        ck_rsc_free(rsc);
    }
}

int main(void)
{
    ck_gf256_init();
    const ck_gf256_kernel *const *ks = ck_gf256_kernels_compiled();
    int kernels_run = 0;
    for (size_t i = 0; ks[i]; i++) {
        if (!ck_gf256_kernel_supported(ks[i])) {
            printf("test_rs: kernel %s not supported here, skipped\n", ks[i]->name);
            continue;
        }
        CHECK(ck_gf256_select(ks[i]->name) == CK_OK);
        test_rs_exhaustive();
        test_rs_random();
        test_rs_bad_args();
        test_rsc_roundtrip();
        test_rsc_bad_args();
        kernels_run++;
        printf("test_rs: kernel %s: %lu checks, %lu failures so far\n", ks[i]->name,
               test_state.checks, test_state.failures);
    }
    test_rsc_garbage();
    printf("test_rs: %d kernels\n", kernels_run);
    return test_finish();
}
