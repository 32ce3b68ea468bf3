# C declarations of csrc/ck_consensus.h (the weighted-consensus filter and reputation).

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t


cdef extern from "ck_common.h" nogil:
    enum:
        CK_OK
        CK_EINVAL
        CK_ENOMEM


cdef extern from "ck_consensus.h" nogil:
    enum:
        CK_CONSENSUS_MAX_DIMS
        CK_CONSENSUS_EDIVISION
        CK_CONSENSUS_SCALAR
        CK_CONSENSUS_VECTOR
        CK_CONSENSUS_CATEGORY
        CK_CONSENSUS_INTERVAL
        CK_CONSENSUS_BYZANTINE
        CK_CONSENSUS_CONSISTENT
        CK_CONSENSUS_ACCEPTED
        CK_CONSENSUS_BAD_SHAPE
        CK_CONSENSUS_OUT_OF_RANGE
        CK_CONSENSUS_DROP_REASONS
        CK_CONSENSUS_OK
        CK_CONSENSUS_NO_CONSENSUS
        CK_CONSENSUS_STALE

    ctypedef struct ck_filter_config:
        int kind
        unsigned dims
        unsigned min_sources
        unsigned max_sources
        double lower, upper
        int64_t label_lower, label_upper
        double default_sigma
        double min_sigma
        double default_half_life
        double expire_half_lives
        double agree_sigmas
        double reject_sigmas
        double max_weight_share
        int fault_model
        double probation_share
        double reach_interval

    ctypedef struct ck_reputation_config:
        double forgetting
        double disagreement_forgetting
        double disagreement_weight
        double prior_agree
        double prior_disagree
        uint32_t probation_rounds
        double flag_below
        double distrust_below
        uint32_t max_sources

    ctypedef struct ck_consensus_record:
        uint64_t source

    ctypedef struct ck_consensus_reading:
        const double *comps
        int64_t label
        double error
        double confidence
        double sigma
        double half_life
        double ttl
        unsigned char has_sigma, has_half_life, has_ttl

    ctypedef struct ck_consensus_estimate:
        int state
        int reason
        int has_value
        int64_t label
        double value[16]
        double sigma
        double interval_low, interval_high
        double confidence
        uint32_t sources_total, sources_used, sources_rejected
        double age
        const ck_consensus_record *records

    ctypedef struct ck_filter_statistics:
        uint64_t updates, accepted
        uint64_t dropped[7]
        uint64_t evicted, estimates, judged

    ctypedef struct ck_reputation_statistics:
        uint64_t sources, judgments, disagreements, evicted

    ctypedef struct ck_filter:
        pass
    ctypedef struct ck_reputation:
        pass


    int ck_reputation_new(const ck_reputation_config *cfg, ck_reputation **out)
    void ck_reputation_free(ck_reputation *rep)
    double ck_reputation_value(const ck_reputation *rep, uint64_t source)
    uint64_t ck_reputation_rounds(const ck_reputation *rep, uint64_t source)
    int ck_reputation_flagged(const ck_reputation *rep, uint64_t source)
    int ck_reputation_in_probation(const ck_reputation *rep, uint64_t source)
    double ck_reputation_link_quality(const ck_reputation *rep, uint64_t source)
    int ck_reputation_set_link_quality(ck_reputation *rep, uint64_t source, double quality)
    void ck_reputation_record(ck_reputation *rep, uint64_t source, int agreed)
    void ck_reputation_forget(ck_reputation *rep, uint64_t source)
    void ck_reputation_get_statistics(const ck_reputation *rep, ck_reputation_statistics *out)

    int ck_filter_new(const ck_filter_config *cfg, ck_reputation *rep, ck_filter **out)
    void ck_filter_free(ck_filter *flt)
    int ck_filter_update(ck_filter *flt, uint64_t source, double now,
                         const ck_consensus_reading *reading)
    void ck_filter_count_refused(ck_filter *flt, int reason)
    void ck_filter_forget(ck_filter *flt, uint64_t source)
    size_t ck_filter_sources(const ck_filter *flt)
    int ck_filter_estimate(ck_filter *flt, double now, ck_consensus_estimate *out)
    void ck_filter_get_statistics(const ck_filter *flt, ck_filter_statistics *out)
