"""Tests of :class:`cloudkernel.fec.RSCodec` against reedsolo 1.7.0, both ways.

reedsolo is the independent reference for byte-level Reed-Solomon (see
STYLE.md section 3): our encoder must be byte-equal to ``reedsolo.RSCodec``,
our decoder must correct what reedsolo encodes and vice versa, and beyond the
correction capacity we must raise whenever reedsolo does.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import pytest
import reedsolo
from hypothesis import example, given
from hypothesis import strategies as st

from cloudkernel import fec
from cloudkernel.core import _fec_ref as ref
from cloudkernel.errors import FECError

PURE_PYTHON = fec.IMPLEMENTATION == "python"


def names(*values: object) -> str:
    """A ``match=`` regex: the message mentions every value as a whole token."""
    return "".join(rf"(?=.*(?<![\w.]){re.escape(str(v))}(?!\w))" for v in values)


# (nsym, nsize) pairs tested everywhere: the edges of nsym for nsize = 255, and
# shortened codes (nsize < 255), down to the smallest one.
CODECS = [
    (1, 255),
    (2, 255),
    (10, 255),
    (32, 255),
    (64, 255),
    (254, 255),
    (1, 2),
    (3, 7),
    (4, 16),
    (10, 40),
    (32, 64),
    (100, 101),
    (16, 200),
]
CODEC_IDS = [f"nsym{nsym}-nsize{nsize}" for nsym, nsize in CODECS]


def reedsolo_codec(nsym: int, nsize: int) -> reedsolo.RSCodec:
    return reedsolo.RSCodec(nsym, nsize)


def reedsolo_decode(codec: reedsolo.RSCodec, data: bytes, erase_pos: list[int]) -> bytes:
    # reedsolo 1.7.0 returns (message, message + ecc, errata positions).
    return bytes(codec.decode(bytearray(data), erase_pos=erase_pos or None)[0])


def message_lengths(nsym: int, nsize: int) -> list[int]:
    step = nsize - nsym
    return sorted({0, 1, 223, step - 1, step, step + 1, 2 * step + 7, 300})


# ---------------------------------------------------------------------------
# Encoding: byte-equal to reedsolo
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("nsym", "nsize"), CODECS, ids=CODEC_IDS)
def test_encode_is_byte_equal_to_reedsolo(nsym: int, nsize: int) -> None:
    rng = random.Random(nsym * 1000 + nsize)
    ours = fec.RSCodec(nsym, nsize)
    theirs = reedsolo_codec(nsym, nsize)
    assert (ours.nsym, ours.nsize) == (nsym, nsize)
    for length in message_lengths(nsym, nsize):
        message = rng.randbytes(length)
        encoded = ours.encode(message)
        assert type(encoded) is bytes
        assert encoded == bytes(theirs.encode(bytearray(message))), length
        assert ref.RSCodec(nsym, nsize).encode(message) == encoded
        chunks = -(-length // (nsize - nsym))
        assert len(encoded) == length + chunks * nsym
        if chunks * nsym * nsize <= 200_000:  # the pure-Python decoder is slow
            assert ours.decode(encoded) == message
            assert all(ours.check(encoded))


@given(
    nsize=st.integers(2, 255),
    nsym_fraction=st.floats(0, 1, exclude_max=True),
    message=st.binary(max_size=700),
)
def test_encode_random_parameters(
    gf_kernel: str, nsize: int, nsym_fraction: float, message: bytes
) -> None:
    nsym = 1 + int(nsym_fraction * (nsize - 1))
    assert fec.RSCodec(nsym, nsize).encode(message) == bytes(
        reedsolo_codec(nsym, nsize).encode(bytearray(message))
    )


def test_default_nsize_is_255() -> None:
    codec = fec.RSCodec(12)
    assert (codec.nsym, codec.nsize) == (12, 255)
    message = bytes(range(256)) * 2
    assert codec.encode(message) == bytes(reedsolo.RSCodec(12).encode(bytearray(message)))


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_bytes_like(kind: Any) -> None:
    codec = fec.RSCodec(8, 30)
    message = bytes(range(50))
    encoded = codec.encode(kind(message))
    assert encoded == codec.encode(message)
    assert codec.decode(kind(encoded)) == message
    assert codec.check(kind(encoded)) == [True, True, True]


def test_empty() -> None:
    codec = fec.RSCodec(10)
    assert codec.encode(b"") == b""
    assert codec.decode(b"") == b""
    assert codec.decode(b"", erase_pos=[]) == b""
    assert codec.check(b"") == []


# ---------------------------------------------------------------------------
# Decoding within capacity, both ways
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """A message, its codec, and errata within capacity in every chunk (2e + s <= nsym)."""

    nsym: int
    nsize: int
    length: int
    seed: int

    def message(self) -> bytes:
        return random.Random(self.seed).randbytes(self.length)

    def corrupt(self, encoded: bytes) -> tuple[bytes, list[int]]:
        """Return the corrupted codewords and the erasure positions (whole-data)."""
        rng = random.Random(~self.seed)
        data = bytearray(encoded)
        erasures: list[int] = []
        for start in range(0, len(data), self.nsize):
            n = min(self.nsize, len(data) - start)
            s = rng.randint(0, min(n, self.nsym))
            e = rng.randint(0, (self.nsym - s) // 2)
            e = min(e, n - s)
            positions = rng.sample(range(start, start + n), s + e)
            for p in positions[s:]:  # errors: a wrong byte at an unknown position
                data[p] ^= rng.randint(1, 255)
            for p in positions[:s]:  # erasures: known position, any byte (even the right one)
                data[p] = rng.choice([data[p], 0, rng.randint(0, 255)])
            erasures += positions[:s]
        rng.shuffle(erasures)
        return bytes(data), erasures


@st.composite
def corruptions(draw: st.DrawFn) -> Corruption:
    if draw(st.booleans()):
        nsym, nsize = draw(st.sampled_from(CODECS))
    else:
        nsize = draw(st.integers(2, 255))
        nsym = draw(st.integers(1, nsize - 1))
    # Several chunks when they are cheap (the pure-Python decoders cost about
    # nsize * nsym per chunk), at least one always.
    step = nsize - nsym
    max_chunks = max(1, min(5, 150_000 // (nsize * nsym)))
    length = draw(st.integers(1, step * max_chunks))
    return Corruption(nsym, nsize, length, draw(st.integers(0, 2**32 - 1)))


CORNER_CORRUPTIONS = [
    Corruption(254, 255, 3, 1),
    Corruption(1, 255, 700, 2),
    Corruption(1, 2, 5, 3),
    Corruption(10, 40, 100, 4),
    Corruption(64, 255, 223, 5),
]


@given(case=corruptions())
@example(case=CORNER_CORRUPTIONS[0])
@example(case=CORNER_CORRUPTIONS[1])
@example(case=CORNER_CORRUPTIONS[2])
@example(case=CORNER_CORRUPTIONS[3])
@example(case=CORNER_CORRUPTIONS[4])
def test_we_correct_what_reedsolo_encodes(gf_kernel: str, case: Corruption) -> None:
    message = case.message()
    encoded = bytes(reedsolo_codec(case.nsym, case.nsize).encode(bytearray(message)))
    data, erasures = case.corrupt(encoded)
    decoded = fec.RSCodec(case.nsym, case.nsize).decode(data, erasures)
    assert type(decoded) is bytes
    assert decoded == message


@given(case=corruptions())
@example(case=CORNER_CORRUPTIONS[0])
@example(case=CORNER_CORRUPTIONS[3])
def test_reedsolo_corrects_what_we_encode(case: Corruption) -> None:
    message = case.message()
    encoded = fec.RSCodec(case.nsym, case.nsize).encode(message)
    data, erasures = case.corrupt(encoded)
    assert reedsolo_decode(reedsolo_codec(case.nsym, case.nsize), data, erasures) == message


def test_erase_pos_across_chunks() -> None:
    nsym, nsize = 10, 40
    message = bytes(range(100))  # chunks of 30 message bytes: 4 chunks, the last 10 + 10
    ours = fec.RSCodec(nsym, nsize)
    encoded = ours.encode(message)
    assert len(encoded) == 3 * 40 + 20
    # Both ends of every chunk, and nsym erasures in chunk 2 (bytes 80..119).
    erasures = [0, 39, 40, 79, *range(81, 90), 119, 120, 139]
    data = bytearray(encoded)
    for p in erasures:
        data[p] ^= 0xFF
    assert ours.decode(bytes(data), erasures) == message
    assert reedsolo_decode(reedsolo_codec(nsym, nsize), bytes(data), erasures) == message
    # Without their positions, 9 errors exceed chunk 2's capacity of 5.
    with pytest.raises(FECError, match=r"chunk 2\b"):
        ours.decode(bytes(data), [0, 39, 40, 79, 80, 119, 120, 139])


@pytest.mark.parametrize(("nsym", "nsize"), CODECS, ids=CODEC_IDS)
def test_erase_pos_duplicates_and_iterables(nsym: int, nsize: int) -> None:
    ours = fec.RSCodec(nsym, nsize)
    message = bytes(range(7, 7 + min(nsize - nsym, 40)))
    encoded = bytearray(ours.encode(message))
    positions = [len(encoded) - 1, 0][:nsym]
    for p in positions:
        encoded[p] ^= 0x21
    for erase_pos in (
        positions,
        positions * 3,
        tuple(positions),
        set(positions),
        iter(positions),
        (p for p in positions),
    ):
        assert ours.decode(bytes(encoded), erase_pos) == message
    assert ours.decode(bytes(encoded), erase_pos=[p for p in positions for _ in range(nsym + 1)])


def test_erased_bytes_are_ignored() -> None:
    ours = fec.RSCodec(16, 60)
    message = random.Random(7).randbytes(130)
    encoded = ours.encode(message)
    erasures = [3, 4, 5, 59, 60, 61, 62, 121, 125]
    for fill in (0x00, 0xFF, 0x5A):
        data = bytearray(encoded)
        for p in erasures:
            data[p] = fill
        assert ours.decode(bytes(data), erasures) == message


# ---------------------------------------------------------------------------
# check()
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("nsym", "nsize"), CODECS, ids=CODEC_IDS)
def test_check_flags_each_damaged_chunk(nsym: int, nsize: int) -> None:
    ours = fec.RSCodec(nsym, nsize)
    theirs = reedsolo_codec(nsym, nsize)
    message = random.Random(nsize).randbytes(min(3 * (nsize - nsym), 500))
    encoded = ours.encode(message)
    chunks = -(-len(encoded) // nsize)
    assert ours.check(encoded) == [True] * chunks
    for chunk in range(chunks):
        data = bytearray(encoded)
        data[chunk * nsize] ^= 0x80
        expected = [c != chunk for c in range(chunks)]
        assert ours.check(bytes(data)) == expected
        assert theirs.check(bytearray(data)) == expected


@given(
    codec=st.sampled_from([(1, 2), (3, 7), (4, 16), (10, 40), (2, 255)]),
    data=st.binary(max_size=600),
    zeros=st.booleans(),
)
def test_check_agrees_with_reedsolo_on_any_data(
    codec: tuple[int, int], data: bytes, zeros: bool
) -> None:
    """Any data, a final chunk of at most nsym bytes included (valid only if all zeros)."""
    nsym, nsize = codec
    if zeros:
        data = bytes(len(data))
    assert fec.RSCodec(nsym, nsize).check(data) == reedsolo_codec(nsym, nsize).check(
        bytearray(data)
    )


# ---------------------------------------------------------------------------
# Beyond the capacity
# ---------------------------------------------------------------------------


def test_too_many_erasures() -> None:
    ours = fec.RSCodec(10, 40)
    encoded = ours.encode(bytes(90))  # 3 chunks
    erasures = list(range(40, 51))  # 11 > nsym in chunk 1
    with pytest.raises(FECError, match=r"chunk 1\b"):
        ours.decode(encoded, erasures)
    with pytest.raises(reedsolo.ReedSolomonError):
        reedsolo_decode(reedsolo_codec(10, 40), encoded, erasures)
    # Erasures alone never exceed the capacity up to nsym, even all in parity.
    assert ours.decode(encoded, list(range(70, 80))) == bytes(90)


@pytest.mark.parametrize(("nsym", "nsize"), [(2, 255), (6, 30), (8, 255), (16, 64), (4, 10)])
def test_beyond_capacity_raises_whenever_reedsolo_does(nsym: int, nsize: int) -> None:
    """Errata beyond 2e + s <= nsym: every outcome must be a bounded-distance decoding.

    * if reedsolo raises, we raise FECError;
    * if we return a message, its codeword differs from the input outside the
      erasures in e' bytes with 2e' + s <= nsym (never a miscorrection beyond
      the capacity), and if reedsolo returns one too, it is the same.
    """
    rng = random.Random(nsym * 7919 + nsize)
    ours = fec.RSCodec(nsym, nsize)
    theirs = reedsolo_codec(nsym, nsize)
    raised = 0
    trials = 60 if PURE_PYTHON else 400
    for _ in range(trials):
        n = rng.randint(nsym + 1, min(nsize, nsym + 40))
        encoded = ours.encode(rng.randbytes(n - nsym))
        s = rng.randint(0, nsym)
        e = rng.randint((nsym - s) // 2 + 1, max((nsym - s) // 2 + 1, min(n - s, nsym + 2)))
        e = min(e, n - s)
        positions = rng.sample(range(n), s + e)
        erasures = positions[:s]
        data = bytearray(encoded)
        for p in positions:
            data[p] ^= rng.randint(1, 255)
        try:
            expected: bytes | None = reedsolo_decode(theirs, bytes(data), erasures)
        except reedsolo.ReedSolomonError:
            expected = None
        try:
            decoded: bytes | None = ours.decode(bytes(data), erasures)
        except FECError:
            decoded = None
            raised += 1
        if expected is None:
            assert decoded is None, (n, s, e, positions)
        if decoded is not None:
            codeword = ours.encode(decoded)
            wrong = sum(1 for p in range(n) if codeword[p] != data[p] and p not in erasures)
            assert 2 * wrong + s <= nsym, (n, s, e, positions)
            if expected is not None:
                assert decoded == expected
    assert raised > 0


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nsym", "nsize", "bad"),
    [
        (0, 255, 0),
        (-1, 255, -1),
        (255, 255, 255),
        (300, 255, 300),
        (10, 256, 256),
        (10, 1000, 1000),
        (10, 10, 10),
        (10, 5, 10),
    ],
)
def test_bad_parameters(nsym: int, nsize: int, bad: int) -> None:
    with pytest.raises(FECError, match=names(bad)):
        fec.RSCodec(nsym, nsize)


def test_bad_nsym_default_nsize() -> None:
    with pytest.raises(FECError, match=names(255)):
        fec.RSCodec(255)


@pytest.mark.parametrize(("nsym", "nsize"), [("10", 255), (10, 255.0), (None, 255)])
def test_parameters_not_int(nsym: Any, nsize: Any) -> None:
    with pytest.raises((FECError, TypeError)):
        fec.RSCodec(nsym, nsize)


@pytest.mark.parametrize("offset", [0, 1, 50])
def test_erase_pos_beyond_the_data(offset: int) -> None:
    codec = fec.RSCodec(10, 40)
    encoded = codec.encode(bytes(range(100)))
    bad = len(encoded) + offset
    with pytest.raises(FECError, match=names(bad)):
        codec.decode(encoded, [3, bad])


@pytest.mark.parametrize("bad", [-1, -140])
def test_erase_pos_negative(bad: int) -> None:
    codec = fec.RSCodec(10, 40)
    encoded = codec.encode(bytes(range(100)))
    with pytest.raises(FECError, match=names(bad)):
        codec.decode(encoded, [bad])


def test_erase_pos_on_empty_data() -> None:
    with pytest.raises(FECError, match=names(0)):
        fec.RSCodec(10).decode(b"", [0])


@pytest.mark.parametrize("tail", [1, 7, 10])
def test_final_chunk_too_short(tail: int) -> None:
    codec = fec.RSCodec(10, 40)
    encoded = codec.encode(bytes(range(60)))  # two whole chunks
    with pytest.raises(FECError, match=names(tail)):
        codec.decode(encoded + bytes(tail))
    with pytest.raises(FECError, match=names(tail)):
        codec.decode(bytes(tail))


def test_final_chunk_just_long_enough() -> None:
    codec = fec.RSCodec(10, 40)
    encoded = codec.encode(bytes(range(61)))
    assert len(encoded) == 2 * 40 + 11
    assert codec.decode(encoded) == bytes(range(61))


def test_attributes() -> None:
    codec = fec.RSCodec(32, 64)
    assert (codec.nsym, codec.nsize) == (32, 64)
    assert isinstance(codec.nsym, int) and isinstance(codec.nsize, int)
