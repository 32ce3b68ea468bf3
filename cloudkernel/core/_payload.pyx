# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled signal payload decoder: csrc/ck_payload.c checks, this module builds objects.

The pure-Python twin is ``decode_payload`` in ``signals.py`` (msgpack then
checks); both accept and refuse exactly the same payloads and return equal
signals.  :func:`bind` must be called once with the ``Signal`` class and
``PayloadError`` before :func:`decode_payload` is used (``signals.py`` does).

Speed comes from making only the objects a caller sees: a ``Signal`` is
allocated and its slots are filled directly at the offsets its member
descriptors give (it is a frozen dataclass, whose ``__init__`` goes through
``object.__setattr__`` field by field), topics come from a small cache, and
a confidence, lifetime, age or source equal to the previous signal's reuses
its object.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport (
    PyBUF_FULL_RO,
    PyBUF_SIMPLE,
    PyBuffer_IsContiguous,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.float cimport PyFloat_FromDouble
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_FromUnsignedLong
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from ._csrc cimport (
    CK_PAYLOAD_MAX_SIGNALS,
    CK_PAYLOAD_MAX_VECTOR,
    CK_PAYLOAD_NO_LIFETIME,
    CK_PAYLOAD_OK,
    CK_VALUE_BYTES,
    CK_VALUE_CATEGORY,
    CK_VALUE_FLOAT,
    CK_VALUE_VECTOR,
    ck_payload_decode,
    ck_payload_error,
    ck_payload_error_str,
    ck_signal_record,
)


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    object PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems)
    void PyObject_GC_Track(object op)
    void PyObject_GC_UnTrack(object op)
    object PyMemoryView_GetContiguous(object obj, int buffertype, char order)
    enum:
        PyBUF_READ


cdef enum:
    TOPIC_CACHE = 512  # power of two
    MAX_TOPIC = 128

cdef struct topic_entry:
    PyObject *text  # owned reference, or NULL
    uint32_t length
    uint8_t raw[MAX_TOPIC]

cdef ck_signal_record _records[CK_PAYLOAD_MAX_SIGNALS]
cdef double _vectors[CK_PAYLOAD_MAX_SIGNALS * CK_PAYLOAD_MAX_VECTOR]
cdef topic_entry _topics[TOPIC_CACHE]
# Set while a decode_payload call uses _records and _vectors.  Building the
# signals allocates GC objects, which can run a collection, whose finalizers
# (__del__, weakref callbacks) can call decode_payload again: that nested call
# must not overwrite the records the outer call is still reading.
cdef bint _busy = False

cdef object _signal_type = None
cdef object _payload_error = None
cdef object _qos_type = None
cdef Py_ssize_t _off_topic, _off_value, _off_confidence, _off_half_life, _off_ttl
cdef Py_ssize_t _off_qos, _off_source, _off_seq, _off_age, _off_hops

_FIELDS = (
    "topic", "value", "confidence", "half_life", "ttl", "qos", "source", "seq", "age", "hops"
)
# small ints are cached by CPython: one object per hop count
_HOPS = tuple(range(16))


cdef Py_ssize_t _slot_offset(object cls, str name) except -1:
    descriptor = cls.__dict__[name]
    if type(descriptor).__name__ != "member_descriptor":
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject *> descriptor).d_member.offset


def bind(signal_type, payload_error, qos_type):
    """Tell the decoder which class to build, what to raise, and the QoS enum."""
    global _signal_type, _payload_error, _qos_type
    global _off_topic, _off_value, _off_confidence, _off_half_life, _off_ttl
    global _off_qos, _off_source, _off_seq, _off_age, _off_hops
    if tuple(signal_type.__slots__) != _FIELDS:
        raise TypeError(f"Signal slots are {signal_type.__slots__}, expected {_FIELDS}")
    _off_topic = _slot_offset(signal_type, "topic")
    _off_value = _slot_offset(signal_type, "value")
    _off_confidence = _slot_offset(signal_type, "confidence")
    _off_half_life = _slot_offset(signal_type, "half_life")
    _off_ttl = _slot_offset(signal_type, "ttl")
    _off_qos = _slot_offset(signal_type, "qos")
    _off_source = _slot_offset(signal_type, "source")
    _off_seq = _slot_offset(signal_type, "seq")
    _off_age = _slot_offset(signal_type, "age")
    _off_hops = _slot_offset(signal_type, "hops")
    _signal_type = signal_type
    _payload_error = payload_error
    _qos_type = qos_type


cdef inline void _put(object obj, Py_ssize_t offset, object value):
    """Store a new reference in an empty slot of a freshly allocated object."""
    Py_INCREF(value)
    (<PyObject **> ((<char *> <PyObject *> obj) + offset))[0] = <PyObject *> value


cdef object _topic(const uint8_t *raw, uint32_t length):
    """The str of a topic already checked as UTF-8, from the cache when seen before."""
    cdef uint64_t h = 1469598103934665603ULL  # FNV-1a
    cdef uint32_t i
    for i in range(length):
        h = (h ^ raw[i]) * 1099511628211ULL
    cdef topic_entry *entry = &_topics[h & (TOPIC_CACHE - 1)]
    if entry.text != NULL and entry.length == length and memcmp(entry.raw, raw, length) == 0:
        return <object> entry.text
    text = PyUnicode_DecodeUTF8(<const char *> raw, length, NULL)
    Py_XDECREF(entry.text)
    Py_INCREF(text)
    entry.text = <PyObject *> text
    entry.length = length
    memcpy(entry.raw, raw, length)
    return text


cdef inline object _lifetime(int64_t ms):
    if ms == CK_PAYLOAD_NO_LIFETIME:
        return None
    return PyFloat_FromDouble(<double> ms / 1000.0)


def decode_payload(body, qos, double age_offset=0.0):
    """The signals of a peer's payload; see ``signals.decode_payload``."""
    cdef const uint8_t *data
    cdef Py_ssize_t length
    cdef Py_buffer view
    cdef bint have_view = False
    cdef size_t count = 0, where = 0, i
    cdef ck_payload_error status
    cdef ck_signal_record *r
    cdef uint32_t d
    cdef int64_t last_half_life = -2, last_ttl = -2
    cdef uint32_t last_age = 0, last_source = 0
    cdef double last_confidence = -1.0
    cdef bint have_age = False, have_source = False
    cdef ck_signal_record *records = NULL
    cdef double *vectors = NULL
    cdef bint owner = False
    global _busy

    if _signal_type is None:
        raise RuntimeError("cloudkernel.core._payload.bind() was not called")
    if type(qos) is not _qos_type:
        qos = _qos_type(qos)
    if type(body) is bytes:
        data = <const uint8_t *> PyBytes_AS_STRING(body)
        length = PyBytes_GET_SIZE(body)
    else:
        # As msgpack's unpackb takes a buffer (get_data_from_buffer), so that
        # both decoders accept the same objects: one-byte items only, and a
        # non-contiguous buffer is read through a C-contiguous copy.
        try:
            PyObject_GetBuffer(body, &view, PyBUF_FULL_RO)
        except Exception as exc:
            raise _payload_error(
                f"payload must be bytes-like, not {type(body).__name__} "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        if view.itemsize != 1:
            itemsize = view.itemsize
            PyBuffer_Release(&view)
            raise _payload_error(
                f"payload must be a buffer of bytes, not of {itemsize}-byte items"
            )
        if not PyBuffer_IsContiguous(&view, b'A'):
            PyBuffer_Release(&view)
            contiguous = PyMemoryView_GetContiguous(body, PyBUF_READ, b'C')
            PyObject_GetBuffer(contiguous, &view, PyBUF_SIMPLE)
        have_view = True
        data = <const uint8_t *> view.buf
        length = view.len
    try:
        if _busy:  # a nested call (see _busy): private buffers
            records = <ck_signal_record *> PyMem_Malloc(
                CK_PAYLOAD_MAX_SIGNALS * sizeof(ck_signal_record))
            vectors = <double *> PyMem_Malloc(
                CK_PAYLOAD_MAX_SIGNALS * CK_PAYLOAD_MAX_VECTOR * sizeof(double))
            if records == NULL or vectors == NULL:
                raise MemoryError()
        else:
            _busy = owner = True
            records = _records
            vectors = _vectors
        status = ck_payload_decode(
            data, <size_t> length, records, CK_PAYLOAD_MAX_SIGNALS,
            vectors, CK_PAYLOAD_MAX_SIGNALS * CK_PAYLOAD_MAX_VECTOR, &count, &where,
        )
        if status != CK_PAYLOAD_OK:
            raise _payload_error(
                f"{ck_payload_error_str(status).decode()} (signal {count}, byte {where})"
            )
        signals = PyList_New(<Py_ssize_t> count)
        # The list holds NULLs and each Signal empty slots until filled, and
        # filling allocates (tuples, Signals) and so may run the garbage
        # collector, whose callbacks and finalizers must not reach either:
        # both stay untracked until complete.  Deallocation copes with both.
        PyObject_GC_UnTrack(signals)
        confidence = half_life = ttl = age = source = None
        for i in range(count):
            r = &records[i]
            signal = PyType_GenericAlloc(<PyTypeObject *> _signal_type, 0)
            PyObject_GC_UnTrack(signal)
            _put(signal, _off_topic, _topic(data + r.topic_offset, r.topic_length))
            if r.kind == CK_VALUE_FLOAT:
                value = PyFloat_FromDouble(r.number)
            elif r.kind == CK_VALUE_CATEGORY:
                value = PyLong_FromUnsignedLong(r.category)
            elif r.kind == CK_VALUE_VECTOR:
                value = PyTuple_New(r.value_length)
                for d in range(r.value_length):
                    item = PyFloat_FromDouble(vectors[r.value_offset + d])
                    Py_INCREF(item)
                    PyTuple_SET_ITEM(value, d, item)
            else:
                value = PyBytes_FromStringAndSize(
                    <const char *> data + r.value_offset, r.value_length
                )
            _put(signal, _off_value, value)
            if r.confidence != last_confidence:
                last_confidence = r.confidence
                confidence = PyFloat_FromDouble(r.confidence)
            _put(signal, _off_confidence, confidence)
            if r.half_life_ms != last_half_life:
                last_half_life = r.half_life_ms
                half_life = _lifetime(r.half_life_ms)
            _put(signal, _off_half_life, half_life)
            if r.ttl_ms != last_ttl:
                last_ttl = r.ttl_ms
                ttl = _lifetime(r.ttl_ms)
            _put(signal, _off_ttl, ttl)
            _put(signal, _off_qos, qos)
            if not have_source or r.source != last_source:
                have_source = True
                last_source = r.source
                source = PyLong_FromUnsignedLong(r.source)
            _put(signal, _off_source, source)
            _put(signal, _off_seq, PyLong_FromUnsignedLong(r.seq))
            if not have_age or r.age_ms != last_age:
                have_age = True
                last_age = r.age_ms
                age = PyFloat_FromDouble(<double> r.age_ms / 1000.0 + age_offset)
            _put(signal, _off_age, age)
            _put(signal, _off_hops, _HOPS[r.hops])
            Py_INCREF(signal)
            PyObject_GC_Track(signal)
            PyList_SET_ITEM(signals, <Py_ssize_t> i, signal)
        PyObject_GC_Track(signals)
        return signals
    finally:
        if owner:
            _busy = False
        elif records != _records:
            PyMem_Free(records)
            PyMem_Free(vectors)
        if have_view:
            PyBuffer_Release(&view)
