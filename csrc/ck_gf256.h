/*
 * ck_gf256.h - arithmetic in GF(2^8) and region kernels over it.
 *
 * The field is GF(2)[x] / (x^8 + x^4 + x^3 + x^2 + 1), polynomial 0x11d, with
 * generator alpha = 2 (x).  This is the field of reedsolo, ISA-L, zfec and
 * most Reed-Solomon implementations: addition is XOR, multiplication goes
 * through log/exp tables.
 *
 * Region kernels apply one field operation to every byte of a buffer:
 *
 *   mul_region(dst, src, c, len)     dst[i]  = c * src[i]
 *   muladd_region(dst, src, c, len)  dst[i] ^= c * src[i]
 *   matmul(len, rows, cols, coef, in, out, accumulate)
 *       out[r][i] (^)= sum over c of coef[r * cols + c] * in[c][i]
 *       for r < rows, i < len; with accumulate == 0 out is overwritten.
 *
 * matmul is the workhorse of erasure coding (every encode and decode is one
 * call): each input byte is loaded once per group of outputs, so it runs
 * several times faster than repeated muladd_region calls.
 *
 * Several implementations ("kernels") of these operations exist, one per
 * instruction set.  The scalar kernel is the reference: every SIMD kernel
 * must produce byte-identical results for every constant, length and
 * alignment (tests/c/test_gf256.c checks this).  Buffers may have any
 * alignment and length (0 included).  In matmul, out buffers must not
 * overlap in or each other; in mul_region dst may equal src exactly.
 *
 * Selection: ck_gf256_active() returns the kernel picked once from the CPU
 * features (the fastest available), unless the environment variable
 * CLOUDKERNEL_GF_KERNEL names another one ("scalar", "ssse3", "avx2",
 * "avx512", "gfni", "gfni_avx512", "neon").  ck_gf256_select() switches the
 * active kernel at run time (tests and benchmarks use it).
 */
#ifndef CK_GF256_H
#define CK_GF256_H

#include "ck_common.h"

/* Reduction polynomial (with the x^8 term) and the generator. */
#define CK_GF256_POLY 0x11d
#define CK_GF256_GENERATOR 2

/* Tables, filled by ck_gf256_init().  exp has 512 entries so that
 * exp[log[a] + log[b]] needs no reduction mod 255.  log[0] is unused. */
extern uint8_t ck_gf256_exp[512];
extern uint8_t ck_gf256_log[256];
extern uint8_t ck_gf256_inv_table[256];        /* inv[0] = 0 by convention */
extern uint8_t ck_gf256_mul_table[256][256];   /* mul[a][b] = a * b */
/* Split ("nibble") tables for pshufb/tbl kernels:
 * split[c][0..15]  = c * j         for j = 0..15   (low nibble)
 * split[c][16..31] = c * (j << 4)  for j = 0..15   (high nibble)
 * so c * b = split[c][b & 15] ^ split[c][16 + (b >> 4)]. */
extern uint8_t ck_gf256_split_table[256][32];
/* 8x8 bit matrices for GFNI's gf2p8affineqb: affine(b, affine_table[c]) = c * b.
 * Byte 7 - i of the qword is row i: bit j of row i is bit i of c * 2^j. */
extern uint64_t ck_gf256_affine_table[256];

/* Fill the tables.  Idempotent and thread-safe (pthread_once).  Every
 * kernel reads the tables: ck_gf256_active(), ck_gf256_kernel_by_name() and
 * ck_gf256_select() call this first; code that calls a kernel object or the
 * inline helpers below directly must call it once itself. */
void ck_gf256_init(void);

static inline uint8_t ck_gf256_mul(uint8_t a, uint8_t b) { return ck_gf256_mul_table[a][b]; }
static inline uint8_t ck_gf256_inv(uint8_t a) { return ck_gf256_inv_table[a]; }
/* a / b; b must be nonzero. */
static inline uint8_t ck_gf256_div(uint8_t a, uint8_t b)
{
    return a == 0 ? 0 : ck_gf256_exp[ck_gf256_log[a] + 255 - ck_gf256_log[b]];
}

typedef void (*ck_gf256_region_fn)(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len);
typedef void (*ck_gf256_matmul_fn)(size_t len, size_t rows, size_t cols, const uint8_t *coef,
                                   const uint8_t *const *in, uint8_t *const *out, int accumulate);

typedef struct ck_gf256_kernel {
    const char *name;
    ck_gf256_region_fn mul_region;
    ck_gf256_region_fn muladd_region;
    ck_gf256_matmul_fn matmul;
} ck_gf256_kernel;

/* The scalar reference kernel (always available). */
extern const ck_gf256_kernel ck_gf256_kernel_scalar;

/* Every kernel compiled into this build, available on this CPU or not,
 * NULL-terminated, fastest last. */
const ck_gf256_kernel *const *ck_gf256_kernels_compiled(void);
/* Nonzero if the CPU (and OS) support kernel k. */
int ck_gf256_kernel_supported(const ck_gf256_kernel *k);
/* Kernel by name if compiled in and supported, else NULL. */
const ck_gf256_kernel *ck_gf256_kernel_by_name(const char *name);

/* The active kernel.  Picks on first use (see the file comment).  If
 * CLOUDKERNEL_GF_KERNEL names a kernel that is unknown or unsupported, the
 * fastest supported kernel is active and ck_gf256_env_status() reports
 * CK_EINVAL (unknown) or CK_EUNSUPPORTED so the caller can say so. */
const ck_gf256_kernel *ck_gf256_active(void);
int ck_gf256_env_status(void);
/* Make the named kernel active; CK_EINVAL if unknown, CK_EUNSUPPORTED if this
 * CPU lacks it. Not meant to race with running codecs. */
int ck_gf256_select(const char *name);

/* Scalar reference implementations (also used for SIMD kernels' tails). */
void ck_gf256_mul_region_base(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len);
void ck_gf256_muladd_region_base(uint8_t *dst, const uint8_t *src, uint8_t c, size_t len);
void ck_gf256_matmul_base(size_t len, size_t rows, size_t cols, const uint8_t *coef,
                          const uint8_t *const *in, uint8_t *const *out, int accumulate);
/* matmul over the byte range [start, start + len) of every buffer: lets a SIMD
 * kernel finish its tail in scalar without copying pointer arrays. */
void ck_gf256_matmul_base_range(size_t start, size_t len, size_t rows, size_t cols,
                                const uint8_t *coef, const uint8_t *const *in,
                                uint8_t *const *out, int accumulate);

#endif /* CK_GF256_H */
