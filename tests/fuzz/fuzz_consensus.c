/*
 * fuzz_consensus.c - fuzz the weighted-consensus filter and reputation table
 * (csrc/ck_consensus.c) with untrusted readings.
 *
 * The first bytes choose the topic: kind, dims, min and max sources, bounds,
 * the weight cap, fault model, probation share, sigmas, half-life, reach
 * interval, and whether a reputation table (of which size) is attached.  The
 * rest is a program: updates with arbitrary doubles (any bit pattern: NaN,
 * inf, subnormals, huge), confidences, sigmas, errors and lifetimes, at
 * times that go forward and back; estimates; reputation records, link
 * qualities and forgets; filter forgets.  The invariants, checked after every
 * call (abort() on a violation, with a message; ASan/UBSan watch the memory):
 *
 *   - every call returns a defined code: an update ACCEPTED or a drop reason
 *     (CK_EINVAL only for |now| > MAX_TIME), an estimate CK_OK, or
 *     CK_CONSENSUS_EDIVISION (the reference's division by zero);
 *   - an ok estimate has a finite value (each coordinate), unless a reading
 *     with sigma under 1e-154 was accepted (its sigma^2 / evaporation then
 *     overflows its inverse-variance weight to inf, and the reference's value
 *     is NaN too); a finite scalar or interval value lies within the
 *     f-trimmed range of the fresh readings;
 *   - the breakdown: sources_total <= max_sources records, ids strictly
 *     ascending, defined reasons, zero padding, used + rejected <= total;
 *   - statistics add up: updates = accepted + dropped; the tables never hold
 *     more than their sizes.
 *
 * libFuzzer:   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *                  tests/fuzz/fuzz_consensus.c csrc/ck_consensus.c -lm -o fuzz_consensus \
 *                  && ./fuzz_consensus
 * standalone:  gcc -std=c99 -D_GNU_SOURCE -DCK_FUZZ_STANDALONE -g -O1 \
 *                  -fsanitize=address,undefined -Icsrc tests/fuzz/fuzz_consensus.c \
 *                  csrc/ck_consensus.c -lm -o fuzz_consensus && ./fuzz_consensus 200000
 * The standalone driver feeds N pseudo-random inputs (seeded, repeatable):
 * a quarter random bytes, the rest programs built to reach deep (clustered
 * readings that agree, liars, repeated estimates) with random edge values
 * mixed in.  Files named after N are fed as extra inputs.
 */
#include "ck_consensus.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2), noreturn))
#endif
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_consensus: invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* -- reading the input --------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t left;
} cursor;

static uint8_t byte(cursor *c)
{
    if (!c->left)
        return 0;
    c->left--;
    return *c->p++;
}

static double raw_double(cursor *c)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = byte(c);
    double x;
    memcpy(&x, b, sizeof x);
    return x;
}

static const double edges[] = {
    0.0, -0.0, 1.0, -1.0, 0.5, NAN, INFINITY, -INFINITY, 5e-324, 1e-300, 1e-160, 1e-154,
    1e-100, 1e100, 1.0000000000000002e100, 1e150, -1e150, 1.0000000000000002e150, 1e300,
    1.7976931348623157e308, 1e12, 1.0000000000000002e12, 2.0, 3.0, 0.1,
};
#define EDGES (sizeof edges / sizeof edges[0])

/* A double: any bits, an edge value, a small number, or one near 10 (where
 * the honest readings cluster). */
static double number(cursor *c)
{
    uint8_t mode = byte(c);
    switch (mode & 3) {
    case 0: return raw_double(c);
    case 1: return edges[byte(c) % EDGES];
    case 2: return (double)(int8_t)byte(c) / 16.0;
    default: return 10.0 + (double)(int8_t)byte(c) / 64.0;
    }
}

/* A positive quantity: mostly sensible, sometimes anything. */
static double quantity(cursor *c, double scale)
{
    uint8_t b = byte(c);
    if (b < 200)
        return scale * (double)(1 + b) / 100.0;
    return number(c);
}

/* -- the program ---------------------------------------------------------------- */

static int degenerate; /* a reading with sigma < 1e-154 was accepted */
static unsigned long accepted_updates, estimates, ok_estimates, divisions; /* for the summary */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void check_estimate(const ck_filter_config *cfg, const ck_consensus_estimate *e)
{
    if (e->sources_total > cfg->max_sources)
        fail("%u records with max_sources %u", e->sources_total, cfg->max_sources);
    if (e->sources_used + e->sources_rejected > e->sources_total)
        fail("used %u + rejected %u > total %u", e->sources_used, e->sources_rejected,
             e->sources_total);
    if (e->state < CK_CONSENSUS_OK || e->state > CK_CONSENSUS_STALE ||
        e->reason < CK_CONSENSUS_WHY_NONE || e->reason > CK_CONSENSUS_WHY_NO_MARGIN)
        fail("state %d reason %d", e->state, e->reason);
    if ((e->state == CK_CONSENSUS_OK) != (e->reason == CK_CONSENSUS_WHY_NONE) ||
        (e->state == CK_CONSENSUS_OK) != (e->has_value != 0))
        fail("state %d, reason %d, has_value %d disagree", e->state, e->reason, e->has_value);
    double fresh[CK_CONSENSUS_MAX_SOURCES];
    size_t n_fresh = 0;
    for (uint32_t i = 0; i < e->sources_total; i++) {
        const ck_consensus_record *r = &e->records[i];
        if (i && !(e->records[i - 1].source < r->source))
            fail("records not in ascending source order at %u", i);
        if (r->reason > CK_CONSENSUS_SOURCE_NO_CONSENSUS)
            fail("record %u has reason %u", i, r->reason);
        for (int k = 0; k < 6; k++)
            if (r->pad[k])
                fail("record %u has padding byte %d set", i, k);
        if (r->reason != CK_CONSENSUS_SOURCE_EXPIRED)
            fresh[n_fresh++] = r->value;
    }
    if (!e->has_value || cfg->kind == CK_CONSENSUS_CATEGORY)
        return;
    unsigned dims = cfg->kind == CK_CONSENSUS_VECTOR ? cfg->dims : 1;
    for (unsigned d = 0; d < dims; d++)
        if (!isfinite(e->value[d]) && !degenerate)
            fail("ok estimate with value[%u] = %g", d, e->value[d]);
    if (cfg->kind == CK_CONSENSUS_VECTOR || !isfinite(e->value[0]) || n_fresh == 0)
        return;
    size_t f = cfg->fault_model == CK_CONSENSUS_BYZANTINE ? (n_fresh - 1) / 3 : (n_fresh - 1) / 2;
    qsort(fresh, n_fresh, sizeof fresh[0], compare_doubles);
    if (e->value[0] < fresh[f] || e->value[0] > fresh[n_fresh - 1 - f])
        fail("value %.17g outside the trimmed range [%.17g, %.17g]", e->value[0], fresh[f],
             fresh[n_fresh - 1 - f]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cursor c = {data, size};
    ck_filter_config cfg;
    ck_filter_config_default(&cfg);
    uint8_t h = byte(&c);
    cfg.kind = h & 3;
    cfg.dims = cfg.kind == CK_CONSENSUS_VECTOR ? 1 + byte(&c) % CK_CONSENSUS_MAX_DIMS : 1;
    cfg.min_sources = 1 + byte(&c) % 5;
    uint8_t m = byte(&c);
    cfg.max_sources = cfg.min_sources + (m < 250 ? m % 40 : 1024 - cfg.min_sources);
    uint8_t knobs = byte(&c);
    if (knobs & 1) {
        cfg.lower = number(&c);
        cfg.upper = number(&c);
        if (isnan(cfg.lower) || isnan(cfg.upper))
            cfg.lower = cfg.upper = 0.0; /* refused below; nothing else to do */
    }
    if (knobs & 2) {
        cfg.label_lower = (int64_t)byte(&c) - 8;
        cfg.label_upper = (int64_t)byte(&c) - 8;
    }
    cfg.max_weight_share = (double)(1 + byte(&c) % 100) / 100.0;
    cfg.fault_model = (knobs >> 2) & 1;
    cfg.probation_share = (double)(1 + byte(&c) % 98) / 100.0;
    cfg.agree_sigmas = quantity(&c, 4.0);
    cfg.reject_sigmas = quantity(&c, 4.0);
    cfg.default_sigma = quantity(&c, 2.0);
    cfg.min_sigma = knobs & 8 ? quantity(&c, 0.5) : 0.0;
    cfg.default_half_life = quantity(&c, 20.0);
    cfg.expire_half_lives = quantity(&c, 10.0);
    cfg.reach_interval = knobs & 16 ? quantity(&c, 2.0) : 1.0;
    ck_reputation_config rc;
    ck_reputation_config_default(&rc);
    rc.max_sources = 1 + byte(&c) % 64;
    rc.probation_rounds = byte(&c) % 8;
    rc.forgetting = (double)(byte(&c) % 100) / 100.0;
    int with_rep = (knobs & 32) != 0;

    ck_reputation *rep = NULL;
    if (with_rep && ck_reputation_new(&rc, &rep) != CK_OK)
        fail("default reputation settings refused");
    ck_filter *flt = NULL;
    int rc_new = ck_filter_new(&cfg, rep, &flt);
    if (rc_new != CK_OK) {
        if (rc_new != CK_EINVAL || flt)
            fail("ck_filter_new returned %d", rc_new);
        ck_reputation_free(rep);
        return 0;
    }
    degenerate = 0;
    double now = (double)(int8_t)byte(&c) * 1e3;
    unsigned pool = 1 + byte(&c) % (cfg.max_sources + 8);
    uint64_t refused = 0;
    for (int op = 0; op < 4000 && c.left; op++) {
        uint8_t kind = byte(&c);
        uint64_t source = byte(&c) % pool;
        if (kind & 0x80)
            source *= 0x9E3779B97F4A7C15ULL; /* ids all over the 64-bit range */
        switch (kind % 16) {
        case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8: {
            double comps[CK_CONSENSUS_MAX_DIMS];
            unsigned n = cfg.kind == CK_CONSENSUS_VECTOR ? cfg.dims : 1;
            for (unsigned d = 0; d < n; d++)
                comps[d] = number(&c);
            ck_consensus_reading r;
            memset(&r, 0, sizeof r);
            r.comps = comps;
            r.label = (int64_t)(byte(&c) % 4);
            uint8_t flags = byte(&c);
            r.confidence = flags & 1 ? number(&c) : 0.3 + 0.7 * (double)byte(&c) / 255.0;
            r.error = flags & 2 ? number(&c) : quantity(&c, 1.0);
            r.has_sigma = (flags & 4) != 0;
            r.sigma = r.has_sigma ? (flags & 8 ? number(&c) : quantity(&c, 1.0)) : NAN;
            r.has_half_life = (flags & 16) != 0;
            r.half_life = r.has_half_life ? quantity(&c, 10.0) : NAN;
            r.has_ttl = (flags & 32) != 0;
            r.ttl = r.has_ttl ? quantity(&c, 10.0) : NAN;
            double at = now;
            if (flags & 64)
                at = now - (double)byte(&c) / 16.0;
            if ((flags & 192) == 192)
                at = number(&c);
            int result = ck_filter_update(flt, source, at, &r);
            int in_time = at >= -CK_CONSENSUS_MAX_TIME && at <= CK_CONSENSUS_MAX_TIME;
            if (!in_time ? result != CK_EINVAL
                         : result < CK_CONSENSUS_ACCEPTED || result > CK_CONSENSUS_OLDER)
                fail("update returned %d (now %g)", result, at);
            if (result == CK_CONSENSUS_ACCEPTED) {
                accepted_updates++;
                double sigma = cfg.kind == CK_CONSENSUS_INTERVAL ? r.error / cfg.agree_sigmas
                               : r.has_sigma                     ? r.sigma
                                                                 : cfg.default_sigma;
                if (sigma < cfg.min_sigma)
                    sigma = cfg.min_sigma;
                if (sigma < 1e-154)
                    degenerate = 1;
            }
            break;
        }
        case 9: case 10: case 11: {
            ck_consensus_estimate e;
            double at = now + (double)byte(&c) / 8.0;
            if (kind & 0x40)
                at = number(&c);
            int result = ck_filter_estimate(flt, at, &e);
            int in_time = at >= -CK_CONSENSUS_MAX_TIME && at <= CK_CONSENSUS_MAX_TIME;
            if (!in_time) {
                if (result != CK_EINVAL)
                    fail("estimate at %g returned %d", at, result);
            } else if (result == CK_OK) {
                check_estimate(&cfg, &e);
                estimates++;
                ok_estimates += e.state == CK_CONSENSUS_OK;
            } else if (result == CK_CONSENSUS_EDIVISION) {
                divisions++;
            } else {
                fail("estimate returned %d", result);
            }
            break;
        }
        case 12:
            now += (double)byte(&c) / 16.0;
            break;
        case 13:
            if (rep) {
                uint8_t b = byte(&c);
                if (b & 1)
                    ck_reputation_record(rep, source, b & 2);
                else if (b & 4)
                    ck_reputation_forget(rep, source);
                else if (ck_reputation_set_link_quality(rep, source, number(&c)) == CK_EINVAL)
                    break;
                (void)ck_reputation_value(rep, source);
            }
            break;
        case 14:
            ck_filter_forget(flt, source);
            break;
        default:
            ck_filter_count_refused(flt, byte(&c) % (CK_CONSENSUS_DROP_REASONS + 1));
            refused++;
        }
    }
    ck_filter_statistics st;
    ck_filter_get_statistics(flt, &st);
    uint64_t dropped = 0;
    for (int i = 0; i < CK_CONSENSUS_DROP_REASONS; i++)
        dropped += st.dropped[i];
    if (st.accepted + dropped > st.updates || st.updates - st.accepted - dropped > refused)
        fail("statistics do not add up: %llu updates, %llu accepted, %llu dropped",
             (unsigned long long)st.updates, (unsigned long long)st.accepted,
             (unsigned long long)dropped);
    if (ck_filter_sources(flt) > cfg.max_sources)
        fail("%zu sources held, max %u", ck_filter_sources(flt), cfg.max_sources);
    if (rep) {
        ck_reputation_statistics rs;
        ck_reputation_get_statistics(rep, &rs);
        if (rs.sources > rc.max_sources)
            fail("reputation holds %llu sources, max %u", (unsigned long long)rs.sources,
                 rc.max_sources);
    }
    ck_filter_free(flt);
    ck_reputation_free(rep);
    return 0;
}

#ifdef CK_FUZZ_STANDALONE
/* -- standalone driver ------------------------------------------------------------ */

static uint64_t state = 0x853c49e6748fea9bULL;

static uint64_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static size_t below(size_t n)
{
    return (size_t)(next() % n);
}

#define BUF_MAX 16384
static uint8_t buf[BUF_MAX];
static size_t blen;

static void put(uint8_t b)
{
    if (blen < BUF_MAX)
        buf[blen++] = b;
}

/* A program that reaches deep: a sensible topic, a swarm agreeing near 10
 * with some liars, estimates after each round, with edge values mixed in. */
static void build(void)
{
    blen = 0;
    int vector = below(4) == 0;
    uint8_t kind = (uint8_t)(vector ? CK_CONSENSUS_VECTOR : below(4));
    put(kind);
    if (kind == CK_CONSENSUS_VECTOR)
        put((uint8_t)below(4)); /* dims - 1 */
    put((uint8_t)below(4));                    /* min_sources - 1 */
    put((uint8_t)(below(16) ? below(30) : 250)); /* max_sources */
    uint8_t knobs = (uint8_t)(next() & 0x3c);  /* no bounds, random rest */
    put(knobs);
    put((uint8_t)below(100)); /* weight cap */
    put((uint8_t)below(98));  /* probation share */
    for (int i = 0; i < 3; i++)
        put((uint8_t)(40 + below(120))); /* agree, reject, default sigma */
    if (knobs & 8) /* min sigma */
        put((uint8_t)below(60));
    put((uint8_t)(20 + below(150))); /* half-life */
    put((uint8_t)(50 + below(150))); /* expire half-lives */
    if (knobs & 16)
        put((uint8_t)(10 + below(100)));
    put((uint8_t)below(64)); /* reputation size */
    put((uint8_t)below(8));
    put((uint8_t)(50 + below(50)));
    put((uint8_t)below(256)); /* start time */
    unsigned sources = 3 + (unsigned)below(24);
    put((uint8_t)(sources - 1));
    unsigned rounds = 1 + (unsigned)below(12);
    unsigned dims = kind == CK_CONSENSUS_VECTOR ? 1 + (unsigned)(buf[1] % 16) : 1;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned s = 0; s < sources; s++) {
            int liar = s % 4 == 1;
            put((uint8_t)below(9)); /* update */
            put((uint8_t)s);
            for (unsigned d = 0; d < dims; d++) {
                if (below(40) == 0) {
                    put(1); /* an edge value */
                    put((uint8_t)next());
                } else {
                    put(3); /* near 10, or far for a liar */
                    put((uint8_t)(liar ? 100 + below(60) : below(40)));
                }
            }
            put((uint8_t)below(4)); /* label */
            uint8_t flags = (uint8_t)(next() & (below(8) ? 0x34 : 0xff));
            put(flags);
            if (flags & 1) {
                put(1);
                put((uint8_t)next());
            } else {
                put((uint8_t)next());
            }
            if (flags & 2) {
                put(1);
                put((uint8_t)next());
            } else {
                put((uint8_t)below(200));
            }
            if (flags & 4) {
                if (flags & 8) {
                    put(1);
                    put((uint8_t)next());
                } else {
                    put((uint8_t)(liar && below(2) ? 0 : below(200)));
                }
            }
            if (flags & 16)
                put((uint8_t)below(200));
            if (flags & 32)
                put((uint8_t)below(200));
            if (flags & 64)
                put((uint8_t)next());
            if ((flags & 192) == 192) {
                put(1);
                put((uint8_t)next());
            }
        }
        put(9); /* estimate */
        put(0);
        put((uint8_t)below(16));
        if (below(3) == 0) {
            uint8_t call = (uint8_t)next();
            put(13); /* a reputation call */
            put((uint8_t)below(sources));
            put(call);
            if (!(call & 5)) { /* a link quality: an edge value */
                put(1);
                put((uint8_t)next());
            }
        }
        put(12); /* time passes */
        put(0);
        put((uint8_t)below(64));
    }
}

static void mutate(void)
{
    unsigned rounds = (unsigned)below(4);
    for (unsigned k = 0; k < rounds && blen; k++) {
        size_t at = below(blen);
        switch (below(3)) {
        case 0: buf[at] ^= (uint8_t)(1u << below(8)); break;
        case 1: buf[at] = (uint8_t)next(); break;
        default: blen = at; /* truncate */
        }
    }
}

static void feed(void)
{
    uint8_t *copy = malloc(blen ? blen : 1);
    if (!copy)
        abort();
    memcpy(copy, buf, blen);
    LLVMFuzzerTestOneInput(copy, blen);
    free(copy);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    for (long i = 0; i < n; i++) {
        if (i % 4 == 0) {
            blen = 1 + below(i % 64 ? 600 : 8000);
            for (size_t j = 0; j < blen; j++)
                buf[j] = (uint8_t)next();
        } else {
            build();
            if (i % 3)
                mutate();
        }
        feed();
    }
    for (int a = 2; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f)
            continue;
        blen = fread(buf, 1, BUF_MAX, f);
        fclose(f);
        feed();
    }
    printf("fuzz_consensus: %ld inputs (%lu updates accepted, %lu estimates, %lu ok, %lu "
           "divisions by zero), no crash\n",
           n, accepted_updates, estimates, ok_estimates, divisions);
    return 0;
}
#endif
