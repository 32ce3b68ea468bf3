/*
 * ck_common.h - status codes and small helpers shared by every csrc/ module.
 *
 * csrc/ is plain C99 (plus POSIX and compiler intrinsics): no Python.h, so the
 * same sources build the Python extension, the C unit tests and the fuzzers.
 * Every fallible function returns a ck_status; 0 is success, negative values
 * are errors.  The Python wrappers map them to exceptions in one place.
 */
#ifndef CK_COMMON_H
#define CK_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CK_OK = 0,
    CK_EINVAL = -1,         /* a parameter is out of its documented range */
    CK_ENOMEM = -2,         /* allocation failed */
    CK_ETOOFEW = -3,        /* fewer packets than needed to rebuild a block */
    CK_EUNCORRECTABLE = -4, /* more errors than the code can correct */
    CK_EUNSUPPORTED = -5    /* requested SIMD kernel not available on this CPU */
} ck_status;

/* Human-readable text for a status code (static storage, never NULL). */
const char *ck_status_str(int status);

#if defined(__GNUC__)
#define CK_LIKELY(x) __builtin_expect(!!(x), 1)
#define CK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CK_LIKELY(x) (x)
#define CK_UNLIKELY(x) (x)
#endif

#endif /* CK_COMMON_H */
