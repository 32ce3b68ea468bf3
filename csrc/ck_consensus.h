/*
 * ck_consensus.h - weighted consensus of many sources' readings of one topic,
 * and the per-source reputation that the topics of a node share.
 *
 * The specification is cloudkernel/consensus/_consensus_ref.py (the pure-Python
 * reference; its module docstring describes the algorithm in six steps, and
 * docs/CONSENSUS.md the bounds it keeps).  For any sequence of calls these
 * functions return bit-identical results: every floating-point operation runs
 * in the reference's order, with the reference's formulas, so this file must
 * be compiled without contraction (-ffp-contract=off) or -ffast-math.
 *
 * Evaporation 2^y is computed by the C library's exp2(), which is what
 * Python's math.exp2() calls; link with -lm.
 *
 * A filter (ck_filter) holds the latest reading of each of up to max_sources
 * sources of one topic and fuses them into an estimate on demand.  A
 * reputation table (ck_reputation) holds a Beta reputation per source, judged
 * by the filters it is given to.  Both allocate everything at creation:
 * updates, estimates and judgments allocate nothing, and every operation is
 * bounded by the table sizes: an update is O(n) at worst in the n <= 1024
 * readings held (a new source is inserted in order; a full filter scans for
 * the oldest), an estimate O(n log n), except the judging of a category
 * topic, O(n x labels) as in the reference.  The reputation table is a hash
 * table: O(1) expected lookups, O(log m) eviction.
 *
 * Handles are not thread-safe: one thread at a time per filter, and a
 * reputation table shared by filters is modified by their estimates.  The
 * reputation table must outlive the filters given it.
 */
#ifndef CK_CONSENSUS_H
#define CK_CONSENSUS_H

#include <stddef.h>
#include <stdint.h>

#include "ck_common.h"

/* Limits (cloudkernel/consensus/_types.py). */
#define CK_CONSENSUS_MAX_DIMS 16
#define CK_CONSENSUS_MAX_SOURCES 1024
#define CK_REPUTATION_MAX_SOURCES (1u << 20)
#define CK_CONSENSUS_MAX_PROBATION_ROUNDS 1000000u
#define CK_CONSENSUS_MAX_MAGNITUDE 1e50 /* |component| above: out-of-range */
#define CK_CONSENSUS_MAX_SIGMA 1e20     /* sigma or interval error above: bad-sigma */
#define CK_CONSENSUS_MIN_SIGMA 1e-20    /* effective sigma below: bad-sigma */
#define CK_CONSENSUS_MIN_CONFIDENCE 1e-6 /* confidence below: bad-confidence */
#define CK_CONSENSUS_MIN_LINK_QUALITY 1e-6 /* link quality is floored here */
#define CK_CONSENSUS_MIN_EVAPORATION 1e-20 /* evaporated below: expired */
#define CK_CONSENSUS_MAX_TIME 1e12       /* |now|, half-life and ttl in seconds */
#define CK_CONSENSUS_Z95 1.959963984540054

/*
 * Returned by ck_filter_estimate() where the reference would divide by zero.
 * The gate's limits (MIN_SIGMA, MIN_CONFIDENCE, MIN_LINK_QUALITY,
 * MIN_EVAPORATION) keep every variance and weight positive, so this is a
 * safety net, not an outcome: the estimate is counted; nothing else changes.
 */
#define CK_CONSENSUS_EDIVISION (-16)

/* What a topic's values are (FilterConfig.kind; _types.Kind). */
enum {
    CK_CONSENSUS_SCALAR = 0,
    CK_CONSENSUS_VECTOR = 1,
    CK_CONSENSUS_CATEGORY = 2,
    CK_CONSENSUS_INTERVAL = 3
};

/* FilterConfig.fault_model: up to (n-1)/3 or (n-1)/2 liars among n fresh readings. */
enum { CK_CONSENSUS_BYZANTINE = 0, CK_CONSENSUS_CONSISTENT = 1 };

/* ck_filter_update()'s outcome: accepted, or why not, in _types.DROP_REASONS
 * order (drop reason r is DROP_REASONS[r - 1]). */
enum {
    CK_CONSENSUS_ACCEPTED = 0,
    CK_CONSENSUS_NON_FINITE = 1,
    CK_CONSENSUS_OUT_OF_RANGE = 2,
    CK_CONSENSUS_BAD_CONFIDENCE = 3,
    CK_CONSENSUS_BAD_SIGMA = 4,
    CK_CONSENSUS_BAD_LIFETIME = 5,
    CK_CONSENSUS_BAD_SHAPE = 6,
    CK_CONSENSUS_OLDER = 7
};
#define CK_CONSENSUS_DROP_REASONS 7

/* Why a source was or was not used (_types.SourceReason, same numbers). */
enum {
    CK_CONSENSUS_SOURCE_BEST = 0,
    CK_CONSENSUS_SOURCE_USED = 1,
    CK_CONSENSUS_SOURCE_OUTLIER = 2,
    CK_CONSENSUS_SOURCE_FALSETICKER = 3,
    CK_CONSENSUS_SOURCE_DISTRUSTED = 4,
    CK_CONSENSUS_SOURCE_EXPIRED = 5,
    CK_CONSENSUS_SOURCE_NO_CONSENSUS = 6
};

/* Estimate.state: "ok", "no-consensus", "stale". */
enum { CK_CONSENSUS_OK = 0, CK_CONSENSUS_NO_CONSENSUS = 1, CK_CONSENSUS_STALE = 2 };

/* Estimate.reason, in _types.NOT_OK_REASONS order ("" when ok). */
enum {
    CK_CONSENSUS_WHY_NONE = 0,
    CK_CONSENSUS_WHY_NO_SOURCES = 1,
    CK_CONSENSUS_WHY_STALE = 2,
    CK_CONSENSUS_WHY_TOO_FEW_SOURCES = 3,
    CK_CONSENSUS_WHY_NO_MAJORITY = 4,
    CK_CONSENSUS_WHY_NO_MARGIN = 5
};

/*
 * A filter's settings: FilterConfig's fields, as doubles.  The value bounds
 * come twice: lower/upper for the float components (scalar, vector, interval
 * centre) and label_lower/label_upper for category labels, so that a caller
 * whose bounds are not doubles (Python ints) can give the exact bounds each
 * comparison needs: a component c is in range iff lower <= c <= upper, a
 * label l iff label_lower <= l <= label_upper.  Either pair may be empty.
 */
typedef struct {
    int kind;                 /* CK_CONSENSUS_SCALAR .. INTERVAL */
    unsigned dims;            /* 1..16 for VECTOR, 1 otherwise */
    unsigned min_sources;     /* 1..1024 */
    unsigned max_sources;     /* min_sources..1024 */
    double lower, upper;      /* not NaN */
    int64_t label_lower, label_upper;
    double default_sigma;     /* finite, 0 < x <= MAX_SIGMA */
    double min_sigma;         /* finite, 0 <= x <= MAX_SIGMA */
    double default_half_life; /* finite, > 0 */
    double expire_half_lives; /* finite, > 0 */
    double agree_sigmas;      /* finite, > 0 */
    double reject_sigmas;     /* finite, > 0 */
    double max_weight_share;  /* 0 < x <= 1 */
    int fault_model;          /* CK_CONSENSUS_BYZANTINE or CONSISTENT */
    double probation_share;   /* 0 < x < 1 */
    double reach_interval;    /* finite, >= 0.001 */
} ck_filter_config;

/* A reputation table's settings: ReputationConfig's fields. */
typedef struct {
    double forgetting;              /* 0 <= x < 1 */
    double disagreement_forgetting; /* 0 <= x < 1 */
    double disagreement_weight;     /* finite, > 0 */
    double prior_agree;             /* finite, > 0 */
    double prior_disagree;          /* finite, > 0 */
    uint32_t probation_rounds;      /* 0..1000000 */
    double flag_below;              /* 0 <= x <= 1 */
    double distrust_below;          /* 0 <= x <= flag_below */
    uint32_t max_sources;           /* 1..2^20 */
} ck_reputation_config;

/* Fill with FilterConfig() / ReputationConfig() defaults. */
void ck_filter_config_default(ck_filter_config *cfg);
void ck_reputation_config_default(ck_reputation_config *cfg);

/*
 * One source's line of an estimate's breakdown.  Its memory layout is exactly
 * _types.BREAKDOWN_FORMAT "<QBB6x9d" (88 bytes, on a little-endian machine),
 * so an array of them is the packed breakdown as it is.
 */
typedef struct {
    uint64_t source;
    uint8_t reason;       /* CK_CONSENSUS_SOURCE_* */
    uint8_t reach;        /* bit i: a reading arrived i reach intervals ago */
    uint8_t pad[6];       /* zero */
    double age;           /* seconds since the reading was taken */
    double value;         /* reading, label or a vector's distance to the value */
    double offset;        /* from the estimate; NaN without one */
    double sigma;         /* widened by evaporation (expired: as given) */
    double weight;        /* share of the combine */
    double confidence;
    double reputation;
    double evaporation;
    double link_quality;
} ck_consensus_record;

typedef char ck_consensus_record_is_88_bytes[sizeof(ck_consensus_record) == 88 ? 1 : -1];

/*
 * One update's reading, as ConsensusFilter.update() takes it after the
 * caller's type checks.  Only the fields of the filter's kind are read:
 * comps[0 .. dims) for scalar, vector and interval (the centre), label for
 * category, error (the half-width) for interval.  sigma, half_life and ttl
 * are read when their has_ flag is set (the caller gave them; for an
 * interval topic a given sigma is itself bad-sigma).  A value the caller
 * cannot turn into a double in range is passed as NaN, which every check
 * refuses with the same reason.
 */
typedef struct {
    const double *comps;
    int64_t label;
    double error;
    double confidence;
    double sigma;
    double half_life;
    double ttl;
    unsigned char has_sigma, has_half_life, has_ttl;
} ck_consensus_reading;

/*
 * An estimate (_types.Estimate).  value[0 .. dims) holds the value of a
 * scalar, interval or vector topic and label a category's, when has_value;
 * interval_low/high are set for scalar and interval topics with a value.
 * records[0 .. sources_total) is the breakdown, sorted by source id; it
 * lives in the filter and is valid until the next call on it.
 */
typedef struct {
    int state;  /* CK_CONSENSUS_OK, NO_CONSENSUS or STALE */
    int reason; /* CK_CONSENSUS_WHY_* */
    int has_value;
    int64_t label;
    double value[CK_CONSENSUS_MAX_DIMS];
    double sigma; /* NaN without one */
    double interval_low, interval_high;
    double confidence;
    uint32_t sources_total, sources_used, sources_rejected;
    double age; /* NaN without a value */
    const ck_consensus_record *records;
} ck_consensus_estimate;

typedef struct {
    uint64_t updates, accepted;
    uint64_t dropped[CK_CONSENSUS_DROP_REASONS]; /* [reason - 1] */
    uint64_t evicted, estimates, judged;
} ck_filter_statistics;

typedef struct {
    uint64_t sources, judgments, disagreements, evicted;
} ck_reputation_statistics;

typedef struct ck_filter ck_filter;
typedef struct ck_reputation ck_reputation;

/* -- reputation ----------------------------------------------------------- */

/* Create a table for cfg->max_sources sources; CK_EINVAL if a setting is out
 * of its range, CK_ENOMEM. */
int ck_reputation_new(const ck_reputation_config *cfg, ck_reputation **out);
void ck_reputation_free(ck_reputation *rep);
const ck_reputation_config *ck_reputation_get_config(const ck_reputation *rep);

/* (a + prior_agree) / (a + b + prior_agree + prior_disagree); the prior's
 * mean for an unknown source. */
double ck_reputation_value(const ck_reputation *rep, uint64_t source);
/* Readings judged (0 for an unknown source). */
uint64_t ck_reputation_rounds(const ck_reputation *rep, uint64_t source);
int ck_reputation_flagged(const ck_reputation *rep, uint64_t source);
int ck_reputation_in_probation(const ck_reputation *rep, uint64_t source);
/* 1.0 for an unknown source. */
double ck_reputation_link_quality(const ck_reputation *rep, uint64_t source);

/* Set a source's link quality, 0 < quality <= 1 (CK_EINVAL otherwise, and
 * nothing changes).  An unknown source is added, evicting when the table is
 * full: the source judged longest ago, never-judged ones first, ties to the
 * lowest id. */
int ck_reputation_set_link_quality(ck_reputation *rep, uint64_t source, double quality);
/* Judge one reading of a source (added, with eviction, when unknown). */
void ck_reputation_record(ck_reputation *rep, uint64_t source, int agreed);
/* Drop everything known about a source (nothing counted). */
void ck_reputation_forget(ck_reputation *rep, uint64_t source);
void ck_reputation_get_statistics(const ck_reputation *rep, ck_reputation_statistics *out);

/* -- filter --------------------------------------------------------------- */

/* Create a filter; rep may be NULL (every source then has reputation 1 and
 * link quality 1, and nothing is judged).  CK_EINVAL if a setting is out of
 * its range, CK_ENOMEM. */
int ck_filter_new(const ck_filter_config *cfg, ck_reputation *rep, ck_filter **out);
void ck_filter_free(ck_filter *flt);
const ck_filter_config *ck_filter_get_config(const ck_filter *flt);

/*
 * Take a source's reading taken at now (|now| <= MAX_TIME, else CK_EINVAL
 * and nothing is counted).  Returns CK_CONSENSUS_ACCEPTED or the drop reason,
 * after the checks of the reference's update(), in its order: the value
 * (non-finite, out-of-range), confidence (0 < c <= 1), sigma, lifetimes
 * (0 < x <= MAX_TIME); a reading not newer than the source's current one
 * (compared as the reference's _Reading.key()) is "older".  A new source
 * when max_sources are held evicts the one whose reading was taken longest
 * ago (ties: lowest id).
 */
int ck_filter_update(ck_filter *flt, uint64_t source, double now,
                     const ck_consensus_reading *reading);

/* Count an update that was refused before ck_filter_update(): reason is the
 * drop reason (bad-shape: the value does not have the kind's shape in the
 * caller's terms), or 0 when the caller raised an error for it instead (the
 * reference counts such an update but neither accepts nor drops it). */
void ck_filter_count_refused(ck_filter *flt, int reason);

/* Drop a source's reading (nothing counted). */
void ck_filter_forget(ck_filter *flt, uint64_t source);

/* Readings held. */
size_t ck_filter_sources(const ck_filter *flt);

/*
 * Fuse the fresh readings as of now into *out (steps 1-6 of the reference),
 * then judge the readings not yet judged when the estimate is ok, a
 * reputation table is attached and more than min_sources readings are
 * fresh.  CK_OK; CK_EINVAL if |now| > MAX_TIME or now is NaN (nothing
 * counted); CK_CONSENSUS_EDIVISION (see above).
 */
int ck_filter_estimate(ck_filter *flt, double now, ck_consensus_estimate *out);

void ck_filter_get_statistics(const ck_filter *flt, ck_filter_statistics *out);

#endif /* CK_CONSENSUS_H */
