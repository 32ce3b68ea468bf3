/*
 * ck_payload.c - the signal payload decoder of ck_payload.h.
 *
 * msgpack format reference: https://github.com/msgpack/msgpack/blob/master/spec.md
 * All multi-byte msgpack numbers are big-endian.
 */
#include "ck_payload.h"

#include <math.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    const uint8_t *start;
} cursor;

/* What one msgpack item turned out to be. */
typedef enum {
    ITEM_NIL,
    ITEM_UINT,  /* non-negative integer of any width: u */
    ITEM_NEGINT,
    ITEM_FLOAT, /* f */
    ITEM_STR,   /* data, len */
    ITEM_BIN,   /* data, len */
    ITEM_ARRAY, /* len items follow */
    ITEM_OTHER  /* bool, map, ext, or a reserved byte: never valid here */
} item_type;

typedef struct {
    item_type type;
    uint64_t u;
    double f;
    const uint8_t *data;
    uint32_t len;
} item;

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Read one item header (and a str/bin's bytes); 0 on success, -1 truncated. */
static int next_item(cursor *c, item *it)
{
    if (c->p >= c->end)
        return -1;
    uint8_t b = *c->p++;
    size_t avail = (size_t)(c->end - c->p);
    int width = 0;
    it->type = ITEM_OTHER;
    if (b <= 0x7f) {
        it->type = ITEM_UINT;
        it->u = b;
        return 0;
    }
    if (b >= 0xe0) {
        it->type = ITEM_NEGINT;
        return 0;
    }
    if ((b & 0xf0) == 0x90) {
        it->type = ITEM_ARRAY;
        it->len = b & 0x0f;
        return 0;
    }
    if ((b & 0xe0) == 0xa0) {
        it->type = ITEM_STR;
        it->len = b & 0x1f;
        goto bytes;
    }
    switch (b) {
    case 0xc0:
        it->type = ITEM_NIL;
        return 0;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        width = 1 << (b - 0xcc);
        if (avail < (size_t)width)
            return -1;
        it->type = ITEM_UINT;
        it->u = be(c->p, width);
        c->p += width;
        return 0;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        width = 1 << (b - 0xd0);
        if (avail < (size_t)width)
            return -1;
        /* A signed encoding of a non-negative number is a valid int too. */
        uint64_t raw = be(c->p, width);
        c->p += width;
        if (raw >> (8 * width - 1)) {
            it->type = ITEM_NEGINT;
        } else {
            it->type = ITEM_UINT;
            it->u = raw;
        }
        return 0;
    }
    case 0xca: {
        if (avail < 4)
            return -1;
        uint32_t bits = (uint32_t)be(c->p, 4);
        float f;
        memcpy(&f, &bits, 4);
        it->type = ITEM_FLOAT;
        it->f = f;
        c->p += 4;
        return 0;
    }
    case 0xcb: {
        if (avail < 8)
            return -1;
        uint64_t bits = be(c->p, 8);
        double d;
        memcpy(&d, &bits, 8);
        it->type = ITEM_FLOAT;
        it->f = d;
        c->p += 8;
        return 0;
    }
    case 0xd9: case 0xda: case 0xdb:
        width = 1 << (b - 0xd9);
        it->type = ITEM_STR;
        break;
    case 0xc4: case 0xc5: case 0xc6:
        width = 1 << (b - 0xc4);
        it->type = ITEM_BIN;
        break;
    case 0xdc: case 0xdd:
        width = b == 0xdc ? 2 : 4;
        if (avail < (size_t)width)
            return -1;
        it->type = ITEM_ARRAY;
        it->len = (uint32_t)be(c->p, width);
        c->p += width;
        return 0;
    default:
        /* bool, map, ext, reserved: the caller refuses ITEM_OTHER.  The item's
         * body is never walked, so its length does not matter. */
        return 0;
    }
    if (avail < (size_t)width)
        return -1;
    {
        uint64_t n = be(c->p, width);
        c->p += width;
        if (n > 0xffffffffu)
            return -1;
        it->len = (uint32_t)n;
    }
bytes:
    if ((size_t)(c->end - c->p) < it->len)
        return -1;
    it->data = c->p;
    c->p += it->len;
    return 0;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as
 * Python's decoder, with no C0 control characters and no DEL. */
static int topic_ok(const uint8_t *s, uint32_t n)
{
    uint32_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            if (b < 0x20 || b == 0x7f)
                return 0;
            i++;
            continue;
        }
        uint32_t need, cp;
        if (b >= 0xc2 && b <= 0xdf) {
            need = 1;
            cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
            need = 2;
            cp = b & 0x0f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            need = 3;
            cp = b & 0x07;
        } else {
            return 0;
        }
        if (n - i - 1 < need)
            return 0;
        for (uint32_t j = 1; j <= need; j++) {
            uint8_t cont = s[i + j];
            if ((cont & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (cont & 0x3f);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += need + 1;
    }
    return 1;
}

static int lifetime(const item *it, int64_t *ms)
{
    if (it->type == ITEM_NIL) {
        *ms = CK_PAYLOAD_NO_LIFETIME;
        return 1;
    }
    if (it->type != ITEM_UINT || it->u == 0 || it->u > CK_PAYLOAD_MAX_LIFETIME_MS)
        return 0;
    *ms = (int64_t)it->u;
    return 1;
}

static int u32(const item *it, uint32_t *v)
{
    if (it->type != ITEM_UINT || it->u > 0xffffffffu)
        return 0;
    *v = (uint32_t)it->u;
    return 1;
}

#define FAIL(code)                                                                     \
    do {                                                                               \
        *where = (size_t)(c.p - c.start);                                              \
        return (code);                                                                 \
    } while (0)
#define NEXT(it)                                                                       \
    do {                                                                               \
        if (next_item(&c, (it)) != 0)                                                  \
            FAIL(CK_PAYLOAD_TRUNCATED);                                                \
    } while (0)

ck_payload_error ck_payload_decode(const uint8_t *payload, size_t length,
                                   ck_signal_record *out, size_t out_capacity,
                                   double *vectors, size_t vector_capacity,
                                   size_t *count, size_t *where)
{
    cursor c = {payload, payload + length, payload};
    item it;
    size_t used_vectors = 0;
    *count = 0;
    *where = 0;

    NEXT(&it);
    if (it.type != ITEM_ARRAY)
        FAIL(CK_PAYLOAD_NOT_ARRAY);
    uint32_t n = it.len;
    if (n > CK_PAYLOAD_MAX_SIGNALS || n > out_capacity)
        FAIL(CK_PAYLOAD_TOO_MANY);
    for (uint32_t s = 0; s < n; s++) {
        ck_signal_record *r = &out[s];
        NEXT(&it);
        if (it.type != ITEM_ARRAY || (it.len != 8 && it.len != 9))
            FAIL(CK_PAYLOAD_SIGNAL_SHAPE);
        uint32_t fields = it.len;

        NEXT(&it); /* topic */
        if (it.type != ITEM_STR || it.len == 0 || it.len > CK_PAYLOAD_MAX_TOPIC ||
            !topic_ok(it.data, it.len))
            FAIL(CK_PAYLOAD_TOPIC);
        r->topic_offset = (uint32_t)(it.data - payload);
        r->topic_length = it.len;

        NEXT(&it); /* value */
        switch (it.type) {
        case ITEM_FLOAT:
            if (!isfinite(it.f))
                FAIL(CK_PAYLOAD_VALUE);
            r->kind = CK_VALUE_FLOAT;
            r->number = it.f;
            break;
        case ITEM_UINT:
            if (it.u > 0xffffffffu)
                FAIL(CK_PAYLOAD_VALUE);
            r->kind = CK_VALUE_CATEGORY;
            r->category = (uint32_t)it.u;
            break;
        case ITEM_BIN:
            if (it.len == 0 || it.len > CK_PAYLOAD_MAX_BYTES)
                FAIL(CK_PAYLOAD_VALUE);
            r->kind = CK_VALUE_BYTES;
            r->value_offset = (uint32_t)(it.data - payload);
            r->value_length = (uint8_t)it.len;
            break;
        case ITEM_ARRAY: {
            uint32_t dim = it.len;
            if (dim == 0 || dim > CK_PAYLOAD_MAX_VECTOR)
                FAIL(CK_PAYLOAD_VALUE);
            if (used_vectors + dim > vector_capacity)
                FAIL(CK_PAYLOAD_TOO_MANY);
            r->kind = CK_VALUE_VECTOR;
            r->value_offset = (uint32_t)used_vectors;
            r->value_length = (uint8_t)dim;
            for (uint32_t d = 0; d < dim; d++) {
                NEXT(&it);
                if (it.type != ITEM_FLOAT || !isfinite(it.f))
                    FAIL(CK_PAYLOAD_VALUE);
                vectors[used_vectors++] = it.f;
            }
            break;
        }
        default:
            FAIL(CK_PAYLOAD_VALUE);
        }

        NEXT(&it); /* confidence: 0 < c <= 1 (false for nan) */
        if (it.type != ITEM_FLOAT || !(it.f > 0.0 && it.f <= 1.0))
            FAIL(CK_PAYLOAD_CONFIDENCE);
        r->confidence = it.f;

        NEXT(&it);
        if (!lifetime(&it, &r->half_life_ms))
            FAIL(CK_PAYLOAD_LIFETIME);
        NEXT(&it);
        if (!lifetime(&it, &r->ttl_ms))
            FAIL(CK_PAYLOAD_LIFETIME);
        if (r->half_life_ms == CK_PAYLOAD_NO_LIFETIME && r->ttl_ms == CK_PAYLOAD_NO_LIFETIME)
            FAIL(CK_PAYLOAD_LIFETIME);

        NEXT(&it);
        if (!u32(&it, &r->age_ms))
            FAIL(CK_PAYLOAD_NUMBER);
        NEXT(&it);
        if (!u32(&it, &r->source))
            FAIL(CK_PAYLOAD_NUMBER);
        NEXT(&it);
        if (!u32(&it, &r->seq))
            FAIL(CK_PAYLOAD_NUMBER);
        r->hops = 0;
        if (fields == 9) {
            uint32_t hops;
            NEXT(&it);
            if (!u32(&it, &hops) || hops > CK_PAYLOAD_MAX_HOPS)
                FAIL(CK_PAYLOAD_NUMBER);
            r->hops = (uint8_t)hops;
        }
        *count = s + 1;
    }
    if (c.p != c.end)
        FAIL(CK_PAYLOAD_TRAILING);
    return CK_PAYLOAD_OK;
}

const char *ck_payload_error_str(ck_payload_error error)
{
    switch (error) {
    case CK_PAYLOAD_OK: return "ok";
    case CK_PAYLOAD_TRUNCATED: return "payload ends inside an item";
    case CK_PAYLOAD_TRAILING: return "bytes after the signal array";
    case CK_PAYLOAD_NOT_ARRAY: return "payload is not a msgpack array";
    case CK_PAYLOAD_TOO_MANY: return "more signals than the limit of 1024";
    case CK_PAYLOAD_SIGNAL_SHAPE: return "a signal is not an array of 8 or 9 items";
    case CK_PAYLOAD_TOPIC: return "topic is not 1..128 bytes of UTF-8 without control characters";
    case CK_PAYLOAD_VALUE:
        return "value is not a finite float, a category 0..2^32-1, 1..16 finite floats "
               "or 1..64 bytes";
    case CK_PAYLOAD_CONFIDENCE: return "confidence is not a float in (0, 1]";
    case CK_PAYLOAD_LIFETIME:
        return "half-life and ttl must be nil or 1..86400000 ms, not both nil";
    case CK_PAYLOAD_NUMBER: return "age, source or seq is not an integer 0..2^32-1, or hops not 0..15";
    }
    return "unknown payload error";
}
