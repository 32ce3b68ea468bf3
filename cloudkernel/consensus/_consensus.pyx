# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled weighted-consensus filter and reputation: csrc/ck_consensus.c computes, this module
checks Python types and builds the results.

The pure-Python twin is ``_consensus_ref.py``, the specification: for any sequence of calls both
return the same results bit for bit (tests/test_consensus_equivalence.py drives them side by
side).  Here are only the checks that depend on Python types, made in the reference's order
(``_values`` and ``update``): what the reference drops as bad-shape or refuses with a
`ConsensusError` is decided here, every numeric rule in C.  A value that fails a type check after
the value's own (a confidence of the wrong type, say) is passed to C as NaN, which fails the same
rule there.  An ``int`` is compared exactly, as Python compares it, before it becomes a double.
"""

import math
import sys

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact, PyFloat_FromDouble
from cpython.long cimport PyLong_CheckExact, PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport NAN
from libc.stdint cimport uint64_t

from ._ck_consensus cimport (
    CK_CONSENSUS_BAD_SHAPE,
    CK_CONSENSUS_BYZANTINE,
    CK_CONSENSUS_CATEGORY,
    CK_CONSENSUS_CONSISTENT,
    CK_CONSENSUS_EDIVISION,
    CK_CONSENSUS_INTERVAL,
    CK_CONSENSUS_OUT_OF_RANGE,
    CK_CONSENSUS_SCALAR,
    CK_CONSENSUS_VECTOR,
    CK_ENOMEM,
    CK_OK,
    ck_consensus_estimate,
    ck_consensus_reading,
    ck_filter,
    ck_filter_config,
    ck_filter_count_refused,
    ck_filter_estimate,
    ck_filter_forget,
    ck_filter_free,
    ck_filter_get_statistics,
    ck_filter_new,
    ck_filter_statistics,
    ck_filter_update,
    ck_reputation,
    ck_reputation_config,
    ck_reputation_flagged,
    ck_reputation_forget,
    ck_reputation_free,
    ck_reputation_get_statistics,
    ck_reputation_in_probation,
    ck_reputation_link_quality,
    ck_reputation_new,
    ck_reputation_record,
    ck_reputation_rounds,
    ck_reputation_set_link_quality,
    ck_reputation_statistics,
    ck_reputation_value,
)
from ._types import (
    DROP_REASONS,
    MAX_SIGMA,
    MAX_TIME,
    NOT_OK_REASONS,
    ConsensusError,
    Estimate,
    FilterConfig,
    FilterStatistics,
    ReputationConfig,
    ReputationStatistics,
)

__all__ = ["ConsensusFilter", "Reputation"]


cdef extern from "Python.h":
    object PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems)
    object PyNumber_Float(object o)
    unsigned long long _as_u64 "PyLong_AsUnsignedLongLong"(object o)
    long long _as_i64_overflow "PyLong_AsLongLongAndOverflow"(object o, int *overflow)
    PyObject *PyErr_Occurred()
    void PyErr_Clear()


if sys.byteorder != "little":  # pragma: no cover - depends on the machine
    raise ImportError("the breakdown records are little-endian (BREAKDOWN_FORMAT)")
if not (
    issubclass(Estimate, tuple)
    and Estimate.__basicsize__ == tuple.__basicsize__
    and Estimate.__itemsize__ == tuple.__itemsize__
):  # pragma: no cover - _types.py defines it
    raise ImportError("Estimate must be a NamedTuple without instance attributes")

cdef enum:
    RECORD_SIZE = 88
    ESTIMATE_FIELDS = 11

cdef double C_MAX_SIGMA = MAX_SIGMA
cdef double C_MAX_TIME = MAX_TIME
cdef tuple _OUTCOMES = ("accepted",) + tuple(DROP_REASONS)
cdef tuple _STATES = ("ok", "no-consensus", "stale")
cdef tuple _WHY = tuple(NOT_OK_REASONS)
cdef tuple _DROP_REASONS = tuple(DROP_REASONS)
cdef object _NOW_RULE = f"now must be a finite number of seconds within +-{MAX_TIME:g}, got "
cdef object _KINDS = {"scalar": CK_CONSENSUS_SCALAR, "vector": CK_CONSENSUS_VECTOR,
                      "category": CK_CONSENSUS_CATEGORY, "interval": CK_CONSENSUS_INTERVAL}
cdef object _INT64_MIN = -(1 << 63)
cdef object _INT64_MAX = (1 << 63) - 1


# -- argument checks (the reference's _check_source, _check_now, _values) -----

cdef int _source(object source, uint64_t *out) except -1:
    cdef unsigned long long v
    if PyLong_CheckExact(source):
        v = _as_u64(source)
        if v != <unsigned long long> -1 or PyErr_Occurred() == NULL:
            out[0] = v
            return 0
        PyErr_Clear()
    raise ConsensusError(f"source must be an int in 0..2**64-1, got {source!r}")


cdef int _now(object now, double *out) except -1:
    cdef double t = 0.0
    if PyFloat_CheckExact(now):
        t = PyFloat_AS_DOUBLE(now)
        if -C_MAX_TIME <= t <= C_MAX_TIME:
            out[0] = t
            return 0
    elif (
        isinstance(now, (int, float))
        and not isinstance(now, bool)
        and -MAX_TIME <= now <= MAX_TIME
    ):
        out[0] = PyFloat_AS_DOUBLE(PyNumber_Float(now))
        return 0
    raise ConsensusError(_NOW_RULE + repr(now))


cdef inline int _number(object item, double *out) except -1:
    """One component: 0, or bad-shape; float() as the reference converts it (may raise)."""
    if PyFloat_CheckExact(item):
        out[0] = PyFloat_AS_DOUBLE(item)
        return 0
    if not isinstance(item, (int, float)) or isinstance(item, bool):
        return CK_CONSENSUS_BAD_SHAPE
    try:
        out[0] = PyFloat_AS_DOUBLE(PyNumber_Float(item))
    except OverflowError:  # an int beyond any float
        return CK_CONSENSUS_OUT_OF_RANGE
    return 0


cdef inline double _within(object x, double top) except? -1.0:
    """x as a double if it is an int or float (not bool) with 0 < x <= top, compared as Python
    compares it; else NaN, which fails the same rule in C."""
    if PyFloat_CheckExact(x):
        return PyFloat_AS_DOUBLE(x)
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not 0 < x <= top:
        return NAN
    return PyFloat_AS_DOUBLE(PyNumber_Float(x))


def _ceil_double(x):
    """The smallest double >= x (x an int or a float, not NaN)."""
    d = float(x)
    if d < x:
        d = math.nextafter(d, math.inf)
    return d


def _floor_double(x):
    """The largest double <= x."""
    d = float(x)
    if d > x:
        d = math.nextafter(d, -math.inf)
    return d


def _label_bounds(lower, upper):
    """The int64 labels l with lower <= l <= upper, as (first, last); (1, 0) when none."""
    if isinstance(lower, float):
        lo = _INT64_MIN if lower == -math.inf else (None if lower == math.inf else math.ceil(lower))
    else:
        lo = int(lower)
    if isinstance(upper, float):
        hi = _INT64_MAX if upper == math.inf else (None if upper == -math.inf else math.floor(upper))
    else:
        hi = int(upper)
    if lo is None or hi is None:
        return 1, 0
    lo = max(lo, _INT64_MIN)
    hi = min(hi, _INT64_MAX)
    if lo > hi:
        return 1, 0
    return lo, hi


# -- Reputation ---------------------------------------------------------------

cdef class Reputation:
    """Per-source trust, shared by every topic's filter (see ReputationConfig)."""

    cdef ck_reputation *_rep
    cdef object _config

    def __cinit__(self):
        self._rep = NULL

    def __init__(self, config=None):
        if self._rep != NULL:
            # Filters hold the table: it must not be replaced under them.
            raise ConsensusError("a Reputation cannot be initialised twice")
        cfg = config if config is not None else ReputationConfig()
        cdef ck_reputation_config c
        c.forgetting = cfg.forgetting
        c.disagreement_forgetting = cfg.disagreement_forgetting
        c.disagreement_weight = cfg.disagreement_weight
        c.prior_agree = cfg.prior_agree
        c.prior_disagree = cfg.prior_disagree
        c.probation_rounds = cfg.probation_rounds
        c.flag_below = cfg.flag_below
        c.distrust_below = cfg.distrust_below
        c.max_sources = cfg.max_sources
        rc = ck_reputation_new(&c, &self._rep)
        if rc == CK_ENOMEM:
            raise MemoryError()
        if rc != CK_OK:
            raise ConsensusError(f"reputation settings out of range: {cfg!r}")
        self._config = cfg

    def __dealloc__(self):
        ck_reputation_free(self._rep)
        self._rep = NULL

    cdef int _ready(self) except -1:
        if self._rep == NULL:
            raise ConsensusError("Reputation.__init__ was not called")
        return 0

    @property
    def config(self):
        return self._config

    def value(self, source):
        """The posterior mean trust in ``source``, in (0, 1)."""
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        return ck_reputation_value(self._rep, s)

    def rounds(self, source):
        """How many readings of ``source`` have been judged."""
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        return PyLong_FromUnsignedLongLong(ck_reputation_rounds(self._rep, s))

    def flagged(self, source):
        """True when ``source``'s reputation is under ``flag_below``."""
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        return bool(ck_reputation_flagged(self._rep, s))

    def in_probation(self, source):
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        return bool(ck_reputation_in_probation(self._rep, s))

    def link_quality(self, source):
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        return ck_reputation_link_quality(self._rep, s)

    def set_link_quality(self, source, quality):
        """Record how well ``source`` is heard, in (0, 1] (1 - loss, say)."""
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        if not isinstance(quality, (int, float)) or not 0 < quality <= 1:
            raise ConsensusError(f"link quality must be in (0, 1], got {quality!r}")
        ck_reputation_set_link_quality(self._rep, s, PyFloat_AS_DOUBLE(PyNumber_Float(quality)))

    def record(self, source, agreed):
        """Judge one reading of ``source``: it agreed with the others, or not."""
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        ck_reputation_record(self._rep, s, 1 if agreed else 0)

    def forget(self, source):
        """Drop everything known about ``source``."""
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        ck_reputation_forget(self._rep, s)

    def statistics(self):
        cdef ck_reputation_statistics st
        self._ready()
        ck_reputation_get_statistics(self._rep, &st)
        return ReputationStatistics(st.sources, st.judgments, st.disagreements, st.evicted)


# -- ConsensusFilter ----------------------------------------------------------

cdef object _new_estimate(object items):
    """An Estimate from a tuple of its 11 fields, filled in place (as tuple.__new__ does)."""
    cdef object estimate = PyType_GenericAlloc(<PyTypeObject *> Estimate, ESTIMATE_FIELDS)
    cdef Py_ssize_t i
    for i in range(ESTIMATE_FIELDS):
        item = (<tuple> items)[i]
        Py_INCREF(item)
        PyTuple_SET_ITEM(estimate, i, item)
    return estimate


cdef class ConsensusFilter:
    """One topic's readings, one per source, fused into an `Estimate` on demand."""

    cdef ck_filter *_flt
    cdef object _config
    cdef Reputation _reputation
    cdef int _kind
    cdef unsigned _dims

    def __cinit__(self):
        self._flt = NULL

    def __init__(self, config=None, reputation=None):
        cfg = config if config is not None else FilterConfig()
        if reputation is not None and not isinstance(reputation, Reputation):
            raise ConsensusError(
                "reputation must be this implementation's Reputation, got "
                + type(reputation).__name__
            )
        cdef Reputation rep = reputation
        if rep is not None:
            rep._ready()
        cdef ck_filter_config c
        c.kind = _KINDS[cfg.kind]
        c.dims = cfg.dims
        c.min_sources = cfg.min_sources
        c.max_sources = cfg.max_sources
        # An int bound is compared exactly by the reference: round it inwards.
        c.lower = _ceil_double(cfg.lower)
        c.upper = _floor_double(cfg.upper)
        c.label_lower, c.label_upper = _label_bounds(cfg.lower, cfg.upper)
        c.default_sigma = cfg.default_sigma
        c.min_sigma = cfg.min_sigma
        c.default_half_life = cfg.default_half_life
        c.expire_half_lives = cfg.expire_half_lives
        c.agree_sigmas = cfg.agree_sigmas
        c.reject_sigmas = cfg.reject_sigmas
        c.max_weight_share = cfg.max_weight_share
        c.fault_model = (
            CK_CONSENSUS_BYZANTINE if cfg.fault_model == "byzantine" else CK_CONSENSUS_CONSISTENT
        )
        c.probation_share = cfg.probation_share
        c.reach_interval = cfg.reach_interval
        cdef ck_filter *flt = NULL
        rc = ck_filter_new(&c, rep._rep if rep is not None else NULL, &flt)
        if rc == CK_ENOMEM:
            raise MemoryError()
        if rc != CK_OK:
            raise ConsensusError(f"filter settings out of range: {cfg!r}")
        ck_filter_free(self._flt)
        self._flt = flt
        self._config = cfg
        self._reputation = rep
        self._kind = c.kind
        self._dims = c.dims

    def __dealloc__(self):
        ck_filter_free(self._flt)
        self._flt = NULL

    cdef int _ready(self) except -1:
        if self._flt == NULL:
            raise ConsensusError("ConsensusFilter.__init__ was not called")
        return 0

    @property
    def config(self):
        return self._config

    @property
    def reputation(self):
        return self._reputation

    # -- updates ------------------------------------------------------------

    cdef int _values(self, object value, ck_consensus_reading *r, double *comps) except -1:
        """The reference's _values, its type checks: 0, or the drop reason they find."""
        cdef int overflow = 0
        cdef long long label
        cdef unsigned d, n
        cdef int reason
        if self._kind == CK_CONSENSUS_SCALAR:
            if PyFloat_CheckExact(value):
                comps[0] = PyFloat_AS_DOUBLE(value)
                return 0
            return _number(value, comps)
        if self._kind == CK_CONSENSUS_CATEGORY:
            if not PyLong_CheckExact(value):
                return CK_CONSENSUS_BAD_SHAPE
            label = _as_i64_overflow(value, &overflow)
            if overflow:
                return CK_CONSENSUS_OUT_OF_RANGE
            r.label = label
            return 0
        if not isinstance(value, (tuple, list)):
            return CK_CONSENSUS_BAD_SHAPE
        if self._kind == CK_CONSENSUS_INTERVAL:
            if len(value) != 2:
                return CK_CONSENSUS_BAD_SHAPE
            item = value[0]
            err = value[1]
            if not isinstance(err, (int, float)) or isinstance(err, bool):
                return CK_CONSENSUS_BAD_SHAPE
            try:
                r.error = PyFloat_AS_DOUBLE(PyNumber_Float(err))
            except OverflowError:  # an int beyond any float
                return CK_CONSENSUS_OUT_OF_RANGE
            return _number(item, comps)
        n = self._dims
        if len(value) != n:
            return CK_CONSENSUS_BAD_SHAPE
        if type(value) is tuple:
            for d in range(n):
                reason = _number((<tuple> value)[d], comps + d)
                if reason:
                    return reason
            return 0
        # A list (which float() of an item could shrink) or a subclass is
        # iterated, as the reference does; one whose iteration disagrees with
        # its len() has no shape this filter can store.
        d = 0
        for item in value:
            if d >= n:
                return CK_CONSENSUS_BAD_SHAPE
            reason = _number(item, comps + d)
            if reason:
                return reason
            d += 1
        return 0 if d == n else CK_CONSENSUS_BAD_SHAPE

    def update(self, source, value, confidence, now, sigma=None, half_life=None, ttl=None):
        """Take ``source``'s reading, taken at ``now`` on this node's monotonic clock.

        Returns ``"accepted"`` or the drop reason (one of DROP_REASONS).

        :raises ConsensusError: ``source`` or ``now`` is not usable (a caller's bug).
        """
        cdef uint64_t s = 0
        cdef double t = 0.0
        cdef double comps[16]
        cdef ck_consensus_reading r
        cdef int reason
        self._ready()
        _source(source, &s)
        _now(now, &t)
        r.comps = comps
        r.label = 0
        r.error = 0.0
        try:
            reason = self._values(value, &r, comps)
            if reason:
                ck_filter_count_refused(self._flt, reason)
                return _OUTCOMES[reason]
            r.confidence = _within(confidence, 1.0)
            r.has_sigma = sigma is not None
            r.sigma = NAN
            if r.has_sigma and self._kind != CK_CONSENSUS_INTERVAL:
                r.sigma = _within(sigma, C_MAX_SIGMA)
            r.has_half_life = half_life is not None
            r.half_life = _within(half_life, C_MAX_TIME) if r.has_half_life else NAN
            r.has_ttl = ttl is not None
            r.ttl = _within(ttl, C_MAX_TIME) if r.has_ttl else NAN
        except BaseException:
            ck_filter_count_refused(self._flt, 0)  # counted, as the reference counts it
            raise
        reason = ck_filter_update(self._flt, s, t, &r)
        if reason < 0:  # pragma: no cover - now was checked
            raise ConsensusError(_NOW_RULE + repr(now))
        return _OUTCOMES[reason]

    def forget(self, source):
        """Drop ``source``'s reading from this topic."""
        cdef uint64_t s = 0
        self._ready()
        _source(source, &s)
        ck_filter_forget(self._flt, s)

    def statistics(self):
        cdef ck_filter_statistics st
        self._ready()
        ck_filter_get_statistics(self._flt, &st)
        dropped = {}
        for i in range(len(_DROP_REASONS)):
            dropped[_DROP_REASONS[i]] = st.dropped[i]
        return FilterStatistics(
            st.updates, st.accepted, dropped, st.evicted, st.estimates, st.judged
        )

    # -- estimate -----------------------------------------------------------

    def estimate(self, now):
        """Fuse the fresh readings as of ``now`` (see the reference's module docstring)."""
        cdef double t = 0.0
        cdef ck_consensus_estimate e
        cdef unsigned d
        self._ready()
        _now(now, &t)
        rc = ck_filter_estimate(self._flt, t, &e)
        if rc == CK_CONSENSUS_EDIVISION:
            # The reference divides by zero at this point of its combine.
            raise ZeroDivisionError("float division by zero")
        if rc != CK_OK:  # pragma: no cover - now was checked
            raise ConsensusError(_NOW_RULE + repr(now))
        interval = None
        if not e.has_value:
            value = None
        elif self._kind == CK_CONSENSUS_CATEGORY:
            value = PyLong_FromLongLong(e.label)
        elif self._kind == CK_CONSENSUS_VECTOR:
            value = PyTuple_New(self._dims)
            for d in range(self._dims):
                item = PyFloat_FromDouble(e.value[d])
                Py_INCREF(item)
                PyTuple_SET_ITEM(value, d, item)
        else:
            value = PyFloat_FromDouble(e.value[0])
            interval = (PyFloat_FromDouble(e.interval_low), PyFloat_FromDouble(e.interval_high))
        breakdown = PyBytes_FromStringAndSize(
            <const char *> e.records, <Py_ssize_t> e.sources_total * RECORD_SIZE
        )
        return _new_estimate((
            _STATES[e.state],
            _WHY[e.reason],
            value,
            PyFloat_FromDouble(e.sigma),
            interval,
            PyFloat_FromDouble(e.confidence),
            PyLong_FromUnsignedLongLong(e.sources_total),
            PyLong_FromUnsignedLongLong(e.sources_used),
            PyLong_FromUnsignedLongLong(e.sources_rejected),
            PyFloat_FromDouble(e.age),
            breakdown,
        ))
