"""Differential tests: the compiled payload decoder against the pure-Python one.

``cloudkernel.core._payload`` (csrc/ck_payload.c walking the msgpack bytes,
Cython building the signals) and ``signals.decode_payload_reference``
(``msgpack.unpackb`` with limits, then checks) must accept and refuse exactly
the same payloads and return equal signals, down to the type of every field
and the sign of a zero:

* valid payloads from hypothesis, built by ``encode_signal`` and
  ``PayloadBuilder``, by plain ``msgpack.packb`` (also with float32), and by a
  hand encoder that picks a random msgpack width for every item;
* hypothesis signals whose fields mix valid and invalid wire values;
* 100,000 seeded mutations of valid payloads, and random bytes;
* every kind of input object: bytes, bytearray, memoryviews (sliced,
  non-contiguous, multi-dimensional, of wider items, released) and non-buffers;
* the compiled decoder's topic cache, under collisions;
* reference counts, memory, garbage collection, and a decode re-entered from a
  finalizer during its own garbage collection.

The whole module is skipped when ``decode_payload`` is the pure-Python decoder
(``CLOUDKERNEL_PUREPYTHON=1``, or the extension is not built): there is
nothing to compare it with.
"""

from __future__ import annotations

import array
import gc
import math
import random
import struct
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

# msgpack ships no type hints.
import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cloudkernel.core import signals
from cloudkernel.core.signals import (
    MAX_BYTES_VALUE,
    MAX_CATEGORY,
    MAX_LIFETIME_MS,
    MAX_SIGNALS_PER_PAYLOAD,
    MAX_TOPIC_BYTES,
    MAX_U32,
    MAX_VECTOR_DIM,
    PayloadBuilder,
    QoS,
    Signal,
    encode_signal,
    make_signal,
)
from cloudkernel.errors import PayloadError

if signals.PAYLOAD_IMPLEMENTATION != "compiled":
    pytest.skip(
        f"decode_payload is the {signals.PAYLOAD_IMPLEMENTATION!r} implementation "
        "(CLOUDKERNEL_PUREPYTHON is set, or cloudkernel.core._payload is not built): "
        "no compiled decoder to compare with the reference",
        allow_module_level=True,
    )

Decoder = Callable[..., list[Signal]]
compiled: Decoder = signals.decode_payload
reference: Decoder = signals.decode_payload_reference

FIELDS = ("topic", "value", "confidence", "half_life", "ttl", "qos", "source", "seq", "age")
CONTROL = "".join(map(chr, range(0x20))) + "\x7f"


# ---------------------------------------------------------------------------
# Comparing the two decoders
# ---------------------------------------------------------------------------


def key(x: object) -> object:
    """``x`` as a comparable key that keeps its exact type (1 == 1.0 == True
    in Python) and a float's bits (0.0 == -0.0)."""
    if type(x) is float:
        return ("float", x.hex())
    if type(x) is tuple:
        return ("tuple", tuple(key(item) for item in x))
    return (type(x).__name__, x)


def fingerprint(decoded: list[Signal]) -> list[tuple[object, ...]]:
    assert type(decoded) is list
    rows = []
    for signal in decoded:
        assert type(signal) is Signal
        rows.append(tuple(key(getattr(signal, name)) for name in FIELDS))
    return rows


def run(decode: Decoder, body: object, qos: object, age_offset: float) -> tuple[object, ...]:
    """What ``decode`` makes of ``body``: refused, or the signals' fingerprint.

    Any exception other than PayloadError propagates and fails the test.
    """
    try:
        decoded = decode(body, qos, age_offset)
    except PayloadError:
        return ("refused",)
    return ("accepted", fingerprint(decoded), decoded)


def agree(body: object, qos: object = QoS.NORMAL, age_offset: float = 0.0) -> str:
    """Both decoders accept ``body`` with identical signals, or both refuse it."""
    want = run(reference, body, qos, age_offset)
    got = run(compiled, body, qos, age_offset)
    assert got[:2] == want[:2], (bytes_of(body), got[:2], want[:2])
    if want[0] == "accepted":
        assert got[2] == want[2]  # dataclass equality as well
    return str(want[0])


def bytes_of(body: object) -> object:
    try:
        return bytes(body)  # type: ignore[call-overload]
    except Exception:
        return body


# ---------------------------------------------------------------------------
# A msgpack encoder that picks the width of every item
# ---------------------------------------------------------------------------


class RawStr(bytes):
    """Bytes to be sent as a msgpack str as they are (maybe not UTF-8)."""


def enc_int(v: int, rnd: random.Random) -> bytes:
    """``v`` in a random msgpack int format that holds it."""
    choices: list[bytes] = []
    if 0 <= v <= 0x7F:
        choices.append(bytes((v,)))  # positive fixint
    if -32 <= v < 0:
        choices.append(struct.pack(">b", v))  # negative fixint 0xe0-0xff
    for fmt, tag, lo, hi in (
        (">B", 0xCC, 0, 0xFF),
        (">H", 0xCD, 0, 0xFFFF),
        (">I", 0xCE, 0, 0xFFFFFFFF),
        (">Q", 0xCF, 0, 2**64 - 1),
        (">b", 0xD0, -(2**7), 2**7 - 1),
        (">h", 0xD1, -(2**15), 2**15 - 1),
        (">i", 0xD2, -(2**31), 2**31 - 1),
        (">q", 0xD3, -(2**63), 2**63 - 1),
    ):
        if lo <= v <= hi:
            choices.append(bytes((tag,)) + struct.pack(fmt, v))
    assert choices, v
    return rnd.choice(choices)


def as_float32(x: float) -> float | None:
    """``x`` if float32 holds it exactly (nan included), else None."""
    try:
        y: float = struct.unpack(">f", struct.pack(">f", x))[0]
    except OverflowError:
        return None
    if y == x or (math.isnan(x) and math.isnan(y)):
        return y
    return None


def enc_float(x: float, rnd: random.Random) -> bytes:
    if as_float32(x) is not None and rnd.random() < 0.5:
        return b"\xca" + struct.pack(">f", x)
    return b"\xcb" + struct.pack(">d", x)


def enc_len(
    n: int, fix: int | None, fix_max: int, tags: tuple[int, ...], rnd: random.Random
) -> bytes:
    """A str/bin/array/map header for length ``n``: fix form or 8/16/32-bit lengths."""
    choices: list[bytes] = []
    if fix is not None and n <= fix_max:
        choices.append(bytes((fix | n,)))
    for tag, size in zip(tags, (1, 2, 4) if len(tags) == 3 else (2, 4), strict=True):
        if n < 1 << (8 * size):
            choices.append(bytes((tag,)) + n.to_bytes(size, "big"))
    return rnd.choice(choices)


def enc(x: object, rnd: random.Random) -> bytes:
    """``x`` as msgpack, every item in a randomly chosen valid width."""
    if x is None:
        return b"\xc0"
    if x is True or x is False:
        return b"\xc3" if x else b"\xc2"
    if type(x) is int:
        return enc_int(x, rnd)
    if type(x) is float:
        return enc_float(x, rnd)
    if isinstance(x, RawStr):
        return enc_len(len(x), 0xA0, 31, (0xD9, 0xDA, 0xDB), rnd) + bytes(x)
    if type(x) is str:
        data = x.encode("utf-8", "surrogatepass")
        return enc_len(len(data), 0xA0, 31, (0xD9, 0xDA, 0xDB), rnd) + data
    if type(x) is bytes:
        return enc_len(len(x), None, 0, (0xC4, 0xC5, 0xC6), rnd) + x
    if type(x) in (list, tuple):
        items: Any = x
        header = enc_len(len(items), 0x90, 15, (0xDC, 0xDD), rnd)
        return header + b"".join(enc(item, rnd) for item in items)
    if type(x) is dict:
        header = enc_len(len(x), 0x80, 15, (0xDE, 0xDF), rnd)
        return header + b"".join(enc(k, rnd) + enc(v, rnd) for k, v in x.items())
    raise TypeError(f"cannot encode {x!r}")


def test_hand_encoder_is_msgpack() -> None:
    rnd = random.Random(7)
    for x in [0, 127, 128, -1, -33, 2**32, 2**64 - 1, -(2**63), 1.5, "t" * 40, b"\x00" * 300]:
        for _ in range(20):
            assert msgpack.unpackb(enc(x, rnd), raw=False) == x
    assert msgpack.unpackb(enc([1, [2.0, {"a": None}]], rnd), strict_map_key=False) == [
        1,
        [2.0, {"a": None}],
    ]


# ---------------------------------------------------------------------------
# (a) valid signals
# ---------------------------------------------------------------------------

topic_chars = st.characters(codec="utf-8", exclude_characters=CONTROL)
topics = st.one_of(
    st.text(topic_chars, min_size=1, max_size=32),
    st.text(topic_chars, min_size=30, max_size=128),
    st.sampled_from(["t", "\u0080\u00a0\u2028", "\U0010ffff", "\U0001f41d" * 32, "a" * 128]),
).filter(lambda t: len(t.encode("utf-8")) <= MAX_TOPIC_BYTES)
finite = st.floats(allow_nan=False, allow_infinity=False)
values = st.one_of(
    finite,
    st.integers(0, MAX_CATEGORY),
    st.lists(finite, min_size=1, max_size=MAX_VECTOR_DIM),
    st.binary(min_size=1, max_size=MAX_BYTES_VALUE),
)
lifetimes = st.one_of(
    st.none(),
    st.floats(min_value=0.0, max_value=86_400.0, exclude_min=True),
    st.integers(1, 86_400),
)
u32 = st.one_of(st.integers(0, MAX_U32), st.sampled_from([0, 127, 128, 255, 256, 65535, MAX_U32]))


@st.composite
def valid_signals(draw: st.DrawFn) -> Signal:
    half_life, ttl = draw(st.tuples(lifetimes, lifetimes).filter(lambda p: p != (None, None)))
    return make_signal(
        draw(topics),
        draw(values),
        confidence=draw(st.floats(min_value=0.0, max_value=1.0, exclude_min=True)),
        half_life=half_life,
        ttl=ttl,
        source=draw(u32),
        seq=draw(u32),
    )


def wire_items(signal: Signal, age_ms: int) -> list[object]:
    """The 8 items of ``signal`` as msgpack carries them."""
    return list(msgpack.unpackb(encode_signal(signal, age_ms), use_list=False))


@given(
    st.lists(st.tuples(valid_signals(), u32), max_size=24),
    st.sampled_from(QoS),
    st.sampled_from([0.0, 0.25, 1e9]),
)
def test_valid_payloads_from_the_builder(
    batch: list[tuple[Signal, int]], qos: QoS, age_offset: float
) -> None:
    builder = PayloadBuilder(1 << 20)
    for signal, age_ms in batch:
        builder.add(encode_signal(signal, age_ms))
    payload = builder.build()
    assert agree(payload, qos, age_offset) == "accepted"
    assert len(compiled(payload, qos, age_offset)) == len(batch)


@given(st.lists(st.tuples(valid_signals(), u32), max_size=20), st.booleans())
def test_valid_payloads_from_plain_msgpack(batch: list[tuple[Signal, int]], single: bool) -> None:
    arrays = [wire_items(signal, age_ms) for signal, age_ms in batch]
    # use_single_float=True sends every float as float32 (rounded): still valid
    # unless the rounding makes a confidence 0 or a value infinite.
    try:
        body = msgpack.packb(arrays, use_bin_type=True, use_single_float=single)
    except OverflowError:  # a float past float32's range: msgpack cannot send it
        assume(False)
    outcome = agree(body, QoS.BULK)
    assert single or outcome == "accepted"


@given(st.lists(st.tuples(valid_signals(), u32), max_size=20), st.randoms(use_true_random=False))
def test_valid_payloads_in_every_width(batch: list[tuple[Signal, int]], rnd: random.Random) -> None:
    arrays = [wire_items(signal, age_ms) for signal, age_ms in batch]
    body = enc(arrays, rnd)
    assert msgpack.unpackb(body, use_list=False) == tuple(map(tuple, arrays))
    assert agree(body) == "accepted"


def test_the_same_signal_in_every_width() -> None:
    # One signal's items, each in every width its value allows, many times.
    signal = make_signal("\u00e9t\u00e9", [0.5, -2.0, 1e300], confidence=0.25, half_life=1.0)
    items = wire_items(signal, 70000)
    rnd = random.Random(11)
    seen: set[bytes] = set()
    for _ in range(3000):
        body = enc([items, [*items[:1], 7, *items[2:]], [*items[:1], b"\x00", *items[2:]]], rnd)
        seen.add(body)
        assert agree(body) == "accepted"
    assert len(seen) > 2000


# ---------------------------------------------------------------------------
# (a2) signals mixing valid and invalid wire values, in every width
# ---------------------------------------------------------------------------

any_float = st.one_of(
    st.floats(),
    st.sampled_from([0.0, -0.0, 1.0, math.nextafter(1.0, 2.0), 5e-324, math.inf, -math.inf]),
    st.sampled_from([math.nan, 1.0000001, -1.0, 3.4028234663852886e38]),
)
wire_ints = st.one_of(
    st.sampled_from([0, 1, -1, MAX_U32, MAX_U32 + 1, MAX_LIFETIME_MS, MAX_LIFETIME_MS + 1]),
    st.sampled_from([2**63 - 1, 2**64 - 1, -(2**63), -33, 128]),
    st.integers(-(2**63), 2**64 - 1),
)
odd_values = st.one_of(
    st.none(), st.booleans(), st.just({}), st.just({"a": 1}), st.just([]), st.just("x")
)
bad_utf8 = st.sampled_from(
    [b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x28\xa1", b"a\xc3", b"\xff", b"\x80"]
)
wire_topics = st.one_of(
    topics,
    st.sampled_from(["", "a" * 129, "\u00e9" * 65, "a\x00b", "\x7f", "\x1f", "\ud800"]),
    bad_utf8.map(RawStr),
    st.binary(min_size=1, max_size=4),
    wire_ints,
    odd_values,
)
wire_values = st.one_of(
    any_float,
    wire_ints,
    st.lists(st.one_of(any_float, wire_ints, odd_values), max_size=MAX_VECTOR_DIM + 2),
    st.binary(max_size=MAX_BYTES_VALUE + 2),
    odd_values,
    topics,
)
wire_lifetimes = st.one_of(st.none(), wire_ints, any_float, odd_values)
wire_u32 = st.one_of(wire_ints, any_float, odd_values)


@st.composite
def wire_signals(draw: st.DrawFn) -> list[object]:
    items: list[object] = [
        draw(wire_topics),
        draw(wire_values),
        draw(st.one_of(any_float, st.floats(0.0, 1.0), wire_ints, odd_values)),
        draw(wire_lifetimes),
        draw(wire_lifetimes),
        draw(wire_u32),
        draw(wire_u32),
        draw(wire_u32),
    ]
    arity = draw(st.sampled_from([8, 8, 8, 8, 8, 7, 9, 0, 1]))
    return [*items, None][:arity]


@given(st.lists(wire_signals(), max_size=4), st.randoms(use_true_random=False))
def test_mixed_valid_and_invalid_fields(items: list[list[object]], rnd: random.Random) -> None:
    assert agree(enc(items, rnd)) in ("accepted", "refused")


@given(wire_signals(), st.randoms(use_true_random=False))
def test_one_signal_of_mixed_fields(items: list[object], rnd: random.Random) -> None:
    assert agree(enc([items], rnd)) in ("accepted", "refused")


# ---------------------------------------------------------------------------
# (b) mutated payloads, (c) random bytes
# ---------------------------------------------------------------------------

MUTATIONS = 100_000
INTERESTING = [*range(0xC0, 0xE0), *range(0x90, 0xA0), *range(0xA0, 0xC0), 0x00, 0x7F, 0xFF]


def random_signal(rng: random.Random) -> Signal:
    kind = rng.randrange(4)
    value: object
    if kind == 0:
        value = rng.choice([0.0, -0.0, 1.5, 1e300, 5e-324, rng.uniform(-1e6, 1e6)])
    elif kind == 1:
        value = rng.choice([0, 1, 127, 128, 255, 65536, MAX_CATEGORY, rng.randrange(MAX_CATEGORY)])
    elif kind == 2:
        value = [rng.uniform(-10, 10) for _ in range(rng.randint(1, MAX_VECTOR_DIM))]
    else:
        value = rng.randbytes(rng.randint(1, MAX_BYTES_VALUE))
    alphabet = "abcxyz/._-0123456789\u00e9\u20ac\U0001f41d"
    topic = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
    half_life = rng.choice([None, 0.001, 1.0, 86_400.0, rng.uniform(0.001, 100)])
    ttl = rng.choice([None, 0.5, 86_400.0]) if half_life is not None else rng.uniform(0.001, 9)
    return make_signal(
        topic,
        value,
        confidence=rng.choice([1.0, 5e-324, rng.random() or 1.0]),
        half_life=half_life,
        ttl=ttl,
        source=rng.choice([0, 1, MAX_U32, rng.randrange(MAX_U32)]),
        seq=rng.choice([0, 127, 128, MAX_U32, rng.randrange(MAX_U32)]),
    )


def payload_pool(rng: random.Random, size: int) -> list[bytes]:
    pool = []
    for _ in range(size):
        batch = [random_signal(rng) for _ in range(rng.randint(1, 8))]
        age_ms = rng.choice([0, 7, 300, 70000, MAX_U32])
        if rng.random() < 0.5:
            builder = PayloadBuilder(1 << 20)
            for signal in batch:
                builder.add(encode_signal(signal, age_ms))
            pool.append(builder.build())
        else:  # the same signals in random widths
            pool.append(enc([wire_items(s, age_ms) for s in batch], rng))
    return pool


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.random()
        if not data:
            data.append(rng.randrange(256))
        elif op < 0.3:  # flip a bit
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op < 0.6:  # overwrite a byte with a msgpack type byte
            data[rng.randrange(len(data))] = rng.choice(INTERESTING)
        elif op < 0.7:  # truncate
            del data[rng.randrange(len(data)) :]
        elif op < 0.8:  # insert bytes
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.choice(INTERESTING) for _ in range(rng.randint(1, 3)))
        elif op < 0.9:  # delete bytes
            at = rng.randrange(len(data))
            del data[at : at + rng.randint(1, 3)]
        else:  # a random byte
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def compare_fast(body: bytes) -> str:
    """agree(), without the dataclass comparison (fingerprints are equal then too)."""
    want = run(reference, body, QoS.BULK, 0.0)
    got = run(compiled, body, QoS.BULK, 0.0)
    assert got[:2] == want[:2], (body.hex(), got[:2], want[:2])
    return str(want[0])


def test_mutated_payloads() -> None:
    rng = random.Random(20260611)
    pool = payload_pool(rng, 60)
    tally: Counter[str] = Counter()
    for _ in range(MUTATIONS):
        tally[compare_fast(mutate(rng, rng.choice(pool)))] += 1
    print(f"mutated payloads: {dict(tally)}")
    # Both outcomes must be common, or the mutations test little.
    assert min(tally.values()) > MUTATIONS // 20, tally


def test_random_bytes() -> None:
    rng = random.Random(99)
    tally: Counter[str] = Counter()
    for i in range(20_000):
        body = bytearray(rng.randbytes(rng.randint(0, 64 if i % 8 else 600)))
        if body and rng.random() < 0.7:  # start like a payload of signals
            body[0] = 0x90 | rng.randint(0, 3)
            body[1:1] = b"\x98"
        tally[compare_fast(bytes(body))] += 1
    assert tally["refused"] > 15_000


@given(st.binary(max_size=200))
def test_random_bytes_hypothesis(body: bytes) -> None:
    assert agree(body) in ("accepted", "refused")
    assert agree(b"\x91\x98" + body) == "refused"  # a one-signal array, cut short


def test_limits_agree() -> None:
    good = encode_signal(make_signal("t", 1.0, ttl=1.0), 0)
    for count in (0, 1, 15, 16, MAX_SIGNALS_PER_PAYLOAD):
        assert agree(signals._array_header(count) + good * count) == "accepted"
    for count in (MAX_SIGNALS_PER_PAYLOAD + 1, 65536):
        assert agree(signals._array_header(count) + good * count) == "refused"
    assert agree(signals._array_header(2) + good) == "refused"
    assert agree(signals._array_header(1) + good * 2) == "refused"


# ---------------------------------------------------------------------------
# (d) input objects
# ---------------------------------------------------------------------------

GOOD = (
    b"\x92"  # fixarray of 2
    + encode_signal(make_signal("t/\u00e9", [1.0, 2.5], half_life=1.5, source=9, seq=3), 12)
    + encode_signal(make_signal("b", b"\x00\xff", ttl=2.0), 0)
)


def spread(data: bytes, step: int) -> bytes:
    """``data`` with step - 1 filler bytes after each byte: [::step] gives it back."""
    return bytes(b for x in data for b in (x, *(0xEE,) * (step - 1)))


def buffer_forms(data: bytes) -> list[tuple[str, object]]:
    forms: list[tuple[str, object]] = [
        ("bytes", data),
        ("bytearray", bytearray(data)),
        ("memoryview", memoryview(data)),
        ("memoryview of bytearray", memoryview(bytearray(data))),
        ("read-only memoryview", memoryview(bytearray(data)).toreadonly()),
        ("sliced memoryview", memoryview(b"\x00" + data + b"\x00")[1:-1]),
        ("non-contiguous memoryview", memoryview(spread(data, 2))[::2]),
        ("non-contiguous, step 3", memoryview(spread(data, 3))[::3]),
        ("reversed memoryview", memoryview(data[::-1])[::-1]),
        ("array('B')", array.array("B", data)),
        ("array('b')", array.array("b", data)),
        ("memoryview cast 'c'", memoryview(data).cast("c")),
        ("memoryview cast 'b'", memoryview(data).cast("b")),
        ("bytes subclass", type("Sub", (bytes,), {})(data)),
    ]
    if data and len(data) % 2 == 0:
        forms.append(("2-D memoryview", memoryview(data).cast("B", (2, len(data) // 2))))
        forms.append(("memoryview cast 'H'", memoryview(data).cast("H")))
        forms.append(("array('H')", array.array("H", data)))
    if len(data) % 8 == 0:
        forms.append(("array('d')", array.array("d", data)))
    return forms


@pytest.mark.parametrize(
    "data",
    [GOOD, GOOD + b"\x00", GOOD[:-1], b"\x90", b"", b"\x90\x90"],
    ids=["good", "trailing", "truncated", "empty array", "empty", "two arrays"],
)
def test_buffer_kinds(data: bytes) -> None:
    want_bytes = agree(data)
    for name, body in buffer_forms(data):
        outcome = agree(body)
        item_size = memoryview(body).itemsize  # type: ignore[arg-type]
        if item_size == 1:  # msgpack reads any buffer of bytes, contiguous or not
            assert outcome == want_bytes, name
        else:  # and refuses wider items, whatever they hold
            assert outcome == "refused", name


def test_wide_items_holding_a_valid_payload_are_refused() -> None:
    # A valid payload whose length is a multiple of 8, read through 2-, 4- and
    # 8-byte items: msgpack refuses any buffer of items wider than a byte.
    for n in range(1, 9):
        data = one_payload(["w" * n])
        if len(data) % 8 == 0:
            break
    assert len(data) % 8 == 0 and agree(data) == "accepted"
    for body in (
        memoryview(data).cast("H"),
        memoryview(data).cast("I"),
        memoryview(data).cast("d"),
        array.array("H", data),
        array.array("d", data),
    ):
        assert agree(body) == "refused"


def test_buffers_are_released() -> None:
    # A refused or accepted decode leaves no export behind: a bytearray can
    # be resized, an array appended to, a memoryview released.
    for data in (GOOD, GOOD[:-1], b"\xc1"):
        for decode in (compiled, reference):
            buffer = bytearray(data)
            view = memoryview(buffer)[::1]
            wide = array.array("H", b"\x00\x00")
            for body in (buffer, view, wide):
                try:
                    decode(body, QoS.NORMAL)
                except PayloadError:
                    pass
            view.release()
            buffer.append(0)  # raises BufferError while an export is held
            wide.append(1)
            assert (len(buffer), len(wide)) == (len(data) + 1, 2)


def test_released_memoryview() -> None:
    view = memoryview(GOOD)
    view.release()
    assert agree(view) == "refused"


@pytest.mark.parametrize(
    "body", [5, "str", "\x90", None, 1.5, [0x90], (0x90,), object(), True, {"a": 1}, QoS.NORMAL]
)
def test_non_buffers_are_payload_errors(body: object) -> None:
    for decode in (compiled, reference):
        with pytest.raises(PayloadError):
            decode(body, QoS.NORMAL)


def test_qos_is_converted_like_the_reference() -> None:
    for qos in (0, 1, 2, QoS.BULK):
        decoded = compiled(GOOD, qos)
        assert all(s.qos is QoS(qos) for s in decoded)
        assert agree(GOOD, qos) == "accepted"
    for decode in (compiled, reference):
        with pytest.raises(ValueError):
            decode(GOOD, 3)


def test_signals_survive_their_input() -> None:
    buffer = bytearray(GOOD)
    decoded = compiled(memoryview(buffer), QoS.NORMAL)
    expected = fingerprint(reference(GOOD, QoS.NORMAL))
    buffer[:] = b"\xff" * len(buffer)  # overwritten...
    del buffer[:]  # ...emptied...
    del buffer  # ...and gone
    gc.collect()
    assert fingerprint(decoded) == expected
    assert decoded[1].value == b"\x00\xff"


# ---------------------------------------------------------------------------
# (e) the topic cache
# ---------------------------------------------------------------------------

TOPIC_CACHE = 512  # slots in _payload.pyx


def cache_slot(topic: str) -> int:
    """The cache slot _payload.pyx gives a topic: FNV-1a of its bytes."""
    h = 1469598103934665603
    for b in topic.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & (TOPIC_CACHE - 1)


def one_payload(topics_: list[str]) -> bytes:
    builder = PayloadBuilder(1 << 20)
    for i, topic in enumerate(topics_):
        builder.add(encode_signal(make_signal(topic, i, ttl=1.0, seq=i), 0))
    return builder.build()


def test_many_distinct_topics() -> None:
    rng = random.Random(3)
    names = [f"robot/{i}/" + "\u00e9" * rng.randint(0, 20) for i in range(3000)]
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for body in (one_payload(chunk), one_payload(chunk[::-1])):
            assert agree(body) == "accepted"
            assert [s.topic for s in compiled(body, QoS.NORMAL)] in (chunk, chunk[::-1])


def test_colliding_topics() -> None:
    # Topics of the same length in the same slot: only the bytes tell them apart.
    by_slot: dict[tuple[int, int], list[str]] = {}
    for i in range(20000):
        topic = f"c{i:05d}"
        by_slot.setdefault((cache_slot(topic), len(topic)), []).append(topic)
    colliding = max(by_slot.values(), key=len)
    assert len(colliding) >= 40
    rng = random.Random(5)
    for _ in range(50):
        chosen = [rng.choice(colliding) for _ in range(30)]
        body = one_payload(chosen)
        assert [s.topic for s in compiled(body, QoS.NORMAL)] == chosen
        assert agree(body) == "accepted"


def test_same_topic_twice_is_the_same_str() -> None:
    body = one_payload(["pose/x", "pose/x"])
    first = compiled(body, QoS.NORMAL)
    second = compiled(body, QoS.NORMAL)
    assert first[0].topic == second[1].topic == "pose/x"
    assert type(first[0].topic) is str
    assert first[0].topic is first[1].topic is second[0].topic  # one str from the cache


def test_cached_topic_is_a_plain_exact_str() -> None:
    for topic in ("\U0010ffff", "\u00e9t\u00e9", "a" * 128, "x"):
        (signal,) = compiled(one_payload([topic]), QoS.NORMAL)
        assert type(signal.topic) is str and signal.topic == topic
        assert signal.topic.encode() == topic.encode()


# ---------------------------------------------------------------------------
# (f) reference counts, memory, garbage collection, re-entry
# ---------------------------------------------------------------------------

LOOPS = 200_000


def test_refcounts_and_memory_stay_flat() -> None:
    body = one_payload(["leak/topic"])
    (first,) = compiled(body, QoS.NORMAL)
    topic = first.topic  # the cache's str
    objects: list[object] = [topic, QoS.NORMAL, Signal, body]
    del first
    gc.collect()
    before = [sys.getrefcount(o) for o in objects]
    tracemalloc.start()
    try:
        compiled(body, QoS.NORMAL)  # warm up
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(LOOPS):
            compiled(body, QoS.NORMAL)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    gc.collect()
    after = [sys.getrefcount(o) for o in objects]
    assert after == before
    assert grown < 64 * 1024, f"{grown} bytes more after {LOOPS} decodes"


def test_refused_payloads_leak_nothing() -> None:
    bodies = [GOOD[:-1], GOOD + b"\x00", b"\x91\xc0", bytearray(b"\x91\x98\xa1t\xc2")]
    before = [sys.getrefcount(b) for b in bodies]
    tracemalloc.start()
    try:
        for _ in range(200):  # warm up
            for b in bodies:
                with pytest.raises(PayloadError):
                    compiled(b, QoS.NORMAL)
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(20_000):
            for b in bodies:
                try:
                    compiled(b, QoS.NORMAL)
                except PayloadError:
                    pass
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del b
    assert [sys.getrefcount(body) for body in bodies] == before
    assert grown < 64 * 1024


def test_signals_are_gc_tracked_and_traversed() -> None:
    decoded = compiled(GOOD, QoS.NORMAL)
    for signal in decoded:
        assert gc.is_tracked(signal)
        referents = gc.get_referents(signal)
        assert any(r is signal.topic for r in referents)
        assert any(r is signal.value for r in referents)
        assert any(r is Signal for r in referents)  # a heap type's instances hold it
    gc.collect()
    gc.collect()
    assert fingerprint(decoded) == fingerprint(reference(GOOD, QoS.NORMAL))
    # A signal in a reference cycle is collected.
    holder: list[object] = [decoded[0]]
    holder.append(holder)
    del holder, decoded
    assert gc.collect() >= 1


class _Reenter:
    """Decodes another payload from its finalizer, while garbage is collected."""

    calls: list[int] = []  # noqa: RUF012 - shared on purpose
    inner = b""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        _Reenter.calls.append(len(compiled(_Reenter.inner, QoS.NORMAL)))


def test_decode_reentered_from_a_finalizer() -> None:
    # Building the signals allocates GC objects, so a collection can run in the
    # middle of a decode, and a finalizer can decode another payload then: the
    # outer decode must not see the inner one's records.
    outer = one_payload([f"o{i}" for i in range(300)])
    _Reenter.inner = one_payload(["i" * 120 + str(i) for i in range(300)])
    expected = fingerprint(reference(outer, QoS.NORMAL))
    _Reenter.calls.clear()
    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(5)
    try:
        for _ in range(50):
            for _ in range(3):
                _Reenter()
            assert fingerprint(compiled(outer, QoS.NORMAL)) == expected
    finally:
        gc.set_threshold(*threshold)
        gc.collect()
    assert _Reenter.calls and all(n == 300 for n in _Reenter.calls)


def test_the_collector_never_sees_a_half_built_result() -> None:
    # Building the signals allocates and so may run the collector; its
    # callbacks must not find the result list (its items still empty, and
    # reading one would crash) or a Signal with empty slots.  With gc's
    # threshold at 1 the collector runs at nearly every allocation.
    builder = PayloadBuilder(100_000)
    for i in range(200):
        builder.add(encode_signal(make_signal(f"t{i}", (1.0,) * 16, ttl=1.0), 0))
    payload = builder.build()
    lists_seen = 0
    broken: list[str] = []

    def look(phase: str, info: dict[str, int]) -> None:
        nonlocal lists_seen
        if phase != "start":
            return
        for obj in gc.get_objects(generation=0):
            if type(obj) is list and len(obj) == 200:
                lists_seen += 1  # never touch its items: they may be NULL
            elif type(obj) is Signal:
                try:
                    assert obj.ttl == 1.0 and obj.topic.startswith("t")
                except (AttributeError, AssertionError) as exc:
                    broken.append(repr(exc))

    threshold = gc.get_threshold()
    gc.set_threshold(1)
    gc.callbacks.append(look)
    try:
        decoded = compiled(payload, QoS.NORMAL)
    finally:
        gc.callbacks.remove(look)
        gc.set_threshold(*threshold)
    assert lists_seen == 0 and broken == []
    assert len(decoded) == 200 and gc.is_tracked(decoded) and gc.is_tracked(decoded[0])
