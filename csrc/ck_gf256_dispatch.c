/*
 * ck_gf256_dispatch.c - pick a region kernel once, from CPU features.
 *
 * The order of `compiled` is slowest to fastest; the active kernel is the
 * last supported one unless CLOUDKERNEL_GF_KERNEL names another.  The scalar
 * kernel is always first and always supported, so there is always a kernel.
 */
#include "ck_gf256.h"
#include "ck_gf256_simd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(CK_HAVE_X86_KERNELS)
#include <cpuid.h>
#endif

static const ck_gf256_kernel *const compiled[] = {
    &ck_gf256_kernel_scalar,
#if defined(CK_HAVE_X86_KERNELS)
    &ck_gf256_kernel_ssse3,
    &ck_gf256_kernel_avx2,
    &ck_gf256_kernel_avx512,
    &ck_gf256_kernel_gfni,
    &ck_gf256_kernel_gfni_avx512,
#endif
#if defined(CK_HAVE_NEON_KERNELS)
    &ck_gf256_kernel_neon,
#endif
    NULL,
};

#if defined(CK_HAVE_X86_KERNELS)
enum {
    FEAT_SSSE3 = 1 << 0,
    FEAT_AVX2 = 1 << 1,
    FEAT_AVX512 = 1 << 2, /* F + BW, with OS support for the zmm state */
    FEAT_GFNI = 1 << 3,
};

static unsigned read_xcr0(void)
{
    unsigned lo, hi;
    /* xgetbv with ecx = 0; spelled as bytes-free inline asm for old assemblers. */
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

static unsigned cpu_features(void)
{
    unsigned a, b, c, d, feats = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (c & (1u << 9))
        feats |= FEAT_SSSE3;
    int osxsave = (c & (1u << 27)) != 0, avx = (c & (1u << 28)) != 0;
    unsigned xcr0 = osxsave ? read_xcr0() : 0;
    int os_ymm = avx && (xcr0 & 0x6u) == 0x6u;    /* SSE and AVX state enabled */
    int os_zmm = os_ymm && (xcr0 & 0xe0u) == 0xe0u; /* opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (os_ymm && (b & (1u << 5)))
            feats |= FEAT_AVX2;
        if (os_zmm && (b & (1u << 16)) && (b & (1u << 30)))
            feats |= FEAT_AVX512;
        if (c & (1u << 8))
            feats |= FEAT_GFNI;
    }
    return feats;
}
#endif

int ck_gf256_kernel_supported(const ck_gf256_kernel *k)
{
    if (k == &ck_gf256_kernel_scalar)
        return 1;
#if defined(CK_HAVE_X86_KERNELS)
    unsigned f = cpu_features();
    if (k == &ck_gf256_kernel_ssse3)
        return (f & FEAT_SSSE3) != 0;
    if (k == &ck_gf256_kernel_avx2)
        return (f & FEAT_AVX2) != 0;
    if (k == &ck_gf256_kernel_avx512)
        return (f & FEAT_AVX512) != 0;
    if (k == &ck_gf256_kernel_gfni)
        return (f & (FEAT_GFNI | FEAT_AVX2)) == (FEAT_GFNI | FEAT_AVX2);
    if (k == &ck_gf256_kernel_gfni_avx512)
        return (f & (FEAT_GFNI | FEAT_AVX512)) == (FEAT_GFNI | FEAT_AVX512);
#endif
#if defined(CK_HAVE_NEON_KERNELS)
    if (k == &ck_gf256_kernel_neon)
        return 1; /* Advanced SIMD is mandatory in ARMv8-A */
#endif
    return 0;
}

const ck_gf256_kernel *const *ck_gf256_kernels_compiled(void)
{
    return compiled;
}

static const ck_gf256_kernel *find(const char *name, int *status)
{
    for (size_t i = 0; compiled[i]; i++) {
        if (strcmp(compiled[i]->name, name) == 0) {
            if (!ck_gf256_kernel_supported(compiled[i])) {
                *status = CK_EUNSUPPORTED;
                return NULL;
            }
            *status = CK_OK;
            return compiled[i];
        }
    }
    *status = CK_EINVAL;
    return NULL;
}

const ck_gf256_kernel *ck_gf256_kernel_by_name(const char *name)
{
    int status;
    ck_gf256_init();
    return name ? find(name, &status) : NULL;
}

static const ck_gf256_kernel *active_kernel = &ck_gf256_kernel_scalar;
static int env_status = CK_OK;
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;

static void pick(void)
{
    ck_gf256_init();
    for (size_t i = 0; compiled[i]; i++)
        if (ck_gf256_kernel_supported(compiled[i]))
            active_kernel = compiled[i];
    const char *want = getenv("CLOUDKERNEL_GF_KERNEL");
    if (want && *want) {
        const ck_gf256_kernel *k = find(want, &env_status);
        if (k)
            active_kernel = k;
    }
}

const ck_gf256_kernel *ck_gf256_active(void)
{
    pthread_once(&pick_once, pick);
    return active_kernel;
}

int ck_gf256_env_status(void)
{
    pthread_once(&pick_once, pick);
    return env_status;
}

int ck_gf256_select(const char *name)
{
    int status;
    pthread_once(&pick_once, pick);
    if (!name)
        return CK_EINVAL;
    const ck_gf256_kernel *k = find(name, &status);
    if (k)
        active_kernel = k;
    return status;
}
