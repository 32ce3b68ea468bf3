/*
 * test_payload.c - the signal payload decoder (csrc/ck_payload.c) on
 * hand-built payloads.
 *
 * Every payload here is written out as msgpack bytes (hex), with the type
 * byte of the msgpack spec (https://github.com/msgpack/msgpack/blob/master/spec.md)
 * named in a comment.  Each payload is decoded from a heap copy of exactly
 * its length, so ASan catches any read past its end.
 *
 *   - every value kind, and every width msgpack has for an int, a float, a
 *     str, a bin and an array, accepted, with the records checked field by field;
 *   - one refusal per rule of docs/PROTOCOL.md section 3, with its error code;
 *   - every strict prefix of a valid payload refused as truncated;
 *   - out_capacity / vector_capacity too small: CK_PAYLOAD_TOO_MANY, and
 *     nothing written past them (guard values).
 */
#include "ck_payload.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -- building payloads ------------------------------------------------------ */

#define PB_MAX (1u << 18)
static uint8_t pb[PB_MAX]; /* the payload being built */
static size_t pn;

static void reset(void)
{
    pn = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Append hex bytes; spaces are ignored. */
static void hx(const char *hex)
{
    while (*hex) {
        if (*hex == ' ') {
            hex++;
            continue;
        }
        int hi = hexval(hex[0]), lo = hex[1] ? hexval(hex[1]) : -1;
        if (hi < 0 || lo < 0 || pn >= PB_MAX) {
            fprintf(stderr, "bad hex in test: %s\n", hex);
            abort();
        }
        pb[pn++] = (uint8_t)(hi << 4 | lo);
        hex += 2;
    }
}

/* Append n copies of one byte. */
static void rep(uint8_t byte, size_t n)
{
    if (pn + n > PB_MAX)
        abort();
    memset(pb + pn, byte, n);
    pn += n;
}

/* -- decoding --------------------------------------------------------------- */

static ck_signal_record recs[CK_PAYLOAD_MAX_SIGNALS];
static double vecs[CK_PAYLOAD_MAX_SIGNALS * CK_PAYLOAD_MAX_VECTOR];
static size_t cnt, wh;

/* Decode p[0..n) from a heap copy of exactly n bytes, with full capacities. */
static ck_payload_error dec(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, p, n);
    cnt = wh = (size_t)-1;
    ck_payload_error e = ck_payload_decode(copy, n, recs, CK_PAYLOAD_MAX_SIGNALS, vecs,
                                           CK_PAYLOAD_MAX_SIGNALS * CK_PAYLOAD_MAX_VECTOR,
                                           &cnt, &wh);
    free(copy);
    CHECKF(cnt <= CK_PAYLOAD_MAX_SIGNALS, "count %zu", cnt);
    CHECKF(wh <= n, "where %zu past the end %zu", wh, n);
    if (e == CK_PAYLOAD_OK)
        CHECKF(wh == 0, "where %zu on success", wh);
    return e;
}

/* Decode hex; expect refusal with `want`. */
static void refuse_at(int line, ck_payload_error want, const char *hex)
{
    reset();
    hx(hex);
    ck_payload_error got = dec(pb, pn);
    CHECKF(got == want, "line %d: [%s] gave %d (%s), want %d (%s)", line, hex, (int)got,
           ck_payload_error_str(got), (int)want, ck_payload_error_str(want));
}
#define REFUSE(want, hex) refuse_at(__LINE__, (want), (hex))

/* Decode what pb holds; expect refusal with `want`. */
static void refuse_built_at(int line, ck_payload_error want, const char *what)
{
    ck_payload_error got = dec(pb, pn);
    CHECKF(got == want, "line %d: %s gave %d (%s), want %d (%s)", line, what, (int)got,
           ck_payload_error_str(got), (int)want, ck_payload_error_str(want));
}
#define REFUSE_BUILT(want, what) refuse_built_at(__LINE__, (want), (what))

/* Decode a one-signal payload in hex; its record, or NULL (and a failure). */
static const ck_signal_record *one_at(int line, const char *hex)
{
    reset();
    hx(hex);
    ck_payload_error got = dec(pb, pn);
    if (!CHECKF(got == CK_PAYLOAD_OK && cnt == 1, "line %d: [%s] gave %d (%s), count %zu",
                line, hex, (int)got, ck_payload_error_str(got), cnt))
        return NULL;
    return &recs[0];
}
#define ONE(hex) one_at(__LINE__, (hex))

/* -- a good signal, field by field --------------------------------------------
 *
 * One signal is a fixarray of 8 (0x98).  The fields of the good signal:
 */
#define T_ "a1 74"                /* topic: fixstr (0xa0 | 1) "t" */
#define V_ "cb 3ff8000000000000"  /* value: float 64 (0xcb) 1.5 */
#define C_ "cb 3fe0000000000000"  /* confidence: float 64 0.5 */
#define HL_ "cd 03e8"             /* half-life: uint 16 (0xcd) 1000 */
#define TTL_ "c0"                 /* ttl: nil (0xc0) */
#define AGE_ "00"                 /* age: positive fixint 0 */
#define SRC_ "01"                 /* source: positive fixint 1 */
#define SEQ_ "02"                 /* seq: positive fixint 2 */

#define SIG(t, v, c, hl, ttl, age, src, seq) \
    " 98 " t " " v " " c " " hl " " ttl " " age " " src " " seq " "
#define GOOD_SIG SIG(T_, V_, C_, HL_, TTL_, AGE_, SRC_, SEQ_)
/* A payload of one signal: fixarray of 1 (0x91). */
#define P1(sig) "91" sig
#define W_TOPIC(x) P1(SIG(x, V_, C_, HL_, TTL_, AGE_, SRC_, SEQ_))
#define W_VALUE(x) P1(SIG(T_, x, C_, HL_, TTL_, AGE_, SRC_, SEQ_))
#define W_CONF(x) P1(SIG(T_, V_, x, HL_, TTL_, AGE_, SRC_, SEQ_))
#define W_HL(x) P1(SIG(T_, V_, C_, x, "01", AGE_, SRC_, SEQ_)) /* ttl 1 ms */
#define W_TTL(x) P1(SIG(T_, V_, C_, "01", x, AGE_, SRC_, SEQ_)) /* half-life 1 ms */
#define W_AGE(x) P1(SIG(T_, V_, C_, HL_, TTL_, x, SRC_, SEQ_))
#define W_SRC(x) P1(SIG(T_, V_, C_, HL_, TTL_, AGE_, x, SEQ_))
#define W_SEQ(x) P1(SIG(T_, V_, C_, HL_, TTL_, AGE_, SRC_, x))

/* Check the fields of the good signal other than the one under test. */
static void check_good_rest(const ck_signal_record *r, int topic, int value, int conf)
{
    if (topic) {
        CHECK_EQ(r->topic_length, 1);
        CHECK_EQ(pb[r->topic_offset], 't');
    }
    if (value) {
        CHECK_EQ(r->kind, CK_VALUE_FLOAT);
        CHECK(r->number == 1.5);
    }
    if (conf)
        CHECK(r->confidence == 0.5);
}

/* -- accepted ------------------------------------------------------------------ */

static void test_good_signal(void)
{
    const ck_signal_record *r = ONE(P1(GOOD_SIG));
    if (!r)
        return;
    /* 91 98 a1 74: the topic's byte is at offset 3 */
    CHECK_EQ(r->topic_offset, 3);
    CHECK_EQ(r->topic_length, 1);
    CHECK_EQ(r->kind, CK_VALUE_FLOAT);
    CHECK(r->number == 1.5);
    CHECK(r->confidence == 0.5);
    CHECK_EQ(r->half_life_ms, 1000);
    CHECK_EQ(r->ttl_ms, CK_PAYLOAD_NO_LIFETIME);
    CHECK_EQ(r->age_ms, 0);
    CHECK_EQ(r->source, 1);
    CHECK_EQ(r->seq, 2);
    CHECK_EQ(r->hops, 0);
}

/* A relayed signal: a ninth item, its hop count 0..15, in any uint width. */
static void test_relayed_signal(void)
{
    static const char *const hops[] = {"00", "03", "0f", "cc 0f", "cd 000f", "ce 0000000f"};
    static const int want[] = {0, 3, 15, 15, 15, 15};
    for (size_t i = 0; i < sizeof hops / sizeof hops[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, "91 99" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_ "%s", hops[i]);
        const ck_signal_record *r = ONE(hex);
        if (!r)
            continue;
        CHECK_EQ(r->seq, 2);
        CHECK_EQ(r->hops, want[i]);
    }
}

static void test_outer_array_widths(void)
{
    /* fixarray (0x90 | n), array 16 (0xdc), array 32 (0xdd): empty */
    static const char *const empty[] = {"90", "dc 0000", "dd 00000000"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        reset();
        hx(empty[i]);
        CHECKF(dec(pb, pn) == CK_PAYLOAD_OK && cnt == 0, "[%s]", empty[i]);
    }
    /* ... and of one signal */
    const ck_signal_record *r = ONE("dc 0001" GOOD_SIG);
    if (r) {
        CHECK_EQ(r->topic_offset, 5);
        check_good_rest(r, 1, 1, 1);
    }
    r = ONE("dd 00000001" GOOD_SIG);
    if (r) {
        CHECK_EQ(r->topic_offset, 7);
        check_good_rest(r, 1, 1, 1);
    }
    /* the signal's own array of 8 as array 16 and array 32 */
    r = ONE("91 dc 0008" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_);
    if (r) {
        CHECK_EQ(r->topic_offset, 5);
        check_good_rest(r, 1, 1, 1);
        CHECK_EQ(r->seq, 2);
    }
    r = ONE("91 dd 00000008" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_);
    if (r) {
        CHECK_EQ(r->topic_offset, 7);
        check_good_rest(r, 1, 1, 1);
        CHECK_EQ(r->seq, 2);
    }
    /* 15 signals in a fixarray (0x9f), 16 in an array 16 */
    reset();
    hx("9f");
    for (int i = 0; i < 15; i++)
        hx(GOOD_SIG);
    CHECK(dec(pb, pn) == CK_PAYLOAD_OK && cnt == 15);
    reset();
    hx("dc 0010");
    for (int i = 0; i < 16; i++)
        hx(GOOD_SIG);
    CHECK(dec(pb, pn) == CK_PAYLOAD_OK && cnt == 16);
}

static void test_max_signals(void)
{
    /* 1024 signals, array 16 (0xdc 0400) and array 32 (0xdd 00000400) */
    for (int form = 0; form < 2; form++) {
        reset();
        hx(form ? "dd 00000400" : "dc 0400");
        for (int i = 0; i < CK_PAYLOAD_MAX_SIGNALS; i++) {
            /* seq as uint 16 (0xcd): i */
            char seq[16];
            snprintf(seq, sizeof seq, "cd %04x", (unsigned)i);
            hx(" 98 " T_ V_ C_ HL_ TTL_ AGE_ SRC_);
            hx(seq);
        }
        if (CHECK(dec(pb, pn) == CK_PAYLOAD_OK) && CHECK_EQ(cnt, CK_PAYLOAD_MAX_SIGNALS))
            for (size_t i = 0; i < cnt; i++)
                if (!CHECK_EQ(recs[i].seq, i))
                    break;
    }
}

static void test_topic_encodings(void)
{
    static const struct {
        const char *hex;   /* the topic item */
        const char *bytes; /* its bytes, hex */
    } cases[] = {
        {"a1 41", "41"},                         /* fixstr "A" */
        {"bf" "4142434445464748494a4b4c4d4e4f505152535455565758595a3031323334",
         "4142434445464748494a4b4c4d4e4f505152535455565758595a3031323334"}, /* fixstr of 31 */
        {"d9 01 20", "20"},                      /* str 8 (0xd9): " " */
        {"da 0001 7e", "7e"},                    /* str 16 (0xda): "~" */
        {"db 00000002 6869", "6869"},            /* str 32 (0xdb): "hi" */
        {"a2 c2 80", "c280"},                    /* U+0080: a C1 control, allowed */
        {"a2 c2 a0", "c2a0"},                    /* U+00A0 */
        {"a2 df bf", "dfbf"},                    /* U+07FF, the last 2-byte */
        {"a3 e0 a0 80", "e0a080"},               /* U+0800, the first 3-byte */
        {"a3 ed 9f bf", "ed9fbf"},               /* U+D7FF, below the surrogates */
        {"a3 ee 80 80", "ee8080"},               /* U+E000, above them */
        {"a3 ef bf bf", "efbfbf"},               /* U+FFFF */
        {"a3 e2 80 a8", "e280a8"},               /* U+2028 */
        {"a4 f0 90 80 80", "f0908080"},          /* U+10000, the first 4-byte */
        {"a4 f4 8f bf bf", "f48fbfbf"},          /* U+10FFFF, the last */
        {"a6 61 c3 a9 e2 82 ac", "61c3a9e282ac"}, /* "a", U+00E9, U+20AC */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hex[512];
        snprintf(hex, sizeof hex, "91 98 %s " V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_, cases[i].hex);
        const ck_signal_record *r = ONE(hex);
        if (!r)
            continue;
        size_t save = pn;
        hx(cases[i].bytes); /* expected bytes after the payload, in pb */
        size_t len = pn - save;
        CHECKF(r->topic_length == len, "case %zu: length %u", i, (unsigned)r->topic_length);
        CHECKF(r->topic_offset + len <= save && memcmp(pb + r->topic_offset, pb + save, len) == 0,
               "case %zu: offset %u", i, (unsigned)r->topic_offset);
        check_good_rest(r, 0, 1, 1);
    }
    /* 128 bytes: str 8 (0xd9 0x80), str 16, str 32; 32 four-byte characters */
    static const char *const heads[] = {"d9 80", "da 0080", "db 00000080"};
    for (int h = 0; h < 3; h++) {
        for (int kind = 0; kind < 2; kind++) {
            reset();
            hx("91 98");
            hx(heads[h]);
            size_t at = pn;
            if (kind == 0) {
                rep('a', 128);
            } else {
                for (int c = 0; c < 32; c++)
                    hx("f0 9f 90 9d"); /* U+1F41D */
            }
            hx(V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_);
            if (CHECK(dec(pb, pn) == CK_PAYLOAD_OK && cnt == 1)) {
                CHECK_EQ(recs[0].topic_offset, at);
                CHECK_EQ(recs[0].topic_length, 128);
            }
        }
    }
}

static void test_float_values(void)
{
    static const struct {
        const char *hex;
        double want;
    } cases[] = {
        {"cb 3ff8000000000000", 1.5},                       /* float 64 (0xcb) */
        {"cb 3fb999999999999a", 0.1},
        {"cb 0000000000000000", 0.0},
        {"cb 8000000000000000", -0.0},
        {"cb 7fefffffffffffff", 0x1.fffffffffffffp+1023},   /* DBL_MAX */
        {"cb ffefffffffffffff", -0x1.fffffffffffffp+1023},
        {"cb 0000000000000001", 0x1p-1074},                  /* smallest subnormal */
        {"ca 3fc00000", 1.5},                               /* float 32 (0xca) */
        {"ca bf800000", -1.0},
        {"ca 3dcccccd", (double)0.1f},
        {"ca 7f7fffff", 0x1.fffffep+127},                   /* FLT_MAX */
        {"ca 00000001", 0x1p-149},                          /* float32 subnormal */
        {"ca 80000000", -0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_VALUE("%s"), cases[i].hex);
        const ck_signal_record *r = ONE(hex);
        if (!r)
            continue;
        CHECKF(r->kind == CK_VALUE_FLOAT, "case %zu", i);
        CHECKF(r->number == cases[i].want && signbit(r->number) == signbit(cases[i].want),
               "case %zu: %a != %a", i, r->number, cases[i].want);
        check_good_rest(r, 1, 0, 1);
        CHECK(r->half_life_ms == 1000 && r->ttl_ms == CK_PAYLOAD_NO_LIFETIME);
        CHECK(r->age_ms == 0 && r->source == 1 && r->seq == 2);
    }
}

static void test_category_values(void)
{
    static const struct {
        const char *hex;
        uint32_t want;
    } cases[] = {
        {"00", 0},                        /* positive fixint */
        {"7f", 127},
        {"cc 00", 0},                     /* uint 8 (0xcc) */
        {"cc ff", 255},
        {"cd 0100", 256},                 /* uint 16 (0xcd) */
        {"cd ffff", 65535},
        {"ce 00010000", 65536},           /* uint 32 (0xce) */
        {"ce ffffffff", 0xffffffffu},
        {"cf 0000000000000000", 0},       /* uint 64 (0xcf) */
        {"cf 00000000ffffffff", 0xffffffffu},
        {"d0 00", 0},                     /* int 8 (0xd0), non-negative */
        {"d0 7f", 127},
        {"d1 0000", 0},                   /* int 16 (0xd1) */
        {"d1 7fff", 32767},
        {"d2 00000000", 0},               /* int 32 (0xd2) */
        {"d2 7fffffff", 0x7fffffffu},
        {"d3 0000000000000000", 0},       /* int 64 (0xd3) */
        {"d3 00000000ffffffff", 0xffffffffu},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_VALUE("%s"), cases[i].hex);
        const ck_signal_record *r = ONE(hex);
        if (!r)
            continue;
        CHECKF(r->kind == CK_VALUE_CATEGORY, "case %zu", i);
        CHECKF(r->category == cases[i].want, "case %zu: %u", i, (unsigned)r->category);
        check_good_rest(r, 1, 0, 1);
    }
}

static void test_vector_values(void)
{
    /* fixarray (0x92) of float 64 and float 32 */
    const ck_signal_record *r = ONE(W_VALUE("92 cb 3ff0000000000000 ca 40000000"));
    if (r) {
        CHECK_EQ(r->kind, CK_VALUE_VECTOR);
        CHECK_EQ(r->value_length, 2);
        CHECK_EQ(r->value_offset, 0);
        CHECK(vecs[0] == 1.0 && vecs[1] == 2.0);
        check_good_rest(r, 1, 0, 1);
    }
    /* array 16 (0xdc) of one */
    r = ONE(W_VALUE("dc 0001 cb bff0000000000000"));
    if (r) {
        CHECK_EQ(r->kind, CK_VALUE_VECTOR);
        CHECK_EQ(r->value_length, 1);
        CHECK(vecs[r->value_offset] == -1.0);
    }
    /* array 32 (0xdd) of 16, the most: k / 4 as float 32 (0xca) and float 64 */
    reset();
    hx("91 98" T_ "dd 00000010");
    for (int k = 0; k < 16; k++) {
        char f[32];
        if (k % 2) { /* k / 4 is exact in either width */
            float x = (float)k / 4.0f;
            uint32_t bits;
            memcpy(&bits, &x, 4);
            snprintf(f, sizeof f, "ca %08x", (unsigned)bits);
        } else {
            double x = (double)k / 4.0;
            uint64_t bits;
            memcpy(&bits, &x, 8);
            snprintf(f, sizeof f, "cb %08x%08x", (unsigned)(bits >> 32), (unsigned)bits);
        }
        hx(f);
    }
    hx(C_ HL_ TTL_ AGE_ SRC_ SEQ_);
    if (CHECK(dec(pb, pn) == CK_PAYLOAD_OK && cnt == 1)) {
        CHECK_EQ(recs[0].kind, CK_VALUE_VECTOR);
        CHECK_EQ(recs[0].value_length, 16);
        for (int k = 0; k < 16; k++)
            CHECKF(vecs[recs[0].value_offset + (uint32_t)k] == k / 4.0, "item %d", k);
        CHECK(recs[0].confidence == 0.5);
    }
    /* Three signals with vectors: each record indexes its own run of floats. */
    r = NULL;
    reset();
    hx("93"                                                                 /* fixarray 3 */
       SIG(T_, "92 cb 3ff0000000000000 cb 4000000000000000", C_, HL_, TTL_, AGE_, SRC_, SEQ_)
       SIG(T_, V_, C_, HL_, TTL_, AGE_, SRC_, SEQ_)                          /* not a vector */
       SIG(T_, "93 ca 40400000 ca 40800000 ca 40a00000", C_, HL_, TTL_, AGE_, SRC_, SEQ_));
    if (CHECK(dec(pb, pn) == CK_PAYLOAD_OK && cnt == 3)) {
        CHECK_EQ(recs[0].value_offset, 0);
        CHECK_EQ(recs[0].value_length, 2);
        CHECK_EQ(recs[1].kind, CK_VALUE_FLOAT);
        CHECK_EQ(recs[2].value_offset, 2);
        CHECK_EQ(recs[2].value_length, 3);
        for (int k = 0; k < 5; k++)
            CHECKF(vecs[k] == k + 1.0, "float %d: %g", k, vecs[k]);
    }
}

static void test_bytes_values(void)
{
    /* bin 8 (0xc4) of 1: 91 98 a1 74 c4 01 | 00 -> the byte is at offset 6 */
    const ck_signal_record *r = ONE(W_VALUE("c4 01 00"));
    if (r) {
        CHECK_EQ(r->kind, CK_VALUE_BYTES);
        CHECK_EQ(r->value_length, 1);
        CHECK_EQ(r->value_offset, 6);
        CHECK_EQ(pb[6], 0);
        check_good_rest(r, 1, 0, 1);
    }
    /* bin 16 (0xc5) of 3 */
    r = ONE(W_VALUE("c5 0003 010203"));
    if (r) {
        CHECK_EQ(r->kind, CK_VALUE_BYTES);
        CHECK_EQ(r->value_length, 3);
        CHECK_EQ(r->value_offset, 7);
        CHECK_MEM(pb + r->value_offset, "\x01\x02\x03", 3);
    }
    /* bin 32 (0xc6) of 2 */
    r = ONE(W_VALUE("c6 00000002 fffe"));
    if (r) {
        CHECK_EQ(r->kind, CK_VALUE_BYTES);
        CHECK_EQ(r->value_length, 2);
        CHECK_EQ(r->value_offset, 9);
        CHECK_MEM(pb + r->value_offset, "\xff\xfe", 2);
    }
    /* 64 bytes, the most, in each width */
    static const char *const heads[] = {"c4 40", "c5 0040", "c6 00000040"};
    for (int h = 0; h < 3; h++) {
        reset();
        hx("91 98" T_);
        hx(heads[h]);
        size_t at = pn;
        for (int k = 0; k < 64; k++)
            pb[pn++] = (uint8_t)(k * 7);
        hx(C_ HL_ TTL_ AGE_ SRC_ SEQ_);
        if (CHECK(dec(pb, pn) == CK_PAYLOAD_OK && cnt == 1)) {
            CHECK_EQ(recs[0].kind, CK_VALUE_BYTES);
            CHECK_EQ(recs[0].value_offset, at);
            CHECK_EQ(recs[0].value_length, 64);
        }
    }
}

static void test_confidence_and_lifetimes(void)
{
    static const struct {
        const char *hex;
        double want;
    } conf[] = {
        {"cb 3ff0000000000000", 1.0},     /* float 64: the top of (0, 1] */
        {"ca 3f800000", 1.0},             /* float 32 1.0 */
        {"cb 0000000000000001", 0x1p-1074}, /* the smallest double > 0 */
        {"ca 00000001", 0x1p-149},
        {"cb 3fefffffffffffff", 0x1.fffffffffffffp-1},
    };
    for (size_t i = 0; i < sizeof conf / sizeof conf[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_CONF("%s"), conf[i].hex);
        const ck_signal_record *r = ONE(hex);
        if (r) {
            CHECKF(r->confidence == conf[i].want, "case %zu: %a", i, r->confidence);
            check_good_rest(r, 1, 1, 0);
        }
    }
    static const struct {
        const char *hex;
        int64_t want;
    } life[] = {
        {"01", 1},                                 /* positive fixint */
        {"cc 01", 1},                              /* uint 8 */
        {"cd 03e8", 1000},                         /* uint 16 */
        {"ce 05265c00", 86400000},                 /* uint 32: the most */
        {"cf 0000000005265c00", 86400000},         /* uint 64 */
        {"d0 01", 1},                              /* int 8 */
        {"d1 0100", 256},                          /* int 16 */
        {"d2 05265c00", 86400000},                 /* int 32 */
        {"d3 0000000005265c00", 86400000},         /* int 64 */
        {"c0", CK_PAYLOAD_NO_LIFETIME},            /* nil: the other one is 1 */
    };
    for (size_t i = 0; i < sizeof life / sizeof life[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_HL("%s"), life[i].hex);
        const ck_signal_record *r = ONE(hex);
        if (r) {
            CHECKF(r->half_life_ms == life[i].want, "half-life %zu: %lld", i,
                   (long long)r->half_life_ms);
            CHECK_EQ(r->ttl_ms, 1);
            check_good_rest(r, 1, 1, 1);
        }
        snprintf(hex, sizeof hex, W_TTL("%s"), life[i].hex);
        r = ONE(hex);
        if (r) {
            CHECKF(r->ttl_ms == life[i].want, "ttl %zu: %lld", i, (long long)r->ttl_ms);
            CHECK_EQ(r->half_life_ms, 1);
        }
    }
}

static void test_u32_fields(void)
{
    static const struct {
        const char *hex;
        uint32_t want;
    } cases[] = {
        {"00", 0},                   /* positive fixint */
        {"7f", 127},
        {"cc ff", 255},              /* uint 8 */
        {"cd ffff", 65535},          /* uint 16 */
        {"ce ffffffff", 0xffffffffu}, /* uint 32 */
        {"cf 00000000ffffffff", 0xffffffffu}, /* uint 64 */
        {"d0 7f", 127},              /* int 8 */
        {"d1 7fff", 32767},          /* int 16 */
        {"d2 7fffffff", 0x7fffffffu}, /* int 32 */
        {"d3 00000000ffffffff", 0xffffffffu}, /* int 64 */
        {"d3 0000000000000000", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hex[256];
        const ck_signal_record *r;
        snprintf(hex, sizeof hex, W_AGE("%s"), cases[i].hex);
        if ((r = ONE(hex)) != NULL) {
            CHECKF(r->age_ms == cases[i].want, "age %zu", i);
            CHECK(r->source == 1 && r->seq == 2);
        }
        snprintf(hex, sizeof hex, W_SRC("%s"), cases[i].hex);
        if ((r = ONE(hex)) != NULL) {
            CHECKF(r->source == cases[i].want, "source %zu", i);
            CHECK(r->age_ms == 0 && r->seq == 2);
        }
        snprintf(hex, sizeof hex, W_SEQ("%s"), cases[i].hex);
        if ((r = ONE(hex)) != NULL) {
            CHECKF(r->seq == cases[i].want, "seq %zu", i);
            CHECK(r->age_ms == 0 && r->source == 1);
            check_good_rest(r, 1, 1, 1);
        }
    }
}

/* A payload of several signals of every kind, each field checked. */
static const char *const MULTI =
    "95" /* fixarray of 5 */
    /* 0: fixstr "t", float 64 1.5, float 64 0.5, uint 16 1000, nil, 0, 1, 2 */
    SIG(T_, V_, C_, HL_, TTL_, AGE_, SRC_, SEQ_)
    /* 1: str 8 "abc", float 32 1.5, float 32 1.0, nil, uint 32 86400000,
     *    uint 8 255, uint 16 65535, uint 32 2^32-1 */
    SIG("d9 03 616263", "ca 3fc00000", "ca 3f800000", "c0", "ce 05265c00", "cc ff",
        "cd ffff", "ce ffffffff")
    /* 2: str 16 U+00E9, fixint 127, float 64 2^-1074, fixint 1, uint 64 1,
     *    uint 64 2^32-1, int 8 127, int 16 32767 */
    SIG("da 0002 c3a9", "7f", "cb 0000000000000001", "01", "cf 0000000000000001",
        "cf 00000000ffffffff", "d0 7f", "d1 7fff")
    /* 3: str 32 U+1F41D, array 16 of [float 32 0.25, float 64 -1.0],
     *    float 64 0.5, int 8 1, int 16 2, int 32 2^31-1, int 64 2^32-1, uint 8 0 */
    SIG("db 00000004 f09f909d", "dc 0002 ca 3e800000 cb bff0000000000000", C_, "d0 01",
        "d1 0002", "d2 7fffffff", "d3 00000000ffffffff", "cc 00")
    /* 4: fixstr "b", bin 8 of 2, float 64 0.5, nil, fixint 5, int 32 7, int 64 8,
     *    positive fixint 9 */
    SIG("a1 62", "c4 02 abcd", C_, "c0", "05", "d2 00000007", "d3 0000000000000008", "09");

static void test_multi(void)
{
    reset();
    hx(MULTI);
    if (!CHECK(dec(pb, pn) == CK_PAYLOAD_OK) || !CHECK_EQ(cnt, 5))
        return;
    const ck_signal_record *r = recs;
    CHECK_EQ(r[0].topic_length, 1);
    CHECK_EQ(pb[r[0].topic_offset], 't');
    CHECK(r[0].kind == CK_VALUE_FLOAT && r[0].number == 1.5);
    CHECK(r[0].confidence == 0.5);
    CHECK(r[0].half_life_ms == 1000 && r[0].ttl_ms == CK_PAYLOAD_NO_LIFETIME);
    CHECK(r[0].age_ms == 0 && r[0].source == 1 && r[0].seq == 2);

    CHECK_EQ(r[1].topic_length, 3);
    CHECK_MEM(pb + r[1].topic_offset, "abc", 3);
    CHECK(r[1].kind == CK_VALUE_FLOAT && r[1].number == 1.5);
    CHECK(r[1].confidence == 1.0);
    CHECK(r[1].half_life_ms == CK_PAYLOAD_NO_LIFETIME && r[1].ttl_ms == 86400000);
    CHECK(r[1].age_ms == 255 && r[1].source == 65535 && r[1].seq == 0xffffffffu);

    CHECK_EQ(r[2].topic_length, 2);
    CHECK_MEM(pb + r[2].topic_offset, "\xc3\xa9", 2);
    CHECK(r[2].kind == CK_VALUE_CATEGORY && r[2].category == 127);
    CHECK(r[2].confidence == 0x1p-1074);
    CHECK(r[2].half_life_ms == 1 && r[2].ttl_ms == 1);
    CHECK(r[2].age_ms == 0xffffffffu && r[2].source == 127 && r[2].seq == 32767);

    CHECK_EQ(r[3].topic_length, 4);
    CHECK_MEM(pb + r[3].topic_offset, "\xf0\x9f\x90\x9d", 4);
    CHECK(r[3].kind == CK_VALUE_VECTOR && r[3].value_length == 2 && r[3].value_offset == 0);
    CHECK(vecs[0] == 0.25 && vecs[1] == -1.0);
    CHECK(r[3].half_life_ms == 1 && r[3].ttl_ms == 2);
    CHECK(r[3].age_ms == 0x7fffffffu && r[3].source == 0xffffffffu && r[3].seq == 0);

    CHECK_EQ(r[4].topic_length, 1);
    CHECK_EQ(pb[r[4].topic_offset], 'b');
    CHECK(r[4].kind == CK_VALUE_BYTES && r[4].value_length == 2);
    CHECK_MEM(pb + r[4].value_offset, "\xab\xcd", 2);
    CHECK(r[4].half_life_ms == CK_PAYLOAD_NO_LIFETIME && r[4].ttl_ms == 5);
    CHECK(r[4].age_ms == 7 && r[4].source == 8 && r[4].seq == 9);
}

/* -- refused --------------------------------------------------------------------- */

static void test_refuse_structure(void)
{
    /* truncation */
    REFUSE(CK_PAYLOAD_TRUNCATED, "");
    REFUSE(CK_PAYLOAD_TRUNCATED, "91");                  /* fixarray of 1, no signal */
    REFUSE(CK_PAYLOAD_TRUNCATED, "dc 00");               /* array 16, half a length */
    REFUSE(CK_PAYLOAD_TRUNCATED, "dd 000000");           /* array 32, 3 of 4 length bytes */
    REFUSE(CK_PAYLOAD_TRUNCATED, "92" GOOD_SIG);          /* 2 announced, 1 there */
    REFUSE(CK_PAYLOAD_TRUNCATED, W_TOPIC("bf 74"));       /* fixstr of 31: 26 bytes left */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 a5 7474");        /* fixstr of 5 with 2, at the end */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 a1 74 cb 3ff8");  /* float 64 cut short */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 a1 74 ca 3fc0");  /* float 32 cut short */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 a1 74 c4 05 0102"); /* bin 8 of 5 with 2 */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 a1 74 c5 00");    /* bin 16 length cut */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 a1 74 c6 000000"); /* bin 32 length cut */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 d9");             /* str 8 without its length */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 da 00");          /* str 16 length cut */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 db 00000001");    /* str 32 of 1 with none */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98 db ffffffff 74"); /* str 32 of 2^32-1 */
    REFUSE(CK_PAYLOAD_TRUNCATED, "91 98" T_ V_ C_ HL_ TTL_ AGE_ SRC_); /* 7 of 8 there */
    REFUSE(CK_PAYLOAD_TRUNCATED, W_AGE("cf 00000000"));   /* uint 64 cut, then more */

    /* trailing bytes */
    REFUSE(CK_PAYLOAD_TRAILING, "90 00");
    REFUSE(CK_PAYLOAD_TRAILING, "90 90");                /* two payloads */
    REFUSE(CK_PAYLOAD_TRAILING, P1(GOOD_SIG) "c0");
    REFUSE(CK_PAYLOAD_TRAILING, P1(GOOD_SIG) P1(GOOD_SIG));

    /* not an array */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "c0");                  /* nil */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "00");                  /* positive fixint */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "ff");                  /* negative fixint */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "80");                  /* fixmap (0x80) */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "de 0000");             /* map 16 (0xde) */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "a1 74");               /* fixstr */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "c4 01 00");            /* bin 8 */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "c3");                  /* true */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "c1");                  /* never used (0xc1) */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "d4 01 00");            /* fixext 1 (0xd4) */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "cb 3ff0000000000000"); /* float 64 */

    /* more than 1024 signals: refused at the header, whatever follows */
    REFUSE(CK_PAYLOAD_TOO_MANY, "dc 0401");              /* array 16 of 1025 */
    REFUSE(CK_PAYLOAD_TOO_MANY, "dd 00000401");          /* array 32 of 1025 */
    REFUSE(CK_PAYLOAD_TOO_MANY, "dc ffff");
    REFUSE(CK_PAYLOAD_TOO_MANY, "dd ffffffff");
    reset();
    hx("dc 0401");
    for (int i = 0; i < 1025; i++)
        hx(GOOD_SIG);
    REFUSE_BUILT(CK_PAYLOAD_TOO_MANY, "1025 whole signals");

    /* a signal that is not an array of 8, or of 9 with its hop count */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 97" T_ V_ C_ HL_ TTL_ AGE_ SRC_);       /* 7 */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 9a" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_ "00 00"); /* 10 */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 dc 0007" T_ V_ C_ HL_ TTL_ AGE_ SRC_);  /* 7, array 16 */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 dd 0000000a" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_ "00 00");
    /* the ninth item, hops: 0..15 */
    REFUSE(CK_PAYLOAD_NUMBER, "91 99" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_ "10");   /* 16 */
    REFUSE(CK_PAYLOAD_NUMBER, "91 99" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_ "c0");   /* nil */
    REFUSE(CK_PAYLOAD_NUMBER, "91 99" T_ V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_ "ff");   /* -1 */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 90");            /* empty */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 c0");            /* nil */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 88");            /* fixmap of 8 */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "91 a8 7474747474747474"); /* fixstr of 8 */
    REFUSE(CK_PAYLOAD_SIGNAL_SHAPE, "92" GOOD_SIG "97");  /* the second is bad */
}

static void test_refuse_topic(void)
{
    REFUSE(CK_PAYLOAD_TOPIC, W_TOPIC("a0"));             /* fixstr of 0 */
    REFUSE(CK_PAYLOAD_TOPIC, W_TOPIC("d9 00"));          /* str 8 of 0 */
    REFUSE(CK_PAYLOAD_TOPIC, W_TOPIC("c4 01 74"));       /* bin 8, not a str */
    REFUSE(CK_PAYLOAD_TOPIC, W_TOPIC("c0"));             /* nil */
    REFUSE(CK_PAYLOAD_TOPIC, W_TOPIC("01"));             /* int */
    REFUSE(CK_PAYLOAD_TOPIC, W_TOPIC("91 a1 74"));       /* array */
    /* 129 bytes in str 8 (0xd9 0x81), str 16 and str 32 */
    static const char *const heads[] = {"d9 81", "da 0081", "db 00000081"};
    for (int h = 0; h < 3; h++) {
        reset();
        hx("91 98");
        hx(heads[h]);
        rep('a', 129);
        hx(V_ C_ HL_ TTL_ AGE_ SRC_ SEQ_);
        REFUSE_BUILT(CK_PAYLOAD_TOPIC, heads[h]);
    }
    static const char *const bad[] = {
        /* overlong forms */
        "a2 c0 80", "a2 c1 bf", "a3 e0 80 80", "a3 e0 9f bf", "a4 f0 80 80 80", "a4 f0 8f bf bf",
        /* surrogates U+D800, U+DBFF, U+DC00, U+DFFF, and a CESU-8 pair */
        "a3 ed a0 80", "a3 ed af bf", "a3 ed b0 80", "a3 ed bf bf", "a6 ed a0 bd ed b0 9d",
        /* past U+10FFFF; lead bytes that never occur */
        "a4 f4 90 80 80", "a4 f5 80 80 80", "a4 f7 bf bf bf", "a5 f8 88 80 80 80", "a1 fe",
        "a1 ff",
        /* bad continuation bytes */
        "a2 c3 28", "a3 e2 28 a1", "a3 e2 82 28", "a4 f0 28 8c bc", "a4 f0 90 28 bc",
        "a4 f0 90 8c 28", "a2 c3 c3", "a1 80", "a1 bf", "a3 61 80 62",
        /* truncated sequences, at the end and in the middle */
        "a1 c3", "a2 e2 82", "a3 f0 9f 98", "a2 61 c3", "a3 e2 82 61", "a4 f0 9f 98 61",
        /* C0 controls and DEL */
        "a1 00", "a1 01", "a1 09", "a1 0a", "a1 0d", "a1 1b", "a1 1f", "a1 7f", "a3 61 00 62",
        "a2 61 7f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_TOPIC("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_TOPIC, hex);
    }
    /* A sequence cut short by the end of the topic, where the next item's type
     * byte looks like a continuation byte: fixarray (0x91) of one float. */
    REFUSE(CK_PAYLOAD_TOPIC, P1(SIG("a1 c3", "91 cb 3ff0000000000000", C_, HL_, TTL_, AGE_,
                                    SRC_, SEQ_)));
    REFUSE(CK_PAYLOAD_TOPIC, P1(SIG("a2 e2 82", "91 cb 3ff0000000000000", C_, HL_, TTL_, AGE_,
                                    SRC_, SEQ_)));
    REFUSE(CK_PAYLOAD_TOPIC, P1(SIG("a3 f0 9f 98", "91 cb 3ff0000000000000", C_, HL_, TTL_,
                                    AGE_, SRC_, SEQ_)));
    /* ... or a fixstr (0xa1) value "t" */
    REFUSE(CK_PAYLOAD_TOPIC, P1(SIG("a1 c3", "a1 74", C_, HL_, TTL_, AGE_, SRC_, SEQ_)));
}

static void test_refuse_value(void)
{
    static const char *const bad[] = {
        "cb 7ff8000000000000", "cb fff8000000000000", "cb 7ff0000000000001", /* nan */
        "cb 7ff0000000000000", "cb fff0000000000000",                       /* +-inf */
        "ca 7fc00000", "ca 7f800001", "ca 7f800000", "ca ff800000",         /* float 32 */
        "ff", "e0", "d0 ff", "d0 80", "d1 ffff", "d2 80000000", "d3 ffffffffffffffff", /* < 0 */
        "cf 0000000100000000",                               /* 2^32 as uint 64 */
        "cf ffffffffffffffff", "d3 0000000100000000", "d3 7fffffffffffffff",
        "c2", "c3",                                          /* false, true */
        "c0",                                                /* nil */
        "80", "81 a1 61 01", "de 0000", "df 00000000",       /* maps */
        "a1 78", "d9 01 78",                                 /* str */
        "c1",                                                /* never used */
        "d4 01 00", "c7 00 01", "d8 01 00000000000000000000000000000000", /* ext */
        /* vectors */
        "90", "dc 0000", "dd 00000000",                      /* empty */
        "91 01", "92 cb 3ff0000000000000 01",                /* an int item */
        "91 c0", "91 a1 74", "91 91 cb 3ff0000000000000",    /* nil, str, array items */
        "91 c4 01 00", "91 c3",                              /* bin, bool items */
        "91 cb 7ff8000000000000", "92 cb 3ff0000000000000 ca 7fc00000", /* nan items */
        "91 cb 7ff0000000000000", "91 ca ff800000",          /* inf items */
        /* bin */
        "c4 00", "c5 0000", "c6 00000000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_VALUE("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_VALUE, hex);
    }
    /* 17 floats in array 16 (0xdc 0011) and array 32 */
    static const char *const heads[] = {"dc 0011", "dd 00000011"};
    for (int h = 0; h < 2; h++) {
        reset();
        hx("91 98" T_);
        hx(heads[h]);
        for (int k = 0; k < 17; k++)
            hx("cb 3ff0000000000000");
        hx(C_ HL_ TTL_ AGE_ SRC_ SEQ_);
        REFUSE_BUILT(CK_PAYLOAD_VALUE, heads[h]);
    }
    /* 65 bytes in bin 8 (0xc4 0x41), bin 16, bin 32 */
    static const char *const bins[] = {"c4 41", "c5 0041", "c6 00000041"};
    for (int h = 0; h < 3; h++) {
        reset();
        hx("91 98" T_);
        hx(bins[h]);
        rep(0x55, 65);
        hx(C_ HL_ TTL_ AGE_ SRC_ SEQ_);
        REFUSE_BUILT(CK_PAYLOAD_VALUE, bins[h]);
    }
}

static void test_refuse_confidence(void)
{
    static const char *const bad[] = {
        "cb 0000000000000000", "cb 8000000000000000", "ca 00000000", /* 0, -0 */
        "cb bff0000000000000", "cb 8000000000000001", "ca bf800000", /* negative */
        "cb 3ff000001ad7f29b",                                       /* 1.0000001 */
        "cb 3ff0000000000001", "ca 3f800001",                        /* just above 1 */
        "cb 4000000000000000",                                       /* 2 */
        "cb 7ff8000000000000", "ca 7fc00000",                        /* nan */
        "cb 7ff0000000000000",                                       /* inf */
        "01", "cc 01", "d0 01", "00",                                /* int 1, int 0 */
        "c0", "c3", "a1 31", "91 cb 3ff0000000000000", "c4 01 01",   /* other types */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_CONF("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_CONFIDENCE, hex);
    }
}

static void test_refuse_lifetime(void)
{
    static const char *const bad[] = {
        "00", "cc 00", "cf 0000000000000000", "d3 0000000000000000", /* 0 */
        "ce 05265c01", "d2 05265c01", "cf 0000000005265c01",         /* 86400001 */
        "ce ffffffff", "cf ffffffffffffffff",                        /* far past */
        "ff", "d0 ff", "d3 ffffffffffffffff",                        /* negative */
        "cb 3ff0000000000000", "ca 3f800000",                        /* float 1.0 */
        "c2", "c3", "a1 31", "90", "80", "c4 01 01",                 /* other types */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_HL("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_LIFETIME, hex);
        snprintf(hex, sizeof hex, W_TTL("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_LIFETIME, hex);
    }
    /* both nil */
    REFUSE(CK_PAYLOAD_LIFETIME, P1(SIG(T_, V_, C_, "c0", "c0", AGE_, SRC_, SEQ_)));
}

static void test_refuse_numbers(void)
{
    static const char *const bad[] = {
        "cf 0000000100000000", "d3 0000000100000000", "cf ffffffffffffffff", /* 2^32, 2^64-1 */
        "ff", "e0", "d0 ff", "d1 8000", "d2 ffffffff", "d3 8000000000000000", /* negative */
        "c0", "c2", "cb 0000000000000000", "ca 3f800000", "a1 31", "90", "80", "c4 01 01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hex[256];
        snprintf(hex, sizeof hex, W_AGE("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_NUMBER, hex);
        snprintf(hex, sizeof hex, W_SRC("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_NUMBER, hex);
        snprintf(hex, sizeof hex, W_SEQ("%s"), bad[i]);
        REFUSE(CK_PAYLOAD_NUMBER, hex);
    }
}

/* The count and position reported with a refusal. */
static void test_refusal_count_and_where(void)
{
    /* fixarray 3: two good signals, then one whose ttl is float 64 */
    reset();
    hx("93" GOOD_SIG GOOD_SIG);
    size_t third = pn;
    hx(SIG(T_, V_, C_, HL_, "cb 3ff0000000000000", AGE_, SRC_, SEQ_));
    CHECK(dec(pb, pn) == CK_PAYLOAD_LIFETIME);
    CHECK_EQ(cnt, 2);
    CHECKF(wh > third && wh <= pn, "where %zu, third signal at %zu", wh, third);
    /* the first item: count 0 */
    REFUSE(CK_PAYLOAD_NOT_ARRAY, "c0");
    CHECK_EQ(cnt, 0);
    /* a payload with 2 good signals then trailing bytes: count 2, where at the extra byte */
    reset();
    hx("92" GOOD_SIG GOOD_SIG "c0");
    CHECK(dec(pb, pn) == CK_PAYLOAD_TRAILING);
    CHECK_EQ(cnt, 2);
    CHECK_EQ(wh, pn - 1);
}

/* -- truncation: every strict prefix of a valid payload ---------------------------- */

static void check_prefixes(const char *what)
{
    static uint8_t full[PB_MAX];
    size_t n = pn;
    memcpy(full, pb, n);
    if (!CHECKF(dec(full, n) == CK_PAYLOAD_OK, "%s: whole payload", what))
        return;
    for (size_t len = 0; len < n; len++) {
        ck_payload_error e = dec(full, len);
        /* A counted array is never complete before its last byte. */
        if (!CHECKF(e == CK_PAYLOAD_TRUNCATED, "%s: prefix of %zu of %zu bytes gave %d (%s)",
                    what, len, n, (int)e, ck_payload_error_str(e)))
            break;
    }
    /* one more byte of any kind is trailing */
    for (unsigned b = 0; b < 256; b++) {
        full[n] = (uint8_t)b;
        if (!CHECKF(dec(full, n + 1) == CK_PAYLOAD_TRAILING, "%s + %02x", what, b))
            break;
    }
}

static void test_prefixes(void)
{
    reset();
    hx(MULTI);
    check_prefixes("MULTI");
    reset();
    hx("dd 00000002" GOOD_SIG);
    hx(" 98 db 00000002 6869 c6 00000003 010203 cb 3ff0000000000000 ce 05265c00 c0"
       " d3 00000000ffffffff cf 0000000000000007 d2 00000009");
    check_prefixes("array 32, str 32, bin 32");
    reset();
    hx("90");
    check_prefixes("empty");
}

/* -- capacities ---------------------------------------------------------------------- */

#define GUARD 0xA5

static int guard_intact(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != GUARD)
            return 0;
    return 1;
}

static void test_capacities(void)
{
    /* fixarray 3 of signals each holding a vector of 4 float 32 */
#define VEC4 "94 ca 3f800000 ca 40000000 ca 40400000 ca 40800000"
    static const char *const payload =
        "93" SIG(T_, VEC4, C_, HL_, TTL_, AGE_, SRC_, SEQ_)
            SIG(T_, VEC4, C_, HL_, TTL_, AGE_, SRC_, SEQ_)
                SIG(T_, VEC4, C_, HL_, TTL_, AGE_, SRC_, SEQ_);
    reset();
    hx(payload);
    ck_signal_record out[3 + 4];
    double vec[12 + 8];
    size_t count, where;

    /* out_capacity 0..2 < 3: refused before any record is written */
    for (size_t cap = 0; cap < 3; cap++) {
        memset(out, GUARD, sizeof out);
        memset(vec, GUARD, sizeof vec);
        ck_payload_error e = ck_payload_decode(pb, pn, out, cap, vec, 12, &count, &where);
        CHECKF(e == CK_PAYLOAD_TOO_MANY, "out_capacity %zu: %d", cap, (int)e);
        CHECK(guard_intact(out + cap, sizeof out - cap * sizeof out[0]));
        CHECK(guard_intact(vec, sizeof vec));
    }
    /* vector_capacity 0..11 < 12: refused at the vector that does not fit */
    for (size_t cap = 0; cap < 12; cap++) {
        memset(out, GUARD, sizeof out);
        memset(vec, GUARD, sizeof vec);
        ck_payload_error e = ck_payload_decode(pb, pn, out, 3, vec, cap, &count, &where);
        CHECKF(e == CK_PAYLOAD_TOO_MANY, "vector_capacity %zu: %d", cap, (int)e);
        CHECKF(count == cap / 4, "vector_capacity %zu: count %zu", cap, count);
        CHECKF(guard_intact(vec + cap, sizeof vec - cap * sizeof vec[0]),
               "vector_capacity %zu: written past", cap);
        CHECK(guard_intact(out + 3, 4 * sizeof out[0]));
    }
    /* exactly enough: accepted, nothing past the capacities touched */
    memset(out, GUARD, sizeof out);
    memset(vec, GUARD, sizeof vec);
    CHECK(ck_payload_decode(pb, pn, out, 3, vec, 12, &count, &where) == CK_PAYLOAD_OK);
    CHECK_EQ(count, 3);
    CHECK(guard_intact(out + 3, 4 * sizeof out[0]));
    CHECK(guard_intact(vec + 12, 8 * sizeof vec[0]));
    for (int k = 0; k < 12; k++)
        CHECKF(vec[k] == (double)(k % 4 + 1), "float %d", k);
    CHECK(out[2].value_offset == 8 && out[2].value_length == 4);

    /* more than 1024 signals even when the caller has room for more */
    static ck_signal_record many[CK_PAYLOAD_MAX_SIGNALS + 8];
    reset();
    hx("dc 0401");
    for (int i = 0; i < CK_PAYLOAD_MAX_SIGNALS + 1; i++)
        hx(GOOD_SIG);
    CHECK(ck_payload_decode(pb, pn, many, CK_PAYLOAD_MAX_SIGNALS + 8, NULL, 0, &count,
                            &where) == CK_PAYLOAD_TOO_MANY);
    pb[2] = 0x00; /* dc 0400: 1024 of them, then one trailing signal */
    CHECK(ck_payload_decode(pb, pn, many, CK_PAYLOAD_MAX_SIGNALS + 8, NULL, 0, &count,
                            &where) == CK_PAYLOAD_TRAILING);
    CHECK_EQ(count, CK_PAYLOAD_MAX_SIGNALS);

    /* no vectors at all: vector_capacity 0 (and no array) is enough */
    reset();
    hx("92" GOOD_SIG GOOD_SIG);
    CHECK(ck_payload_decode(pb, pn, out, 2, NULL, 0, &count, &where) == CK_PAYLOAD_OK);
    CHECK_EQ(count, 2);
    /* an empty payload needs no records */
    reset();
    hx("90");
    CHECK(ck_payload_decode(pb, pn, NULL, 0, NULL, 0, &count, &where) == CK_PAYLOAD_OK);
    CHECK_EQ(count, 0);
}

static void test_error_strings(void)
{
    const char *seen[16] = {0};
    for (int e = CK_PAYLOAD_OK; e <= CK_PAYLOAD_NUMBER; e++) {
        const char *s = ck_payload_error_str((ck_payload_error)e);
        CHECK(s != NULL && s[0] != '\0');
        for (int o = 0; o < e; o++)
            CHECKF(s != seen[o] && strcmp(s, seen[o]) != 0, "codes %d and %d share a text", o, e);
        seen[e] = s;
    }
    CHECK(strcmp(ck_payload_error_str((ck_payload_error)99), "unknown payload error") == 0);
}

int main(void)
{
    test_good_signal();
    test_relayed_signal();
    test_outer_array_widths();
    test_max_signals();
    test_topic_encodings();
    test_float_values();
    test_category_values();
    test_vector_values();
    test_bytes_values();
    test_confidence_and_lifetimes();
    test_u32_fields();
    test_multi();
    test_refuse_structure();
    test_refuse_topic();
    test_refuse_value();
    test_refuse_confidence();
    test_refuse_lifetime();
    test_refuse_numbers();
    test_refusal_count_and_where();
    test_prefixes();
    test_capacities();
    test_error_strings();
    return test_finish();
}
