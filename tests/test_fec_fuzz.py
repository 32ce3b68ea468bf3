"""Random-input fuzzing of both FEC decoders through the public API.

The invariant (STYLE.md section 5): whatever the input, a decoder returns a
result of the right shape or raises FECError; any other exception is a bug.
The inputs come from a seeded PRNG, so every run is the same: 100,000 per
decoder against the compiled implementation, 2,000 against the (much slower)
pure-Python reference.  Some inputs are real blocks or codewords damaged within
the capacity, which must decode to the original.  For longer, coverage-guided
runs see ``tests/fuzz/fuzz_fec_atheris.py``.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from cloudkernel import fec
from cloudkernel.errors import FECError

PURE_PYTHON = fec.IMPLEMENTATION == "python"
INPUTS = 2_000 if PURE_PYTHON else 100_000

NOT_INDICES: list[Any] = ["1", 1.5, None, b"\x01", (0,)]


def as_buffer(rng: random.Random, data: bytes) -> Any:
    """``data`` as a random kind of bytes-like (always readable)."""
    kind = rng.randrange(4)
    if kind == 0:
        return data
    if kind == 1:
        return bytearray(data)
    if kind == 2:
        return memoryview(data)
    return memoryview(b"\x00" + data)[1:]


def random_code(rng: random.Random) -> tuple[int, int]:
    roll = rng.random()
    if roll < 0.02:  # anything, mostly invalid
        return rng.randint(-2, 300), rng.randint(-2, 300)
    if roll < 0.05:  # the largest codes
        k = rng.randint(1, 255)
        return k, 256 - k
    return rng.randint(1, 8), rng.randint(0, 8)


def fuzz_erasure_code_once(
    rng: random.Random, codes: dict[tuple[int, int], Any], tally: Counter[str]
) -> None:
    k, m = random_code(rng)
    if (k, m) not in codes:
        try:
            codes[(k, m)] = fec.ErasureCode(k, m)
        except FECError:
            codes[(k, m)] = None
    code = codes[(k, m)]
    if code is None:
        tally["bad parameters"] += 1
        return
    n = k + m
    length = rng.choice([0, 1, 2, 3, 5, 8, 16, 17, 31, 33])
    received: dict[Any, Any] = {}
    sources: list[bytes] | None = None
    if rng.random() < 0.25:
        # A real block with up to m packets lost: must decode exactly.
        sources = [rng.randbytes(length) for _ in range(k)]
        packets = sources + code.encode(sources)
        for i in rng.sample(range(n), rng.randint(k, n)):
            received[i] = as_buffer(rng, packets[i])
    else:
        for _ in range(rng.randint(0, n + 2)):
            if rng.random() < 0.01:
                index: Any = rng.choice(NOT_INDICES)
            elif rng.random() < 0.05:
                index = rng.choice([-1, -2, n, n + 1, 1000])
            else:
                index = rng.randrange(n)
            size = length if rng.random() < 0.97 else rng.randint(0, 40)
            received[index] = as_buffer(rng, rng.randbytes(size))
    valid_keys = [key for key in received if type(key) is int and 0 <= key < n]

    if rng.random() < 0.3:
        out: dict[Any, Any] = {}
        readonly = False
        for i in range(k):
            if rng.random() < 0.97:
                out[i] = bytearray(length)
            elif rng.random() < 0.5:
                out[i] = bytearray(rng.randint(0, 40))
            else:
                out[i] = bytes(length)
                readonly = True
        try:
            rebuilt = code.decode_into(received, out)
        except FECError:
            tally["decode_into raised FECError"] += 1
            return
        except TypeError:
            assert readonly, "TypeError without a read-only out buffer"
            tally["decode_into raised TypeError"] += 1
            return
        missing = [i for i in range(k) if i not in valid_keys]
        assert rebuilt == missing
        if sources is not None:
            assert all(out[i] == sources[i] for i in missing)
        tally["decode_into ok"] += 1
        return

    try:
        decoded = code.decode(received)
    except FECError:
        tally["decode raised FECError"] += 1
        return
    # Success needs k or more valid indices, all with packets of one length.
    length = len(memoryview(received[valid_keys[0]]))
    assert isinstance(decoded, list) and len(decoded) == k
    assert all(type(packet) is bytes and len(packet) == length for packet in decoded)
    for i in valid_keys:
        if i < k:
            assert decoded[i] == bytes(received[i])
    if sources is not None:
        assert decoded == sources
    tally["decode ok"] += 1


def test_fuzz_erasure_code_decode() -> None:
    rng = random.Random(0xEC)
    codes: dict[tuple[int, int], Any] = {}
    tally: Counter[str] = Counter()
    for _ in range(INPUTS):
        fuzz_erasure_code_once(rng, codes, tally)
    # The generator must reach both outcomes, often.
    assert tally["decode ok"] > INPUTS // 20, tally
    assert tally["decode_into ok"] > INPUTS // 50, tally
    assert tally["decode raised FECError"] > INPUTS // 20, tally
    assert tally["decode_into raised FECError"] > INPUTS // 50, tally


def random_rscodec(rng: random.Random) -> tuple[int, int]:
    roll = rng.random()
    if roll < 0.02:  # anything, mostly invalid
        return rng.randint(-2, 300), rng.randint(-2, 300)
    if roll < 0.15:
        return rng.randint(1, 12), 255
    nsize = rng.randint(2, 40)
    return rng.randint(1, nsize - 1), nsize


def fuzz_rscodec_once(
    rng: random.Random, codecs: dict[tuple[int, int], Any], tally: Counter[str]
) -> None:
    nsym, nsize = random_rscodec(rng)
    if (nsym, nsize) not in codecs:
        try:
            codecs[(nsym, nsize)] = fec.RSCodec(nsym, nsize)
        except FECError:
            codecs[(nsym, nsize)] = None
    codec = codecs[(nsym, nsize)]
    if codec is None:
        tally["bad parameters"] += 1
        return
    message: bytes | None = None
    erase_pos: list[int] | None = None
    if rng.random() < 0.3:
        # A codeword damaged within the capacity of each chunk: must decode exactly.
        message = rng.randbytes(rng.randint(0, 2 * (nsize - nsym) + 3))
        damaged = bytearray(codec.encode(message))
        erase_pos = []
        for start in range(0, len(damaged), nsize):
            size = min(nsize, len(damaged) - start)
            s = rng.randint(0, min(nsym, size))
            e = min(rng.randint(0, (nsym - s) // 2), size - s)
            positions = rng.sample(range(start, start + size), s + e)
            for p in positions:
                damaged[p] = rng.randrange(256)
            erase_pos += positions[:s]
        data = bytes(damaged)
    else:
        data = rng.randbytes(rng.choice([0, 1, nsym, nsym + 1, nsize, rng.randint(0, 3 * nsize)]))
        if rng.random() < 0.6:
            erase_pos = [
                rng.randint(-2, len(data) + 1) if rng.random() < 0.05 else rng.randint(0, 2 * nsym)
                for _ in range(rng.randint(0, nsym + 2))
            ]
    chunks = -(-len(data) // nsize)

    flags = codec.check(as_buffer(rng, data))
    assert isinstance(flags, list) and len(flags) == chunks
    assert all(type(flag) is bool for flag in flags)

    try:
        decoded = codec.decode(as_buffer(rng, data), erase_pos)
    except FECError:
        assert message is None, "a correctable codeword was not corrected"
        tally["decode raised FECError"] += 1
        return
    assert type(decoded) is bytes
    assert len(decoded) == len(data) - nsym * chunks
    if message is not None:
        assert decoded == message
    tally["decode ok"] += 1


def test_fuzz_rscodec_decode() -> None:
    rng = random.Random(0x125)
    codecs: dict[tuple[int, int], Any] = {}
    tally: Counter[str] = Counter()
    for _ in range(INPUTS):
        fuzz_rscodec_once(rng, codecs, tally)
    assert tally["decode ok"] > INPUTS // 5, tally
    assert tally["decode raised FECError"] > INPUTS // 5, tally
