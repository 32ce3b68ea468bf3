"""Tests of :class:`cloudkernel.fec.ErasureCode`, the active implementation.

The oracle is the pure-Python reference ``cloudkernel.core._fec_ref``, itself
checked here against a bit-by-bit definition of the field and against the
pinned vectors of ``tests/vectors/erasure_code.json``.  Property tests run
under every GF(2^8) kernel the implementation offers (fixture ``gf_kernel``).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cloudkernel import fec
from cloudkernel.core import _fec_ref as ref
from cloudkernel.errors import FECError

VECTORS = Path(__file__).parent / "vectors" / "erasure_code.json"


def names(*values: object) -> str:
    """A ``match=`` regex: the message mentions every value as a whole token."""
    return "".join(rf"(?=.*(?<![\w.]){re.escape(str(v))}(?!\w))" for v in values)


# ---------------------------------------------------------------------------
# An independent definition of GF(2^8), to check the reference's tables
# ---------------------------------------------------------------------------


def slow_mul(a: int, b: int) -> int:
    """a * b: carry-less product of the bit polynomials, reduced modulo 0x11d."""
    product = 0
    for bit in range(8):
        if (b >> bit) & 1:
            product ^= a << bit
    for bit in range(14, 7, -1):
        if (product >> bit) & 1:
            product ^= 0x11D << (bit - 8)
    return product


def slow_inv(a: int) -> int:
    """1 / a = a^254, since a^255 = 1 for every nonzero a."""
    result = 1
    for _ in range(254):
        result = slow_mul(result, a)
    return result


SLOW_INV = [0] + [slow_inv(a) for a in range(1, 256)]


def test_reference_field_is_gf256_mod_0x11d() -> None:
    for a in range(256):
        for b in range(256):
            assert ref.gf_mul(a, b) == slow_mul(a, b), (a, b)
    for a in range(1, 256):
        assert ref.gf_inv(a) == SLOW_INV[a]
        assert slow_mul(a, SLOW_INV[a]) == 1
    assert ref.gf_pow_alpha(8) == 0x1D  # alpha^8 = x^4 + x^3 + x^2 + 1


def test_hand_checked_coefficient() -> None:
    # 1/4: 2 * 0x8e = 0x11c ^ 0x11d = 1, so 1/2 = 0x8e, and 1/4 = 0x8e >> 1 = 0x47.
    assert slow_mul(4, 0x47) == 1
    assert ref.cauchy_coefficient(4, 0) == 0x47
    identity = [bytes(1 if j == i else 0 for j in range(4)) for i in range(4)]
    assert fec.ErasureCode(4, 1).encode(identity)[0][0] == 0x47


# ---------------------------------------------------------------------------
# Blocks, buffers and strategies
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A code and one block of random sources (drawn from a seed)."""

    k: int
    m: int
    length: int
    seed: int

    @property
    def n(self) -> int:
        return self.k + self.m

    def sources(self) -> list[bytes]:
        rng = random.Random(self.seed)
        return [rng.randbytes(self.length) for _ in range(self.k)]


LENGTHS = [0, 1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255, 1023, 1500, 2000]


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    """Codes of every size; the bigger the code, the shorter its packets."""
    size = draw(st.sampled_from(["small", "small", "medium", "full"]))
    if size == "small":
        n, max_length = draw(st.integers(1, 12)), 2000
    elif size == "medium":
        n, max_length = draw(st.integers(13, 64)), 300
    else:
        n, max_length = 256, 40
    k = draw(st.integers(1, n))
    length = draw(
        st.one_of(
            st.sampled_from([x for x in LENGTHS if x <= max_length]), st.integers(0, max_length)
        )
    )
    return Block(k, n - k, length, draw(st.integers(0, 2**32 - 1)))


# Explicit corner cases, run before the random ones.
CORNER_BLOCKS = [
    Block(1, 0, 5, 1),
    Block(1, 1, 0, 2),
    Block(1, 255, 3, 3),
    Block(255, 1, 17, 4),
    Block(128, 128, 33, 5),
    Block(7, 0, 2000, 6),
]

BUFFER_KINDS = ["bytes", "bytearray", "memoryview", "unaligned"]


def as_kind(data: bytes, kind: str) -> Any:
    """``data`` as a bytes-like of the given kind (a fresh copy)."""
    if kind == "bytes":
        return bytes(data)
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(bytearray(data))
    # A view starting one byte into a larger buffer: unaligned for SIMD loads.
    return memoryview(bytearray(b"\xa5" + data + b"\x5a"))[1 : 1 + len(data)]


class Guarded:
    """A writable view of ``length`` bytes inside a larger buffer with guard bytes."""

    GUARD = b"\xc3\x3c\xa5"

    def __init__(self, length: int, kind: str) -> None:
        self.kind = kind
        self.backing = bytearray(self.GUARD + b"\xee" * length + self.GUARD)
        view = memoryview(self.backing)[len(self.GUARD) : len(self.GUARD) + length]
        self.buffer: Any = bytearray(b"\xee" * length) if kind == "bytearray" else view

    def contents(self) -> bytes:
        return bytes(self.buffer)

    def guards_intact(self) -> bool:
        g = len(self.GUARD)
        return self.backing[:g] == self.GUARD and self.backing[-g:] == self.GUARD


def encode_all(block: Block) -> tuple[list[bytes], dict[int, bytes]]:
    sources = block.sources()
    repairs = ref.ErasureCode(block.k, block.m).encode(sources)
    return sources, dict(enumerate(sources + repairs))


# ---------------------------------------------------------------------------
# Properties against the reference, under every kernel
# ---------------------------------------------------------------------------


@given(block=blocks(), kind=st.sampled_from(BUFFER_KINDS))
@example(block=CORNER_BLOCKS[0], kind="bytes")
@example(block=CORNER_BLOCKS[1], kind="unaligned")
@example(block=CORNER_BLOCKS[2], kind="memoryview")
@example(block=CORNER_BLOCKS[3], kind="unaligned")
@example(block=CORNER_BLOCKS[4], kind="bytearray")
@example(block=CORNER_BLOCKS[5], kind="bytes")
def test_encode_matches_reference(gf_kernel: str, block: Block, kind: str) -> None:
    sources = block.sources()
    code = fec.ErasureCode(block.k, block.m)
    assert (code.k, code.m) == (block.k, block.m)
    repairs = code.encode([as_kind(s, kind) for s in sources])
    assert isinstance(repairs, list)
    assert all(type(r) is bytes and len(r) == block.length for r in repairs)
    assert repairs == ref.ErasureCode(block.k, block.m).encode(sources)


@st.composite
def losses(draw: st.DrawFn) -> tuple[Block, list[int], str]:
    """A block, the indices received (at least k, in a random order), a buffer kind."""
    block = draw(blocks())
    lost = draw(st.sets(st.integers(0, block.n - 1), max_size=block.m))
    received = draw(st.permutations([i for i in range(block.n) if i not in lost]))
    return block, received, draw(st.sampled_from(BUFFER_KINDS))


@given(case=losses())
@example(case=(CORNER_BLOCKS[2], [200], "unaligned"))
@example(case=(CORNER_BLOCKS[3], list(range(1, 256)), "bytes"))
@example(case=(CORNER_BLOCKS[4], list(range(255, 127, -1)), "memoryview"))
@example(case=(CORNER_BLOCKS[4], list(range(0, 256, 2)), "bytearray"))
def test_decode_after_any_loss(gf_kernel: str, case: tuple[Block, list[int], str]) -> None:
    block, received, kind = case
    sources, packets = encode_all(block)
    code = fec.ErasureCode(block.k, block.m)
    decoded = code.decode({i: as_kind(packets[i], kind) for i in received})
    assert isinstance(decoded, list)
    assert all(type(p) is bytes for p in decoded)
    assert decoded == sources


@st.composite
def garbage(draw: st.DrawFn) -> tuple[Block, dict[int, bytes]]:
    """Exactly k random packets at random indices: always one consistent block."""
    block = draw(blocks())
    indices = draw(st.permutations(range(block.n)))[: block.k]
    rng = random.Random(block.seed)
    return block, {i: rng.randbytes(block.length) for i in indices}


@given(case=garbage())
def test_decode_of_any_k_packets_matches_reference(
    gf_kernel: str, case: tuple[Block, dict[int, bytes]]
) -> None:
    block, received = case
    decoded = fec.ErasureCode(block.k, block.m).decode(received)
    assert decoded == ref.ErasureCode(block.k, block.m).decode(received)
    # The sources decoded re-encode to the repairs received.
    repairs = ref.ErasureCode(block.k, block.m).encode(decoded)
    for index, packet in received.items():
        expected = decoded[index] if index < block.k else repairs[index - block.k]
        assert expected == packet


@given(
    case=losses(),
    in_kind=st.sampled_from(BUFFER_KINDS),
    out_kind=st.sampled_from(["bytearray", "memoryview", "unaligned"]),
)
@example(case=(CORNER_BLOCKS[1], [1], "bytes"), in_kind="unaligned", out_kind="unaligned")
@example(case=(CORNER_BLOCKS[4], list(range(128, 256)), "bytes"), in_kind="bytes",
         out_kind="unaligned")  # fmt: skip
def test_encode_into_and_decode_into(
    gf_kernel: str, case: tuple[Block, list[int], str], in_kind: str, out_kind: str
) -> None:
    block, received, _ = case
    sources = block.sources()
    code = fec.ErasureCode(block.k, block.m)

    repair_buffers = [Guarded(block.length, out_kind) for _ in range(block.m)]
    code.encode_into([as_kind(s, in_kind) for s in sources], [g.buffer for g in repair_buffers])
    assert [g.contents() for g in repair_buffers] == ref.ErasureCode(block.k, block.m).encode(
        sources
    )
    assert all(g.guards_intact() for g in repair_buffers)

    packets = dict(enumerate(sources + [g.contents() for g in repair_buffers]))
    missing = [i for i in range(block.k) if i not in received]
    out_buffers = {i: Guarded(block.length, out_kind) for i in missing}
    # Buffers for sources that were received, and keys that are no source at
    # all, must be ignored and left alone.
    bystanders = {i: Guarded(block.length, out_kind) for i in received if i < block.k}
    out: dict[Any, Any] = {i: g.buffer for i, g in {**out_buffers, **bystanders}.items()}
    out[block.n + 7] = bytearray(3)
    out["not an index"] = bytearray(1)
    rebuilt = code.decode_into({i: as_kind(packets[i], in_kind) for i in received}, out)
    assert rebuilt == missing
    for i, g in out_buffers.items():
        assert g.contents() == sources[i]
        assert g.guards_intact()
    for g in bystanders.values():
        assert g.contents() == b"\xee" * block.length
        assert g.guards_intact()


# ---------------------------------------------------------------------------
# Every loss pattern of every small code
# ---------------------------------------------------------------------------

SMALL_CODES = [(k, n - k) for n in range(1, 8) for k in range(1, n + 1)]


@pytest.mark.parametrize(("k", "m"), SMALL_CODES, ids=[f"k{k}m{m}" for k, m in SMALL_CODES])
@pytest.mark.parametrize("length", [0, 37])
def test_every_loss_pattern_of_small_codes(gf_kernel: str, k: int, m: int, length: int) -> None:
    block = Block(k, m, length, seed=k * 8 + m)
    sources, packets = encode_all(block)
    code = fec.ErasureCode(k, m)
    assert code.encode(sources) == [packets[i] for i in range(k, k + m)]
    for size in range(k, k + m + 1):
        for subset in itertools.combinations(range(k + m), size):
            received = {i: packets[i] for i in subset}
            assert code.decode(received) == sources, subset
            missing = [i for i in range(k) if i not in received]
            out = {i: bytearray(length) for i in missing}
            assert code.decode_into(received, out) == missing
            assert all(out[i] == sources[i] for i in missing)
    for subset in itertools.combinations(range(k + m), k - 1):
        with pytest.raises(FECError, match=names(k, k - 1)):
            code.decode({i: packets[i] for i in subset})


# ---------------------------------------------------------------------------
# Pinned vectors
# ---------------------------------------------------------------------------


def load_vectors() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="ascii"))["cases"]
    return cases


@pytest.mark.parametrize("case", load_vectors(), ids=lambda c: f"k{c['k']}m{c['m']}")
def test_vectors(gf_kernel: str, case: dict[str, Any]) -> None:
    k, m = case["k"], case["m"]
    sources = [bytes.fromhex(s) for s in case["sources"]]
    repairs = [bytes.fromhex(r) for r in case["repairs"]]
    assert ref.ErasureCode(k, m).encode(sources) == repairs
    code = fec.ErasureCode(k, m)
    assert code.encode(sources) == repairs
    packets = dict(enumerate(sources + repairs))
    last_k = {i: packets[i] for i in range(m, k + m)}
    assert code.decode(last_k) == sources


def test_vectors_are_reproducible() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_erasure_code_vectors", VECTORS.with_name("make_erasure_code_vectors.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.make_cases() == load_vectors()


@pytest.mark.parametrize("k", [1, 2, 3, 4, 16, 100, 128, 200, 255])
def test_repair_rows_are_the_cauchy_matrix(gf_kernel: str, k: int) -> None:
    """Sources forming the identity make repair r list row r of C: C(r, i) = 1 / (r ^ i)."""
    m = 256 - k
    identity = [bytes(1 if j == i else 0 for j in range(k)) for i in range(k)]
    repairs = fec.ErasureCode(k, m).encode(identity)
    for r in range(k, 256):
        assert repairs[r - k] == bytes(SLOW_INV[r ^ i] for i in range(k)), r


# ---------------------------------------------------------------------------
# Bad input at every entry point
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "m", "bad"),
    [(0, 1, 0), (-3, 2, -3), (257, 0, 257), (4, -1, -1), (200, 57, 57), (1, 256, 256)],
)
def test_bad_k_or_m(k: int, m: int, bad: int) -> None:
    with pytest.raises(FECError, match=names(bad)):
        fec.ErasureCode(k, m)


@pytest.mark.parametrize("k, m", [("4", 2), (4, 2.0), (None, 1)])
def test_k_or_m_not_int(k: Any, m: Any) -> None:
    with pytest.raises((FECError, TypeError)):
        fec.ErasureCode(k, m)


def test_k_and_m_are_read_only() -> None:
    code = fec.ErasureCode(5, 3)
    with pytest.raises(AttributeError):
        code.k = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        code.m = 4  # type: ignore[misc]
    assert (code.k, code.m) == (5, 3)


@pytest.fixture
def code() -> Any:
    return fec.ErasureCode(32, 8)


@pytest.fixture
def block() -> tuple[list[bytes], dict[int, bytes]]:
    return encode_all(Block(32, 8, 1200, 99))


@pytest.mark.parametrize("count", [0, 31, 33])
def test_encode_wrong_number_of_sources(code: Any, count: int) -> None:
    sources = [bytes(10)] * count
    with pytest.raises(FECError, match=names(count)):
        code.encode(sources)
    with pytest.raises(FECError, match=names(count)):
        code.encode_into(sources, [bytearray(10) for _ in range(8)])


def test_encode_unequal_lengths(code: Any) -> None:
    sources = [bytes(1200)] * 32
    sources[3] = bytes(1199)
    with pytest.raises(FECError, match=names(1199)):
        code.encode(sources)
    with pytest.raises(FECError, match=names(1199)):
        code.encode_into(sources, [bytearray(1200) for _ in range(8)])


@pytest.mark.parametrize("count", [0, 7, 9])
def test_encode_into_wrong_number_of_repairs(code: Any, count: int) -> None:
    with pytest.raises(FECError, match=names(count)):
        code.encode_into([bytes(10)] * 32, [bytearray(10) for _ in range(count)])


@pytest.mark.parametrize("length", [9, 11, 0])
def test_encode_into_repair_of_wrong_length(code: Any, length: int) -> None:
    repairs = [bytearray(10) for _ in range(8)]
    repairs[5] = bytearray(length)
    with pytest.raises(FECError, match=names(length)):
        code.encode_into([bytes(10)] * 32, repairs)


@pytest.mark.parametrize("readonly", [bytes(10), memoryview(bytes(10))])
def test_encode_into_read_only_repair(code: Any, readonly: Any) -> None:
    repairs: list[Any] = [bytearray(10) for _ in range(8)]
    repairs[2] = readonly
    with pytest.raises((FECError, TypeError)):
        code.encode_into([bytes(10)] * 32, repairs)


DecodeCall = Callable[[Any, dict[Any, Any]], object]


def call_decode(code: Any, received: dict[Any, Any]) -> object:
    return code.decode(received)


def call_decode_into(code: Any, received: dict[Any, Any]) -> object:
    return code.decode_into(received, {i: bytearray(1200) for i in range(code.k)})


DECODERS = pytest.mark.parametrize(
    "decode", [call_decode, call_decode_into], ids=["decode", "into"]
)


@DECODERS
def test_decode_too_few_packets(
    code: Any, block: tuple[list[bytes], dict[int, bytes]], decode: DecodeCall
) -> None:
    _, packets = block
    received = {i: packets[i] for i in range(9, 40)}  # 31 of the 32 needed
    with pytest.raises(FECError, match=names(32, 31)):
        decode(code, received)
    with pytest.raises(FECError, match=names(32, 0)):
        decode(code, {})


@DECODERS
@pytest.mark.parametrize("index", [40, 300, -1, -40])
def test_decode_index_out_of_range(
    code: Any, block: tuple[list[bytes], dict[int, bytes]], decode: DecodeCall, index: int
) -> None:
    _, packets = block
    received = {i: packets[i] for i in range(32)}
    received[index] = packets[0]
    with pytest.raises(FECError, match=names(index)):
        decode(code, received)


class _RepeatingMapping(dict[int, bytes]):
    """A mapping whose items() repeats one packet: only a broken mapping can."""

    def items(self) -> Any:
        return [(0, self[0])] * 300


@DECODERS
def test_decode_index_repeated_by_a_broken_mapping(
    code: Any, block: tuple[list[bytes], dict[int, bytes]], decode: DecodeCall
) -> None:
    _, packets = block
    with pytest.raises(FECError, match="appears twice"):
        decode(code, _RepeatingMapping({0: packets[0]}))


@DECODERS
@pytest.mark.parametrize("index", ["abc", 1.5, None, (1,)])
def test_decode_index_not_an_int(
    code: Any, block: tuple[list[bytes], dict[int, bytes]], decode: DecodeCall, index: Any
) -> None:
    _, packets = block
    received: dict[Any, Any] = {i: packets[i] for i in range(33)}
    received[index] = packets[0]
    with pytest.raises(FECError):
        decode(code, received)


@DECODERS
def test_decode_unequal_lengths(
    code: Any, block: tuple[list[bytes], dict[int, bytes]], decode: DecodeCall
) -> None:
    _, packets = block
    received = {i: packets[i] for i in range(3, 38)}
    received[20] = packets[20][:1199]
    with pytest.raises(FECError, match=names(1199)):
        decode(code, received)
    received[20] = packets[20] + b"\0"
    with pytest.raises(FECError, match=names(1201)):
        decode(code, received)


def test_decode_into_missing_out_buffer(
    code: Any, block: tuple[list[bytes], dict[int, bytes]]
) -> None:
    _, packets = block
    received = {i: packets[i] for i in range(40) if i not in (5, 17)}
    with pytest.raises(FECError, match=names(17)):
        code.decode_into(received, {5: bytearray(1200)})
    with pytest.raises(FECError, match=names(5)):
        code.decode_into(received, {17: bytearray(1200), 4: bytearray(1200)})


@pytest.mark.parametrize("length", [1199, 1201, 0])
def test_decode_into_out_buffer_of_wrong_length(
    code: Any, block: tuple[list[bytes], dict[int, bytes]], length: int
) -> None:
    _, packets = block
    received = {i: packets[i] for i in range(40) if i not in (5, 17)}
    with pytest.raises(FECError, match=names(length)):
        code.decode_into(received, {5: bytearray(1200), 17: bytearray(length)})


@pytest.mark.parametrize("readonly", [bytes(1200), memoryview(bytes(1200))])
def test_decode_into_read_only_out_buffer(
    code: Any, block: tuple[list[bytes], dict[int, bytes]], readonly: Any
) -> None:
    _, packets = block
    received = {i: packets[i] for i in range(40) if i not in (5, 17)}
    with pytest.raises((FECError, TypeError)):
        code.decode_into(received, {5: bytearray(1200), 17: readonly})


def test_decode_into_with_nothing_missing(
    code: Any, block: tuple[list[bytes], dict[int, bytes]]
) -> None:
    _, packets = block
    assert code.decode_into({i: packets[i] for i in range(40)}, {}) == []


# ---------------------------------------------------------------------------
# Kernel selection
# ---------------------------------------------------------------------------


def test_kernel_functions() -> None:
    kernels = fec.available_kernels()
    assert kernels and all(isinstance(name, str) for name in kernels)
    assert fec.kernel() in kernels
    with pytest.raises(FECError, match=names("no-such-kernel")):
        fec.use_kernel("no-such-kernel")
    assert fec.kernel() in kernels


def test_reference_kernel_functions() -> None:
    assert ref.kernel() == "python"
    assert ref.available_kernels() == ["python"]
    ref.use_kernel("python")
    with pytest.raises(FECError, match=names("avx2", "python")):
        ref.use_kernel("avx2")


def test_active_implementation() -> None:
    if fec.IMPLEMENTATION == "python":
        assert fec.ErasureCode is ref.ErasureCode
    else:
        assert fec.IMPLEMENTATION == "compiled"
        assert fec.ErasureCode is not ref.ErasureCode
