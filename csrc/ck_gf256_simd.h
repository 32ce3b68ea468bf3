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
