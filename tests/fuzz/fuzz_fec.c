/*
 * fuzz_fec.c - fuzz both decoders of csrc/ with untrusted bytes.
 *
 * The parameters come from the first input bytes (as ISA-L's ec_fuzz_test
 * does), the rest is the data.  The invariant: each call returns a defined
 * status and touches only the memory it was given (ASan/UBSan watch that).
 *
 * libFuzzer:   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *                  tests/fuzz/fuzz_fec.c csrc/ck_*.c -o fuzz_fec && ./fuzz_fec
 * standalone:  gcc -std=c99 -D_GNU_SOURCE -DCK_FUZZ_STANDALONE -g -O1 \
 *                  -fsanitize=address,undefined -Icsrc tests/fuzz/fuzz_fec.c \
 *                  csrc/ck_*.c -lpthread -o fuzz_fec && ./fuzz_fec 200000
 * The standalone driver feeds N pseudo-random inputs (seeded, repeatable),
 * half of them mutated valid blocks and codewords so decoding goes deep.
 */
#include "ck_gf256.h"
#include "ck_rs.h"
#include "ck_rsc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_erasure(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    unsigned k = 1 + data[0] % 64, m = data[1] % 32;
    size_t len = data[2] % 64;
    uint32_t present = (uint32_t)data[3] << 24 | (uint32_t)data[2] << 16 | data[1] << 8 | data[0];
    data += 4;
    size -= 4;
    ck_rs *rs = NULL;
    if (ck_rs_new(k, m, &rs) != CK_OK)
        abort();
    const uint8_t *packets[256] = {0};
    uint8_t *out[256] = {0};
    uint8_t *scratch = malloc((size_t)k * len + 1);
    for (unsigned p = 0; p < k + m; p++) {
        /* packet p present if its bit of `present` (cycled) is set and the
         * input still has len bytes for it */
        if (((present >> (p % 32)) & 1u) && size >= len) {
            packets[p] = data;
            data += len;
            size -= len;
        }
    }
    for (unsigned i = 0; i < k; i++)
        out[i] = scratch + (size_t)i * len;
    int status = ck_rs_decode(rs, packets, out, len);
    if (status != CK_OK && status != CK_ETOOFEW)
        abort();
    free(scratch);
    ck_rs_free(rs);
}

static void fuzz_rsc(const uint8_t *data, size_t size)
{
    if (size < 3)
        return;
    unsigned nsym = 1 + data[0] % 254;
    unsigned nsize = nsym + 1 + data[1] % (255 - nsym);
    unsigned nerase = data[2] % 8;
    data += 3;
    size -= 3;
    ck_rsc *rsc = NULL;
    if (ck_rsc_new(nsym, nsize, &rsc) != CK_OK)
        abort();
    uint32_t erase[8];
    unsigned ne = 0;
    for (unsigned i = 0; i < nerase && size > 1; i++) {
        uint32_t p = data[0];
        if (size > 1 && (ne == 0 || p > erase[ne - 1]))
            erase[ne++] = p;
        data++;
        size--;
    }
    size_t outlen = ck_rsc_decoded_len(rsc, size);
    uint8_t *out = malloc(outlen == (size_t)-1 ? 1 : outlen + 1);
    size_t bad = 0;
    int status = ck_rsc_decode(rsc, data, size, erase, ne, out, &bad, NULL);
    if (status != CK_OK && status != CK_EUNCORRECTABLE && status != CK_EINVAL)
        abort();
    if (status == CK_EINVAL && outlen != (size_t)-1 && (ne == 0 || erase[ne - 1] < size))
        abort(); /* only a short tail or a bad erasure may be refused */
    uint8_t *ok = malloc(ck_rsc_chunks(rsc, size) + 1);
    if (ck_rsc_check(rsc, data, size, ok) != CK_OK)
        abort();
    free(ok);
    free(out);
    ck_rsc_free(rsc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_erasure(data + 1, size - 1);
    else
        fuzz_rsc(data + 1, size - 1);
    return 0;
}

#ifdef CK_FUZZ_STANDALONE
static uint64_t state = 0x2545f4914f6cdd1dull;
static uint64_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    uint8_t buf[4096];
    ck_rsc *rsc = NULL;
    ck_gf256_init();
    for (long i = 0; i < n; i++) {
        size_t size = 1 + next() % (i % 16 ? 300 : sizeof buf - 1);
        for (size_t j = 0; j < size; j++)
            buf[j] = (uint8_t)next();
        if (i % 2 == 0 && size > 40) {
            /* a valid codeword with a few bytes flipped: exercises correction */
            unsigned nsym = 1 + buf[1] % 254, nsize = nsym + 1 + buf[2] % (255 - nsym);
            buf[0] &= (uint8_t)~1u;
            buf[3] = 0; /* no erasures */
            size_t mlen = (size - 4) * (nsize - nsym) / nsize;
            if (mlen && ck_rsc_new(nsym, nsize, &rsc) == CK_OK) {
                if (ck_rsc_encoded_len(rsc, mlen) <= size - 4) {
                    uint8_t msg[4096];
                    memcpy(msg, buf + 4, mlen);
                    ck_rsc_encode(rsc, msg, mlen, buf + 4);
                    size = 4 + ck_rsc_encoded_len(rsc, mlen);
                    for (unsigned f = next() % (nsym + 2); f > 0; f--)
                        buf[4 + next() % (size - 4)] ^= (uint8_t)(1 + next() % 255);
                }
                ck_rsc_free(rsc);
            }
        }
        LLVMFuzzerTestOneInput(buf, size);
    }
    for (int a = 2; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f)
            continue;
        size_t size = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, size);
    }
    printf("fuzz_fec: %ld inputs, no crash\n", n);
    return 0;
}
#endif
