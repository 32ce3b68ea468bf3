/*
 * ck_gf256_simd.h - private: the SIMD kernels the dispatcher can choose from.
 *
 * Each kernel lives in the file of its architecture and is compiled with
 * function target attributes (x86) rather than per-file -m flags, so
 * setup.py can hand every csrc/ file the same flags and the whole library
 * still runs on a CPU without the extensions: a kernel's code only executes
 * after ck_gf256_kernel_supported() said yes.
 */
#ifndef CK_GF256_SIMD_H
#define CK_GF256_SIMD_H

#include "ck_gf256.h"

/* Rows shorter than one vector, for any kernel: copy every input once into
 * a zero-padded vector of `width` bytes (<= CK_GF256_SHORT_MAX), run the
 * kernel's whole-vector matmul `whole` over them, copy the rows back.  One
 * copy per input, instead of a partial load per input in every row group.
 * Needs len < width, rows <= 256 and cols <= 256. */
#define CK_GF256_SHORT_MAX 64
void ck_gf256_matmul_short(ck_gf256_matmul_fn whole, size_t width, size_t len, size_t rows,
                           size_t cols, const uint8_t *coef, const uint8_t *const *in,
                           uint8_t *const *out, int accumulate);

#if defined(__x86_64__) || defined(__i386__)
#define CK_HAVE_X86_KERNELS 1
extern const ck_gf256_kernel ck_gf256_kernel_ssse3;
extern const ck_gf256_kernel ck_gf256_kernel_avx2;
extern const ck_gf256_kernel ck_gf256_kernel_avx512;
extern const ck_gf256_kernel ck_gf256_kernel_gfni;
extern const ck_gf256_kernel ck_gf256_kernel_gfni_avx512;
#endif

#if defined(__aarch64__)
#define CK_HAVE_NEON_KERNELS 1
extern const ck_gf256_kernel ck_gf256_kernel_neon;
#endif

#endif /* CK_GF256_SIMD_H */
