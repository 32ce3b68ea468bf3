"""Pure-Python reference for cloudkernel's FEC codecs (the twin of ``_fec.pyx``).

This module is the test oracle first and the fallback second: it is written to
be obviously correct, not fast.  ``cloudkernel.fec`` uses it when the compiled
extension is missing or ``CLOUDKERNEL_PUREPYTHON=1``; both export exactly the
same API, and every bad argument or undecodable input raises
:class:`~cloudkernel.errors.FECError` with the offending value in its message.

The field
    GF(2^8) = GF(2)[x] / (x^8 + x^4 + x^3 + x^2 + 1), polynomial 0x11d, with
    generator alpha = 2 (the class of x).  Bytes are field elements: addition
    is XOR, multiplication goes through log/exp tables built below.

:class:`ErasureCode` (packet level, systematic MDS)
    k source packets (indices 0..k-1) and m repair packets (k..k+m-1), all of
    one length L.  Repair packet r is, byte by byte::

        repair_r = XOR over i in 0..k-1 of  C(r, i) * source_i
        C(r, i)  = 1 / (r XOR i)                       (in GF(2^8))

    where the packet indices r and i are taken as field elements.  Because
    r >= k > i, r XOR i is never 0.  C is a Cauchy matrix, 1 / (x_r + y_i) with
    the x_r = r all distinct, the y_i = i all distinct and no x_r equal to a
    y_i, so every square submatrix of C is invertible; hence any k rows of the
    (k + m) x k generator matrix [identity; C] are invertible and any k of the
    k + m packets rebuild the block.  C(r, i) does not depend on k or m: a code
    with more repairs extends one with fewer.  This definition is fixed by the
    test vectors in ``tests/vectors/erasure_code.json``.

:class:`RSCodec` (byte level, error and erasure correcting)
    The code of ``reedsolo.RSCodec(nsym, nsize)`` with its defaults (prim
    0x11d, generator 2, fcr 0, c_exp 8), with the same chunking and the same
    results; see the class docstring.

Kernel functions
    :func:`kernel`, :func:`available_kernels` and :func:`use_kernel` mirror
    the compiled module's SIMD kernel selection; the only kernel here is
    ``"python"``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import FECError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "ErasureCode",
    "RSCodec",
    "available_kernels",
    "kernel",
    "use_kernel",
]

# ---------------------------------------------------------------------------
# GF(2^8) arithmetic
# ---------------------------------------------------------------------------

GF_POLY = 0x11D
"""Reduction polynomial x^8 + x^4 + x^3 + x^2 + 1, with its x^8 bit."""

GF_GENERATOR = 2
"""alpha, a primitive element: its powers alpha^0 .. alpha^254 are all of GF(2^8)*."""


def _build_tables() -> tuple[list[int], list[int]]:
    """Return (exp, log): exp[e] = alpha^e for e in 0..509, log[alpha^e] = e.

    alpha^(e+1) = alpha^e * x: shift left one bit (multiply by x) and, when the
    product reaches degree 8, subtract (XOR) the field polynomial, which is
    reduction modulo it.  exp is doubled so that exp[log a + log b] needs no
    reduction modulo 255.
    """
    exp = [0] * 510
    log = [0] * 256
    value = 1
    for e in range(255):
        exp[e] = value
        log[value] = e
        value <<= 1
        if value & 0x100:
            value ^= GF_POLY
    for e in range(255, 510):
        exp[e] = exp[e - 255]
    # alpha must be primitive: its first 255 powers are the 255 nonzero bytes.
    if sorted(exp[:255]) != list(range(1, 256)):  # pragma: no cover - constant data
        raise AssertionError("0x11d with generator 2 does not generate GF(2^8)")
    return exp, log


_EXP, _LOG = _build_tables()


def gf_mul(a: int, b: int) -> int:
    """a * b in GF(2^8): alpha^(log a + log b), and 0 if either is 0."""
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gf_inv(a: int) -> int:
    """1 / a for a != 0: alpha^(255 - log a), since alpha^255 = 1."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return _EXP[255 - _LOG[a]]


def gf_div(a: int, b: int) -> int:
    """a / b for b != 0."""
    return gf_mul(a, gf_inv(b))


def gf_pow_alpha(e: int) -> int:
    """alpha^e for any integer e (negative too): the order of alpha is 255."""
    return _EXP[e % 255]


# _MUL_TABLES[c] maps every byte b to c * b: ``data.translate(_MUL_TABLES[c])``
# multiplies a whole region by the constant c.
_MUL_TABLES: tuple[bytes, ...] = tuple(bytes(gf_mul(c, b) for b in range(256)) for c in range(256))


def _scale(c: int, data: bytes) -> bytes:
    """Multiply every byte of ``data`` by the constant ``c``."""
    return data.translate(_MUL_TABLES[c])


def _xor(a: bytes, b: bytes) -> bytes:
    """Add (XOR) two regions of equal length."""
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _combine(coefficients: Sequence[int], packets: Sequence[bytes], length: int) -> bytes:
    """Return the sum over j of coefficients[j] * packets[j], byte by byte."""
    acc = 0
    for c, packet in zip(coefficients, packets, strict=True):
        if c:
            acc ^= int.from_bytes(_scale(c, packet), "little")
    return acc.to_bytes(length, "little")


# ---------------------------------------------------------------------------
# Argument checking shared by both codecs
# ---------------------------------------------------------------------------


def _check_int(value: object, name: str) -> int:
    """Return ``value`` as an int (anything with __index__), else raise FECError."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise FECError(f"{name} must be an int, got {value!r}") from None


def _read(obj: ReadableBuffer) -> bytes:
    """Copy a bytes-like object's bytes (TypeError if it is not a buffer)."""
    with memoryview(obj) as view:
        return view.tobytes()


def _writable(obj: WriteableBuffer, what: str, length: int) -> memoryview:
    """Return a flat writable byte view of ``obj`` holding exactly ``length`` bytes."""
    view = memoryview(obj)
    if view.readonly:
        raise FECError(f"{what} is read-only")
    if view.nbytes != length:
        raise FECError(f"{what} has {view.nbytes} bytes, expected {length}")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


# ---------------------------------------------------------------------------
# ErasureCode
# ---------------------------------------------------------------------------


def cauchy_coefficient(r: int, i: int) -> int:
    """C(r, i) = 1 / (r XOR i): the weight of source i in repair packet r."""
    return gf_inv(r ^ i)


class ErasureCode:
    """Systematic MDS Reed-Solomon erasure code: k sources, m repairs, any k rebuild.

    See the module docstring for the Cauchy generator matrix.

    :param k: number of source packets, 1 <= k.
    :param m: number of repair packets, 0 <= m, with k + m <= 256.
    :raises FECError: if k or m is out of range.
    """

    __slots__ = ("_k", "_m", "_rows")

    def __init__(self, k: int, m: int) -> None:
        k = _check_int(k, "k")
        m = _check_int(m, "m")
        if not 1 <= k <= 256:
            raise FECError(f"k must be 1..256, got {k}")
        if not 0 <= m <= 256 - k:
            raise FECError(f"m must be 0..{256 - k} for k={k}, got {m}")
        self._k = k
        self._m = m
        # self._rows[p] is row p of the (k + m) x k generator matrix [identity; C]:
        # packet p = sum over i of self._rows[p][i] * source_i.
        rows: list[bytes] = []
        for p in range(k + m):
            if p < k:
                rows.append(bytes(1 if i == p else 0 for i in range(k)))
            else:
                rows.append(bytes(cauchy_coefficient(p, i) for i in range(k)))
        self._rows = tuple(rows)

    @property
    def k(self) -> int:
        """Number of source packets."""
        return self._k

    @property
    def m(self) -> int:
        """Number of repair packets."""
        return self._m

    def __repr__(self) -> str:
        return f"ErasureCode(k={self._k}, m={self._m})"

    # -- encoding -----------------------------------------------------------

    def _sources(self, sources: Sequence[ReadableBuffer]) -> tuple[list[bytes], int]:
        """Copy the k sources, checking count and lengths; return them and L."""
        packets = [_read(source) for source in sources]
        if len(packets) != self._k:
            raise FECError(f"expected {self._k} source packets, got {len(packets)}")
        length = len(packets[0])
        for index, packet in enumerate(packets):
            if len(packet) != length:
                raise FECError(f"packet {index} has {len(packet)} bytes, expected {length}")
        return packets, length

    def encode(self, sources: Sequence[ReadableBuffer]) -> list[bytes]:
        """Return the m repair packets of a block.

        :param sources: exactly k bytes-like packets of one length L (L may be 0).
        :returns: m packets of L bytes, for indices k..k+m-1.
        :raises FECError: on the wrong number of sources or unequal lengths.
        """
        packets, length = self._sources(sources)
        return [_combine(self._rows[r], packets, length) for r in range(self._k, self._k + self._m)]

    def encode_into(
        self, sources: Sequence[ReadableBuffer], repairs: Sequence[WriteableBuffer]
    ) -> None:
        """Like :meth:`encode`, writing the repairs into caller buffers.

        :param sources: exactly k bytes-like packets of one length L.
        :param repairs: exactly m writable buffers of L bytes each.
        :raises FECError: on a bad source, the wrong number of repair buffers,
            or a repair buffer that is read-only or not L bytes long.  Nothing
            is written unless every argument is valid.
        """
        packets, length = self._sources(sources)
        targets = list(repairs)
        if len(targets) != self._m:
            raise FECError(f"expected {self._m} repair buffers, got {len(targets)}")
        views = [
            _writable(target, f"repair buffer {j}", length) for j, target in enumerate(targets)
        ]
        for j, view in enumerate(views):
            view[:] = _combine(self._rows[self._k + j], packets, length)

    # -- decoding -----------------------------------------------------------

    def _received(self, received: Mapping[int, ReadableBuffer]) -> tuple[dict[int, bytes], int]:
        """Check and copy the received packets; return {index: packet} and L."""
        if not isinstance(received, Mapping):
            raise TypeError(f"received must be a mapping, got {type(received).__name__}")
        n = self._k + self._m
        packets: dict[int, bytes] = {}
        for key, value in received.items():
            index = _check_int(key, "packet index")
            if not 0 <= index < n:
                raise FECError(f"index {index} out of range 0..{n - 1}")
            if index in packets:
                raise FECError(f"packet index {index} appears twice")
            packets[index] = _read(value)
        if len(packets) < self._k:
            raise FECError(f"need {self._k} packets to rebuild the block, got {len(packets)}")
        ordered = sorted(packets)
        length = len(packets[ordered[0]])
        for index in ordered:
            if len(packets[index]) != length:
                raise FECError(f"packet {index} has {len(packets[index])} bytes, expected {length}")
        return packets, length

    def _rebuild(self, packets: dict[int, bytes], length: int) -> dict[int, bytes]:
        """Return {index: packet} for every source index missing from ``packets``.

        Take the k received packets with the lowest indices; their generator
        rows form a k x k matrix M with M @ sources = chosen packets.  M is
        invertible (see the module docstring), so sources = M^-1 @ chosen, and
        source i is row i of M^-1 applied to the chosen packets.
        """
        missing = [i for i in range(self._k) if i not in packets]
        if not missing:
            return {}
        chosen = sorted(packets)[: self._k]
        inverse = _invert([self._rows[p] for p in chosen])
        chosen_packets = [packets[p] for p in chosen]
        return {i: _combine(inverse[i], chosen_packets, length) for i in missing}

    def decode(self, received: Mapping[int, ReadableBuffer]) -> list[bytes]:
        """Rebuild the k source packets from any k (or more) of the k + m.

        :param received: packet index -> packet, all of one length; at least k
            entries.  With more than k, the k lowest indices are used.
        :returns: the k source packets, in index order.
        :raises FECError: on a bad index, unequal lengths or fewer than k packets.
        """
        packets, length = self._received(received)
        rebuilt = self._rebuild(packets, length)
        return [packets[i] if i in packets else rebuilt[i] for i in range(self._k)]

    def decode_into(
        self, received: Mapping[int, ReadableBuffer], out: Mapping[int, WriteableBuffer]
    ) -> list[int]:
        """Rebuild the missing source packets into caller buffers.

        :param received: as for :meth:`decode`.
        :param out: for every source index missing from ``received``, a writable
            buffer of the packet length; other keys are ignored.
        :returns: the rebuilt source indices, ascending.
        :raises FECError: as :meth:`decode`, or when a needed out buffer is
            missing, read-only or of the wrong length.  Nothing is written
            unless every argument is valid.
        """
        packets, length = self._received(received)
        if not isinstance(out, Mapping):
            raise TypeError(f"out must be a mapping, got {type(out).__name__}")
        missing = [i for i in range(self._k) if i not in packets]
        views: dict[int, memoryview] = {}
        for i in missing:
            if i not in out:
                raise FECError(f"out has no buffer for missing source {i}")
            views[i] = _writable(out[i], f"out[{i}]", length)
        for i, packet in self._rebuild(packets, length).items():
            views[i][:] = packet
        return missing


def _invert(matrix: Sequence[bytes]) -> list[bytes]:
    """Invert a square matrix over GF(2^8) by Gauss-Jordan elimination.

    Rows are bytes.  Reduce [A | I] to [I | A^-1] with row operations: for each
    column, bring up a row with a nonzero entry there (the pivot), divide it
    by the pivot, then subtract (XOR) multiples of it from every other row to
    clear the column.
    """
    n = len(matrix)
    rows = [
        bytes(row) + bytes(1 if j == i else 0 for j in range(n)) for i, row in enumerate(matrix)
    ]
    for col in range(n):
        pivot = next((r for r in range(col, n) if rows[r][col]), None)
        if pivot is None:  # pragma: no cover - any k rows of [I; C] are independent
            raise AssertionError("generator submatrix is singular")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = _scale(gf_inv(rows[col][col]), rows[col])
        for r in range(n):
            factor = rows[r][col]
            if r != col and factor:
                rows[r] = _xor(rows[r], _scale(factor, rows[col]))
    return [row[n:] for row in rows]


# ---------------------------------------------------------------------------
# RSCodec
# ---------------------------------------------------------------------------
#
# Conventions (those of reedsolo):
#   * A chunk of n <= 255 bytes c[0..n-1] is the polynomial
#     c(x) = sum over j of c[j] * x^(n-1-j): the first byte is the highest
#     degree.  Byte position j has degree d = n-1-j and "locator" X = alpha^d.
#   * The generator polynomial is g(x) = prod over i in 0..nsym-1 of
#     (x - alpha^i) (first consecutive root fcr = 0).  Encoding is systematic:
#     the message bytes followed by the remainder of message(x) * x^nsym
#     divided by g(x), so every codeword is a multiple of g(x) and vanishes at
#     alpha^0 .. alpha^(nsym-1).
#   * Syndromes S_i = r(alpha^i), i = 0..nsym-1, of a received chunk r.  With
#     errata (errors and erasures) of magnitudes Y_l at locators X_l,
#     S_i = sum over l of Y_l * X_l^i; all are 0 iff r is a codeword.
#
# Helper polynomials in the decoder (locators, evaluators) are lists of
# coefficients with the LOWEST degree first: p[t] is the coefficient of x^t.


def _poly_eval_low(poly: Sequence[int], x: int) -> int:
    """Evaluate a lowest-degree-first polynomial at x (Horner's rule)."""
    times_x = _MUL_TABLES[x]
    y = 0
    for coefficient in reversed(poly):
        y = times_x[y] ^ coefficient
    return y


def _poly_mul_low(p: Sequence[int], q: Sequence[int]) -> list[int]:
    """Product of two lowest-degree-first polynomials."""
    product = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        times_a = _MUL_TABLES[a]
        for j, b in enumerate(q):
            product[i + j] ^= times_a[b]
    return product


def _locator(locators: Iterable[int]) -> list[int]:
    """prod over X of (1 - X x): its roots are the inverses X^-1 of the locators."""
    poly = [1]
    for x in locators:
        poly = _poly_mul_low(poly, [1, x])  # 1 - X x = 1 + X x in characteristic 2
    return poly


def _berlekamp_massey(sequence: Sequence[int]) -> tuple[list[int], int]:
    """Shortest linear feedback shift register generating ``sequence`` (Massey 1969).

    Returns (C, L): the connection polynomial C(x) = 1 + C_1 x + ... + C_L x^L
    (lowest degree first, C_t = 0 allowed for t > deg C) and its length L, such
    that sequence[n] + sum over t in 1..L of C_t * sequence[n - t] = 0 for every
    n in L..len(sequence)-1.

    A sequence t_n = sum over l of Z_l * X_l^n with e distinct nonzero X_l is
    generated by prod over l of (1 - X_l x) and by nothing shorter, so when
    2e <= len(sequence) the result is that error locator.
    """
    c = [1]  # current connection polynomial
    b = [1]  # copy of c before the last length change
    length = 0  # L
    shift = 1  # iterations since the last length change
    last_discrepancy = 1  # discrepancy at the last length change
    for n, value in enumerate(sequence):
        # Discrepancy: how far the register's prediction is from sequence[n].
        discrepancy = value
        for t in range(1, length + 1):
            if t < len(c):
                discrepancy ^= gf_mul(c[t], sequence[n - t])
        if discrepancy == 0:
            shift += 1
            continue
        # c(x) -= (discrepancy / last_discrepancy) * x^shift * b(x) cancels it.
        factor = gf_div(discrepancy, last_discrepancy)
        updated = c + [0] * max(0, len(b) + shift - len(c))
        for t, coefficient in enumerate(b):
            updated[t + shift] ^= gf_mul(factor, coefficient)
        if 2 * length <= n:
            # The register must grow to n + 1 - L.
            b, c = c, updated
            length = n + 1 - length
            last_discrepancy = discrepancy
            shift = 1
        else:
            c = updated
            shift += 1
    return c, length


class RSCodec:
    """Byte-level Reed-Solomon error and erasure correction, reedsolo-compatible.

    Same code, chunking and results as ``reedsolo.RSCodec(nsym, nsize)`` with
    its defaults (prim 0x11d, generator 2, fcr 0, c_exp 8):

    * :meth:`encode` cuts the data into chunks of ``nsize - nsym`` bytes (the
      last may be shorter) and appends ``nsym`` parity bytes to each.
    * :meth:`decode` cuts its input into chunks of ``nsize`` bytes (the last
      may be shorter but must hold more than ``nsym``), corrects each chunk
      with e unknown errors and s erasures whenever 2e + s <= nsym, and
      returns the messages with the parity stripped.
    * :meth:`check` says for each ``nsize``-chunk whether it is a codeword.

    :param nsym: parity bytes per chunk, 1 <= nsym < nsize.
    :param nsize: chunk length (message + parity), at most 255.
    :raises FECError: if nsym or nsize is out of range.
    """

    __slots__ = ("_generator", "_nsize", "_nsym")

    def __init__(self, nsym: int, nsize: int = 255) -> None:
        nsym = _check_int(nsym, "nsym")
        nsize = _check_int(nsize, "nsize")
        if not 2 <= nsize <= 255:
            raise FECError(f"nsize must be 2..255, got {nsize}")
        if not 1 <= nsym < nsize:
            raise FECError(f"nsym must be 1..{nsize - 1} for nsize={nsize}, got {nsym}")
        self._nsym = nsym
        self._nsize = nsize
        # g(x) = prod over i of (x - alpha^i), highest degree first; g[0] = 1.
        generator = [1]
        for i in range(nsym):
            root = gf_pow_alpha(i)
            generator = [
                (generator[j] if j < len(generator) else 0)
                ^ (gf_mul(root, generator[j - 1]) if j >= 1 else 0)
                for j in range(len(generator) + 1)
            ]
        self._generator = bytes(generator)

    @property
    def nsym(self) -> int:
        """Parity bytes per chunk."""
        return self._nsym

    @property
    def nsize(self) -> int:
        """Chunk length, message plus parity."""
        return self._nsize

    def __repr__(self) -> str:
        return f"RSCodec(nsym={self._nsym}, nsize={self._nsize})"

    # -- encoding -----------------------------------------------------------

    def _parity(self, message: bytes) -> bytes:
        """Remainder of message(x) * x^nsym divided by g(x), highest degree first.

        Long division by the monic g(x), one message byte at a time: the
        register holds the running remainder; the byte entering at the top
        plus the register's top coefficient is the next quotient coefficient
        q, and q * g(x) (without its leading 1) is subtracted from the shifted
        register.
        """
        tail = self._generator[1:]  # g_1 .. g_nsym
        remainder = bytes(self._nsym)
        for byte in message:
            q = byte ^ remainder[0]
            remainder = remainder[1:] + b"\x00"
            if q:
                remainder = _xor(remainder, _scale(q, tail))
        return remainder

    def encode(self, data: ReadableBuffer) -> bytes:
        """Append nsym parity bytes to every (nsize - nsym)-byte chunk of ``data``.

        :param data: the message, any length (empty gives ``b""``).
        :returns: the encoded bytes, byte-equal to ``reedsolo.RSCodec.encode``.
        """
        message = _read(data)
        step = self._nsize - self._nsym
        out = bytearray()
        for start in range(0, len(message), step):
            chunk = message[start : start + step]
            out += chunk
            out += self._parity(chunk)
        return bytes(out)

    # -- decoding -----------------------------------------------------------

    def _syndromes(self, chunk: Sequence[int]) -> list[int]:
        """S_i = chunk(alpha^i) for i = 0..nsym-1 (Horner, highest degree first)."""
        syndromes = []
        for i in range(self._nsym):
            times_x = _MUL_TABLES[gf_pow_alpha(i)]  # times_x[y] = y * alpha^i
            y = 0
            for byte in chunk:
                y = times_x[y] ^ byte
            syndromes.append(y)
        return syndromes

    def _correct(self, chunk: bytearray, erasures: list[int], number: int) -> None:
        """Correct one chunk in place, or raise FECError.

        :param chunk: n bytes, nsym < n <= nsize.
        :param erasures: distinct positions in the chunk whose bytes are unknown.
        :param number: the chunk's number, for messages.
        """
        nsym = self._nsym
        n = len(chunk)
        s = len(erasures)
        if s > nsym:
            raise FECError(f"too many erasures to correct in chunk {number}: {s} > nsym={nsym}")
        # An erased byte carries no information; zero it so the result cannot
        # depend on it.
        for position in erasures:
            chunk[position] = 0
        syndromes = self._syndromes(chunk)
        if not any(syndromes):
            return  # a codeword already

        def locator_of(position: int) -> int:
            return gf_pow_alpha(n - 1 - position)

        # Erasure locator Gamma(x) = prod over erasures of (1 - X x).
        gamma = _locator(locator_of(p) for p in erasures)

        # Forney (modified) syndromes: the coefficients s..nsym-1 of
        # Gamma(x) * S(x), where S(x) = sum of S_i x^i.  Coefficient j >= s is
        # sum over t of gamma_t S_(j-t) = sum over errata l of
        # Y_l X_l^j Gamma(X_l^-1), and Gamma(X_l^-1) = 0 for erasures, so these
        # nsym - s values are sum over errors l of Z_l X_l^(j-s) with
        # Z_l = Y_l X_l^s Gamma(X_l^-1) != 0: a sequence generated by the error
        # locator sigma(x) = prod over errors of (1 - X_l x) alone.
        modified = _poly_mul_low(gamma, syndromes)[s:nsym]

        # Berlekamp-Massey finds sigma when 2e <= nsym - s, i.e. 2e + s <= nsym.
        sigma, e = _berlekamp_massey(modified)
        degree = max(t for t, coefficient in enumerate(sigma) if coefficient)
        if 2 * e + s > nsym or degree != e:
            raise FECError(f"too many errors to correct in chunk {number}")

        # Chien search: the errors are at the positions whose X^-1 is a root
        # of sigma.  A genuine locator of e errors has e roots among the chunk's
        # positions; anything else means more errors than we can correct.
        errors = [p for p in range(n) if _poly_eval_low(sigma, gf_inv(locator_of(p))) == 0]
        if len(errors) != e:
            raise FECError(f"too many errors to correct in chunk {number}")

        # Forney algorithm over all errata, with Lambda = Gamma * sigma their
        # locator and Omega(x) = S(x) Lambda(x) mod x^nsym their evaluator.
        # Since S(x) = sum over l of Y_l / (1 - X_l x) mod x^nsym,
        #   Omega(x) = sum over l of Y_l * prod over j != l of (1 - X_j x),
        #   Lambda'(x) = sum over l of X_l * prod over j != l of (1 - X_j x)
        # (the formal derivative; signs vanish in characteristic 2), so at
        # x = X_l^-1 every term but the l-th vanishes and
        #   Y_l = X_l * Omega(X_l^-1) / Lambda'(X_l^-1).
        errata_locator = _poly_mul_low(gamma, sigma)
        evaluator = _poly_mul_low(syndromes, errata_locator)[:nsym]
        # Formal derivative: d/dx of c_t x^t is t c_t x^(t-1), and t c_t is c_t
        # for odd t and 0 for even t.
        derivative = [
            coefficient if t % 2 == 1 else 0 for t, coefficient in enumerate(errata_locator)
        ][1:]
        for position in erasures + errors:
            x = locator_of(position)
            x_inv = gf_inv(x)
            denominator = _poly_eval_low(derivative, x_inv)
            if denominator == 0:
                # A repeated root: an "error" found at an erasure position.
                raise FECError(f"too many errors to correct in chunk {number}")
            magnitude = gf_mul(x, gf_div(_poly_eval_low(evaluator, x_inv), denominator))
            chunk[position] ^= magnitude

        if any(self._syndromes(chunk)):
            raise FECError(f"too many errors to correct in chunk {number}")

    def _chunks(self, length: int) -> list[tuple[int, int]]:
        """(start, end) of each nsize-chunk of ``length`` bytes."""
        return [(i, min(i + self._nsize, length)) for i in range(0, length, self._nsize)]

    def decode(self, data: ReadableBuffer, erase_pos: Iterable[int] | None = None) -> bytes:
        """Correct and strip the parity of every nsize-chunk of ``data``.

        :param data: encoded bytes; the last chunk may be shorter than nsize
            but must be longer than nsym.
        :param erase_pos: positions in ``data`` (0 <= pos < len(data)) known to
            be wrong; duplicates are ignored.  Each costs one parity byte of
            its chunk, each unknown error two.
        :returns: the corrected messages, concatenated.
        :raises FECError: on a bad position or a final chunk of at most nsym
            bytes, or when a chunk has more errata than it can correct.  With
            errata beyond the capacity the result may also be silently wrong,
            as with any Reed-Solomon decoder.
        """
        received = bytearray(_read(data))
        chunks = self._chunks(len(received))
        if chunks and chunks[-1][1] - chunks[-1][0] <= self._nsym:
            size = chunks[-1][1] - chunks[-1][0]
            raise FECError(f"final chunk has {size} bytes, needs more than nsym={self._nsym}")
        erased: set[int] = set()
        for item in erase_pos if erase_pos is not None else ():
            position = _check_int(item, "erase_pos entry")
            if not 0 <= position < len(received):
                raise FECError(
                    f"erase_pos {position} out of range 0..{len(received) - 1}"
                    if received
                    else f"erase_pos {position} out of range (no data)"
                )
            erased.add(position)
        out = bytearray()
        for number, (start, end) in enumerate(chunks):
            chunk = received[start:end]
            erasures = sorted(p - start for p in erased if start <= p < end)
            self._correct(chunk, erasures, number)
            out += chunk[: len(chunk) - self._nsym]
        return bytes(out)

    def check(self, data: ReadableBuffer) -> list[bool]:
        """For each nsize-chunk of ``data``, whether it is a codeword (all syndromes 0).

        Like ``reedsolo.RSCodec.check``, a final chunk of at most nsym bytes is
        checked too (it is a codeword only if it is all zeros).
        """
        received = _read(data)
        return [
            not any(self._syndromes(received[start:end]))
            for start, end in self._chunks(len(received))
        ]


# ---------------------------------------------------------------------------
# Kernel selection (the compiled module chooses among SIMD kernels)
# ---------------------------------------------------------------------------

_KERNELS = ("python",)


def kernel() -> str:
    """Name of the active GF(2^8) kernel: always ``"python"`` here."""
    return _KERNELS[0]


def available_kernels() -> list[str]:
    """Names of the kernels :func:`use_kernel` accepts: ``["python"]`` here."""
    return list(_KERNELS)


def use_kernel(name: str) -> None:
    """Switch the active kernel; only ``"python"`` exists in the reference.

    :raises FECError: if ``name`` is not an available kernel.
    """
    if name not in _KERNELS:
        raise FECError(f"unknown kernel {name!r}; available: {', '.join(_KERNELS)}")
