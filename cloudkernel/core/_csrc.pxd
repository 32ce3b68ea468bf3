# C declarations of csrc/, in one place (every `cdef extern from "ck_*.h"`).

from libc.stdint cimport int64_t, uint8_t, uint32_t


cdef extern from "ck_common.h" nogil:
    enum:
        CK_OK
        CK_EINVAL
        CK_ENOMEM
        CK_ETOOFEW
        CK_EUNCORRECTABLE
        CK_EUNSUPPORTED
    const char *ck_status_str(int status)


cdef extern from "ck_gf256.h" nogil:
    ctypedef struct ck_gf256_kernel:
        const char *name
    void ck_gf256_init()
    const ck_gf256_kernel *const *ck_gf256_kernels_compiled()
    int ck_gf256_kernel_supported(const ck_gf256_kernel *k)
    const ck_gf256_kernel *ck_gf256_active()
    int ck_gf256_env_status()
    int ck_gf256_select(const char *name)


cdef extern from "ck_rs.h" nogil:
    ctypedef struct ck_rs:
        pass
    int ck_rs_new(unsigned k, unsigned m, ck_rs **out)
    void ck_rs_free(ck_rs *rs)
    int ck_rs_encode(const ck_rs *rs, const uint8_t *const *sources, uint8_t *const *repairs,
                     size_t len)
    int ck_rs_decode(const ck_rs *rs, const uint8_t *const *packets, uint8_t *const *out,
                     size_t len)


cdef extern from "ck_rsc.h" nogil:
    ctypedef struct ck_rsc:
        pass
    int ck_rsc_new(unsigned nsym, unsigned nsize, ck_rsc **out)
    void ck_rsc_free(ck_rsc *rsc)
    size_t ck_rsc_encoded_len(const ck_rsc *rsc, size_t len)
    size_t ck_rsc_decoded_len(const ck_rsc *rsc, size_t len)
    size_t ck_rsc_chunks(const ck_rsc *rsc, size_t codeword_len)
    int ck_rsc_encode(const ck_rsc *rsc, const uint8_t *msg, size_t len, uint8_t *out)
    int ck_rsc_decode(const ck_rsc *rsc, const uint8_t *inp, size_t len,
                      const uint32_t *erase_pos, size_t nerase, uint8_t *out,
                      size_t *bad_chunk, size_t *corrected)
    int ck_rsc_check(const ck_rsc *rsc, const uint8_t *inp, size_t len, uint8_t *ok)


cdef extern from "ck_payload.h" nogil:
    enum:
        CK_PAYLOAD_MAX_SIGNALS
        CK_PAYLOAD_MAX_VECTOR
        CK_PAYLOAD_NO_LIFETIME
    ctypedef enum ck_value_kind:
        CK_VALUE_FLOAT
        CK_VALUE_CATEGORY
        CK_VALUE_VECTOR
        CK_VALUE_BYTES
    ctypedef enum ck_payload_error:
        CK_PAYLOAD_OK
    ctypedef struct ck_signal_record:
        uint32_t topic_offset
        uint32_t topic_length
        uint32_t value_offset
        uint8_t kind
        uint8_t value_length
        uint8_t hops
        double number
        uint32_t category
        double confidence
        int64_t half_life_ms
        int64_t ttl_ms
        uint32_t age_ms
        uint32_t source
        uint32_t seq
    ck_payload_error ck_payload_decode(const uint8_t *payload, size_t length,
                                       ck_signal_record *out, size_t out_capacity,
                                       double *vectors, size_t vector_capacity,
                                       size_t *count, size_t *where)
    const char *ck_payload_error_str(ck_payload_error error)
