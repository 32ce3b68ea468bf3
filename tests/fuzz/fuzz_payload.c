/*
 * fuzz_payload.c - fuzz the signal payload decoder (csrc/ck_payload.c) with
 * untrusted bytes.
 *
 * The whole input is the payload.  The invariants, checked after every call
 * (abort() on a violation, with a message; ASan/UBSan watch the memory):
 *
 *   - the return is a defined ck_payload_error, *where lies within the input,
 *     and *count <= out_capacity (and <= 1024);
 *   - each of the *count records (complete ones, even when the payload is
 *     refused later) keeps section 3 of docs/PROTOCOL.md: topic offset and
 *     length within the input, 1..128 bytes of well-formed UTF-8 (checked
 *     against the byte ranges of Unicode's table 3-7, not the decoder's way)
 *     with no C0 control or DEL; a finite float, a vector of 1..16 finite
 *     floats within the vectors written, or 1..64 bytes within the input;
 *     0 < confidence <= 1; lifetimes 1..86400000 or absent, not both absent;
 *   - an accepted payload decodes the same again with exactly the capacity
 *     it needs, is refused as CK_PAYLOAD_TOO_MANY with one record or one
 *     vector float less (writing nothing past either capacity), refused as
 *     truncated without its last byte, and as trailing with a byte more.
 *
 * libFuzzer:   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *                  tests/fuzz/fuzz_payload.c csrc/ck_payload.c -o fuzz_payload \
 *                  && ./fuzz_payload
 * standalone:  gcc -std=c99 -D_GNU_SOURCE -DCK_FUZZ_STANDALONE -g -O1 \
 *                  -fsanitize=address,undefined -Icsrc tests/fuzz/fuzz_payload.c \
 *                  csrc/ck_payload.c -o fuzz_payload && ./fuzz_payload 200000
 * The standalone driver feeds N pseudo-random inputs (seeded, repeatable):
 * half are random bytes, half are valid payloads built here with random
 * msgpack widths for every item (each first checked to decode to exactly
 * the signals it was built from) and then mutated, so decoding goes deep.
 * Files named after N are fed as extra inputs.
 */
#include "ck_payload.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VECTOR_CAPACITY (CK_PAYLOAD_MAX_SIGNALS * CK_PAYLOAD_MAX_VECTOR)
#define GUARD_RECORDS 4
#define GUARD_FLOATS 16
#define GUARD_BYTE 0x5A

static ck_signal_record records[CK_PAYLOAD_MAX_SIGNALS + GUARD_RECORDS];
static double vectors[VECTOR_CAPACITY + GUARD_FLOATS];
static ck_signal_record again[CK_PAYLOAD_MAX_SIGNALS + GUARD_RECORDS];
static double again_vectors[VECTOR_CAPACITY + GUARD_FLOATS];

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2), noreturn))
#endif
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_payload: invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Well-formed UTF-8 by Unicode table 3-7, no C0 controls, no DEL. */
static int topic_well_formed(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint8_t lo = 0x80, hi = 0xbf; /* range of the second byte */
        size_t need;
        if (b <= 0x7f) {
            if (b <= 0x1f || b == 0x7f)
                return 0;
            i++;
            continue;
        } else if (b >= 0xc2 && b <= 0xdf) {
            need = 1;
        } else if (b == 0xe0) {
            need = 2, lo = 0xa0;
        } else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef) {
            need = 2;
        } else if (b == 0xed) {
            need = 2, hi = 0x9f;
        } else if (b == 0xf0) {
            need = 3, lo = 0x90;
        } else if (b >= 0xf1 && b <= 0xf3) {
            need = 3;
        } else if (b == 0xf4) {
            need = 3, hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i <= need)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= need; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xbf)
                return 0;
        i += need + 1;
    }
    return 1;
}

static int lifetime_ok(int64_t ms)
{
    return ms == CK_PAYLOAD_NO_LIFETIME || (ms >= 1 && ms <= (int64_t)CK_PAYLOAD_MAX_LIFETIME_MS);
}

/* Every record of out[0..count) keeps the rules; `used` floats of vectors were written. */
static void check_records(const uint8_t *data, size_t size, const ck_signal_record *out,
                          size_t count, const double *vec, size_t vec_capacity)
{
    size_t next_vector = 0;
    for (size_t i = 0; i < count; i++) {
        const ck_signal_record *r = &out[i];
        if (r->topic_length < 1 || r->topic_length > CK_PAYLOAD_MAX_TOPIC)
            fail("record %zu: topic length %u", i, (unsigned)r->topic_length);
        if ((size_t)r->topic_offset > size || size - r->topic_offset < r->topic_length)
            fail("record %zu: topic %u+%u outside %zu bytes", i, (unsigned)r->topic_offset,
                 (unsigned)r->topic_length, size);
        if (!topic_well_formed(data + r->topic_offset, r->topic_length))
            fail("record %zu: topic is not clean UTF-8", i);
        switch (r->kind) {
        case CK_VALUE_FLOAT:
            if (!isfinite(r->number))
                fail("record %zu: value %g", i, r->number);
            break;
        case CK_VALUE_CATEGORY:
            break; /* a uint32_t: 0..2^32-1 by its type */
        case CK_VALUE_VECTOR:
            if (r->value_length < 1 || r->value_length > CK_PAYLOAD_MAX_VECTOR)
                fail("record %zu: vector of %u", i, (unsigned)r->value_length);
            /* vectors are laid out in order, one after the other */
            if (r->value_offset != next_vector)
                fail("record %zu: vector at %u, expected %zu", i, (unsigned)r->value_offset,
                     next_vector);
            if ((size_t)r->value_offset + r->value_length > vec_capacity)
                fail("record %zu: vector %u+%u past the capacity %zu", i,
                     (unsigned)r->value_offset, (unsigned)r->value_length, vec_capacity);
            for (unsigned d = 0; d < r->value_length; d++)
                if (!isfinite(vec[r->value_offset + d]))
                    fail("record %zu: vector item %u is %g", i, d, vec[r->value_offset + d]);
            next_vector = (size_t)r->value_offset + r->value_length;
            break;
        case CK_VALUE_BYTES:
            if (r->value_length < 1 || r->value_length > CK_PAYLOAD_MAX_BYTES)
                fail("record %zu: %u bytes", i, (unsigned)r->value_length);
            if ((size_t)r->value_offset > size || size - r->value_offset < r->value_length)
                fail("record %zu: bytes %u+%u outside %zu bytes", i, (unsigned)r->value_offset,
                     (unsigned)r->value_length, size);
            break;
        default:
            fail("record %zu: kind %u", i, (unsigned)r->kind);
        }
        if (!(r->confidence > 0.0 && r->confidence <= 1.0))
            fail("record %zu: confidence %g", i, r->confidence);
        if (!lifetime_ok(r->half_life_ms) || !lifetime_ok(r->ttl_ms))
            fail("record %zu: lifetimes %lld, %lld", i, (long long)r->half_life_ms,
                 (long long)r->ttl_ms);
        if (r->half_life_ms == CK_PAYLOAD_NO_LIFETIME && r->ttl_ms == CK_PAYLOAD_NO_LIFETIME)
            fail("record %zu: no lifetime at all", i);
    }
}

static size_t vectors_used(const ck_signal_record *out, size_t count)
{
    size_t used = 0;
    for (size_t i = 0; i < count; i++)
        if (out[i].kind == CK_VALUE_VECTOR)
            used = (size_t)out[i].value_offset + out[i].value_length;
    return used;
}

static int same_record(const ck_signal_record *a, const ck_signal_record *b,
                       const double *va, const double *vb)
{
    if (a->topic_offset != b->topic_offset || a->topic_length != b->topic_length ||
        a->kind != b->kind || a->half_life_ms != b->half_life_ms || a->ttl_ms != b->ttl_ms ||
        a->age_ms != b->age_ms || a->source != b->source || a->seq != b->seq ||
        a->hops != b->hops ||
        memcmp(&a->confidence, &b->confidence, sizeof(double)) != 0)
        return 0;
    switch (a->kind) {
    case CK_VALUE_FLOAT:
        return memcmp(&a->number, &b->number, sizeof(double)) == 0;
    case CK_VALUE_CATEGORY:
        return a->category == b->category;
    case CK_VALUE_VECTOR:
        return a->value_length == b->value_length && a->value_offset == b->value_offset &&
               memcmp(va + a->value_offset, vb + b->value_offset,
                      a->value_length * sizeof(double)) == 0;
    default:
        return a->value_length == b->value_length && a->value_offset == b->value_offset;
    }
}

static int guard_intact(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != GUARD_BYTE)
            return 0;
    return 1;
}

/* Decode with the given capacities into `again`, guards set past them. */
static ck_payload_error decode_again(const uint8_t *data, size_t size, size_t out_cap,
                                     size_t vec_cap, size_t *count)
{
    size_t where;
    memset(again + out_cap, GUARD_BYTE, GUARD_RECORDS * sizeof again[0]);
    memset(again_vectors + vec_cap, GUARD_BYTE, GUARD_FLOATS * sizeof again_vectors[0]);
    ck_payload_error e =
        ck_payload_decode(data, size, again, out_cap, again_vectors, vec_cap, count, &where);
    if (!guard_intact(again + out_cap, GUARD_RECORDS * sizeof again[0]))
        fail("wrote past out_capacity %zu", out_cap);
    if (!guard_intact(again_vectors + vec_cap, GUARD_FLOATS * sizeof again_vectors[0]))
        fail("wrote past vector_capacity %zu", vec_cap);
    if (*count > out_cap || where > size)
        fail("count %zu of capacity %zu, where %zu of %zu", *count, out_cap, where, size);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t count = (size_t)-1, where = (size_t)-1;
    /* Room for more than 1024 records: the limit must be the decoder's own. */
    ck_payload_error e =
        ck_payload_decode(data, size, records, CK_PAYLOAD_MAX_SIGNALS + GUARD_RECORDS, vectors,
                          VECTOR_CAPACITY + GUARD_FLOATS, &count, &where);
    if ((int)e < (int)CK_PAYLOAD_OK || (int)e > (int)CK_PAYLOAD_NUMBER)
        fail("undefined code %d", (int)e);
    if (strcmp(ck_payload_error_str(e), "unknown payload error") == 0)
        fail("code %d has no text", (int)e);
    if (count > CK_PAYLOAD_MAX_SIGNALS || where > size)
        fail("count %zu, where %zu of %zu", count, where, size);
    if (e == CK_PAYLOAD_OK && where != 0)
        fail("where %zu on success", where);
    check_records(data, size, records, count, vectors, VECTOR_CAPACITY);
    if (e != CK_PAYLOAD_OK)
        return 0;

    /* Exactly the capacity it needs: the same records. */
    size_t used = vectors_used(records, count), count2;
    if (decode_again(data, size, count, used, &count2) != CK_PAYLOAD_OK || count2 != count)
        fail("refused with exactly the capacity (%zu records, %zu floats)", count, used);
    for (size_t i = 0; i < count; i++)
        if (!same_record(&records[i], &again[i], vectors, again_vectors))
            fail("record %zu differs on a second decode", i);
    /* One record or one float too few: refused, nothing written past. */
    if (count > 0 && decode_again(data, size, count - 1, used, &count2) != CK_PAYLOAD_TOO_MANY)
        fail("%zu signals accepted with out_capacity %zu", count, count - 1);
    if (used > 0) {
        if (decode_again(data, size, count, used - 1, &count2) != CK_PAYLOAD_TOO_MANY)
            fail("%zu vector floats accepted with vector_capacity %zu", used, used - 1);
        check_records(data, size, again, count2, again_vectors, used - 1);
    }
    /* Without its last byte it is truncated; with one more, trailing. */
    if (size == 0)
        fail("the empty input was accepted");
    uint8_t *copy = malloc(size + 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    e = ck_payload_decode(copy, size - 1, again, CK_PAYLOAD_MAX_SIGNALS, again_vectors,
                          VECTOR_CAPACITY, &count2, &where);
    if (e != CK_PAYLOAD_TRUNCATED)
        fail("accepted payload less its last byte gave %d", (int)e);
    copy[size] = data[size - 1];
    e = ck_payload_decode(copy, size + 1, again, CK_PAYLOAD_MAX_SIGNALS, again_vectors,
                          VECTOR_CAPACITY, &count2, &where);
    if (e != CK_PAYLOAD_TRAILING || count2 != count)
        fail("accepted payload plus a byte gave %d (count %zu)", (int)e, count2);
    free(copy);
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

static size_t below(size_t n)
{
    return n ? (size_t)(next() % n) : 0;
}

/* -- a valid payload, with random msgpack widths, and what it must decode to -- */

#define BUF_MAX (1u << 19)
static uint8_t buf[BUF_MAX + 64];
static size_t blen;

typedef struct {
    uint8_t topic[CK_PAYLOAD_MAX_TOPIC];
    uint32_t topic_length;
    uint8_t kind;
    double number;
    uint32_t category;
    double vector[CK_PAYLOAD_MAX_VECTOR];
    uint8_t bytes[CK_PAYLOAD_MAX_BYTES];
    uint8_t value_length;
    double confidence;
    int64_t half_life_ms, ttl_ms;
    uint32_t age_ms, source, seq;
    uint8_t hops; /* 0: eight items, or a ninth that is 0 */
    int ninth;    /* written with a ninth item (hops) */
} expected_signal;

static expected_signal expect[CK_PAYLOAD_MAX_SIGNALS + 1];

static void put(uint8_t b)
{
    buf[blen++] = b;
}

static void put_be(uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--)
        put((uint8_t)(v >> (8 * i)));
}

/* A non-negative integer in a random width that holds it (msgpack int family). */
static void put_uint(uint64_t v)
{
    for (;;) {
        switch (below(9)) {
        case 0: if (v <= 0x7f) { put((uint8_t)v); return; } break;          /* positive fixint */
        case 1: if (v <= 0xff) { put(0xcc); put_be(v, 1); return; } break;  /* uint 8 */
        case 2: if (v <= 0xffff) { put(0xcd); put_be(v, 2); return; } break; /* uint 16 */
        case 3: if (v <= 0xffffffffu) { put(0xce); put_be(v, 4); return; } break; /* uint 32 */
        case 4: put(0xcf); put_be(v, 8); return;                            /* uint 64 */
        case 5: if (v <= 0x7f) { put(0xd0); put_be(v, 1); return; } break;  /* int 8 */
        case 6: if (v <= 0x7fff) { put(0xd1); put_be(v, 2); return; } break; /* int 16 */
        case 7: if (v <= 0x7fffffff) { put(0xd2); put_be(v, 4); return; } break; /* int 32 */
        default: if (v <= 0x7fffffffffffffffull) { put(0xd3); put_be(v, 8); return; } /* int 64 */
        }
    }
}

/* Whether converting d to float is defined (C99 6.3.1.5: within float's range). */
static int fits_float(double d)
{
    return d >= -0x1.fffffep+127 && d <= 0x1.fffffep+127;
}

/* A float as float 32 (0xca) when that is exact and the coin says so, else float 64 (0xcb). */
static void put_float(double v)
{
    float f = fits_float(v) ? (float)v : 0.0f;
    if (fits_float(v) && (double)f == v && (next() & 1)) {
        uint32_t bits;
        memcpy(&bits, &f, 4);
        put(0xca);
        put_be(bits, 4);
    } else {
        uint64_t bits;
        memcpy(&bits, &v, 8);
        put(0xcb);
        put_be(bits, 8);
    }
}

/* str (fixstr, str 8/16/32) or bin (bin 8/16/32) header of a random width. */
static void put_str_header(uint32_t len)
{
    for (;;) {
        switch (below(4)) {
        case 0: if (len <= 31) { put((uint8_t)(0xa0 | len)); return; } break;
        case 1: if (len <= 0xff) { put(0xd9); put_be(len, 1); return; } break;
        case 2: put(0xda); put_be(len, 2); return;
        default: put(0xdb); put_be(len, 4); return;
        }
    }
}

static void put_bin_header(uint32_t len)
{
    switch (below(3)) {
    case 0: put(0xc4); put_be(len, 1); return;
    case 1: put(0xc5); put_be(len, 2); return;
    default: put(0xc6); put_be(len, 4); return;
    }
}

static void put_array_header(uint32_t len)
{
    for (;;) {
        switch (below(3)) {
        case 0: if (len <= 15) { put((uint8_t)(0x90 | len)); return; } break;
        case 1: put(0xdc); put_be(len, 2); return;
        default: put(0xdd); put_be(len, 4); return;
        }
    }
}

static double random_finite(void)
{
    static const double edges[] = {0.0, -0.0, 1.0, -1.5, 0x1p-1074, 0x1.fffffffffffffp+1023,
                                   -0x1.fffffffffffffp+1023, 0x1p-149, 0x1.fffffep+127, 0.1};
    if (next() & 1)
        return edges[below(sizeof edges / sizeof edges[0])];
    for (;;) {
        uint64_t bits = next();
        double d;
        memcpy(&d, &bits, 8);
        if (!isfinite(d))
            continue;
        if ((next() & 1) && fits_float(d))
            return (float)d; /* rounded to a float 32 value, so it may go out as one */
        return d;
    }
}

static double random_confidence(void)
{
    switch (below(4)) {
    case 0: return 1.0;
    case 1: return 0x1p-1074;
    case 2: return (float)((double)(1 + below(1u << 24)) * 0x1p-24); /* float 32 exact */
    default: {
        double u = (double)(next() >> 11) * 0x1p-53;
        return u > 0.0 ? u : 1.0;
    }
    }
}

static uint32_t random_u32(void)
{
    static const uint32_t edges[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0x7fffffff,
                                     0x80000000u, 0xffffffffu};
    return (next() & 1) ? edges[below(sizeof edges / sizeof edges[0])] : (uint32_t)next();
}

static int64_t random_lifetime(void)
{
    switch (below(5)) {
    case 0: return CK_PAYLOAD_NO_LIFETIME;
    case 1: return 1;
    case 2: return CK_PAYLOAD_MAX_LIFETIME_MS;
    default: return 1 + (int64_t)below(CK_PAYLOAD_MAX_LIFETIME_MS);
    }
}

/* One code point as UTF-8 into t (room for 4); its length. */
static uint32_t random_char(uint8_t *t)
{
    uint32_t cp;
    switch (below(6)) {
    case 0: case 1: cp = 0x20 + (uint32_t)below(0x5f); break;        /* printable ASCII */
    case 2: cp = 0x80 + (uint32_t)below(0x800 - 0x80); break;        /* 2 bytes */
    case 3: cp = 0x800 + (uint32_t)below(0xd800 - 0x800); break;     /* 3 bytes, below */
    case 4: cp = 0xe000 + (uint32_t)below(0x10000 - 0xe000); break;  /* 3 bytes, above */
    default: cp = 0x10000 + (uint32_t)below(0x110000 - 0x10000); break; /* 4 bytes */
    }
    if (cp < 0x80) {
        t[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        t[0] = (uint8_t)(0xc0 | cp >> 6);
        t[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        t[0] = (uint8_t)(0xe0 | cp >> 12);
        t[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        t[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    t[0] = (uint8_t)(0xf0 | cp >> 18);
    t[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    t[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    t[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* One rule of section 3 that a built signal may break on purpose, and the code
 * the decoder must refuse it with. */
enum {
    BREAK_NONE,
    BREAK_TOPIC_EMPTY,
    BREAK_TOPIC_LONG,
    BREAK_VECTOR_EMPTY,
    BREAK_VECTOR_LONG,
    BREAK_BIN_EMPTY,
    BREAK_BIN_LONG,
    BREAK_CATEGORY,
    BREAK_CONFIDENCE_ZERO,
    BREAK_CONFIDENCE_ABOVE,
    BREAK_LIFETIME_ZERO,
    BREAK_LIFETIME_LONG,
    BREAK_LIFETIME_NONE,
    BREAK_AGE,
    BREAK_SOURCE,
    BREAK_SEQ,
    BREAK_SEVEN_ITEMS,
    BREAK_TEN_ITEMS,
    BREAK_HOPS,
    BREAKS
};
static const ck_payload_error break_code[BREAKS] = {
    CK_PAYLOAD_OK,         CK_PAYLOAD_TOPIC,      CK_PAYLOAD_TOPIC,
    CK_PAYLOAD_VALUE,      CK_PAYLOAD_VALUE,      CK_PAYLOAD_VALUE,
    CK_PAYLOAD_VALUE,      CK_PAYLOAD_VALUE,      CK_PAYLOAD_CONFIDENCE,
    CK_PAYLOAD_CONFIDENCE, CK_PAYLOAD_LIFETIME,   CK_PAYLOAD_LIFETIME,
    CK_PAYLOAD_LIFETIME,   CK_PAYLOAD_NUMBER,     CK_PAYLOAD_NUMBER,
    CK_PAYLOAD_NUMBER,     CK_PAYLOAD_SIGNAL_SHAPE, CK_PAYLOAD_SIGNAL_SHAPE,
    CK_PAYLOAD_NUMBER,
};

/* Past 2^32 - 1, for the u32 fields and the category. */
static uint64_t above_u32(void)
{
    return (1ull << 32) + ((next() & 1) ? 0 : next() % (1ull << 62));
}

/* Append one signal to buf, valid unless `brk` says which rule to break; s gets
 * what it must decode to. */
static void build_signal(expected_signal *s, int brk)
{
    /* topic: 1..128 bytes */
    uint32_t want = 1 + (uint32_t)below((next() & 3) ? 24 : CK_PAYLOAD_MAX_TOPIC);
    s->topic_length = 0;
    while (s->topic_length < want) {
        uint8_t t[4];
        uint32_t n = random_char(t);
        if (s->topic_length + n > want) { /* no room for it: one ASCII byte */
            t[0] = 'x';
            n = 1;
        }
        memcpy(s->topic + s->topic_length, t, n);
        s->topic_length += n;
    }
    s->kind = (uint8_t)below(4);
    if (brk >= BREAK_VECTOR_EMPTY && brk <= BREAK_VECTOR_LONG)
        s->kind = CK_VALUE_VECTOR;
    else if (brk >= BREAK_BIN_EMPTY && brk <= BREAK_BIN_LONG)
        s->kind = CK_VALUE_BYTES;
    else if (brk == BREAK_CATEGORY)
        s->kind = CK_VALUE_CATEGORY;
    s->value_length = 0;
    switch (s->kind) {
    case CK_VALUE_FLOAT: s->number = random_finite(); break;
    case CK_VALUE_CATEGORY: s->category = random_u32(); break;
    case CK_VALUE_VECTOR:
        s->value_length = (uint8_t)(1 + below(CK_PAYLOAD_MAX_VECTOR));
        for (unsigned d = 0; d < s->value_length; d++)
            s->vector[d] = random_finite();
        break;
    default:
        s->value_length = (uint8_t)(1 + below(CK_PAYLOAD_MAX_BYTES));
        for (unsigned d = 0; d < s->value_length; d++)
            s->bytes[d] = (uint8_t)next();
    }
    s->confidence = random_confidence();
    do {
        s->half_life_ms = random_lifetime();
        s->ttl_ms = random_lifetime();
    } while (s->half_life_ms == CK_PAYLOAD_NO_LIFETIME && s->ttl_ms == CK_PAYLOAD_NO_LIFETIME);
    s->age_ms = random_u32();
    s->source = random_u32();
    s->seq = random_u32();
    /* a relayed signal's ninth item, its hop count */
    s->ninth = brk == BREAK_HOPS || brk == BREAK_TEN_ITEMS || (next() & 3) == 0;
    s->hops = s->ninth ? (uint8_t)below(CK_PAYLOAD_MAX_HOPS + 1) : 0;

    put_array_header(brk == BREAK_SEVEN_ITEMS ? 7 : brk == BREAK_TEN_ITEMS ? 10 : 8 + s->ninth);
    if (brk == BREAK_TOPIC_EMPTY) {
        put_str_header(0);
    } else if (brk == BREAK_TOPIC_LONG) {
        uint32_t n = CK_PAYLOAD_MAX_TOPIC + 1 + (uint32_t)below(40);
        put_str_header(n);
        memset(buf + blen, 'a', n);
        blen += n;
    } else {
        put_str_header(s->topic_length);
        memcpy(buf + blen, s->topic, s->topic_length);
        blen += s->topic_length;
    }
    switch (s->kind) {
    case CK_VALUE_FLOAT: put_float(s->number); break;
    case CK_VALUE_CATEGORY: put_uint(brk == BREAK_CATEGORY ? above_u32() : s->category); break;
    case CK_VALUE_VECTOR: {
        uint32_t n = brk == BREAK_VECTOR_EMPTY  ? 0
                     : brk == BREAK_VECTOR_LONG ? CK_PAYLOAD_MAX_VECTOR + 1 + (uint32_t)below(4)
                                                : s->value_length;
        put_array_header(n);
        for (unsigned d = 0; d < n; d++)
            put_float(d < s->value_length ? s->vector[d] : 1.0);
        break;
    }
    default: {
        uint32_t n = brk == BREAK_BIN_EMPTY  ? 0
                     : brk == BREAK_BIN_LONG ? CK_PAYLOAD_MAX_BYTES + 1 + (uint32_t)below(40)
                                             : s->value_length;
        put_bin_header(n);
        for (unsigned d = 0; d < n; d++)
            put(d < s->value_length ? s->bytes[d] : 0x55);
    }
    }
    if (brk == BREAK_CONFIDENCE_ZERO)
        put_float((next() & 1) ? 0.0 : -0.0);
    else if (brk == BREAK_CONFIDENCE_ABOVE)
        put_float((next() & 1) ? 1.0 + 0x1p-52 : 1.0 + 0x1p-23); /* the latter fits float 32 */
    else
        put_float(s->confidence);
    int which = (int)(next() & 1); /* the lifetime to break */
    for (int k = 0; k < 2; k++) {
        int64_t ms = k ? s->ttl_ms : s->half_life_ms;
        if (brk == BREAK_LIFETIME_NONE)
            ms = CK_PAYLOAD_NO_LIFETIME;
        else if (brk == BREAK_LIFETIME_ZERO && k == which)
            ms = 0;
        else if (brk == BREAK_LIFETIME_LONG && k == which)
            ms = CK_PAYLOAD_MAX_LIFETIME_MS + 1 + (int64_t)below(1000);
        if (ms == CK_PAYLOAD_NO_LIFETIME)
            put(0xc0); /* nil */
        else
            put_uint((uint64_t)ms);
    }
    put_uint(brk == BREAK_AGE ? above_u32() : s->age_ms);
    put_uint(brk == BREAK_SOURCE ? above_u32() : s->source);
    if (brk != BREAK_SEVEN_ITEMS)
        put_uint(brk == BREAK_SEQ ? above_u32() : s->seq);
    if (s->ninth)
        put_uint(brk == BREAK_HOPS ? CK_PAYLOAD_MAX_HOPS + 1 + below(300) : s->hops);
    if (brk == BREAK_TEN_ITEMS)
        put(0xc0);
}

/* Build a payload of n signals into buf: valid, or with signal `at` breaking `brk`. */
static void build_payload(size_t n, size_t at, int brk)
{
    blen = 0;
    put_array_header((uint32_t)n);
    for (size_t i = 0; i < n; i++)
        build_signal(&expect[i], i == at ? brk : BREAK_NONE);
}

/* The decoder must give back exactly what build_payload wrote: all n signals,
 * or those before the broken one and the code of the rule it breaks. */
static void check_built(const uint8_t *data, size_t n, size_t at, int brk)
{
    size_t count, where;
    ck_payload_error want = break_code[brk];
    size_t want_count = brk == BREAK_NONE ? n : at;
    if (n > CK_PAYLOAD_MAX_SIGNALS)
        want = CK_PAYLOAD_TOO_MANY, want_count = 0;
    ck_payload_error e = ck_payload_decode(data, blen, records, CK_PAYLOAD_MAX_SIGNALS, vectors,
                                           VECTOR_CAPACITY, &count, &where);
    if (e != want || count != want_count)
        fail("a built payload of %zu signals (break %d at %zu) gave %d (%s), count %zu, "
             "at byte %zu; want %d, count %zu",
             n, brk, at, (int)e, ck_payload_error_str(e), count, where, (int)want, want_count);
    for (size_t i = 0; i < count; i++) {
        const ck_signal_record *r = &records[i];
        const expected_signal *s = &expect[i];
        int ok = r->topic_length == s->topic_length &&
                 memcmp(data + r->topic_offset, s->topic, s->topic_length) == 0 &&
                 r->kind == s->kind &&
                 memcmp(&r->confidence, &s->confidence, sizeof(double)) == 0 &&
                 r->half_life_ms == s->half_life_ms && r->ttl_ms == s->ttl_ms &&
                 r->age_ms == s->age_ms && r->source == s->source && r->seq == s->seq &&
                 r->hops == s->hops;
        if (ok && s->kind == CK_VALUE_FLOAT)
            ok = memcmp(&r->number, &s->number, sizeof(double)) == 0;
        else if (ok && s->kind == CK_VALUE_CATEGORY)
            ok = r->category == s->category;
        else if (ok && s->kind == CK_VALUE_VECTOR)
            ok = r->value_length == s->value_length &&
                 memcmp(vectors + r->value_offset, s->vector,
                        s->value_length * sizeof(double)) == 0;
        else if (ok)
            ok = r->value_length == s->value_length &&
                 memcmp(data + r->value_offset, s->bytes, s->value_length) == 0;
        if (!ok)
            fail("signal %zu of a built payload decoded differently", i);
    }
}

static void mutate(void)
{
    static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0xff, 0xe0};
    unsigned rounds = 1 + (unsigned)below(4);
    for (unsigned k = 0; k < rounds; k++) {
        if (blen == 0) {
            put((uint8_t)next());
            continue;
        }
        size_t at = below(blen);
        switch (below(8)) {
        case 0: /* flip a bit */
            buf[at] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* a msgpack type byte: 0xc0-0xdf, fixarray 0x90-0x9f, fixstr 0xa0-0xbf */
            switch (below(4)) {
            case 0: buf[at] = (uint8_t)(0xc0 + below(0x20)); break;
            case 1: buf[at] = (uint8_t)(0x90 + below(0x10)); break;
            case 2: buf[at] = (uint8_t)(0xa0 + below(0x20)); break;
            default: buf[at] = interesting[below(sizeof interesting)];
            }
            break;
        case 2: /* truncate */
            blen = at;
            break;
        case 3: { /* insert 1..4 bytes */
            size_t n = 1 + below(4);
            if (blen + n > BUF_MAX)
                break;
            memmove(buf + at + n, buf + at, blen - at);
            for (size_t i = 0; i < n; i++)
                buf[at + i] = (next() & 1) ? (uint8_t)next() : (uint8_t)(0xc0 + below(0x20));
            blen += n;
            break;
        }
        case 4: { /* delete 1..4 bytes */
            size_t n = 1 + below(4);
            if (n > blen - at)
                n = blen - at;
            memmove(buf + at, buf + at + n, blen - at - n);
            blen -= n;
            break;
        }
        case 5: { /* a length-like run: 2 or 4 bytes of 00 / ff / 7f ff / 00 01 */
            static const uint8_t runs[4][4] = {{0, 0, 0, 0},
                                               {0xff, 0xff, 0xff, 0xff},
                                               {0x7f, 0xff, 0xff, 0xff},
                                               {0, 0, 0, 1}};
            size_t n = (next() & 1) ? 2 : 4;
            const uint8_t *run = runs[below(4)];
            for (size_t i = 0; i < n && at + i < blen; i++)
                buf[at + i] = run[i];
            break;
        }
        case 6: { /* copy a chunk elsewhere (duplicates a signal's bytes) */
            size_t from = below(blen), n = 1 + below(40);
            if (n > blen - from)
                n = blen - from;
            if (blen + n > BUF_MAX)
                break;
            memmove(buf + at + n, buf + at, blen - at);
            memmove(buf + at, buf + (from >= at ? from + n : from), n);
            blen += n;
            break;
        }
        default: /* a random byte */
            buf[at] = (uint8_t)next();
        }
    }
}

/* Feed buf[0..blen) from a heap copy of exactly its size, so ASan sees overreads. */
static void feed(void)
{
    uint8_t *copy = malloc(blen ? blen : 1);
    if (!copy)
        abort();
    memcpy(copy, buf, blen);
    LLVMFuzzerTestOneInput(copy, blen);
    free(copy);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    long built = 0, accepted = 0;
    for (long i = 0; i < n; i++) {
        if (i % 2 == 0) {
            size_t signals;
            if (i % 4096 == 0)
                signals = CK_PAYLOAD_MAX_SIGNALS + 1 - below(3); /* 1023..1025 */
            else if (i % 512 == 0)
                signals = 16 + below(200);
            else
                signals = below(12);
            /* a quarter break one rule in one signal */
            int brk = signals > 0 && below(4) == 0 ? 1 + (int)below(BREAKS - 1) : BREAK_NONE;
            size_t at = below(signals);
            build_payload(signals, at, brk);
            uint8_t *copy = malloc(blen);
            if (!copy)
                abort();
            memcpy(copy, buf, blen);
            check_built(copy, signals, at, brk);
            free(copy);
            built++;
            if (i % 16 != 0) /* mostly mutated; some fed as they are */
                mutate();
        } else {
            blen = 1 + below(i % 16 ? 300 : 4000);
            for (size_t j = 0; j < blen; j++)
                buf[j] = (uint8_t)next();
            if ((next() & 1) && blen > 1) { /* start like a payload: fixarray, a signal */
                buf[0] = (uint8_t)(0x90 + below(16));
                buf[1] = 0x98;
            }
        }
        size_t dummy, where;
        uint8_t *copy = malloc(blen ? blen : 1);
        if (!copy)
            abort();
        memcpy(copy, buf, blen);
        accepted += ck_payload_decode(copy, blen, records, CK_PAYLOAD_MAX_SIGNALS, vectors,
                                      VECTOR_CAPACITY, &dummy, &where) == CK_PAYLOAD_OK;
        free(copy);
        feed();
    }
    for (int a = 2; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f)
            continue;
        blen = fread(buf, 1, BUF_MAX, f);
        fclose(f);
        feed();
    }
    printf("fuzz_payload: %ld inputs (%ld built, %ld accepted), no crash\n", n, built, accepted);
    return 0;
}
#endif
