/*
 * ck_payload.h - decode and check a signal payload (docs/PROTOCOL.md section 3).
 *
 * A payload is a msgpack array of signals; each signal is an array of eight
 * items: topic, value, confidence, half-life ms, ttl ms, age ms, source, seq;
 * a relayed signal has a ninth, its hop count 0..15.
 * ck_payload_decode() walks the bytes once, checks every rule of section 3
 * and fills one flat record per signal, with the topic and byte values left
 * in place as offsets into the caller's buffer.  It reads untrusted bytes:
 * every read is bounds-checked, the work is linear in the input, and nothing
 * is allocated.
 *
 * It accepts exactly what msgpack-python's unpackb (with the limits of
 * cloudkernel/core/signals.py: str <= 128 bytes, bin <= 64, arrays <= 1024,
 * no maps or ext) followed by signals.py's checks accepts: any msgpack width
 * of an integer or float, float32 or float64, strict UTF-8 in the topic.
 */
#ifndef CK_PAYLOAD_H
#define CK_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "ck_common.h"

#define CK_PAYLOAD_MAX_SIGNALS 1024
#define CK_PAYLOAD_MAX_TOPIC 128
#define CK_PAYLOAD_MAX_VECTOR 16
#define CK_PAYLOAD_MAX_BYTES 64
#define CK_PAYLOAD_MAX_HOPS 15
#define CK_PAYLOAD_MAX_LIFETIME_MS 86400000u
#define CK_PAYLOAD_NO_LIFETIME (-1)

typedef enum {
    CK_VALUE_FLOAT = 0,
    CK_VALUE_CATEGORY = 1,
    CK_VALUE_VECTOR = 2,
    CK_VALUE_BYTES = 3
} ck_value_kind;

/* Why a payload was refused: ck_payload_error_str() words it. */
typedef enum {
    CK_PAYLOAD_OK = 0,
    CK_PAYLOAD_TRUNCATED,
    CK_PAYLOAD_TRAILING,
    CK_PAYLOAD_NOT_ARRAY,
    CK_PAYLOAD_TOO_MANY,
    CK_PAYLOAD_SIGNAL_SHAPE,
    CK_PAYLOAD_TOPIC,
    CK_PAYLOAD_VALUE,
    CK_PAYLOAD_CONFIDENCE,
    CK_PAYLOAD_LIFETIME,
    CK_PAYLOAD_NUMBER
} ck_payload_error;

typedef struct {
    uint32_t topic_offset;   /* UTF-8 topic: payload[topic_offset .. + topic_length] */
    uint32_t topic_length;   /* 1..128 */
    uint32_t value_offset;   /* CK_VALUE_BYTES: the bytes; CK_VALUE_VECTOR: index of
                                the first float in the caller's vector array */
    uint8_t kind;            /* ck_value_kind */
    uint8_t value_length;    /* bytes 1..64, or vector dimension 1..16 */
    uint8_t hops;            /* times relayed, 0..CK_PAYLOAD_MAX_HOPS (absent: 0) */
    double number;           /* CK_VALUE_FLOAT */
    uint32_t category;       /* CK_VALUE_CATEGORY */
    double confidence;       /* 0 < c <= 1 */
    int64_t half_life_ms;    /* 1..86400000, or CK_PAYLOAD_NO_LIFETIME */
    int64_t ttl_ms;          /* likewise; not both absent */
    uint32_t age_ms;
    uint32_t source;
    uint32_t seq;
} ck_signal_record;

/*
 * Decode payload[0 .. length) into out[0 .. *count).
 *
 * out must hold CK_PAYLOAD_MAX_SIGNALS records and vectors
 * CK_PAYLOAD_MAX_SIGNALS * CK_PAYLOAD_MAX_VECTOR doubles (or fewer: a
 * payload that needs more is refused as CK_PAYLOAD_TOO_MANY).
 * Returns CK_PAYLOAD_OK, or the first rule broken; *count is then the number
 * of signals decoded before it, and *where the byte offset of the problem.
 */
ck_payload_error ck_payload_decode(const uint8_t *payload, size_t length,
                                   ck_signal_record *out, size_t out_capacity,
                                   double *vectors, size_t vector_capacity,
                                   size_t *count, size_t *where);

/* Text for an error code (static storage, never NULL). */
const char *ck_payload_error_str(ck_payload_error error);

#endif /* CK_PAYLOAD_H */
