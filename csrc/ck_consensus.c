/*
 * ck_consensus.c - weighted consensus filter and reputation table (see
 * ck_consensus.h for the contract).
 *
 * Every step follows cloudkernel/consensus/_consensus_ref.py; the comments
 * name the reference's functions and its estimate steps (1-6).  Sums run in
 * the reference's order and every formula is written as it writes it, so the
 * results are bit-identical.  Where this file computes something in a
 * different way (sorting, a leave-one-out median, the weight cap's early
 * exit), the comment there says why the result is the same.
 */
#include "ck_consensus.h"
#include "ck_rank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX
#define MAD_TO_SIGMA 1.4826

/* -- floating-point helpers ------------------------------------------------ */

/* Correctly rounded, as IEEE 754 requires and Python's math.sqrt returns. */
static inline double ck_sqrt(double x)
{
    return sqrt(x);
}

static inline uint64_t bits_of(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline double double_of(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* math.floor(now / interval) for |now| <= MAX_TIME and interval >= 0.001:
 * the quotient is within +-1e15, so the truncation is exact. */
static inline int64_t floor_slot(double now, double interval)
{
    double q = now / interval;
    int64_t t = (int64_t)q;
    if ((double)t > q)
        t--;
    return t;
}

/* math.exp2(y): Python calls the C library's exp2 (y is finite or -inf,
 * and the result <= 1 never overflows). */
static inline double pow2(double y)
{
    return exp2(y);
}

/* -- sorting ----------------------------------------------------------------
 *
 * The reference sorts by (value, source id), or sorts bare values where only
 * the values are used.  Here the keys carry an index that follows source
 * order (a position among the fresh readings, candidates or survivors, all
 * kept in source order), and (value, index) is compared as the reference
 * compares (value, source): == first, as Python's tuple comparison does, so
 * -0.0 and 0.0 tie too.  The order is then total, and any correct sort
 * gives the reference's.  Insertion sort over runs of 64, merged bottom-up
 * (a merge whose halves are already in order is skipped): fast on the small
 * and the nearly sorted input it gets.
 */

typedef struct {
    double key;
    uint32_t index;
} skey;

typedef struct {
    int64_t key;
    uint32_t index;
} lkey;

#define SORT_RUN 64

/* name(a, n, tmp): sort a[0 .. n) ascending by LESS; tmp holds n elements. */
#define DEFINE_SORT(name, type, LESS)                                                  \
    static void name(type *a, size_t n, type *tmp)                                     \
    {                                                                                  \
        for (size_t lo = 0; lo < n; lo += SORT_RUN) {                                  \
            size_t hi = n - lo > SORT_RUN ? lo + SORT_RUN : n;                         \
            for (size_t i = lo + 1; i < hi; i++) {                                     \
                if (!LESS(a[i], a[i - 1]))                                             \
                    continue;                                                          \
                type v = a[i];                                                         \
                size_t j = i;                                                          \
                do {                                                                   \
                    a[j] = a[j - 1];                                                   \
                    j--;                                                               \
                } while (j > lo && LESS(v, a[j - 1]));                                 \
                a[j] = v;                                                              \
            }                                                                          \
        }                                                                              \
        for (size_t width = SORT_RUN; width < n; width *= 2) {                         \
            for (size_t lo = 0; lo + width < n; lo += 2 * width) {                     \
                size_t mid = lo + width, hi = n - mid > width ? mid + width : n;       \
                if (!LESS(a[mid], a[mid - 1]))                                         \
                    continue;                                                          \
                size_t left = mid - lo, i = 0, j = mid, k = lo;                        \
                memcpy(tmp, a + lo, left * sizeof(type));                              \
                while (i < left && j < hi)                                             \
                    a[k++] = LESS(a[j], tmp[i]) ? a[j++] : tmp[i++];                   \
                while (i < left)                                                       \
                    a[k++] = tmp[i++];                                                 \
            }                                                                          \
        }                                                                              \
    }

#define KEY_LESS(x, y) ((x).key < (y).key || ((x).key == (y).key && (x).index < (y).index))
#define VALUE_LESS(x, y) ((x) < (y))
DEFINE_SORT(sort_skeys, skey, KEY_LESS)
DEFINE_SORT(sort_lkeys, lkey, KEY_LESS)
DEFINE_SORT(sort_doubles, double, VALUE_LESS) /* bare values: only they are used */

/* -- reputation -------------------------------------------------------------
 *
 * Entries live in a pool; an open-addressing table (linear probing, at most
 * half full, backward-shift deletion) maps a source id to its pool index.
 * The reference evicts the entry with the smallest (last judged, source):
 * never-judged entries (last judged -1) first, lowest id first, kept here in
 * a min-heap by id; then the one judged longest ago, the head of a list in
 * judging order.
 */

typedef struct {
    uint64_t source;
    double agree, disagree, link; /* a, b, link quality */
    uint64_t rounds;
    int64_t last;        /* clock of the last judgment; -1: never judged */
    uint32_t prev, next; /* judging-order list, when judged */
    uint32_t heap_pos;   /* position in the never-judged heap, when not */
} rep_entry;

struct ck_reputation {
    ck_reputation_config cfg;
    rep_entry *pool;
    uint32_t *free_list;
    uint32_t free_count;
    uint32_t *table; /* pool index + 1; 0 is empty */
    uint32_t mask;
    uint32_t *heap;
    uint32_t heap_count;
    uint32_t head, tail; /* judged longest ago, most recently */
    uint32_t count;
    int64_t clock;
    uint64_t judgments, disagreements, evicted;
    uint64_t seed;
    uint64_t version; /* changes whenever an entry is added or removed */
};

void ck_reputation_config_default(ck_reputation_config *cfg)
{
    cfg->forgetting = 0.9;
    cfg->disagreement_forgetting = 0.1;
    cfg->disagreement_weight = 6.0;
    cfg->prior_agree = 0.5;
    cfg->prior_disagree = 0.5;
    cfg->probation_rounds = 50;
    cfg->flag_below = 0.5;
    cfg->distrust_below = 0.1;
    cfg->max_sources = 4096;
}

static int positive_finite(double x)
{
    return isfinite(x) && x > 0.0;
}

static int reputation_config_ok(const ck_reputation_config *c)
{
    return c->forgetting >= 0.0 && c->forgetting < 1.0 && c->disagreement_forgetting >= 0.0 &&
           c->disagreement_forgetting < 1.0 && positive_finite(c->disagreement_weight) &&
           positive_finite(c->prior_agree) && positive_finite(c->prior_disagree) &&
           c->probation_rounds <= CK_CONSENSUS_MAX_PROBATION_ROUNDS && c->flag_below >= 0.0 &&
           c->flag_below <= 1.0 && c->distrust_below >= 0.0 && c->distrust_below <= 1.0 &&
           c->distrust_below <= c->flag_below && c->max_sources >= 1 &&
           c->max_sources <= CK_REPUTATION_MAX_SOURCES;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline uint32_t rep_home(const ck_reputation *r, uint64_t source)
{
    return (uint32_t)(mix64(source ^ r->seed) & r->mask);
}

int ck_reputation_new(const ck_reputation_config *cfg, ck_reputation **out)
{
    if (!cfg || !out || !reputation_config_ok(cfg))
        return CK_EINVAL;
    ck_reputation *r = calloc(1, sizeof *r);
    if (!r)
        return CK_ENOMEM;
    r->cfg = *cfg;
    uint32_t n = cfg->max_sources, size = 2;
    while (size < 2 * n)
        size *= 2;
    r->mask = size - 1;
    r->pool = calloc(n, sizeof *r->pool);
    r->free_list = malloc((size_t)n * sizeof *r->free_list);
    r->table = calloc(size, sizeof *r->table);
    r->heap = malloc((size_t)n * sizeof *r->heap);
    if (!r->pool || !r->free_list || !r->table || !r->heap) {
        ck_reputation_free(r);
        return CK_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        r->free_list[i] = n - 1 - i;
    r->free_count = n;
    r->head = r->tail = NIL;
    r->version = 1;
    /* The ids only pick table slots (no result depends on them); a
     * per-table seed keeps chosen ids from piling up in one probe run. */
    r->seed = mix64((uint64_t)(uintptr_t)r ^ 0x9e3779b97f4a7c15ULL);
    *out = r;
    return CK_OK;
}

void ck_reputation_free(ck_reputation *r)
{
    if (!r)
        return;
    free(r->pool);
    free(r->free_list);
    free(r->table);
    free(r->heap);
    free(r);
}

const ck_reputation_config *ck_reputation_get_config(const ck_reputation *r)
{
    return &r->cfg;
}

static uint32_t rep_find(const ck_reputation *r, uint64_t source)
{
    uint32_t i = rep_home(r, source);
    for (;;) {
        uint32_t v = r->table[i];
        if (v == 0)
            return NIL;
        if (r->pool[v - 1].source == source)
            return v - 1;
        i = (i + 1) & r->mask;
    }
}

/* Never-judged heap, by source id. */
static void heap_place(ck_reputation *r, uint32_t pos, uint32_t idx)
{
    r->heap[pos] = idx;
    r->pool[idx].heap_pos = pos;
}

static void heap_up(ck_reputation *r, uint32_t pos)
{
    uint32_t idx = r->heap[pos];
    uint64_t key = r->pool[idx].source;
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (r->pool[r->heap[parent]].source <= key)
            break;
        heap_place(r, pos, r->heap[parent]);
        pos = parent;
    }
    heap_place(r, pos, idx);
}

static void heap_down(ck_reputation *r, uint32_t pos)
{
    uint32_t idx = r->heap[pos];
    uint64_t key = r->pool[idx].source;
    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= r->heap_count)
            break;
        if (child + 1 < r->heap_count &&
            r->pool[r->heap[child + 1]].source < r->pool[r->heap[child]].source)
            child++;
        if (key <= r->pool[r->heap[child]].source)
            break;
        heap_place(r, pos, r->heap[child]);
        pos = child;
    }
    heap_place(r, pos, idx);
}

static void heap_remove(ck_reputation *r, uint32_t idx)
{
    uint32_t pos = r->pool[idx].heap_pos, last = r->heap[--r->heap_count];
    if (last == idx)
        return;
    heap_place(r, pos, last);
    heap_down(r, pos);
    heap_up(r, r->pool[last].heap_pos);
}

static void list_unlink(ck_reputation *r, uint32_t idx)
{
    rep_entry *e = &r->pool[idx];
    if (e->prev != NIL)
        r->pool[e->prev].next = e->next;
    else
        r->head = e->next;
    if (e->next != NIL)
        r->pool[e->next].prev = e->prev;
    else
        r->tail = e->prev;
}

static void list_append(ck_reputation *r, uint32_t idx)
{
    rep_entry *e = &r->pool[idx];
    e->prev = r->tail;
    e->next = NIL;
    if (r->tail != NIL)
        r->pool[r->tail].next = idx;
    else
        r->head = idx;
    r->tail = idx;
}

static void rep_remove(ck_reputation *r, uint32_t idx)
{
    rep_entry *e = &r->pool[idx];
    /* backward-shift deletion from the table */
    uint32_t i = rep_home(r, e->source);
    while (r->table[i] != idx + 1)
        i = (i + 1) & r->mask;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & r->mask;
        uint32_t v = r->table[j];
        if (v == 0)
            break;
        uint32_t home = rep_home(r, r->pool[v - 1].source);
        /* the entry at j stays if its home lies cyclically in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        r->table[i] = v;
        i = j;
    }
    r->table[i] = 0;
    if (e->last < 0)
        heap_remove(r, idx);
    else
        list_unlink(r, idx);
    r->free_list[r->free_count++] = idx;
    r->count--;
    r->version++;
}

/* Reputation._entry: the source's entry, added (evicting when full). */
static uint32_t rep_entry_for(ck_reputation *r, uint64_t source)
{
    uint32_t idx = rep_find(r, source);
    if (idx != NIL)
        return idx;
    if (r->count >= r->cfg.max_sources) {
        rep_remove(r, r->heap_count ? r->heap[0] : r->head);
        r->evicted++;
    }
    idx = r->free_list[--r->free_count];
    rep_entry *e = &r->pool[idx];
    e->source = source;
    e->agree = 0.0;
    e->disagree = 0.0;
    e->rounds = 0;
    e->last = -1;
    e->link = 1.0;
    e->prev = e->next = NIL;
    uint32_t i = rep_home(r, source);
    while (r->table[i] != 0)
        i = (i + 1) & r->mask;
    r->table[i] = idx + 1;
    r->count++;
    r->version++;
    r->heap[r->heap_count] = idx;
    e->heap_pos = r->heap_count++;
    heap_up(r, e->heap_pos);
    return idx;
}

static inline double rep_formula(const ck_reputation_config *c, double a, double b)
{
    return (a + c->prior_agree) / (a + b + c->prior_agree + c->prior_disagree);
}

double ck_reputation_value(const ck_reputation *r, uint64_t source)
{
    uint32_t idx = rep_find(r, source);
    if (idx == NIL)
        return rep_formula(&r->cfg, 0.0, 0.0);
    return rep_formula(&r->cfg, r->pool[idx].agree, r->pool[idx].disagree);
}

uint64_t ck_reputation_rounds(const ck_reputation *r, uint64_t source)
{
    uint32_t idx = rep_find(r, source);
    return idx == NIL ? 0 : r->pool[idx].rounds;
}

int ck_reputation_flagged(const ck_reputation *r, uint64_t source)
{
    return ck_reputation_value(r, source) < r->cfg.flag_below;
}

int ck_reputation_in_probation(const ck_reputation *r, uint64_t source)
{
    return ck_reputation_rounds(r, source) < r->cfg.probation_rounds;
}

double ck_reputation_link_quality(const ck_reputation *r, uint64_t source)
{
    uint32_t idx = rep_find(r, source);
    return idx == NIL ? 1.0 : r->pool[idx].link;
}

int ck_reputation_set_link_quality(ck_reputation *r, uint64_t source, double quality)
{
    if (!(quality > 0.0 && quality <= 1.0))
        return CK_EINVAL;
    /* A link that delivers nothing still must not zero a weight. */
    r->pool[rep_entry_for(r, source)].link =
        quality >= CK_CONSENSUS_MIN_LINK_QUALITY ? quality : CK_CONSENSUS_MIN_LINK_QUALITY;
    return CK_OK;
}

/* Reputation.record on the entry at idx. */
static void rep_judge(ck_reputation *r, uint32_t idx, int agreed)
{
    const ck_reputation_config *c = &r->cfg;
    rep_entry *e = &r->pool[idx];
    if (agreed) {
        e->agree = c->forgetting * e->agree + 1.0;
        e->disagree = c->forgetting * e->disagree;
    } else {
        e->agree = c->disagreement_forgetting * e->agree;
        e->disagree = c->forgetting * e->disagree + c->disagreement_weight;
        r->disagreements++;
    }
    e->rounds++;
    if (e->last < 0)
        heap_remove(r, idx);
    else
        list_unlink(r, idx);
    e->last = r->clock++;
    list_append(r, idx);
    r->judgments++;
}

void ck_reputation_record(ck_reputation *r, uint64_t source, int agreed)
{
    rep_judge(r, rep_entry_for(r, source), agreed);
}

void ck_reputation_forget(ck_reputation *r, uint64_t source)
{
    uint32_t idx = rep_find(r, source);
    if (idx != NIL)
        rep_remove(r, idx);
}

void ck_reputation_get_statistics(const ck_reputation *r, ck_reputation_statistics *out)
{
    out->sources = r->count;
    out->judgments = r->judgments;
    out->disagreements = r->disagreements;
    out->evicted = r->evicted;
}

/* -- filter: state ----------------------------------------------------------- */

/* The sorts whose order is remembered from one estimate to the next. */
enum { ORDER_OPEN, ORDER_CLOSE, ORDER_SHARE, ORDERS };

/* The latest reading of one source (the reference's _Reading); its
 * components are in ck_filter.comps. */
typedef struct {
    double time, confidence, sigma, half_life, expires;
    int64_t label;
    int64_t reach_slot;
    double evap_y, evap; /* the last evaporation computed: 2^evap_y */
    uint32_t rep_idx;     /* the source's reputation entry (NIL: none) ... */
    uint64_t rep_version; /* ... while the table's version is this */
    uint8_t reach, judged;
} reading_t;

/* Per-estimate working values of one fresh reading (the reference's _Fresh). */
typedef struct {
    uint64_t source;
    reading_t *reading;
    const double *comps;
    double x, trust, var, evap, rep, link, weight;
    double sd;     /* sqrt(var), which the reference takes where it needs it */
    uint32_t slot; /* the reading's pool slot */
    uint32_t cand; /* index among the candidates, or NIL */
    uint8_t code, probation, in_clique, verdict;
} fresh_t;

struct ck_filter {
    ck_filter_config cfg;
    ck_reputation *rep;
    unsigned width; /* components per reading: dims, 0 for categories */
    uint32_t count;
    uint64_t *ids;   /* held sources, ascending */
    uint32_t *slots; /* their readings' pool slots */
    reading_t *readings;
    double *comps; /* slot * width */
    uint32_t *free_slots;
    uint32_t free_count;
    uint64_t updates, accepted, dropped[CK_CONSENSUS_DROP_REASONS];
    uint64_t evicted, estimates, judged;
    /* estimate working memory, max_sources (n) elements unless noted */
    fresh_t *fresh;
    uint32_t *fresh_of; /* per held source: fresh index or NIL */
    uint32_t *cand, *list, *surv;
    double *w_in, *w_out, *w2_in, *w2_out, *xs, *dv, *dtmp, *dist, *shares, *shares2;
    double *prefix; /* n + 1 */
    double *others; /* n * dims */
    uint32_t *ranks;
    uint8_t *prob, *prob2;
    skey *keys, *keys_tmp, *keys_tmp2, *opens, *closes, *ranked; /* keys: n * dims */
    uint32_t *rank_slots; /* NIL between sorts */
    uint32_t *rank;       /* [kind * n + slot]: position in the last sort of a kind ... */
    uint64_t *ranked_in;  /* ... if that sort was this one */
    uint64_t serial, last_sort[ORDERS];
    lkey *lkeys, *lkeys_tmp;
    double *lo, *hi;
    ck_consensus_record *records;
    ck_rank_fn rank_kernel; /* NULL: comparison sorts only (see rank_sort) */
    double *rank_keys;
    uint32_t *rank_pos;
};

void ck_filter_config_default(ck_filter_config *c)
{
    c->kind = CK_CONSENSUS_SCALAR;
    c->dims = 1;
    c->min_sources = 3;
    c->max_sources = 64;
    c->lower = -INFINITY;
    c->upper = INFINITY;
    c->label_lower = INT64_MIN;
    c->label_upper = INT64_MAX;
    c->default_sigma = 1.0;
    c->min_sigma = 0.0;
    c->default_half_life = 10.0;
    c->expire_half_lives = 10.0;
    c->agree_sigmas = 3.0;
    c->reject_sigmas = 3.5;
    c->max_weight_share = 0.5;
    c->fault_model = CK_CONSENSUS_BYZANTINE;
    c->probation_share = 0.2;
    c->reach_interval = 1.0;
}

static int filter_config_ok(const ck_filter_config *c)
{
    if (c->kind < CK_CONSENSUS_SCALAR || c->kind > CK_CONSENSUS_INTERVAL)
        return 0;
    if (c->dims < 1 || c->dims > CK_CONSENSUS_MAX_DIMS ||
        (c->kind != CK_CONSENSUS_VECTOR && c->dims != 1))
        return 0;
    if (c->min_sources < 1 || c->min_sources > CK_CONSENSUS_MAX_SOURCES ||
        c->max_sources < c->min_sources || c->max_sources > CK_CONSENSUS_MAX_SOURCES)
        return 0;
    if (c->lower != c->lower || c->upper != c->upper)
        return 0;
    return positive_finite(c->default_sigma) && c->default_sigma <= CK_CONSENSUS_MAX_SIGMA &&
           isfinite(c->min_sigma) && c->min_sigma >= 0.0 &&
           c->min_sigma <= CK_CONSENSUS_MAX_SIGMA && positive_finite(c->default_half_life) &&
           positive_finite(c->expire_half_lives) && positive_finite(c->agree_sigmas) &&
           positive_finite(c->reject_sigmas) && c->max_weight_share > 0.0 &&
           c->max_weight_share <= 1.0 &&
           (c->fault_model == CK_CONSENSUS_BYZANTINE ||
            c->fault_model == CK_CONSENSUS_CONSISTENT) &&
           c->probation_share > 0.0 && c->probation_share < 1.0 &&
           positive_finite(c->reach_interval) && c->reach_interval >= 0.001;
}

int ck_filter_new(const ck_filter_config *cfg, ck_reputation *rep, ck_filter **out)
{
    if (!cfg || !out || !filter_config_ok(cfg))
        return CK_EINVAL;
    ck_filter *f = calloc(1, sizeof *f);
    if (!f)
        return CK_ENOMEM;
    f->cfg = *cfg;
    f->rep = rep;
    f->width = cfg->kind == CK_CONSENSUS_CATEGORY ? 0 : cfg->dims;
    size_t n = cfg->max_sources, d = cfg->dims;
    int ok = 1;
#define ALLOC(field, count)                                                  \
    do {                                                                     \
        f->field = calloc((count) > 0 ? (count) : 1, sizeof *f->field);      \
        ok = ok && f->field != NULL;                                         \
    } while (0)
    ALLOC(ids, n);
    ALLOC(slots, n);
    ALLOC(readings, n);
    ALLOC(comps, n * f->width);
    ALLOC(free_slots, n);
    ALLOC(fresh, n);
    ALLOC(fresh_of, n);
    ALLOC(cand, n);
    ALLOC(list, n);
    ALLOC(surv, n);
    ALLOC(w_in, n);
    ALLOC(w_out, n);
    ALLOC(w2_in, n);
    ALLOC(w2_out, n);
    ALLOC(xs, n);
    ALLOC(dv, n + 1);
    ALLOC(dtmp, n + 1);
    ALLOC(dist, n);
    ALLOC(shares, n);
    ALLOC(shares2, n);
    ALLOC(ranked, n);
    ALLOC(prefix, n + 1);
    ALLOC(others, n * d);
    ALLOC(ranks, n);
    ALLOC(prob, n);
    ALLOC(prob2, n);
    ALLOC(keys, n * d);
    ALLOC(keys_tmp, n);
    ALLOC(keys_tmp2, n);
    ALLOC(rank_slots, n);
    ALLOC(rank, n * ORDERS);
    ALLOC(ranked_in, n * ORDERS);
    ALLOC(opens, n);
    ALLOC(closes, n);
    ALLOC(lkeys, n);
    ALLOC(lkeys_tmp, n);
    ALLOC(lo, n);
    ALLOC(hi, n);
    ALLOC(records, n);
    ALLOC(rank_keys, n);
    ALLOC(rank_pos, n);
#undef ALLOC
    if (!ok) {
        ck_filter_free(f);
        return CK_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        f->free_slots[i] = (uint32_t)(n - 1 - i);
        f->rank_slots[i] = NIL;
    }
    f->free_count = (uint32_t)n;
    f->rank_kernel = ck_rank_kernel();
    *out = f;
    return CK_OK;
}

void ck_filter_free(ck_filter *f)
{
    if (!f)
        return;
    void *blocks[] = {f->ids, f->slots, f->readings, f->comps, f->free_slots, f->fresh,
                      f->fresh_of, f->cand, f->list, f->surv, f->w_in, f->w_out, f->w2_in,
                      f->w2_out, f->xs, f->dv, f->dtmp, f->dist, f->shares, f->shares2,
                      f->ranked, f->prefix, f->others, f->ranks, f->prob, f->prob2, f->keys,
                      f->keys_tmp, f->keys_tmp2, f->rank_slots, f->rank, f->ranked_in, f->opens,
                      f->closes, f->lkeys, f->lkeys_tmp, f->lo, f->hi, f->records,
                      f->rank_keys, f->rank_pos};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        free(blocks[i]);
    free(f);
}

const ck_filter_config *ck_filter_get_config(const ck_filter *f)
{
    return &f->cfg;
}

size_t ck_filter_sources(const ck_filter *f)
{
    return f->count;
}

void ck_filter_get_statistics(const ck_filter *f, ck_filter_statistics *out)
{
    out->updates = f->updates;
    out->accepted = f->accepted;
    memcpy(out->dropped, f->dropped, sizeof out->dropped);
    out->evicted = f->evicted;
    out->estimates = f->estimates;
    out->judged = f->judged;
}

/* Position of source among the held ones, or where it would go (*found 0). */
static uint32_t find_position(const ck_filter *f, uint64_t source, int *found)
{
    uint32_t lo = 0, hi = f->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (f->ids[mid] < source)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < f->count && f->ids[lo] == source;
    return lo;
}

static void remove_position(ck_filter *f, uint32_t pos)
{
    f->free_slots[f->free_count++] = f->slots[pos];
    memmove(f->ids + pos, f->ids + pos + 1, (f->count - pos - 1) * sizeof *f->ids);
    memmove(f->slots + pos, f->slots + pos + 1, (f->count - pos - 1) * sizeof *f->slots);
    f->count--;
}

/* The held source whose reading was taken longest ago; ties go to the
 * lowest id (the first in id order). */
static uint32_t oldest_position(const ck_filter *f)
{
    uint32_t best = 0;
    for (uint32_t p = 1; p < f->count; p++)
        if (f->readings[f->slots[p]].time < f->readings[f->slots[best]].time)
            best = p;
    return best;
}

/* ConsensusFilter._mark_reach. */
static void mark_reach(const ck_filter *f, reading_t *rd, double now)
{
    int64_t slot = floor_slot(now, f->cfg.reach_interval);
    if (slot > rd->reach_slot) {
        int64_t shift = slot - rd->reach_slot;
        rd->reach = shift < 8 ? (uint8_t)(((unsigned)rd->reach << shift) | 1u) : 1;
        rd->reach_slot = slot;
    } else {
        int64_t back = rd->reach_slot - slot;
        if (back < 8)
            rd->reach |= (uint8_t)(1u << back);
    }
}

/* ConsensusFilter._reach_now, given floor(now / reach_interval). */
static uint8_t reach_now(const reading_t *rd, int64_t now_slot)
{
    int64_t shift = now_slot - rd->reach_slot;
    if (shift <= 0)
        return rd->reach;
    return shift < 8 ? (uint8_t)((unsigned)rd->reach << shift) : 0;
}

/* One step of _Reading.key()'s tuple comparison: unequal elements decide
 * (return 1 when the candidate's is smaller, 0 when larger); equal ones pass
 * to the next. */
#define KEY_STEP(a, b)                \
    do {                              \
        if ((a) != (b))               \
            return (a) < (b) ? 1 : 0; \
    } while (0)

/* candidate.key() <= reading.key(), the tuples (time, label, *comps,
 * confidence, sigma, half_life, expires): the first unequal element decides,
 * and equal keys count as older.  No element is NaN. */
static int key_not_newer(const reading_t *c, const double *cc, const reading_t *r,
                         const double *rc, unsigned width)
{
    KEY_STEP(c->time, r->time);
    KEY_STEP(c->label, r->label);
    for (unsigned d = 0; d < width; d++)
        KEY_STEP(cc[d], rc[d]);
    KEY_STEP(c->confidence, r->confidence);
    KEY_STEP(c->sigma, r->sigma);
    KEY_STEP(c->half_life, r->half_life);
    KEY_STEP(c->expires, r->expires);
    return 1;
}

void ck_filter_count_refused(ck_filter *f, int reason)
{
    f->updates++;
    if (reason >= 1 && reason <= CK_CONSENSUS_DROP_REASONS)
        f->dropped[reason - 1]++;
}

/* _values() after the type checks, then update()'s checks, in their order. */
static int check_reading(const ck_filter *f, const ck_consensus_reading *in, double *sigma_out)
{
    const ck_filter_config *c = &f->cfg;
    double error = 0.0;
    if (c->kind == CK_CONSENSUS_CATEGORY) {
        if (!(in->label >= c->label_lower && in->label <= c->label_upper))
            return CK_CONSENSUS_OUT_OF_RANGE;
    } else {
        if (c->kind == CK_CONSENSUS_INTERVAL)
            error = in->error;
        int finite = isfinite(error);
        for (unsigned d = 0; d < f->width; d++)
            finite = finite && isfinite(in->comps[d]);
        if (!finite)
            return CK_CONSENSUS_NON_FINITE;
        for (unsigned d = 0; d < f->width; d++) {
            double x = in->comps[d];
            if (!(c->lower <= x && x <= c->upper) || fabs(x) > CK_CONSENSUS_MAX_MAGNITUDE)
                return CK_CONSENSUS_OUT_OF_RANGE;
        }
    }
    if (!(in->confidence >= CK_CONSENSUS_MIN_CONFIDENCE && in->confidence <= 1.0))
        return CK_CONSENSUS_BAD_CONFIDENCE;
    double raw;
    if (c->kind == CK_CONSENSUS_INTERVAL) {
        raw = error / c->agree_sigmas;
        if (in->has_sigma || !(error >= 0.0 && error <= CK_CONSENSUS_MAX_SIGMA) ||
            raw > CK_CONSENSUS_MAX_SIGMA)
            return CK_CONSENSUS_BAD_SIGMA;
    } else if (!in->has_sigma) {
        raw = c->default_sigma;
    } else if (!(in->sigma > 0.0 && in->sigma <= CK_CONSENSUS_MAX_SIGMA)) {
        return CK_CONSENSUS_BAD_SIGMA;
    } else {
        raw = in->sigma;
    }
    double eff = raw >= c->min_sigma ? raw : c->min_sigma;
    if (!(eff >= CK_CONSENSUS_MIN_SIGMA))
        return CK_CONSENSUS_BAD_SIGMA;
    if (in->has_half_life &&
        !(in->half_life > 0.0 && in->half_life <= CK_CONSENSUS_MAX_TIME))
        return CK_CONSENSUS_BAD_LIFETIME;
    if (in->has_ttl && !(in->ttl > 0.0 && in->ttl <= CK_CONSENSUS_MAX_TIME))
        return CK_CONSENSUS_BAD_LIFETIME;
    *sigma_out = eff;
    return CK_CONSENSUS_ACCEPTED;
}

int ck_filter_update(ck_filter *f, uint64_t source, double now, const ck_consensus_reading *in)
{
    const ck_filter_config *c = &f->cfg;
    if (!(now >= -CK_CONSENSUS_MAX_TIME && now <= CK_CONSENSUS_MAX_TIME))
        return CK_EINVAL;
    f->updates++;
    double sigma = 0.0;
    int reason = check_reading(f, in, &sigma);
    if (reason != CK_CONSENSUS_ACCEPTED) {
        f->dropped[reason - 1]++;
        return reason;
    }

    reading_t cand;
    double comps[CK_CONSENSUS_MAX_DIMS];
    cand.half_life = in->has_half_life ? in->half_life
                     : in->has_ttl     ? INFINITY
                                       : c->default_half_life;
    if (in->has_ttl)
        cand.expires = now + in->ttl;
    else if (cand.half_life != INFINITY)
        cand.expires = now + cand.half_life * c->expire_half_lives;
    else
        cand.expires = INFINITY;
    for (unsigned d = 0; d < f->width; d++)
        comps[d] = in->comps[d] + 0.0; /* -0.0 becomes 0.0, as the reference's c + 0.0 */
    cand.label = c->kind == CK_CONSENSUS_CATEGORY ? in->label : 0;
    cand.confidence = in->confidence;
    cand.sigma = sigma;
    cand.time = now;

    int found;
    uint32_t pos = find_position(f, source, &found);
    reading_t *rd;
    if (!found) {
        if (f->count >= c->max_sources) {
            /* Keep the max_sources newest readings, whatever their order: the
             * oldest of the held ones and this one goes. */
            uint32_t oldest = oldest_position(f);
            double held = f->readings[f->slots[oldest]].time;
            if (now < held || (now == held && source < f->ids[oldest])) {
                f->dropped[CK_CONSENSUS_OLDER - 1]++;
                return CK_CONSENSUS_OLDER;
            }
            remove_position(f, oldest);
            f->evicted++;
            pos = find_position(f, source, &found);
        }
        uint32_t slot = f->free_slots[--f->free_count];
        memmove(f->ids + pos + 1, f->ids + pos, (f->count - pos) * sizeof *f->ids);
        memmove(f->slots + pos + 1, f->slots + pos, (f->count - pos) * sizeof *f->slots);
        f->ids[pos] = source;
        f->slots[pos] = slot;
        f->count++;
        rd = &f->readings[slot];
        memset(rd, 0, sizeof *rd);
        for (int kind = 0; kind < ORDERS; kind++)
            f->ranked_in[(size_t)kind * c->max_sources + slot] = 0; /* no remembered rank */
        rd->time = -INFINITY;
        rd->reach_slot = floor_slot(now, c->reach_interval);
        rd->evap_y = NAN; /* matches no exponent */
    } else {
        rd = &f->readings[f->slots[pos]];
    }
    double *rc = f->comps + (size_t)f->slots[pos] * f->width;
    mark_reach(f, rd, now);
    if (rd->time != -INFINITY && key_not_newer(&cand, comps, rd, rc, f->width)) {
        f->dropped[CK_CONSENSUS_OLDER - 1]++;
        return CK_CONSENSUS_OLDER;
    }
    memcpy(rc, comps, f->width * sizeof *rc);
    rd->label = cand.label;
    rd->confidence = cand.confidence;
    rd->sigma = cand.sigma;
    rd->half_life = cand.half_life;
    rd->expires = cand.expires;
    rd->time = cand.time;
    rd->judged = 0;
    f->accepted++;
    return CK_CONSENSUS_ACCEPTED;
}

void ck_filter_forget(ck_filter *f, uint64_t source)
{
    int found;
    uint32_t pos = find_position(f, source, &found);
    if (found)
        remove_position(f, pos);
}

/* -- filter: estimate helpers ------------------------------------------------ */

/*
 * _cap: lower the largest weights so none holds more than share of the total.
 *
 * The reference sorts the weights (descending) and sums them from the
 * smallest up (suffix[0]) only to test max <= share * suffix[0]; when the
 * weights are returned unchanged that is all it does.  Any summation order
 * lands within (n-1)u of the exact sum (u = 2^-53, nonnegative terms), so
 * when max is below share * (this sum) by a margin of (4n+8)u, the
 * reference's test passes too and the weights come back unchanged without
 * sorting.  Otherwise (close calls, huge or tiny totals) the reference's
 * steps run as written.
 */
static void cap_weights(ck_filter *f, const double *w, size_t n, double share, double *out)
{
    if (n == 0)
        return;
    double max = 0.0, sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] > max)
            max = w[i];
        sum += w[i];
    }
    if (isfinite(sum)) {
        double p = share * sum;
        if (p >= 0x1p-900 && max <= p * (1.0 - (4.0 * (double)n + 8.0) * 0x1p-53)) {
            memcpy(out, w, n * sizeof *out);
            return;
        }
    }
    double *asc = f->dv, *suffix = f->prefix; /* ordered[k] is asc[n - 1 - k] */
    memcpy(asc, w, n * sizeof *asc);
    sort_doubles(asc, n, f->dtmp);
    suffix[n] = 0.0;
    for (size_t k = n; k-- > 0;)
        suffix[k] = suffix[k + 1] + asc[n - 1 - k];
    if (asc[n - 1] <= share * suffix[0]) {
        memcpy(out, w, n * sizeof *out);
        return;
    }
    double cap = asc[0];
    for (size_t k = 1; k < n; k++) {
        if (share * (double)k >= 1.0)
            break;
        double level = share * suffix[k] / (1.0 - share * (double)k);
        if (asc[n - 1 - k] <= level) {
            cap = level;
            break;
        }
    }
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] <= cap ? w[i] : cap;
}

/* _limit: cap, then scale the sources in probation down to probation_share
 * of the total; w, prob and out are in the group's order. */
static void limit_weights(ck_filter *f, const double *w, const uint8_t *prob, size_t n,
                          double *out)
{
    const ck_filter_config *c = &f->cfg;
    cap_weights(f, w, n, c->max_weight_share, out);
    double new_weight = 0.0, old_weight = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (prob[i])
            new_weight += out[i];
        else
            old_weight += out[i];
    }
    if (new_weight == 0.0 || old_weight == 0.0)
        return;
    double limit = c->probation_share / (1.0 - c->probation_share) * old_weight;
    if (new_weight <= limit)
        return;
    double scale = limit / new_weight;
    for (size_t i = 0; i < n; i++)
        if (prob[i])
            out[i] = out[i] * scale;
}

/* _weighted_median of xs (ascending) with weights ws, leaving out index skip
 * (NIL: none): the running weight is the prefix sum over all of ws, less
 * ws[skip] past skip, and the total likewise. */
static double weighted_median(const double *xs, const double *ws, size_t n, uint32_t skip)
{
    double full = 0.0;
    for (size_t j = 0; j < n; j++)
        full += ws[j];
    double removed = skip != NIL ? ws[skip] : 0.0;
    double total = skip != NIL ? full - removed : full;
    double half = total * 0.5, cum = 0.0;
    size_t last = n; /* the reference's -1, which indexes its last element */
    for (size_t j = 0; j < n; j++) {
        cum += ws[j];
        if (j == skip)
            continue;
        last = j;
        double running = skip != NIL && j > skip ? cum - removed : cum;
        if (running > half)
            return xs[j];
        if (running == half) {
            size_t next = j + 1;
            if (next == skip)
                next++;
            return next < n ? (xs[j] + xs[next]) * 0.5 : xs[j];
        }
    }
    return n ? xs[last < n ? last : n - 1] : NAN;
}

/*
 * _weighted_median(xs, ws, skip=k) for each k of ranks[0 .. m), into out.
 *
 * With the prefix sums P (P[j+1] = P[j] + ws[j], the reference's prefix[j])
 * the running weight at j is P[j+1] before k and P[j+1] - ws[k] past it,
 * each side nondecreasing (the weights are nonnegative, and rounding is
 * monotone), and the total P[n] - ws[k] is at least its half.  The first j
 * whose running weight reaches half the total is the first such j before k
 * if there is one, else the first past k: two branch-free binary searches.
 */
static void weighted_median_loo(ck_filter *f, const double *xs, const double *ws, size_t n,
                                const uint32_t *ranks, size_t m, double *out)
{
    double *P = f->prefix;
    P[0] = 0.0;
    for (size_t j = 0; j < n; j++)
        P[j + 1] = P[j] + ws[j];
    for (size_t r = 0; r < m; r++) {
        size_t k = ranks[r], j, base, len;
        double removed = ws[k], half = (P[n] - removed) * 0.5, running;
        if (k > 0 && P[k] >= half) { /* before k, [0, k) */
            base = 0;
            len = k;
            while (len > 1) {
                size_t step = len / 2;
                base = P[base + step] >= half ? base : base + step;
                len -= step;
            }
            j = base;
            running = P[j + 1];
        } else if (k + 1 < n) { /* past k, [k + 1, n); the last one reaches half */
            base = k + 1;
            len = n - 1 - k;
            while (len > 1) {
                size_t step = len / 2;
                base = P[base + step] - removed >= half ? base : base + step;
                len -= step;
            }
            j = base;
            running = P[j + 1] - removed;
        } else {
            out[r] = weighted_median(xs, ws, n, (uint32_t)k);
            continue;
        }
        if (!(running >= half)) { /* unreachable: the total reaches its half */
            out[r] = weighted_median(xs, ws, n, (uint32_t)k);
        } else if (running > half) {
            out[r] = xs[j];
        } else {
            size_t next = j + 1;
            if (next == k)
                next++;
            out[r] = next < n ? (xs[j] + xs[next]) * 0.5 : xs[j];
        }
    }
}

/* _median of n >= 1 values (reordered in place). */
static double median_of(ck_filter *f, double *v, size_t n)
{
    sort_doubles(v, n, f->dtmp);
    size_t mid = n / 2;
    return n % 2 ? v[mid] : (v[mid - 1] + v[mid]) * 0.5;
}

/*
 * _median([abs(x - m) for x in xs]) for xs ascending (n >= 1).  x - m rounds
 * monotonically, so the deviations fall to the first x >= m and rise after
 * it: merging the two runs outward from there yields them in order.
 */
static double median_deviation(const double *xs, size_t n, double m)
{
    size_t split = 0;
    while (split < n && xs[split] - m < 0.0)
        split++;
    size_t l = split, r = split, mid = n / 2;
    double prev = 0.0, cur = 0.0;
    for (size_t k = 0; k <= mid; k++) {
        double next;
        if (r < n && (l == 0 || fabs(xs[r] - m) <= fabs(xs[l - 1] - m)))
            next = fabs(xs[r++] - m);
        else
            next = fabs(xs[--l] - m);
        prev = cur;
        cur = next;
    }
    return n % 2 ? cur : (prev + cur) * 0.5;
}

/* _distance: Euclidean, summed coordinate by coordinate. */
static double distance(const double *a, const double *b, unsigned dims)
{
    double total = 0.0;
    for (unsigned d = 0; d < dims; d++) {
        double diff = a[d] - b[d];
        total += diff * diff;
    }
    return ck_sqrt(total);
}

/*
 * Sort a[0 .. n) by counting ranks (ck_rank.h) where that beats the
 * comparison sort: a vector rank kernel runs here, n is within its range,
 * no key is NaN, and the indices ascend, so that the stable order by key
 * the ranks give is the order by (key, index).  Returns 0, untouched, when
 * any of that does not hold.
 */
static int rank_sort(ck_filter *f, skey *a, size_t n)
{
    if (!f->rank_kernel || n < 2 || n > CK_RANK_MAX)
        return 0;
    int fits = a[0].key == a[0].key;
    f->rank_keys[0] = a[0].key;
    for (size_t k = 1; k < n; k++) {
        f->rank_keys[k] = a[k].key;
        fits &= (a[k].key == a[k].key) & (a[k].index > a[k - 1].index);
    }
    if (!fits)
        return 0;
    f->rank_kernel(f->rank_keys, n, f->rank_pos);
    skey *out = f->keys_tmp;
    for (size_t k = 0; k < n; k++)
        out[f->rank_pos[k]] = a[k];
    memcpy(a, out, n * sizeof *a);
    return 1;
}

/* Sort a[0 .. n) by (key, index), with no memory of earlier sorts. */
static void sort_keys(ck_filter *f, skey *a, size_t n)
{
    if (!rank_sort(f, a, n))
        sort_skeys(a, n, f->keys_tmp);
}

/* Adjacent pairs out of order: a cheap measure of insertion sort's work. */
static size_t descents(const skey *a, size_t n)
{
    size_t count = 0;
    for (size_t k = 1; k < n; k++)
        count += KEY_LESS(a[k], a[k - 1]);
    return count;
}

/* The fresh reading of item a[k] (see sort_remembered). */
static uint32_t slot_of_item(const ck_filter *f, const skey *a, size_t k, const uint32_t *fresh_of)
{
    return f->fresh[fresh_of ? fresh_of[a[k].index] : a[k].index].slot;
}

/* Put a[0 .. n) in the order their readings had in the last sort of this
 * kind; readings not in it go last, in the order given. */
static void restore_order(ck_filter *f, int kind, skey *a, size_t n, const uint32_t *fresh_of)
{
    uint64_t last = f->last_sort[kind];
    const uint32_t *rank = f->rank + (size_t)kind * f->cfg.max_sources;
    const uint64_t *ranked_in = f->ranked_in + (size_t)kind * f->cfg.max_sources;
    uint32_t *slot = f->rank_slots; /* all NIL on entry and on return */
    skey *rest = f->keys_tmp, *out = f->keys_tmp2;
    size_t ranks = 0, extra = 0, m = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t at = slot_of_item(f, a, k, fresh_of), r = rank[at];
        if (last != 0 && ranked_in[at] == last && r < n && slot[r] == NIL) {
            slot[r] = (uint32_t)k;
            if (r >= ranks)
                ranks = r + 1;
        } else {
            rest[extra++] = a[k];
        }
    }
    for (size_t r = 0; r < ranks; r++) {
        if (slot[r] != NIL) {
            out[m++] = a[slot[r]];
            slot[r] = NIL;
        }
    }
    memcpy(out + m, rest, extra * sizeof *out);
    memcpy(a, out, n * sizeof *a);
}

/*
 * sort_skeys, starting from a as given when that is (nearly) sorted, else
 * from the order the same readings had in the last sort of this kind (the
 * result does not depend on it: the order is total).  a[k].index names an
 * item whose fresh reading is fresh_of[index], or index itself when
 * fresh_of is NULL.  Keys that follow the given order, or readings whose
 * values move little from one estimate to the next, then cost O(n), not
 * O(n^2).
 */
static void sort_remembered(ck_filter *f, int kind, skey *a, size_t n, const uint32_t *fresh_of)
{
    if (rank_sort(f, a, n)) {
        f->last_sort[kind] = 0; /* nothing remembered: the next sort starts afresh */
        return;
    }
    if (descents(a, n) * 16 > n)
        restore_order(f, kind, a, n, fresh_of);
    sort_skeys(a, n, f->keys_tmp);
    uint32_t *rank = f->rank + (size_t)kind * f->cfg.max_sources;
    uint64_t *ranked_in = f->ranked_in + (size_t)kind * f->cfg.max_sources;
    uint64_t serial = ++f->serial;
    for (size_t k = 0; k < n; k++) {
        uint32_t at = slot_of_item(f, a, k, fresh_of);
        rank[at] = (uint32_t)k;
        ranked_in[at] = serial;
    }
    f->last_sort[kind] = serial;
}

/* _mean: inverse-variance weighted mean per coordinate of items (fresh
 * indices, in source order): shares[k], sums[d] and the variance
 * sum a_k^2 V_k. */
static int weighted_mean(ck_filter *f, const uint32_t *items, size_t n, unsigned dims,
                         double *shares, double *sums, double *variance)
{
    const fresh_t *F = f->fresh;
    for (size_t k = 0; k < n; k++) {
        const fresh_t *s = &F[items[k]];
        if (s->var == 0.0)
            return CK_CONSENSUS_EDIVISION; /* trust / var */
        f->w2_in[k] = s->trust / s->var;
        f->prob2[k] = s->probation;
    }
    limit_weights(f, f->w2_in, f->prob2, n, shares);
    double total = 0.0;
    for (size_t k = 0; k < n; k++)
        total += shares[k];
    if (total == 0.0)
        return CK_CONSENSUS_EDIVISION; /* inverse[i] / total */
    for (unsigned d = 0; d < dims; d++)
        sums[d] = 0.0;
    double v = 0.0;
    for (size_t k = 0; k < n; k++) {
        const fresh_t *s = &F[items[k]];
        double a = shares[k] / total;
        shares[k] = a;
        for (unsigned d = 0; d < dims; d++)
            sums[d] += a * s->comps[d];
        v += a * a * s->var;
    }
    *variance = v;
    return 0;
}

/* _dispersed: the variance times the reduced chi-square of items about
 * sums, if that is over 1. */
static double dispersed(const ck_filter *f, const uint32_t *items, size_t n, unsigned dims,
                        const double *sums, double variance)
{
    if (n < 2)
        return variance;
    double chi = 0.0;
    for (size_t k = 0; k < n; k++) {
        const fresh_t *s = &f->fresh[items[k]];
        for (unsigned d = 0; d < dims; d++) {
            double r = s->comps[d] - sums[d];
            chi += r * r / s->var;
        }
    }
    chi = chi / (double)((size_t)dims * (n - 1));
    return chi > 1.0 ? variance * chi : variance;
}

#define HAUSMAN_INFLATE 2.0
#define HAUSMAN_SWITCH 9.0

/*
 * Step 5, _combine: the survivors' weighted mean and its sigma, then the
 * check against the `faults` heaviest survivors dominating the mean.  surv
 * (fresh indices in source order) and *ns become the sources used: the
 * survivors, or those left when the mean without the heaviest is taken.
 * Returns 0 or CK_CONSENSUS_EDIVISION.
 */
static int combine(ck_filter *f, uint32_t *surv, size_t *ns_io, unsigned dims, size_t faults,
                   double *sums, double *sigma)
{
    fresh_t *F = f->fresh;
    size_t ns = *ns_io;
    double *shares = f->shares, variance;
    int rc = weighted_mean(f, surv, ns, dims, shares, sums, &variance);
    if (rc)
        return rc;
    for (size_t k = 0; k < ns; k++) {
        F[surv[k]].weight = shares[k];
        F[surv[k]].code = CK_CONSENSUS_SOURCE_USED;
    }
    double inflated = dispersed(f, surv, ns, dims, sums, variance);
    if (!(faults > 0 && faults < ns)) {
        *sigma = ck_sqrt(inflated);
        return 0;
    }
    /* Heaviest first, equal shares in source order.  A share is NaN only
     * when the total weight is inf or NaN; the shares are then all NaN or
     * 0, the sum below is NaN or 0 whatever the order, and the check passes
     * as in the reference. */
    skey *ranked = f->ranked;
    for (size_t k = 0; k < ns; k++) {
        ranked[k].key = -shares[k];
        ranked[k].index = (uint32_t)k;
    }
    sort_remembered(f, ORDER_SHARE, ranked, ns, surv);
    double heaviest = 0.0;
    for (size_t r = 0; r < faults; r++)
        heaviest += shares[ranked[r].index];
    double by_count = (double)faults / (double)ns, dominant = 2.0 * by_count;
    if (dominant > 0.5 * (1.0 + by_count))
        dominant = 0.5 * (1.0 + by_count);
    if (!(heaviest > dominant)) {
        *sigma = ck_sqrt(inflated);
        return 0;
    }
    /* the mean without the heaviest: the rest in source order */
    uint8_t *top = f->prob; /* the candidates' flags are no longer needed */
    memset(top, 0, ns);
    for (size_t r = 0; r < faults; r++)
        top[ranked[r].index] = 1;
    uint32_t *rest = f->list;
    size_t m = 0;
    for (size_t k = 0; k < ns; k++)
        if (!top[k])
            rest[m++] = surv[k];
    double *rest_shares = f->shares2, rest_sums[CK_CONSENSUS_MAX_DIMS], rest_variance;
    rc = weighted_mean(f, rest, m, dims, rest_shares, rest_sums, &rest_variance);
    if (rc)
        return rc;
    double moved = 0.0;
    for (unsigned d = 0; d < dims; d++) {
        double r = sums[d] - rest_sums[d];
        moved += r * r;
    }
    moved = moved / (double)dims;
    double expected = rest_variance - variance;
    if (!(expected > 0.0))
        expected = rest_variance;
    if (moved > HAUSMAN_SWITCH * expected) {
        for (size_t r = 0; r < faults; r++) {
            fresh_t *s = &F[surv[ranked[r].index]];
            s->weight = 0.0;
            s->code = CK_CONSENSUS_SOURCE_OUTLIER;
        }
        for (size_t k = 0; k < m; k++)
            F[rest[k]].weight = rest_shares[k];
        *sigma = ck_sqrt(dispersed(f, rest, m, dims, rest_sums, rest_variance) + moved);
        memcpy(sums, rest_sums, dims * sizeof *sums);
        memcpy(surv, rest, m * sizeof *surv);
        *ns_io = m;
        return 0;
    }
    if (moved > HAUSMAN_INFLATE * expected)
        inflated = inflated + moved;
    *sigma = ck_sqrt(inflated);
    return 0;
}

/* Step 2's weights of the candidates, trust x evaporation, limited (_limit
 * over the candidates, in source order), into f->w_out. */
static void candidate_weights(ck_filter *f, size_t nc)
{
    for (size_t c = 0; c < nc; c++) {
        const fresh_t *s = &f->fresh[f->cand[c]];
        f->w_in[c] = s->trust * s->evap;
        f->prob[c] = s->probation;
    }
    limit_weights(f, f->w_in, f->prob, nc, f->w_out);
}

/* ConsensusFilter._scalar (scalar and interval topics): steps 3-6.  Leaves
 * the fresh readings in (x, source) order in f->keys for judging.  Returns
 * a CK_CONSENSUS_WHY_* code or CK_CONSENSUS_EDIVISION. */
static int run_scalar(ck_filter *f, size_t nf, size_t nc, size_t faults, double *value,
                      double *sigma, size_t *n_used)
{
    const ck_filter_config *c = &f->cfg;
    fresh_t *F = f->fresh;
    skey *xo = f->keys;
    for (size_t i = 0; i < nf; i++) {
        xo[i].key = F[i].x;
        xo[i].index = (uint32_t)i;
    }
    sort_keys(f, xo, nf); /* x moves too much between estimates to remember */
    candidate_weights(f, nc);
    const double *capped = f->w_out;

    /* Step 3: the point covered by the most weight.  The events (end,
     * closing, source) are sorted as two lists, openings and closings, each
     * by (end, candidate index), then merged: at equal ends an opening
     * (closing = 0) comes first.  They are listed in candidate order for the
     * rank sort, in x order for the comparison sort (sorted already when all
     * V are equal). */
    int by_rank = f->rank_kernel && nc <= CK_RANK_MAX;
    size_t e = 0;
    for (size_t r = 0; r < (by_rank ? nc : nf); r++) {
        const fresh_t *s = by_rank ? &F[f->cand[r]] : &F[xo[r].index];
        if (s->cand == NIL)
            continue;
        double half = c->agree_sigmas * s->sd;
        f->lo[s->cand] = s->x - half;
        f->hi[s->cand] = s->x + half;
        f->opens[e].key = s->x - half;
        f->closes[e].key = s->x + half;
        f->opens[e].index = f->closes[e].index = s->cand;
        e++;
    }
    sort_remembered(f, ORDER_OPEN, f->opens, nc, f->cand);
    sort_remembered(f, ORDER_CLOSE, f->closes, nc, f->cand);
    double running = 0.0, best = -1.0, point = 0.0;
    size_t io = 0, ic = 0;
    while (io < nc || ic < nc) {
        if (io < nc && (ic == nc || f->opens[io].key <= f->closes[ic].key)) {
            running += capped[f->opens[io].index];
            if (running > best) {
                best = running;
                point = f->opens[io].key;
            }
            io++;
        } else {
            running -= capped[f->closes[ic].index];
            ic++;
        }
    }
    double total = 0.0;
    for (size_t i = 0; i < nc; i++)
        total += capped[i];
    double clique_weight = 0.0;
    size_t nq = 0;
    for (size_t i = 0; i < nc; i++) {
        fresh_t *s = &F[f->cand[i]];
        if (f->lo[i] <= point && point <= f->hi[i]) {
            s->in_clique = 1;
            clique_weight += capped[i];
            nq++;
        } else {
            s->code = CK_CONSENSUS_SOURCE_FALSETICKER;
        }
    }
    if (!(clique_weight > 0.5 * total))
        return CK_CONSENSUS_WHY_NO_MAJORITY;
    if (nq < c->min_sources)
        return CK_CONSENSUS_WHY_TOO_FEW_SOURCES;

    /* Step 4: weighted median of the clique in (x, source) order, with its
     * weights limited in that order, then MAD rejection. */
    size_t q = 0;
    for (size_t r = 0; r < nf; r++) {
        const fresh_t *s = &F[xo[r].index];
        if (!s->in_clique)
            continue;
        f->xs[q] = s->x;
        f->w2_in[q] = s->trust * s->evap;
        f->prob2[q] = s->probation;
        q++;
    }
    limit_weights(f, f->w2_in, f->prob2, nq, f->w2_out);
    double median = weighted_median(f->xs, f->w2_out, nq, NIL);
    double scale = MAD_TO_SIGMA * median_deviation(f->xs, nq, median);
    size_t ns = 0;
    for (size_t i = 0; i < nc; i++) {
        fresh_t *s = &F[f->cand[i]];
        if (!s->in_clique)
            continue;
        double own = s->sd, bound = scale > own ? scale : own;
        if (fabs(s->x - median) > c->reject_sigmas * bound)
            s->code = CK_CONSENSUS_SOURCE_OUTLIER;
        else
            f->surv[ns++] = f->cand[i];
    }
    if (ns < c->min_sources)
        return CK_CONSENSUS_WHY_TOO_FEW_SOURCES;

    /* Step 5, then step 6: clamp to the f-trimmed range of the fresh values. */
    double sums[1];
    int rc = combine(f, f->surv, &ns, 1, faults, sums, sigma);
    if (rc)
        return rc;
    if (ns < c->min_sources) /* the combine may have set its heaviest aside */
        return CK_CONSENSUS_WHY_TOO_FEW_SOURCES;
    double estimate = sums[0], low = xo[faults].key, high = xo[nf - 1 - faults].key;
    if (estimate < low)
        estimate = low;
    else if (estimate > high)
        estimate = high;
    value[0] = estimate;
    *n_used = ns;
    return CK_CONSENSUS_WHY_NONE;
}

/* ConsensusFilter._vector: coordinate-wise weighted median, rejection by
 * distance, combine, clamp per coordinate.  Leaves each coordinate's fresh
 * readings in (comps[d], source) order in f->keys + d * max_sources. */
static int run_vector(ck_filter *f, size_t nf, size_t nc, size_t faults, double *value,
                      double *sigma, size_t *n_used)
{
    const ck_filter_config *c = &f->cfg;
    fresh_t *F = f->fresh;
    unsigned dims = c->dims;
    size_t stride = c->max_sources;
    candidate_weights(f, nc);
    const double *capped = f->w_out;

    /* _coordinate_median over the candidates */
    double centre[CK_CONSENSUS_MAX_DIMS];
    for (unsigned d = 0; d < dims; d++) {
        skey *col = f->keys + d * stride;
        for (size_t i = 0; i < nf; i++) {
            col[i].key = F[i].comps[d];
            col[i].index = (uint32_t)i;
        }
        sort_keys(f, col, nf);
        size_t q = 0;
        for (size_t r = 0; r < nf; r++) {
            const fresh_t *s = &F[col[r].index];
            if (s->cand == NIL)
                continue;
            f->xs[q] = col[r].key;
            f->w2_in[q] = capped[s->cand];
            q++;
        }
        centre[d] = weighted_median(f->xs, f->w2_in, nc, NIL);
    }
    for (size_t i = 0; i < nc; i++)
        f->dist[i] = distance(F[f->cand[i]].comps, centre, dims);
    memcpy(f->dv, f->dist, nc * sizeof *f->dv);
    double spread = median_of(f, f->dv, nc);
    double total = 0.0, kept_weight = 0.0;
    size_t ns = 0;
    for (size_t i = 0; i < nc; i++) {
        fresh_t *s = &F[f->cand[i]];
        total += capped[i];
        double own = ck_sqrt(s->var * (double)dims), bound = spread > own ? spread : own;
        if (f->dist[i] > c->reject_sigmas * bound) {
            s->code = CK_CONSENSUS_SOURCE_FALSETICKER;
        } else {
            f->surv[ns++] = f->cand[i];
            kept_weight += capped[i];
        }
    }
    if (!(kept_weight > 0.5 * total))
        return CK_CONSENSUS_WHY_NO_MAJORITY;
    if (ns < c->min_sources)
        return CK_CONSENSUS_WHY_TOO_FEW_SOURCES;
    double sums[CK_CONSENSUS_MAX_DIMS];
    int rc = combine(f, f->surv, &ns, dims, faults, sums, sigma);
    if (rc)
        return rc;
    if (ns < c->min_sources) /* the combine may have set its heaviest aside */
        return CK_CONSENSUS_WHY_TOO_FEW_SOURCES;
    for (unsigned d = 0; d < dims; d++) {
        const skey *col = f->keys + d * stride;
        double v = sums[d], low = col[faults].key, high = col[nf - 1 - faults].key;
        if (v < low)
            v = low;
        else if (v > high)
            v = high;
        value[d] = v;
    }
    *n_used = ns;
    return CK_CONSENSUS_WHY_NONE;
}

/* Group n labels: sort (label, source, index) keys into f->lkeys, sum each
 * label's weights in that order (within a label, source order) into
 * tally[g], its first key's position into start[g].  Returns the number of
 * labels, ascending. */
static size_t tally_labels(ck_filter *f, const double *weights, size_t n, double *tally,
                           uint32_t *start)
{
    lkey *lk = f->lkeys;
    sort_lkeys(lk, n, f->lkeys_tmp);
    size_t groups = 0;
    for (size_t r = 0; r < n; r++) {
        if (r == 0 || lk[r].key != lk[r - 1].key) {
            start[groups] = (uint32_t)r;
            tally[groups] = 0.0;
            groups++;
        }
        tally[groups - 1] += weights[lk[r].index];
    }
    return groups;
}

/* ConsensusFilter._category: the weighted plurality, if its margin exceeds
 * the weight of the f heaviest sources. */
static int run_category(ck_filter *f, size_t nc, size_t faults, int64_t *label, size_t *n_used)
{
    fresh_t *F = f->fresh;
    candidate_weights(f, nc);
    const double *capped = f->w_out;
    for (size_t i = 0; i < nc; i++) {
        f->lkeys[i].key = F[f->cand[i]].reading->label;
        f->lkeys[i].index = (uint32_t)i;
    }
    double *tally = f->dv;
    uint32_t *start = f->ranks;
    size_t groups = tally_labels(f, capped, nc, tally, start);
    size_t top = 0;
    for (size_t g = 0; g < groups; g++)
        if (tally[g] > tally[top])
            top = g;
    double second = 0.0;
    for (size_t g = 0; g < groups; g++)
        if (g != top && tally[g] > second)
            second = tally[g];
    /* the `faults` heaviest weights, summed from the heaviest */
    memcpy(f->xs, capped, nc * sizeof *f->xs);
    sort_doubles(f->xs, nc, f->dtmp);
    double faulty_weight = 0.0;
    for (size_t k = 0; k < faults && k < nc; k++)
        faulty_weight += f->xs[nc - 1 - k];
    if (!(tally[top] - second > faulty_weight))
        return CK_CONSENSUS_WHY_NO_MARGIN;
    int64_t top_label = f->lkeys[start[top]].key;
    size_t voters = 0;
    for (size_t i = 0; i < nc; i++)
        voters += F[f->cand[i]].reading->label == top_label;
    if (voters < f->cfg.min_sources)
        return CK_CONSENSUS_WHY_TOO_FEW_SOURCES;
    size_t nu = 0;
    for (size_t i = 0; i < nc; i++) {
        fresh_t *s = &F[f->cand[i]];
        if (s->reading->label == top_label) {
            s->weight = capped[i] / tally[top];
            s->code = CK_CONSENSUS_SOURCE_USED;
            f->surv[nu++] = f->cand[i];
        } else {
            s->code = CK_CONSENSUS_SOURCE_FALSETICKER;
        }
    }
    *label = top_label;
    *n_used = nu;
    return CK_CONSENSUS_WHY_NONE;
}

/* ConsensusFilter._judge: each fresh reading not yet judged, against the
 * leave-one-out consensus of the others; verdicts recorded in source order.
 * Runs after a successful estimate, whose sorted columns (f->keys) it
 * reuses. */
static void judge(ck_filter *f, size_t nf)
{
    const ck_filter_config *c = &f->cfg;
    fresh_t *F = f->fresh;
    for (size_t i = 0; i < nf; i++) {
        f->w_in[i] = F[i].trust * F[i].evap;
        f->prob[i] = F[i].probation;
    }
    limit_weights(f, f->w_in, f->prob, nf, f->w_out);
    const double *capped = f->w_out;

    if (c->kind == CK_CONSENSUS_CATEGORY) {
        for (size_t i = 0; i < nf; i++) {
            f->lkeys[i].key = F[i].reading->label;
            f->lkeys[i].index = (uint32_t)i;
        }
        double *tally = f->dv;
        uint32_t *start = f->ranks;
        size_t groups = tally_labels(f, capped, nf, tally, start);
        for (size_t i = 0; i < nf; i++) {
            fresh_t *s = &F[i];
            if (s->reading->judged)
                continue;
            size_t top = 0;
            double top_weight = -1.0;
            for (size_t g = 0; g < groups; g++) {
                int64_t label = f->lkeys[start[g]].key;
                double w = label == s->reading->label ? tally[g] - capped[i] : tally[g];
                if (w > top_weight) {
                    top = g;
                    top_weight = w;
                }
            }
            s->verdict = f->lkeys[start[top]].key == s->reading->label;
        }
    } else if (c->kind == CK_CONSENSUS_VECTOR) {
        unsigned dims = c->dims;
        size_t stride = c->max_sources;
        double centre[CK_CONSENSUS_MAX_DIMS];
        for (unsigned d = 0; d < dims; d++) {
            const skey *col = f->keys + d * stride;
            for (size_t r = 0; r < nf; r++) {
                f->xs[r] = col[r].key;
                f->w2_in[r] = capped[col[r].index];
            }
            centre[d] = weighted_median(f->xs, f->w2_in, nf, NIL);
        }
        for (size_t i = 0; i < nf; i++)
            f->dv[i] = distance(F[i].comps, centre, dims);
        double spread = median_of(f, f->dv, nf);
        for (unsigned d = 0; d < dims; d++) {
            const skey *col = f->keys + d * stride;
            size_t m = 0;
            for (size_t r = 0; r < nf; r++) {
                f->xs[r] = col[r].key;
                f->w2_in[r] = capped[col[r].index];
                if (!F[col[r].index].reading->judged)
                    f->ranks[m++] = (uint32_t)r;
            }
            weighted_median_loo(f, f->xs, f->w2_in, nf, f->ranks, m, f->dv);
            for (size_t t = 0; t < m; t++)
                f->others[(size_t)col[f->ranks[t]].index * dims + d] = f->dv[t];
        }
        for (size_t i = 0; i < nf; i++) {
            fresh_t *s = &F[i];
            if (s->reading->judged)
                continue;
            double own = ck_sqrt(s->var * (double)dims), bound = spread > own ? spread : own;
            s->verdict = distance(s->comps, f->others + i * dims, dims) <= c->agree_sigmas * bound;
        }
    } else {
        const skey *xo = f->keys;
        size_t m = 0;
        for (size_t r = 0; r < nf; r++) {
            f->xs[r] = xo[r].key;
            f->w2_in[r] = capped[xo[r].index];
            if (!F[xo[r].index].reading->judged)
                f->ranks[m++] = (uint32_t)r;
        }
        double median = weighted_median(f->xs, f->w2_in, nf, NIL);
        double scale = MAD_TO_SIGMA * median_deviation(f->xs, nf, median);
        weighted_median_loo(f, f->xs, f->w2_in, nf, f->ranks, m, f->dv);
        for (size_t t = 0; t < m; t++) {
            fresh_t *s = &F[xo[f->ranks[t]].index];
            double own = s->sd, bound = scale > own ? scale : own;
            s->verdict = fabs(s->x - f->dv[t]) <= c->agree_sigmas * bound;
        }
    }
    for (size_t i = 0; i < nf; i++) {
        fresh_t *s = &F[i];
        if (s->reading->judged)
            continue;
        reading_t *rd = s->reading;
        ck_reputation *rep = f->rep;
        if (rd->rep_version != rep->version || rd->rep_idx == NIL) {
            rd->rep_idx = rep_entry_for(rep, s->source); /* may add, and evict */
            rd->rep_version = rep->version;
        }
        rep_judge(rep, rd->rep_idx, s->verdict);
        rd->judged = 1;
        f->judged++;
    }
}

#define QNAN double_of(UINT64_C(0x7ff8000000000000)) /* Python's math.nan */

/* 2^y for a reading, remembering the last exponent: readings refreshed at
 * the same age before each estimate reuse the result. */
static double evaporation(reading_t *rd, double y)
{
    if (y == 0.0)
        return 1.0; /* exp2(+-0) is 1 */
    if (bits_of(y) == bits_of(rd->evap_y))
        return rd->evap;
    rd->evap_y = y;
    rd->evap = pow2(y);
    return rd->evap;
}

int ck_filter_estimate(ck_filter *f, double now, ck_consensus_estimate *out)
{
    if (!(now >= -CK_CONSENSUS_MAX_TIME && now <= CK_CONSENSUS_MAX_TIME))
        return CK_EINVAL;
    const ck_filter_config *c = &f->cfg;
    ck_reputation *rep = f->rep;
    fresh_t *F = f->fresh;
    f->estimates++;

    /* Steps 1-2: gate and weigh, in source order. */
    size_t n = f->count, nf = 0;
    for (size_t p = 0; p < n; p++) {
        reading_t *rd = &f->readings[f->slots[p]];
        double age = now > rd->time ? now - rd->time : 0.0;
        double evap = evaporation(rd, -age / rd->half_life);
        if (now >= rd->expires || evap < CK_CONSENSUS_MIN_EVAPORATION) {
            f->fresh_of[p] = NIL;
            continue;
        }
        fresh_t *s = &F[nf];
        s->source = f->ids[p];
        s->reading = rd;
        s->comps = f->comps + (size_t)f->slots[p] * f->width;
        double reputation = 1.0, link = 1.0;
        uint64_t rounds = 0;
        if (rep) {
            if (rd->rep_version != rep->version) {
                rd->rep_idx = rep_find(rep, s->source);
                rd->rep_version = rep->version;
            }
            uint32_t idx = rd->rep_idx;
            if (idx != NIL) {
                const rep_entry *e = &rep->pool[idx];
                reputation = rep_formula(&rep->cfg, e->agree, e->disagree);
                link = e->link;
                rounds = e->rounds;
            } else {
                reputation = rep_formula(&rep->cfg, 0.0, 0.0);
            }
        }
        s->x = f->width ? s->comps[0] : 0.0;
        s->evap = evap;
        s->rep = reputation;
        s->link = link;
        s->trust = rd->confidence * reputation * link;
        s->var = rd->sigma * rd->sigma / evap;
        s->sd = ck_sqrt(s->var);
        s->slot = f->slots[p];
        s->weight = 0.0;
        s->code = CK_CONSENSUS_SOURCE_NO_CONSENSUS;
        s->probation = rep ? rounds < rep->cfg.probation_rounds : 0;
        s->in_clique = 0;
        s->verdict = 0;
        s->cand = NIL;
        f->fresh_of[p] = (uint32_t)nf++;
    }
    size_t faults = 0; /* the reference's -1 when nothing is fresh is never used */
    if (nf > 0)
        faults = c->fault_model == CK_CONSENSUS_BYZANTINE ? (nf - 1) / 3 : (nf - 1) / 2;
    size_t nc = 0;
    for (size_t i = 0; i < nf; i++) {
        if (rep && F[i].rep < rep->cfg.distrust_below) {
            F[i].code = CK_CONSENSUS_SOURCE_DISTRUSTED;
        } else {
            F[i].cand = (uint32_t)nc;
            f->cand[nc++] = (uint32_t)i;
        }
    }

    int why;
    int64_t label = 0;
    double value[CK_CONSENSUS_MAX_DIMS] = {0};
    double sigma = QNAN;
    size_t n_used = 0;
    if (n == 0)
        why = CK_CONSENSUS_WHY_NO_SOURCES;
    else if (nf == 0)
        why = CK_CONSENSUS_WHY_STALE;
    else if (nc < c->min_sources)
        why = CK_CONSENSUS_WHY_TOO_FEW_SOURCES;
    else if (c->kind == CK_CONSENSUS_CATEGORY)
        why = run_category(f, nc, faults, &label, &n_used);
    else if (c->kind == CK_CONSENSUS_VECTOR)
        why = run_vector(f, nf, nc, faults, value, &sigma, &n_used);
    else
        why = run_scalar(f, nf, nc, faults, value, &sigma, &n_used);
    if (why < 0)
        return why;
    out->state = CK_CONSENSUS_OK;
    if (why != CK_CONSENSUS_WHY_NONE) {
        out->state = why == CK_CONSENSUS_WHY_STALE ? CK_CONSENSUS_STALE : CK_CONSENSUS_NO_CONSENSUS;
        sigma = QNAN;
        n_used = 0;
        for (size_t i = 0; i < nc; i++) {
            F[f->cand[i]].code = CK_CONSENSUS_SOURCE_NO_CONSENSUS;
            F[f->cand[i]].weight = 0.0;
        }
    }
    out->reason = why;
    out->has_value = why == CK_CONSENSUS_WHY_NONE;
    out->label = label;
    memcpy(out->value, value, sizeof out->value);
    out->sigma = sigma;
    out->interval_low = out->interval_high = QNAN;
    out->confidence = 0.0;
    out->age = QNAN;

    if (n_used) {
        const uint32_t *used = f->surv;
        size_t best = used[0];
        for (size_t k = 0; k < n_used; k++)
            if (F[used[k]].weight > F[best].weight)
                best = used[k];
        F[best].code = CK_CONSENSUS_SOURCE_BEST;
        if (c->kind == CK_CONSENSUS_SCALAR || c->kind == CK_CONSENSUS_INTERVAL) {
            out->interval_low = value[0] - CK_CONSENSUS_Z95 * sigma;
            out->interval_high = value[0] + CK_CONSENSUS_Z95 * sigma;
        }
        double used_weight = 0.0, all_weight = 0.0;
        for (size_t k = 0; k < n_used; k++)
            used_weight += F[used[k]].trust * F[used[k]].evap;
        for (size_t i = 0; i < nc; i++)
            all_weight += F[f->cand[i]].trust * F[f->cand[i]].evap;
        out->confidence = (used_weight / all_weight) * (used_weight / (double)n_used);
        double newest = 0.0;
        for (size_t k = 0; k < n_used; k++) {
            double t = F[used[k]].reading->time;
            double age = now > t ? now - t : 0.0;
            if (k == 0 || age < newest)
                newest = age;
        }
        out->age = newest;
        /* judged by the others: at least two of them, and min_sources - 1 */
        size_t judges = c->min_sources > 3 ? c->min_sources - 1 : 2;
        if (rep && nf - 1 >= judges)
            judge(f, nf);
    }

    /* The breakdown, in source order. */
    int64_t now_slot = floor_slot(now, c->reach_interval);
    for (size_t p = 0; p < n; p++) {
        const reading_t *rd = &f->readings[f->slots[p]];
        const double *comps = f->comps + (size_t)f->slots[p] * f->width;
        ck_consensus_record *rec = &f->records[p];
        rec->source = f->ids[p];
        memset(rec->pad, 0, sizeof rec->pad);
        rec->reach = reach_now(rd, now_slot);
        rec->age = now > rd->time ? now - rd->time : 0.0;
        rec->confidence = rd->confidence;
        double shown = c->kind == CK_CONSENSUS_CATEGORY ? (double)rd->label : comps[0];
        uint32_t fi = f->fresh_of[p];
        if (fi == NIL) {
            rec->reason = CK_CONSENSUS_SOURCE_EXPIRED;
            rec->value = shown;
            rec->offset = QNAN;
            rec->sigma = rd->sigma;
            rec->weight = 0.0;
            rec->reputation = rep ? ck_reputation_value(rep, rec->source) : 1.0;
            rec->evaporation = 0.0;
            rec->link_quality = rep ? ck_reputation_link_quality(rep, rec->source) : 1.0;
            continue;
        }
        const fresh_t *s = &F[fi];
        double offset = QNAN;
        if (out->has_value) {
            if (c->kind == CK_CONSENSUS_CATEGORY) {
                offset = rd->label == label ? 0.0 : 1.0;
            } else if (c->kind == CK_CONSENSUS_VECTOR) {
                offset = distance(comps, value, c->dims);
                shown = offset;
            } else {
                offset = s->x - value[0];
            }
        }
        if (c->kind == CK_CONSENSUS_VECTOR && !out->has_value)
            shown = QNAN;
        rec->reason = s->code;
        rec->value = shown;
        rec->offset = offset;
        rec->sigma = s->sd;
        rec->weight = s->weight;
        rec->reputation = s->rep;
        rec->evaporation = s->evap;
        rec->link_quality = s->link;
    }
    out->sources_total = (uint32_t)n;
    out->sources_used = (uint32_t)n_used;
    out->sources_rejected = n_used ? (uint32_t)(nf - n_used) : 0;
    out->records = f->records;
    return CK_OK;
}
