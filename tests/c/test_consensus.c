/*
 * test_consensus.c - the weighted-consensus filter and reputation table
 * (csrc/ck_consensus.c) on their own.
 *
 * Bit-identity with the Python reference is tests/test_consensus_equivalence.py's
 * job; here are the invariants the C must keep whatever it is fed, and the
 * contract of ck_consensus.h:
 *
 *   - the breakdown record's layout is BREAKDOWN_FORMAT "<QBB6x9d";
 *   - settings out of range are refused;
 *   - every drop reason, in the reference's order; NaN and inf never stored;
 *     |now| > MAX_TIME refused and not counted; readings not newer are older;
 *   - an ok estimate lies inside the f-trimmed range of the fresh values (per
 *     coordinate for vectors), whatever up to f liars send;
 *   - the reach register: bits set, shifted, reset past 8 intervals;
 *   - bounded state: a full filter keeps max_sources readings and evicts the
 *     one taken longest ago (ties: lowest id), and nothing is touched out of
 *     bounds with 1024 sources of 16 dimensions (ASan watches);
 *   - reputation math on known values, and the table against a naive model
 *     through random records, link qualities, forgets and evictions;
 *   - the estimate states, and a sigma too small to square refused.
 */
#include "ck_consensus.h"
#include "test.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double rnd_unit(void)
{
    return (double)(test_rnd() >> 11) * 0x1p-53;
}

/* Roughly normal (sum of uniforms), no libm needed. */
static double rnd_normal(void)
{
    double s = 0.0;
    for (int i = 0; i < 12; i++)
        s += rnd_unit();
    return s - 6.0;
}

static ck_filter *new_filter(const ck_filter_config *cfg, ck_reputation *rep)
{
    ck_filter *f = NULL;
    if (ck_filter_new(cfg, rep, &f) != CK_OK || !f) {
        fprintf(stderr, "ck_filter_new failed\n");
        abort();
    }
    return f;
}

static ck_reputation *new_reputation(const ck_reputation_config *cfg)
{
    ck_reputation *r = NULL;
    if (ck_reputation_new(cfg, &r) != CK_OK || !r) {
        fprintf(stderr, "ck_reputation_new failed\n");
        abort();
    }
    return r;
}

/* A reading with the given components and confidence, nothing optional. */
static ck_consensus_reading reading(const double *comps, double confidence)
{
    ck_consensus_reading r;
    memset(&r, 0, sizeof r);
    r.comps = comps;
    r.confidence = confidence;
    return r;
}

static int scalar_update(ck_filter *f, uint64_t source, double x, double now)
{
    ck_consensus_reading r = reading(&x, 1.0);
    return ck_filter_update(f, source, now, &r);
}

/* -- layout and settings ------------------------------------------------------ */

static void test_record_layout(void)
{
    CHECK_EQ(sizeof(ck_consensus_record), 88);
    CHECK_EQ(offsetof(ck_consensus_record, source), 0);
    CHECK_EQ(offsetof(ck_consensus_record, reason), 8);
    CHECK_EQ(offsetof(ck_consensus_record, reach), 9);
    CHECK_EQ(offsetof(ck_consensus_record, pad), 10);
    CHECK_EQ(offsetof(ck_consensus_record, age), 16);
    CHECK_EQ(offsetof(ck_consensus_record, value), 24);
    CHECK_EQ(offsetof(ck_consensus_record, offset), 32);
    CHECK_EQ(offsetof(ck_consensus_record, sigma), 40);
    CHECK_EQ(offsetof(ck_consensus_record, weight), 48);
    CHECK_EQ(offsetof(ck_consensus_record, confidence), 56);
    CHECK_EQ(offsetof(ck_consensus_record, reputation), 64);
    CHECK_EQ(offsetof(ck_consensus_record, evaporation), 72);
    CHECK_EQ(offsetof(ck_consensus_record, link_quality), 80);
}

static void test_settings(void)
{
    ck_filter_config c, bad;
    ck_filter_config_default(&c);
    ck_filter *f = NULL;
    CHECK_EQ(ck_filter_new(&c, NULL, &f), CK_OK);
    ck_filter_free(f);
    CHECK_EQ(ck_filter_new(NULL, NULL, &f), CK_EINVAL);
    CHECK_EQ(ck_filter_new(&c, NULL, NULL), CK_EINVAL);

#define REFUSED(field, value)                                                     \
    do {                                                                          \
        bad = c;                                                                  \
        bad.field = value;                                                        \
        f = NULL;                                                                 \
        CHECKF(ck_filter_new(&bad, NULL, &f) == CK_EINVAL && !f, "%s = %s", #field, \
               #value);                                                           \
    } while (0)
    REFUSED(kind, 4);
    REFUSED(kind, -1);
    REFUSED(dims, 0);
    REFUSED(dims, 2); /* scalar */
    REFUSED(min_sources, 0);
    REFUSED(min_sources, 65); /* above max_sources */
    REFUSED(max_sources, 1025);
    REFUSED(lower, NAN);
    REFUSED(upper, NAN);
    REFUSED(default_sigma, 0.0);
    REFUSED(default_sigma, INFINITY);
    REFUSED(default_sigma, 1.0000000000000002e100);
    REFUSED(min_sigma, -1.0);
    REFUSED(min_sigma, NAN);
    REFUSED(default_half_life, 0.0);
    REFUSED(expire_half_lives, -1.0);
    REFUSED(agree_sigmas, INFINITY);
    REFUSED(reject_sigmas, 0.0);
    REFUSED(max_weight_share, 0.0);
    REFUSED(max_weight_share, 1.5);
    REFUSED(fault_model, 2);
    REFUSED(probation_share, 0.0);
    REFUSED(probation_share, 1.0);
    REFUSED(reach_interval, 0.0005);
    REFUSED(reach_interval, INFINITY);
#undef REFUSED
    bad = c;
    bad.kind = CK_CONSENSUS_VECTOR;
    bad.dims = 16;
    CHECK_EQ(ck_filter_new(&bad, NULL, &f), CK_OK);
    ck_filter_free(f);
    bad.dims = 17;
    CHECK_EQ(ck_filter_new(&bad, NULL, &f), CK_EINVAL);

    ck_reputation_config rc, rbad;
    ck_reputation_config_default(&rc);
    ck_reputation *r = NULL;
    CHECK_EQ(ck_reputation_new(&rc, &r), CK_OK);
    ck_reputation_free(r);
#define REP_REFUSED(field, value)                                                 \
    do {                                                                          \
        rbad = rc;                                                                \
        rbad.field = value;                                                       \
        r = NULL;                                                                 \
        CHECKF(ck_reputation_new(&rbad, &r) == CK_EINVAL && !r, "%s = %s", #field, \
               #value);                                                           \
    } while (0)
    REP_REFUSED(forgetting, 1.0);
    REP_REFUSED(forgetting, -0.1);
    REP_REFUSED(disagreement_forgetting, NAN);
    REP_REFUSED(disagreement_weight, 0.0);
    REP_REFUSED(prior_agree, INFINITY);
    REP_REFUSED(prior_disagree, -1.0);
    REP_REFUSED(probation_rounds, 1000001);
    REP_REFUSED(flag_below, 1.5);
    REP_REFUSED(distrust_below, 0.6); /* above flag_below */
    REP_REFUSED(max_sources, 0);
    REP_REFUSED(max_sources, (1u << 20) + 1);
#undef REP_REFUSED
    ck_filter_free(NULL);
    ck_reputation_free(NULL);
}

/* -- updates -------------------------------------------------------------------- */

static void test_drops(void)
{
    ck_filter_config c;
    ck_filter_config_default(&c);
    c.lower = -10.0;
    c.upper = 10.0;
    ck_filter *f = new_filter(&c, NULL);
    double x;
    ck_consensus_reading r = reading(&x, 1.0);

    x = NAN;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_NON_FINITE);
    x = INFINITY;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_NON_FINITE);
    x = 10.5;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_OUT_OF_RANGE);
    x = 1.0;
    r.confidence = 0.0;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_CONFIDENCE);
    r.confidence = NAN;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_CONFIDENCE);
    r.confidence = 1.0000000000000002;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_CONFIDENCE);
    r.confidence = 1.0;
    r.has_sigma = 1;
    r.sigma = 0.0;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_SIGMA);
    r.sigma = NAN;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_SIGMA);
    r.sigma = 1.0000000000000002e20;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_SIGMA);
    r.sigma = 1e20;
    r.has_half_life = 1;
    r.half_life = 0.0;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_LIFETIME);
    r.half_life = 1.0;
    r.has_ttl = 1;
    r.ttl = 1.0000000000000002e12;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_LIFETIME);
    r.ttl = NAN;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_BAD_LIFETIME);
    /* the first failing check decides: a NaN value with a bad confidence */
    x = NAN;
    r.confidence = -1.0;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_NON_FINITE);
    /* now out of range: refused, not counted */
    x = 1.0;
    r = reading(&x, 1.0);
    CHECK_EQ(ck_filter_update(f, 1, NAN, &r), CK_EINVAL);
    CHECK_EQ(ck_filter_update(f, 1, 1.0000000000000002e12, &r), CK_EINVAL);
    CHECK_EQ(ck_filter_update(f, 1, -1e12, &r), CK_CONSENSUS_ACCEPTED);
    ck_consensus_estimate e;
    CHECK_EQ(ck_filter_estimate(f, -INFINITY, &e), CK_EINVAL);
    ck_filter_count_refused(f, CK_CONSENSUS_BAD_SHAPE);
    ck_filter_count_refused(f, 0);

    ck_filter_statistics st;
    ck_filter_get_statistics(f, &st);
    CHECK_EQ(st.updates, 16);
    CHECK_EQ(st.accepted, 1);
    CHECK_EQ(st.dropped[CK_CONSENSUS_NON_FINITE - 1], 3);
    CHECK_EQ(st.dropped[CK_CONSENSUS_OUT_OF_RANGE - 1], 1);
    CHECK_EQ(st.dropped[CK_CONSENSUS_BAD_CONFIDENCE - 1], 3);
    CHECK_EQ(st.dropped[CK_CONSENSUS_BAD_SIGMA - 1], 3);
    CHECK_EQ(st.dropped[CK_CONSENSUS_BAD_LIFETIME - 1], 3);
    CHECK_EQ(st.dropped[CK_CONSENSUS_BAD_SHAPE - 1], 1);
    CHECK_EQ(st.dropped[CK_CONSENSUS_OLDER - 1], 0);
    CHECK_EQ(st.estimates, 0);
    CHECK_EQ(ck_filter_sources(f), 1);
    ck_filter_free(f);

    /* interval: a given sigma, or an error outside [0, MAX_SIGMA], is bad-sigma */
    ck_filter_config_default(&c);
    c.kind = CK_CONSENSUS_INTERVAL;
    f = new_filter(&c, NULL);
    x = 0.5;
    r = reading(&x, 1.0);
    r.error = 1.0;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_ACCEPTED);
    r.has_sigma = 1;
    r.sigma = 1.0;
    CHECK_EQ(ck_filter_update(f, 2, 0.0, &r), CK_CONSENSUS_BAD_SIGMA);
    r.has_sigma = 0;
    r.error = -0.5;
    CHECK_EQ(ck_filter_update(f, 2, 0.0, &r), CK_CONSENSUS_BAD_SIGMA);
    r.error = 0.0; /* sigma 0 with min_sigma 0 */
    CHECK_EQ(ck_filter_update(f, 2, 0.0, &r), CK_CONSENSUS_BAD_SIGMA);
    r.error = INFINITY;
    CHECK_EQ(ck_filter_update(f, 2, 0.0, &r), CK_CONSENSUS_NON_FINITE);
    ck_filter_free(f);

    /* category: labels outside [label_lower, label_upper] */
    ck_filter_config_default(&c);
    c.kind = CK_CONSENSUS_CATEGORY;
    c.label_lower = 0;
    c.label_upper = 9;
    f = new_filter(&c, NULL);
    r = reading(NULL, 1.0);
    r.label = 9;
    CHECK_EQ(ck_filter_update(f, 1, 0.0, &r), CK_CONSENSUS_ACCEPTED);
    r.label = 10;
    CHECK_EQ(ck_filter_update(f, 2, 0.0, &r), CK_CONSENSUS_OUT_OF_RANGE);
    r.label = INT64_MIN;
    CHECK_EQ(ck_filter_update(f, 2, 0.0, &r), CK_CONSENSUS_OUT_OF_RANGE);
    ck_filter_free(f);
}

static void test_older(void)
{
    ck_filter_config c;
    ck_filter_config_default(&c);
    ck_filter *f = new_filter(&c, NULL);
    CHECK_EQ(scalar_update(f, 7, 1.0, 10.0), CK_CONSENSUS_ACCEPTED);
    CHECK_EQ(scalar_update(f, 7, 1.0, 10.0), CK_CONSENSUS_OLDER);  /* same key */
    CHECK_EQ(scalar_update(f, 7, 5.0, 9.0), CK_CONSENSUS_OLDER);   /* taken before */
    CHECK_EQ(scalar_update(f, 7, 0.5, 10.0), CK_CONSENSUS_OLDER);  /* same time, smaller */
    CHECK_EQ(scalar_update(f, 7, 2.0, 10.0), CK_CONSENSUS_ACCEPTED); /* same time, larger */
    CHECK_EQ(scalar_update(f, 7, -1.0, 11.0), CK_CONSENSUS_ACCEPTED);
    /* -0.0 is stored as 0.0: the same reading again is older */
    CHECK_EQ(scalar_update(f, 8, -0.0, 11.0), CK_CONSENSUS_ACCEPTED);
    CHECK_EQ(scalar_update(f, 8, 0.0, 11.0), CK_CONSENSUS_OLDER);
    ck_filter_statistics st;
    ck_filter_get_statistics(f, &st);
    CHECK_EQ(st.dropped[CK_CONSENSUS_OLDER - 1], 4);
    CHECK_EQ(st.accepted, 4);
    ck_filter_forget(f, 7);
    ck_filter_forget(f, 12345); /* unknown: nothing happens */
    CHECK_EQ(ck_filter_sources(f), 1);
    CHECK_EQ(scalar_update(f, 7, 1.0, 1.0), CK_CONSENSUS_ACCEPTED); /* forgotten: new again */
    ck_filter_free(f);
}

/* -- estimates ------------------------------------------------------------------ */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Random swarms of n sources, up to f = (n-1)/3 (or /2) of them liars sending
 * anything finite: every ok estimate lies within the (f+1)-th smallest and
 * largest fresh values, per coordinate, and the counts add up. */
static void test_trimmed_range(void)
{
    static const int kinds[] = {CK_CONSENSUS_SCALAR, CK_CONSENSUS_INTERVAL, CK_CONSENSUS_VECTOR};
    int oks = 0;
    for (int round = 0; round < 240; round++) {
        ck_filter_config c;
        ck_filter_config_default(&c);
        c.kind = kinds[round % 3];
        c.dims = c.kind == CK_CONSENSUS_VECTOR ? 1 + (unsigned)test_rnd_below(4) : 1;
        c.min_sources = 1 + (unsigned)test_rnd_below(3);
        c.fault_model = (int)test_rnd_below(2);
        c.max_weight_share = (double)(1 + test_rnd_below(10)) / 10.0;
        ck_reputation_config rc;
        ck_reputation_config_default(&rc);
        rc.probation_rounds = (uint32_t)test_rnd_below(3);
        ck_reputation *rep = test_rnd_below(2) ? new_reputation(&rc) : NULL;
        ck_filter *f = new_filter(&c, rep);
        size_t n = 4 + test_rnd_below(40);
        size_t faults = c.fault_model == CK_CONSENSUS_BYZANTINE ? (n - 1) / 3 : (n - 1) / 2;
        size_t liars = test_rnd_below(faults + 1);
        double now = 0.0;
        for (int step = 0; step < 4; step++) {
            now += 0.5;
            double values[64][CK_CONSENSUS_MAX_DIMS];
            for (size_t s = 0; s < n; s++) {
                double comps[CK_CONSENSUS_MAX_DIMS];
                for (unsigned d = 0; d < c.dims; d++) {
                    if (s < liars) /* anything: far, near, huge, tiny */
                        comps[d] = (rnd_unit() - 0.5) * (test_rnd_below(2) ? 1e6 : 4.0);
                    else
                        comps[d] = 10.0 + rnd_normal();
                    values[s][d] = comps[d];
                }
                ck_consensus_reading r = reading(comps, 0.2 + 0.8 * rnd_unit());
                r.error = 2.0 * rnd_unit();
                if (c.kind != CK_CONSENSUS_INTERVAL && test_rnd_below(2)) {
                    r.has_sigma = 1;
                    r.sigma = s < liars && test_rnd_below(2) ? 1e-3 : 0.1 + rnd_unit();
                }
                int rc_update = ck_filter_update(f, s, now, &r);
                if (!CHECK(rc_update == CK_CONSENSUS_ACCEPTED || rc_update == CK_CONSENSUS_BAD_SIGMA))
                    break;
                if (rc_update != CK_CONSENSUS_ACCEPTED) { /* interval error 0: value kept as it was */
                    for (unsigned d = 0; d < c.dims; d++)
                        values[s][d] = NAN;
                }
            }
            ck_consensus_estimate e;
            int rc_est = ck_filter_estimate(f, now, &e);
            if (!CHECKF(rc_est == CK_OK, "estimate returned %d", rc_est))
                break;
            CHECK(e.sources_total <= n);
            CHECK(e.sources_used + e.sources_rejected <= e.sources_total);
            if (e.state != CK_CONSENSUS_OK) {
                CHECK(!e.has_value && e.sources_used == 0 && isnan(e.age));
                continue;
            }
            oks++;
            /* (the combine may drop dominating sources below min_sources) */
            CHECK(e.has_value && e.sources_used >= 1);
            CHECK(e.confidence >= 0.0 && e.confidence <= 1.0);
            size_t fresh = e.sources_total; /* nothing expires within 2 s */
            size_t ff = c.fault_model == CK_CONSENSUS_BYZANTINE ? (fresh - 1) / 3 : (fresh - 1) / 2;
            for (unsigned d = 0; d < c.dims; d++) {
                double column[64];
                size_t m = 0;
                for (size_t i = 0; i < e.sources_total; i++) {
                    /* the stored reading of record i: the record's value for
                     * scalar and interval, the kept comps for vectors */
                    uint64_t src = e.records[i].source;
                    column[m++] = c.kind == CK_CONSENSUS_VECTOR ? values[src][d] : e.records[i].value;
                }
                int known = 1;
                for (size_t i = 0; i < m; i++)
                    known = known && !isnan(column[i]);
                if (!known)
                    continue; /* an older reading of that source is held */
                qsort(column, m, sizeof column[0], compare_doubles);
                double v = e.value[d];
                CHECKF(isfinite(v) && v >= column[ff] && v <= column[m - 1 - ff],
                       "round %d kind %d: %g outside [%g, %g]", round, c.kind, v, column[ff],
                       column[m - 1 - ff]);
            }
        }
        ck_filter_free(f);
        ck_reputation_free(rep);
    }
    CHECKF(oks > 300, "only %d ok estimates", oks);
}

static void test_states(void)
{
    ck_filter_config c;
    ck_filter_config_default(&c);
    ck_filter *f = new_filter(&c, NULL);
    ck_consensus_estimate e;
    CHECK_EQ(ck_filter_estimate(f, 0.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_NO_CONSENSUS && e.reason == CK_CONSENSUS_WHY_NO_SOURCES);
    CHECK(e.sources_total == 0 && !e.has_value && isnan(e.sigma) && isnan(e.age));
    scalar_update(f, 1, 1.0, 0.0);
    scalar_update(f, 2, 1.1, 0.0);
    CHECK_EQ(ck_filter_estimate(f, 0.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_NO_CONSENSUS && e.reason == CK_CONSENSUS_WHY_TOO_FEW_SOURCES);
    CHECK(e.records[0].reason == CK_CONSENSUS_SOURCE_NO_CONSENSUS);
    scalar_update(f, 3, 0.9, 0.0);
    CHECK_EQ(ck_filter_estimate(f, 0.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_OK && e.reason == CK_CONSENSUS_WHY_NONE && e.has_value);
    CHECK(fabs(e.value[0] - 1.0) < 0.2 && e.interval_low < e.value[0] && e.value[0] < e.interval_high);
    CHECK(e.sources_used == 3 && e.sources_rejected == 0 && e.age == 0.0);
    int best = 0;
    for (int i = 0; i < 3; i++) {
        CHECK(e.records[i].source == (uint64_t)(i + 1));
        best += e.records[i].reason == CK_CONSENSUS_SOURCE_BEST;
        CHECK(e.records[i].pad[0] == 0 && e.records[i].pad[5] == 0);
    }
    CHECK_EQ(best, 1);
    /* default half-life 10 s, 10 of them: stale after 100 s */
    CHECK_EQ(ck_filter_estimate(f, 100.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_STALE && e.reason == CK_CONSENSUS_WHY_STALE);
    CHECK(e.records[0].reason == CK_CONSENSUS_SOURCE_EXPIRED && isnan(e.records[0].offset));
    ck_filter_free(f);

    /* two camps of equal weight far apart: no majority */
    ck_filter_config_default(&c);
    c.min_sources = 2;
    f = new_filter(&c, NULL);
    for (int s = 0; s < 6; s++) {
        double x = s < 3 ? 0.1 * s : 10.0 + 0.1 * s;
        ck_consensus_reading r = reading(&x, 1.0);
        r.has_sigma = 1;
        r.sigma = 0.1;
        ck_filter_update(f, (uint64_t)s, 0.0, &r);
    }
    CHECK_EQ(ck_filter_estimate(f, 0.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_NO_CONSENSUS && e.reason == CK_CONSENSUS_WHY_NO_MAJORITY);
    ck_filter_free(f);

    /* categories: a plurality of 3 against 2 with f = 1 has no margin; 4 of 5 has */
    ck_filter_config_default(&c);
    c.kind = CK_CONSENSUS_CATEGORY;
    f = new_filter(&c, NULL);
    for (int s = 0; s < 5; s++) {
        ck_consensus_reading r = reading(NULL, 1.0);
        r.label = s < 3 ? 7 : 8;
        ck_filter_update(f, (uint64_t)s, 0.0, &r);
    }
    CHECK_EQ(ck_filter_estimate(f, 0.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_NO_CONSENSUS && e.reason == CK_CONSENSUS_WHY_NO_MARGIN);
    ck_consensus_reading r = reading(NULL, 1.0);
    r.label = 7;
    ck_filter_update(f, 3, 1.0, &r);
    CHECK_EQ(ck_filter_estimate(f, 1.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_OK && e.label == 7 && isnan(e.sigma));
    CHECK(e.records[4].reason == CK_CONSENSUS_SOURCE_FALSETICKER && e.records[4].offset == 1.0);
    CHECK(e.records[4].value == 8.0);
    ck_filter_free(f);
}

/* A sigma whose square could underflow is refused; the smallest allowed
 * one still combines without dividing by zero. */
static void test_tiny_sigma(void)
{
    ck_filter_config c;
    ck_filter_config_default(&c);
    ck_filter *f = new_filter(&c, NULL);
    for (int s = 0; s < 4; s++) { /* equal values: zero-width intervals that agree */
        double x = 1.0;
        ck_consensus_reading r = reading(&x, 1.0);
        r.has_sigma = 1;
        r.sigma = 1e-200;
        CHECK_EQ(ck_filter_update(f, (uint64_t)s, 0.0, &r), CK_CONSENSUS_BAD_SIGMA);
        r.sigma = CK_CONSENSUS_MIN_SIGMA;
        CHECK_EQ(ck_filter_update(f, (uint64_t)s, 0.0, &r), CK_CONSENSUS_ACCEPTED);
    }
    ck_consensus_estimate e;
    CHECK_EQ(ck_filter_estimate(f, 0.0, &e), CK_OK);
    CHECK(e.state == CK_CONSENSUS_OK && e.value[0] == 1.0 && e.sigma > 0.0);
    ck_filter_free(f);
}

/* -- reach -------------------------------------------------------------------- */

static uint8_t reach_of(ck_filter *f, uint64_t source, double now)
{
    ck_consensus_estimate e;
    if (ck_filter_estimate(f, now, &e) != CK_OK)
        return 0xEE;
    for (uint32_t i = 0; i < e.sources_total; i++)
        if (e.records[i].source == source)
            return e.records[i].reach;
    return 0xEE;
}

static void test_reach(void)
{
    ck_filter_config c;
    ck_filter_config_default(&c);
    c.reach_interval = 0.5;
    ck_filter *f = new_filter(&c, NULL);
    scalar_update(f, 1, 1.0, 10.0); /* slot 20 */
    CHECK_EQ(reach_of(f, 1, 10.2), 0x01);
    CHECK_EQ(reach_of(f, 1, 10.5), 0x02); /* one interval later, shifted */
    CHECK_EQ(reach_of(f, 1, 13.4), 0x40);
    CHECK_EQ(reach_of(f, 1, 13.5), 0x80);
    CHECK_EQ(reach_of(f, 1, 14.0), 0x00); /* 8 intervals: gone */
    CHECK_EQ(reach_of(f, 1, 9.0), 0x01);  /* earlier than the slot: as it is */
    scalar_update(f, 1, 1.0, 11.0);       /* slot 22 */
    CHECK_EQ(reach_of(f, 1, 11.0), 0x05);
    scalar_update(f, 1, 1.0, 10.6); /* older, slot 21: still heard */
    CHECK_EQ(reach_of(f, 1, 11.0), 0x07);
    scalar_update(f, 1, 1.0, 5.0); /* 12 slots back: beyond the register */
    CHECK_EQ(reach_of(f, 1, 11.0), 0x07);
    scalar_update(f, 1, 1.0, 20.0); /* 18 slots on: the register restarts */
    CHECK_EQ(reach_of(f, 1, 20.0), 0x01);
    scalar_update(f, 2, 1.0, -0.25); /* negative times floor down */
    CHECK_EQ(reach_of(f, 2, -0.1), 0x01);
    CHECK_EQ(reach_of(f, 2, 0.0), 0x02);
    ck_filter_free(f);
}

/* -- bounded state ------------------------------------------------------------------ */

static void test_eviction(void)
{
    ck_filter_config c;
    ck_filter_config_default(&c);
    c.max_sources = 8;
    c.min_sources = 1;
    ck_filter *f = new_filter(&c, NULL);
    for (uint64_t s = 0; s < 100; s++)
        CHECK_EQ(scalar_update(f, 1000 - s, 0.5, (double)s), CK_CONSENSUS_ACCEPTED);
    CHECK_EQ(ck_filter_sources(f), 8);
    ck_filter_statistics st;
    ck_filter_get_statistics(f, &st);
    CHECK_EQ(st.evicted, 92);
    ck_consensus_estimate e;
    CHECK_EQ(ck_filter_estimate(f, 100.0, &e), CK_OK);
    CHECK_EQ(e.sources_total, 8);
    for (uint32_t i = 0; i < 8; i++) /* the newest 8, ascending ids */
        CHECK_EQ(e.records[i].source, 1000 - 99 + i);
    /* equal times: the lowest id of the held ones and the newcomer goes */
    ck_filter_free(f);
    f = new_filter(&c, NULL);
    for (uint64_t s = 0; s < 8; s++)
        scalar_update(f, 50 + s, 0.5, 1.0);
    CHECK_EQ(scalar_update(f, 10, 0.5, 1.0), CK_CONSENSUS_OLDER); /* the newcomer */
    CHECK_EQ(scalar_update(f, 90, 0.5, 1.0), CK_CONSENSUS_ACCEPTED);
    CHECK_EQ(scalar_update(f, 91, 0.5, 0.5), CK_CONSENSUS_OLDER); /* older than all held */
    CHECK_EQ(ck_filter_estimate(f, 1.0, &e), CK_OK);
    CHECK_EQ(e.records[0].source, 51); /* 50 was evicted */
    CHECK_EQ(e.records[7].source, 90);
    ck_filter_free(f);
}

/* A full filter of the largest shape, with a reputation table that is full
 * too: every path runs over the whole working memory (ASan watches). */
static void test_full_filter(void)
{
    static const int kinds[] = {CK_CONSENSUS_VECTOR, CK_CONSENSUS_SCALAR, CK_CONSENSUS_CATEGORY,
                                CK_CONSENSUS_INTERVAL};
    for (int k = 0; k < 4; k++) {
        ck_filter_config c;
        ck_filter_config_default(&c);
        c.kind = kinds[k];
        c.dims = c.kind == CK_CONSENSUS_VECTOR ? CK_CONSENSUS_MAX_DIMS : 1;
        c.max_sources = CK_CONSENSUS_MAX_SOURCES;
        c.min_sources = 1;
        c.max_weight_share = 0.01;
        ck_reputation_config rc;
        ck_reputation_config_default(&rc);
        rc.max_sources = 700;
        rc.probation_rounds = 1;
        ck_reputation *rep = new_reputation(&rc);
        ck_filter *f = new_filter(&c, rep);
        double now = 0.0;
        for (int step = 0; step < 3; step++) {
            now += 1.0;
            for (uint64_t s = 0; s < CK_CONSENSUS_MAX_SOURCES + 20; s++) {
                double comps[CK_CONSENSUS_MAX_DIMS];
                for (unsigned d = 0; d < c.dims; d++)
                    comps[d] = (s % 7 == 0 ? 50.0 : 0.0) + rnd_normal();
                ck_consensus_reading r = reading(comps, 0.5 + 0.5 * rnd_unit());
                r.label = (int64_t)(s % 5 == 0 ? 3 : 1);
                r.error = 1.0;
                CHECK_EQ(ck_filter_update(f, s * 2654435761u, now + 1e-6 * (double)s, &r),
                         CK_CONSENSUS_ACCEPTED);
            }
            ck_consensus_estimate e;
            CHECK_EQ(ck_filter_estimate(f, now + 1.0, &e), CK_OK);
            CHECK_EQ(e.sources_total, CK_CONSENSUS_MAX_SOURCES);
            CHECK(e.state == CK_CONSENSUS_OK);
            for (uint32_t i = 1; i < e.sources_total; i++)
                CHECK(e.records[i - 1].source < e.records[i].source);
        }
        ck_reputation_statistics rs;
        ck_reputation_get_statistics(rep, &rs);
        CHECK_EQ(rs.sources, 700);
        CHECK(rs.evicted > 0);
        ck_filter_free(f);
        ck_reputation_free(rep);
    }
}

/* -- reputation ------------------------------------------------------------------- */

static void test_reputation_values(void)
{
    ck_reputation_config rc;
    ck_reputation_config_default(&rc);
    ck_reputation *r = new_reputation(&rc);
    CHECK(ck_reputation_value(r, 5) == 0.5); /* the prior's mean */
    CHECK(ck_reputation_link_quality(r, 5) == 1.0);
    CHECK_EQ(ck_reputation_rounds(r, 5), 0);
    CHECK(ck_reputation_in_probation(r, 5));
    ck_reputation_record(r, 5, 1); /* a = 1, b = 0 */
    CHECK(ck_reputation_value(r, 5) == (1.0 + 0.5) / (1.0 + 0.0 + 0.5 + 0.5));
    ck_reputation_record(r, 5, 0); /* a = 0.1 * 1, b = 0.9 * 0 + 6 */
    CHECK(ck_reputation_value(r, 5) == (0.1 + 0.5) / (0.1 + 6.0 + 0.5 + 0.5));
    CHECK(ck_reputation_flagged(r, 5));
    ck_reputation_record(r, 5, 1); /* a = 0.9 * 0.1 + 1, b = 0.9 * 6 */
    double a = 0.9 * 0.1 + 1.0, b = 0.9 * 6.0;
    CHECK(ck_reputation_value(r, 5) == (a + 0.5) / (a + b + 0.5 + 0.5));
    CHECK_EQ(ck_reputation_rounds(r, 5), 3);
    CHECK_EQ(ck_reputation_set_link_quality(r, 5, 0.25), CK_OK);
    CHECK(ck_reputation_link_quality(r, 5) == 0.25);
    CHECK_EQ(ck_reputation_set_link_quality(r, 5, 0.0), CK_EINVAL);
    CHECK_EQ(ck_reputation_set_link_quality(r, 5, NAN), CK_EINVAL);
    CHECK_EQ(ck_reputation_set_link_quality(r, 5, 1.0000000000000002), CK_EINVAL);
    CHECK(ck_reputation_link_quality(r, 5) == 0.25);
    ck_reputation_statistics st;
    ck_reputation_get_statistics(r, &st);
    CHECK(st.sources == 1 && st.judgments == 3 && st.disagreements == 1 && st.evicted == 0);
    ck_reputation_forget(r, 5);
    ck_reputation_forget(r, 6);
    CHECK(ck_reputation_value(r, 5) == 0.5 && ck_reputation_rounds(r, 5) == 0);
    ck_reputation_get_statistics(r, &st);
    CHECK(st.sources == 0 && st.judgments == 3);
    ck_reputation_free(r);

    /* a persistent liar falls under 0.1 within 10 rounds (ReputationConfig's doc) */
    r = new_reputation(&rc);
    for (int i = 0; i < 20; i++)
        ck_reputation_record(r, 1, 1);
    for (int i = 0; i < 10; i++)
        ck_reputation_record(r, 1, 0);
    CHECK(ck_reputation_value(r, 1) < 0.1);
    ck_reputation_free(r);
}

/* The table against a naive model: a list scanned for everything. */
typedef struct {
    uint64_t source;
    double a, b, link;
    uint64_t rounds;
    int64_t last;
} model_entry;

static model_entry model[64];
static size_t model_count;
static int64_t model_clock;
static uint64_t model_evicted;

static model_entry *model_find(uint64_t source)
{
    for (size_t i = 0; i < model_count; i++)
        if (model[i].source == source)
            return &model[i];
    return NULL;
}

static void model_remove(size_t i)
{
    model[i] = model[--model_count];
}

static model_entry *model_entry_for(uint64_t source, size_t capacity)
{
    model_entry *e = model_find(source);
    if (e)
        return e;
    if (model_count >= capacity) {
        size_t oldest = 0;
        for (size_t i = 1; i < model_count; i++)
            if (model[i].last < model[oldest].last ||
                (model[i].last == model[oldest].last && model[i].source < model[oldest].source))
                oldest = i;
        model_remove(oldest);
        model_evicted++;
    }
    e = &model[model_count++];
    e->source = source;
    e->a = e->b = 0.0;
    e->link = 1.0;
    e->rounds = 0;
    e->last = -1;
    return e;
}

static void test_reputation_model(void)
{
    for (int trial = 0; trial < 20; trial++) {
        ck_reputation_config rc;
        ck_reputation_config_default(&rc);
        rc.max_sources = 1 + (uint32_t)test_rnd_below(trial < 10 ? 8 : 60);
        ck_reputation *r = new_reputation(&rc);
        model_count = 0;
        model_clock = 0;
        model_evicted = 0;
        /* ids that share low bits, to crowd the probe runs */
        uint64_t pool = 1 + test_rnd_below(3 * rc.max_sources + 2);
        for (int op = 0; op < 3000; op++) {
            uint64_t source = (test_rnd_below(pool) << (test_rnd_below(2) ? 32 : 0)) ^ 0xABCDu;
            size_t kind = test_rnd_below(10);
            if (kind < 6) {
                int agreed = (int)test_rnd_below(2);
                ck_reputation_record(r, source, agreed);
                model_entry *e = model_entry_for(source, rc.max_sources);
                if (agreed) {
                    e->a = rc.forgetting * e->a + 1.0;
                    e->b = rc.forgetting * e->b;
                } else {
                    e->a = rc.disagreement_forgetting * e->a;
                    e->b = rc.forgetting * e->b + rc.disagreement_weight;
                }
                e->rounds++;
                e->last = model_clock++;
            } else if (kind < 8) {
                double q = 0.1 + 0.9 * rnd_unit();
                CHECK_EQ(ck_reputation_set_link_quality(r, source, q), CK_OK);
                model_entry_for(source, rc.max_sources)->link = q;
            } else {
                ck_reputation_forget(r, source);
                model_entry *e = model_find(source);
                if (e)
                    model_remove((size_t)(e - model));
            }
            /* every source of the pool, present or not */
            for (uint64_t p = 0; p < pool; p++) {
                uint64_t s = (p << (op % 2 ? 32 : 0)) ^ 0xABCDu;
                model_entry *e = model_find(s);
                double want = e ? (e->a + rc.prior_agree) /
                                      (e->a + e->b + rc.prior_agree + rc.prior_disagree)
                                : 0.5;
                if (!CHECKF(ck_reputation_value(r, s) == want &&
                                ck_reputation_rounds(r, s) == (e ? e->rounds : 0) &&
                                ck_reputation_link_quality(r, s) == (e ? e->link : 1.0),
                            "trial %d op %d source %llx", trial, op, (unsigned long long)s))
                    goto next_trial;
            }
            ck_reputation_statistics st;
            ck_reputation_get_statistics(r, &st);
            if (!CHECK(st.sources == model_count && st.evicted == model_evicted))
                goto next_trial;
        }
    next_trial:
        ck_reputation_free(r);
    }
}

int main(void)
{
    test_record_layout();
    test_settings();
    test_drops();
    test_older();
    test_states();
    test_tiny_sigma();
    test_trimmed_range();
    test_reach();
    test_eviction();
    test_full_filter();
    test_reputation_values();
    test_reputation_model();
    return test_finish();
}
