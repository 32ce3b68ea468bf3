# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled FEC codecs: thin wrappers over csrc/ck_rs.c and csrc/ck_rsc.c.

The wrappers only check arguments, take buffers without copying (the buffer
protocol), make one C call per block with the GIL released, and map C status
codes to :class:`~cloudkernel.errors.FECError` in one place (``_raise``).
The pure-Python twin with the same API is ``_fec_ref``.
"""

import warnings

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.ref cimport PyObject
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from cloudkernel.core._csrc cimport *

from cloudkernel.errors import FECError

__all__ = ["ErasureCode", "RSCodec", "available_kernels", "kernel", "use_kernel"]

DEF MAX_PACKETS = 256


cdef int _raise(int status, str context) except -1:
    """Turn a negative ck_status into FECError (MemoryError for CK_ENOMEM)."""
    if status == CK_ENOMEM:
        raise MemoryError(context)
    raise FECError(f"{context}: {ck_status_str(status).decode()}")


def available_kernels():
    """Names of the GF(2^8) kernels this CPU can run, slowest first."""
    cdef const ck_gf256_kernel *const *ks = ck_gf256_kernels_compiled()
    names = []
    cdef size_t i = 0
    while ks[i] != NULL:
        if ck_gf256_kernel_supported(ks[i]):
            names.append(ks[i].name.decode())
        i += 1
    return names


def kernel():
    """Name of the active GF(2^8) kernel."""
    return ck_gf256_active().name.decode()


def use_kernel(name):
    """Make the named kernel active for every codec (tests and benchmarks)."""
    if not isinstance(name, str):
        raise FECError(f"kernel name must be a str, got {name!r}")
    status = ck_gf256_select(name.encode())
    if status == CK_EUNSUPPORTED:
        raise FECError(f"kernel {name!r} is not supported by this CPU "
                       f"(available: {', '.join(available_kernels())})")
    if status != CK_OK:
        raise FECError(f"unknown kernel {name!r} (available: {', '.join(available_kernels())})")


cdef str _name(str kind, int index):
    # Built only when an error is raised: no string formatting per packet.
    return kind if index < 0 else f"{kind} {index}"


cdef const uint8_t *_view(object obj, Py_buffer *view, bint writable, str kind,
                          int index=-1) except NULL:
    """Get obj's buffer into view (the caller releases it)."""
    cdef int flags = PyBUF_WRITABLE if writable else PyBUF_SIMPLE
    try:
        PyObject_GetBuffer(obj, view, flags)
    except BufferError:
        raise FECError(f"{_name(kind, index)} is not a writable buffer") from None
    return <const uint8_t *>view.buf if view.buf != NULL else <const uint8_t *>b""


cdef struct _Views:
    # Buffer views held for one call (on the C stack: no allocation per call),
    # all of one length.
    Py_buffer views[MAX_PACKETS]
    int count
    Py_ssize_t length


cdef const uint8_t *_add(_Views *v, object obj, bint writable, str kind, int index) except NULL:
    if v.count >= MAX_PACKETS:
        raise FECError(f"more than {MAX_PACKETS} buffers in one call")
    cdef const uint8_t *ptr = _view(obj, &v.views[v.count], writable, kind, index)
    cdef Py_ssize_t n = v.views[v.count].len
    v.count += 1
    if v.length < 0:
        v.length = n
    elif n != v.length:
        raise FECError(f"{_name(kind, index)} has {n} bytes, expected {v.length}")
    return ptr


cdef void _release(_Views *v) noexcept:
    cdef int i
    for i in range(v.count):
        PyBuffer_Release(&v.views[i])
    v.count = 0


cdef class ErasureCode:
    """Systematic Reed-Solomon erasure code over GF(2^8) (Cauchy matrix).

    :param k: source packets per block, >= 1.
    :param m: repair packets per block, >= 0, with k + m <= 256.

    Repair packet r (k <= r < k + m) is the sum over sources i of
    ``1 / (r ^ i) * source[i]`` in GF(2^8) (polynomial 0x11d).  Any k of the
    k + m packets rebuild the block.
    """

    cdef ck_rs *_rs
    cdef readonly int k
    cdef readonly int m

    def __cinit__(self, k, m):
        self._rs = NULL
        if not isinstance(k, int) or not isinstance(m, int):
            raise FECError(f"k and m must be ints, got k={k!r}, m={m!r}")
        if k < 1 or k > 256:
            raise FECError(f"k must be 1..256, got {k}")
        if m < 0 or k + m > 256:
            raise FECError(f"m must be 0..{256 - k} for k={k} (k + m <= 256), got {m}")
        self.k = k
        self.m = m
        cdef int status = ck_rs_new(k, m, &self._rs)
        if status != CK_OK:
            _raise(status, f"ErasureCode({k}, {m})")

    def __dealloc__(self):
        ck_rs_free(self._rs)

    def __repr__(self):
        return f"ErasureCode(k={self.k}, m={self.m})"

    cdef int _sources(self, _Views *v, sources, const uint8_t **ptrs) except -1:
        if len(sources) != self.k:
            raise FECError(f"expected {self.k} source packets, got {len(sources)}")
        cdef int i = 0
        for obj in sources:
            ptrs[i] = _add(v, obj, False, "source packet", i)
            i += 1
        if v.length < 0:
            v.length = 0
        return 0

    def encode(self, sources):
        """Return the m repair packets of the k equal-length source packets."""
        cdef const uint8_t *src[MAX_PACKETS]
        cdef uint8_t *rep[MAX_PACKETS]
        cdef _Views v
        cdef int j, status
        cdef size_t length
        v.count = 0
        v.length = -1
        try:
            self._sources(&v, sources, src)
            length = v.length
            repairs = []
            for j in range(self.m):
                out = PyBytes_FromStringAndSize(NULL, length)
                rep[j] = <uint8_t *>PyBytes_AS_STRING(out)
                repairs.append(out)
            with nogil:
                status = ck_rs_encode(self._rs, src, rep, length)
        finally:
            _release(&v)
        if status != CK_OK:
            _raise(status, "encode")
        return repairs

    def encode_into(self, sources, repairs):
        """Write the m repair packets into the caller's m writable buffers."""
        cdef const uint8_t *src[MAX_PACKETS]
        cdef uint8_t *rep[MAX_PACKETS]
        cdef _Views v
        cdef int j = 0, status
        cdef size_t length
        v.count = 0
        v.length = -1
        try:
            self._sources(&v, sources, src)
            if len(repairs) != self.m:
                raise FECError(f"expected {self.m} repair buffers, got {len(repairs)}")
            for obj in repairs:
                rep[j] = <uint8_t *>_add(&v, obj, True, "repair buffer", self.k + j)
                j += 1
            length = v.length
            with nogil:
                status = ck_rs_encode(self._rs, src, rep, length)
        finally:
            _release(&v)
        if status != CK_OK:
            _raise(status, "encode_into")

    cdef int _received(self, _Views *v, received, const uint8_t **packets,
                       int *slots=NULL) except -1:
        # slots[idx], if given, is the view holding packet idx.
        cdef int n = self.k + self.m
        memset(packets, 0, sizeof(uint8_t *) * n)
        cdef Py_ssize_t idx
        for key, obj in received.items():
            if not isinstance(key, int):
                raise FECError(f"packet index must be an int, got {key!r}")
            try:
                idx = key
            except OverflowError:
                idx = -1
            if idx < 0 or idx >= n:
                raise FECError(f"packet index {key} out of range 0..{n - 1}")
            if packets[idx] != NULL:
                raise FECError(f"packet index {key} appears twice")
            if slots != NULL:
                slots[idx] = v.count
            packets[idx] = _add(v, obj, False, "packet", <int>idx)
        if v.count < self.k:
            raise FECError(f"need {self.k} packets to rebuild the block, got {v.count}")
        return 0

    def decode(self, received):
        """Return the k source packets from any k (or more) of the k + m.

        :param received: mapping of packet index to packet, all one length.
        """
        cdef const uint8_t *packets[MAX_PACKETS]
        cdef uint8_t *out[MAX_PACKETS]
        cdef int slots[MAX_PACKETS]
        cdef _Views v
        cdef int i, status
        cdef size_t length
        cdef PyObject *exporter
        v.count = 0
        v.length = -1
        try:
            self._received(&v, received, packets, slots)
            length = v.length
            sources = []
            for i in range(self.k):
                out[i] = NULL
                if packets[i] != NULL:
                    # An immutable bytes packet is returned as it is: no copy,
                    # and no second lookup in the mapping.
                    exporter = <PyObject *>v.views[slots[i]].obj
                    if exporter != NULL and type(<object>exporter) is bytes:
                        obj = <object>exporter
                    else:
                        obj = PyBytes_FromStringAndSize(<const char *>packets[i], length)
                else:
                    obj = PyBytes_FromStringAndSize(NULL, length)
                    out[i] = <uint8_t *>PyBytes_AS_STRING(obj)
                sources.append(obj)
            with nogil:
                status = ck_rs_decode(self._rs, packets, out, length)
        finally:
            _release(&v)
        if status != CK_OK:
            _raise(status, "decode")
        return sources

    def decode_into(self, received, out):
        """Rebuild each missing source i into ``out[i]``; return their indices.

        :param received: mapping of packet index to packet, all one length.
        :param out: mapping with a writable buffer of the packet length for
            every source index missing from ``received`` (other keys ignored).
        """
        cdef const uint8_t *packets[MAX_PACKETS]
        cdef uint8_t *dst[MAX_PACKETS]
        cdef _Views v
        cdef int i, status
        cdef size_t length
        v.count = 0
        v.length = -1
        try:
            self._received(&v, received, packets)
            rebuilt = []
            for i in range(self.k):
                dst[i] = NULL
                if packets[i] == NULL:
                    try:
                        obj = out[i]
                    except (KeyError, IndexError):
                        raise FECError(f"out has no buffer for missing source {i}") from None
                    dst[i] = <uint8_t *>_add(&v, obj, True, "out buffer for source", i)
                    rebuilt.append(i)
            length = v.length
            with nogil:
                status = ck_rs_decode(self._rs, packets, dst, length)
        finally:
            _release(&v)
        if status != CK_OK:
            _raise(status, "decode_into")
        return rebuilt


cdef class RSCodec:
    """Byte-level Reed-Solomon codec compatible with ``reedsolo.RSCodec``.

    :param nsym: parity bytes per chunk; corrects e errors and s erasures per
        chunk whenever 2e + s <= nsym.
    :param nsize: codeword (chunk) length, at most 255.
    """

    cdef ck_rsc *_rsc
    cdef readonly int nsym
    cdef readonly int nsize

    def __cinit__(self, nsym, nsize=255):
        self._rsc = NULL
        if not isinstance(nsym, int) or not isinstance(nsize, int):
            raise FECError(f"nsym and nsize must be ints, got nsym={nsym!r}, nsize={nsize!r}")
        if nsize < 2 or nsize > 255:
            raise FECError(f"nsize must be 2..255, got {nsize}")
        if nsym < 1 or nsym >= nsize:
            raise FECError(f"nsym must be 1..{nsize - 1} for nsize={nsize}, got {nsym}")
        self.nsym = nsym
        self.nsize = nsize
        cdef int status = ck_rsc_new(nsym, nsize, &self._rsc)
        if status != CK_OK:
            _raise(status, f"RSCodec({nsym}, {nsize})")

    def __dealloc__(self):
        ck_rsc_free(self._rsc)

    def __repr__(self):
        return f"RSCodec(nsym={self.nsym}, nsize={self.nsize})"

    def encode(self, data):
        """Return data cut into chunks of nsize - nsym bytes, each with its parity."""
        cdef Py_buffer view
        cdef const uint8_t *src = _view(data, &view, False, "data")
        cdef size_t length = view.len
        cdef uint8_t *dst
        cdef int status
        try:
            out = PyBytes_FromStringAndSize(NULL, ck_rsc_encoded_len(self._rsc, length))
            dst = <uint8_t *>PyBytes_AS_STRING(out)
            with nogil:
                status = ck_rsc_encode(self._rsc, src, length, dst)
        finally:
            PyBuffer_Release(&view)
        if status != CK_OK:
            _raise(status, "encode")
        return out

    def decode(self, data, erase_pos=None):
        """Correct and return the message of each nsize-byte chunk of data.

        :param erase_pos: positions in data known to be wrong (erasures).
        :raises FECError: if a chunk cannot be corrected or is too short.
        """
        cdef Py_buffer view
        cdef const uint8_t *src = _view(data, &view, False, "data")
        cdef size_t length = view.len
        cdef size_t outlen = ck_rsc_decoded_len(self._rsc, length)
        cdef uint32_t *erase = NULL
        cdef size_t nerase = 0, bad_chunk = 0, corrected = 0
        cdef uint8_t *dst
        cdef int status
        try:
            if outlen == <size_t>-1:
                raise FECError(f"the last chunk has {length % self.nsize} bytes; "
                               f"a chunk needs more than nsym={self.nsym}")
            if erase_pos is not None:
                positions = sorted(set(erase_pos))
                for p in positions:
                    if not isinstance(p, int) or p < 0 or p >= <Py_ssize_t>length:
                        raise FECError(f"erase position {p!r} out of range 0..{length - 1}")
                nerase = len(positions)
                if nerase:
                    erase = <uint32_t *>malloc(nerase * sizeof(uint32_t))
                    if erase == NULL:
                        raise MemoryError()
                    for i, p in enumerate(positions):
                        erase[i] = p
            out = PyBytes_FromStringAndSize(NULL, outlen)
            dst = <uint8_t *>PyBytes_AS_STRING(out)
            with nogil:
                status = ck_rsc_decode(self._rsc, src, length, erase, nerase, dst,
                                       &bad_chunk, &corrected)
        finally:
            free(erase)
            PyBuffer_Release(&view)
        if status == CK_EUNCORRECTABLE:
            raise FECError(f"chunk {bad_chunk} cannot be corrected: more errors and erasures "
                           f"than nsym={self.nsym} allows (2 * errors + erasures <= nsym)")
        if status != CK_OK:
            _raise(status, "decode")
        return out

    def check(self, data):
        """Return, per nsize-byte chunk, whether it is a valid codeword."""
        cdef Py_buffer view
        cdef const uint8_t *src = _view(data, &view, False, "data")
        cdef size_t length = view.len
        cdef uint8_t ok[64]
        cdef uint8_t *flags = ok
        cdef size_t chunks = ck_rsc_chunks(self._rsc, length), c
        cdef int status
        try:
            if chunks > 64:
                flags = <uint8_t *>malloc(chunks)
                if flags == NULL:
                    raise MemoryError()
            with nogil:
                status = ck_rsc_check(self._rsc, src, length, flags)
            result = [flags[c] != 0 for c in range(chunks)]
        finally:
            if flags != ok:
                free(flags)
            PyBuffer_Release(&view)
        if status != CK_OK:
            _raise(status, "check")
        return result


ck_gf256_init()
if ck_gf256_env_status() != CK_OK:
    import os as _os
    warnings.warn(
        f"CLOUDKERNEL_GF_KERNEL={_os.environ.get('CLOUDKERNEL_GF_KERNEL')!r} is "
        f"{'not supported by this CPU' if ck_gf256_env_status() == CK_EUNSUPPORTED else 'unknown'}"
        f" (available: {', '.join(available_kernels())}); using {kernel()!r}",
        RuntimeWarning,
    )
