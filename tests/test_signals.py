"""Tests of :mod:`cloudkernel.core.signals`: limits, encoding, batching, decoding.

* ``make_signal`` accepts every limit of ``docs/PROTOCOL.md`` section 3 at its
  edge and refuses it one step past, with a SignalError naming the field.
* ``encode_signal`` is pinned byte by byte against msgpack written out by hand.
* ``PayloadBuilder.size`` is exact across the array header's growth.
* ``decode_payload`` gives back what was encoded, reads plain msgpack, refuses
  every broken rule with a PayloadError (a truth table over good and bad
  fields, hand-made bad payloads) and raises nothing else, whatever the bytes
  (20,000 seeded mutations of valid payloads).
"""

from __future__ import annotations

import array
import dataclasses
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.core import signals
from cloudkernel.core.signals import (
    MAX_BYTES_VALUE,
    MAX_CATEGORY,
    MAX_ENCODED_SIGNAL,
    MAX_HOPS,
    MAX_LIFETIME_MS,
    MAX_SIGNALS_PER_PAYLOAD,
    MAX_TOPIC_BYTES,
    MAX_U32,
    MAX_VECTOR_DIM,
    SIGNAL_FIELDS,
    PayloadBuilder,
    QoS,
    Signal,
    check_signal,
    decode_payload,
    decode_payload_reference,
    encode_signal,
    make_signal,
)
from cloudkernel.errors import PayloadError, SignalError

NAN = math.nan
INF = math.inf
#: the float just above 1.0
ABOVE_ONE = math.nextafter(1.0, 2.0)
#: the message decode_payload falls back on if its two sets of checks disagree
FALLBACK = "payload breaks PROTOCOL.md section 3"


def lifetime_ms(seconds: float) -> int:
    """PROTOCOL.md section 3 milliseconds: round half up, at least 1."""
    return max(1, math.floor(seconds * 1000.0 + 0.5))


def on_the_wire(signal: Signal, age_ms: int, qos: QoS) -> Signal:
    """What a receiver makes of ``signal`` sent with ``age_ms`` in a ``qos`` frame."""
    half_life, ttl = signal.half_life, signal.ttl
    return replace(
        signal,
        half_life=None if half_life is None else lifetime_ms(half_life) / 1000,
        ttl=None if ttl is None else lifetime_ms(ttl) / 1000,
        age=min(max(age_ms, 0), MAX_U32) / 1000,
        qos=qos,
    )


def payload_of(*signals_: Signal, age_ms: int = 0) -> bytes:
    builder = PayloadBuilder(1 << 20)
    for signal in signals_:
        builder.add(encode_signal(signal, age_ms))
    return builder.build()


def packed(*items: object) -> bytes:
    """A payload as plain msgpack packs the given signal arrays."""
    result: bytes = msgpack.packb(list(items), use_bin_type=True)
    return result


def same(a: Signal, b: Signal) -> bool:
    """Equal, and of the same kinds: 1 == 1.0 would let a category pass for a float."""
    return (
        a == b
        and type(a) is type(b) is Signal
        and a.kind == b.kind
        and type(a.value) is type(b.value)
        and (not isinstance(a.value, tuple) or all(type(x) is float for x in a.value))
    )


# ---------------------------------------------------------------------------
# QoS
# ---------------------------------------------------------------------------


def test_qos_wire_values() -> None:
    assert [(q.name, int(q)) for q in QoS] == [("CRITICAL", 0), ("NORMAL", 1), ("BULK", 2)]


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        (QoS.BULK, QoS.BULK),
        (0, QoS.CRITICAL),
        (2, QoS.BULK),
        ("critical", QoS.CRITICAL),
        ("Normal", QoS.NORMAL),
        ("BULK", QoS.BULK),
    ],
)
def test_qos_parse_accepts(given_: object, expected: QoS) -> None:
    assert QoS.parse(given_) is expected


@pytest.mark.parametrize(
    "given_",
    [3, -1, True, False, 1.0, None, "fast", "", " bulk", "bul\u212a", b"bulk", [0]],
)
def test_qos_parse_refuses(given_: object) -> None:
    # "bul\u212a" ends in the Kelvin sign, which str.lower() makes a "k".
    with pytest.raises(SignalError, match=r"^qos .*'critical', 'normal' and 'bulk'"):
        QoS.parse(given_)


# ---------------------------------------------------------------------------
# make_signal: every limit at its edge and one past it
# ---------------------------------------------------------------------------

BASE: dict[str, Any] = {"topic": "t", "value": 1.0, "ttl": 1.0}

ACCEPTED: list[dict[str, Any]] = [
    {"topic": "a" * MAX_TOPIC_BYTES},
    {"topic": "\u00e9" * 64},  # 2 bytes each: 128
    {"topic": "\u20ac" * 42 + "ab"},  # 3 bytes each: 128
    {"topic": "\U0001f41d" * 32},  # 4 bytes each: 128
    {"topic": " "},
    {"topic": "\u00a0\u0080\u2028"},  # not C0 or DEL: allowed by the rule as written
    {"value": 0.0},
    {"value": -0.0},
    {"value": 1.7976931348623157e308},
    {"value": -1.7976931348623157e308},
    {"value": 5e-324},
    {"value": 0},
    {"value": MAX_CATEGORY},
    {"value": [1.0]},
    {"value": [1.0] * MAX_VECTOR_DIM},
    {"value": (1, -2, 3.5)},
    {"value": [1.7976931348623157e308] * MAX_VECTOR_DIM},
    {"value": b"x"},
    {"value": b"x" * MAX_BYTES_VALUE},
    {"value": bytearray(b"ab")},
    {"value": memoryview(b"abc")},
    {"value": memoryview(array.array("I", range(16)))},  # 64 bytes
    {"confidence": 1.0},
    {"confidence": 1},
    {"confidence": 5e-324},
    {"half_life": 86_400, "ttl": None},
    {"half_life": 86_400.0004999},  # 86_400_000.4999 ms: rounds down to the limit
    {"half_life": 5e-324},  # rounds up to 1 ms
    {"ttl": 86_400},
    {"ttl": 1e-9},
    {"half_life": 1.0, "ttl": 2.0},
    {"qos": QoS.CRITICAL},
    {"qos": "bulk"},
    {"qos": 0},
    {"source": 0},
    {"source": MAX_U32},
    {"seq": 0},
    {"seq": MAX_U32},
    {"age": 0},
    {"age": 0.0},
    {"age": 1e300},
]

# (field the message must start with, override)
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("topic", {"topic": "a" * (MAX_TOPIC_BYTES + 1)}),
    ("topic", {"topic": "\u00e9" * 64 + "a"}),
    ("topic", {"topic": "\U0001f41d" * 32 + "a"}),
    ("topic", {"topic": ""}),
    ("topic", {"topic": "a\x1f"}),
    ("topic", {"topic": "\x00"}),
    ("topic", {"topic": "a\nb"}),
    ("topic", {"topic": "a\x7f"}),
    ("topic", {"topic": "\ud800"}),  # a lone surrogate has no UTF-8
    ("topic", {"topic": b"t"}),
    ("topic", {"topic": None}),
    ("topic", {"topic": 5}),
    ("value", {"value": INF}),
    ("value", {"value": -INF}),
    ("value", {"value": NAN}),
    ("value", {"value": -1}),
    ("value", {"value": MAX_CATEGORY + 1}),
    ("value", {"value": True}),
    ("value", {"value": False}),
    ("value", {"value": []}),
    ("value", {"value": ()}),
    ("value", {"value": [1.0] * (MAX_VECTOR_DIM + 1)}),
    ("value", {"value": [1.0, True]}),
    ("value", {"value": [1.0, NAN]}),
    ("value", {"value": [INF]}),
    ("value", {"value": [1.0, "2"]}),
    ("value", {"value": [[1.0]]}),
    ("value", {"value": [10**400]}),
    ("value", {"value": b""}),
    ("value", {"value": b"x" * (MAX_BYTES_VALUE + 1)}),
    ("value", {"value": bytearray(MAX_BYTES_VALUE + 1)}),
    ("value", {"value": memoryview(array.array("I", range(17)))}),  # 17 items, 68 bytes
    ("value", {"value": "1.0"}),
    ("value", {"value": None}),
    ("value", {"value": {1: 2}}),
    ("value", {"value": 1 + 2j}),
    ("value", {"value": {1.0}}),
    ("confidence", {"confidence": 0}),
    ("confidence", {"confidence": 0.0}),
    ("confidence", {"confidence": -0.0}),
    ("confidence", {"confidence": -0.5}),
    ("confidence", {"confidence": ABOVE_ONE}),
    ("confidence", {"confidence": 2}),
    ("confidence", {"confidence": NAN}),
    ("confidence", {"confidence": INF}),
    ("confidence", {"confidence": True}),
    ("confidence", {"confidence": "1"}),
    ("confidence", {"confidence": None}),
    ("half_life", {"half_life": 86_400.001}),
    ("half_life", {"half_life": 1e300}),
    ("half_life", {"half_life": 0}),
    ("half_life", {"half_life": 0.0}),
    ("half_life", {"half_life": -1.0}),
    ("half_life", {"half_life": NAN}),
    ("half_life", {"half_life": INF}),
    ("half_life", {"half_life": True}),
    ("half_life", {"half_life": "1"}),
    ("half_life", {"half_life": 10**400}),
    ("ttl", {"ttl": 86_400.001}),
    ("ttl", {"ttl": 0}),
    ("ttl", {"ttl": -1e-300}),
    ("ttl", {"ttl": NAN}),
    ("ttl", {"ttl": True}),
    ("half_life and ttl", {"ttl": None}),
    ("half_life and ttl", {"half_life": None, "ttl": None}),
    ("qos", {"qos": 3}),
    ("qos", {"qos": "urgent"}),
    ("qos", {"qos": True}),
    ("source", {"source": -1}),
    ("source", {"source": MAX_U32 + 1}),
    ("source", {"source": True}),
    ("source", {"source": 1.0}),
    ("source", {"source": None}),
    ("seq", {"seq": -1}),
    ("seq", {"seq": MAX_U32 + 1}),
    ("seq", {"seq": False}),
    ("seq", {"seq": "1"}),
    ("age", {"age": -1e-300}),
    ("age", {"age": -1}),
    ("age", {"age": NAN}),
    ("age", {"age": INF}),
    ("age", {"age": True}),
    ("age", {"age": None}),
]


@pytest.mark.parametrize("override", ACCEPTED, ids=repr)
def test_make_signal_accepts_the_edges(override: dict[str, Any]) -> None:
    signal = make_signal(**(BASE | override))
    assert len(encode_signal(signal, 0)) <= MAX_ENCODED_SIGNAL
    (decoded,) = decode_payload(payload_of(signal), signal.qos)
    assert same(decoded, on_the_wire(signal, 0, signal.qos))


@pytest.mark.parametrize(("field", "override"), REFUSED, ids=repr)
def test_make_signal_refuses_one_past_the_edges(field: str, override: dict[str, Any]) -> None:
    with pytest.raises(SignalError, match=rf"^{re.escape(field)}\b") as caught:
        make_signal(**(BASE | override))
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"topic": "a" * 140}, "is 140 bytes of UTF-8; the limit is 128"),
        ({"value": True}, "is a bool"),
        ({"value": [1.0, False]}, r"^value\[1\] False is a bool"),
        ({"value": [1.0] * 17}, r"has 17 items; a vector has 1\.\.16"),
        ({"value": b"x" * 65}, r"is 65 bytes; the limit is 1\.\.64"),
        ({"value": 2**32}, r"^value 4294967296 is out of range; a category is 0\.\.4294967295"),
        ({"confidence": 1.5}, r"^confidence 1\.5 .*0 < confidence <= 1"),
        ({"half_life": 86_400.001}, r"^half_life 86400\.001 .*86400000 ms"),
        ({"source": -1}, r"^source -1 .*0\.\.4294967295"),
        ({"topic": "ab\x07"}, r"U\+0007 at index 2"),
    ],
)
def test_make_signal_messages_name_value_and_limit(override: dict[str, Any], problem: str) -> None:
    with pytest.raises(SignalError, match=problem):
        make_signal(**(BASE | override))


def test_make_signal_normalises() -> None:
    class Topic(str):
        pass

    signal = make_signal(
        Topic("t"),
        [1, 2.5],
        confidence=1,
        half_life=2,
        ttl=None,
        qos="critical",
        source=7,
        seq=8,
        age=3,
    )
    assert type(signal.topic) is str
    assert signal.value == (1.0, 2.5) and all(type(x) is float for x in signal.value)
    for number in (signal.confidence, signal.half_life, signal.age):
        assert type(number) is float
    assert signal.qos is QoS.CRITICAL
    assert make_signal("t", bytearray(b"ab"), ttl=1).value == b"ab"
    assert type(make_signal("t", memoryview(b"ab"), ttl=1).value) is bytes
    assert type(make_signal("t", 3, ttl=1).value) is int


def test_signal_kind_and_dataclass_behaviour() -> None:
    kinds = {
        "float": make_signal("t", 1.0, ttl=1),
        "category": make_signal("t", 1, ttl=1),
        "vector": make_signal("t", [1.0], ttl=1),
        "bytes": make_signal("t", b"\x01", ttl=1),
    }
    for kind, signal in kinds.items():
        assert signal.kind == kind
    signal = kinds["float"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        signal.topic = "u"  # type: ignore[misc]
    assert hash(signal) == hash(make_signal("t", 1.0, ttl=1))
    assert [f.name for f in dataclasses.fields(Signal)] == [
        "topic",
        "value",
        "confidence",
        "half_life",
        "ttl",
        "qos",
        "source",
        "seq",
        "age",
        "hops",
    ]


# ---------------------------------------------------------------------------
# encode_signal
# ---------------------------------------------------------------------------


def test_encoding_byte_exact() -> None:
    signal = make_signal(
        "ab", 1.5, confidence=0.5, half_life=2.0, qos="bulk", source=0x01020304, seq=5
    )
    # Written out by hand from the msgpack spec, not by msgpack.packb:
    expected = bytes.fromhex(
        "98"  # fixarray, 8 items
        "a2 61 62"  # fixstr of 2 bytes: "ab"
        "cb 3ff8000000000000"  # float64 1.5
        "cb 3fe0000000000000"  # float64 0.5 (confidence)
        "cd 07d0"  # uint16 2000: half-life 2.0 s in ms
        "c0"  # nil: no ttl
        "cd 012c"  # uint16 300: age in ms
        "ce 01020304"  # uint32 source
        "05"  # positive fixint 5: seq
    )
    assert encode_signal(signal, 300) == expected


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        # Written out by hand from the msgpack spec.
        (7, "07"),  # positive fixint
        (200, "cc c8"),  # uint8
        (MAX_CATEGORY, "ce ffffffff"),  # uint32
        (-2.0, "cb c000000000000000"),  # float64, never float32
        (0.1, "cb 3fb999999999999a"),
        ([1.0, -2.0], "92 cb 3ff0000000000000 cb c000000000000000"),  # fixarray of float64
        ([1] * 16, "dc 0010" + " cb 3ff0000000000000" * 16),  # array16 from 16 items on
        (b"\x00\xff", "c4 02 00ff"),  # bin8, not str
    ],
)
def test_encoding_of_values(value: object, hex_: str) -> None:
    encoded = encode_signal(make_signal("t", value, ttl=0.001), 0)
    # 98, fixstr "t", the value, confidence 1.0, nil, ttl 1 ms, age 0, source 0, seq 0
    expected = "98 a1 74" + hex_ + "cb 3ff0000000000000 c0 01 00 00 00"
    assert encoded == bytes.fromhex(expected)


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [
        (5e-324, 1),
        (0.0004, 1),
        (0.0005, 1),
        (0.0015, 2),
        (0.0025, 3),  # half up, not half to even
        (1.0, 1000),
        (2.0004, 2000),
        (2.0005, 2001),
        (86_400, MAX_LIFETIME_MS),
    ],
)
def test_lifetimes_round_half_up_to_whole_ms(seconds: float, ms: int) -> None:
    signal = make_signal("t", 1.0, half_life=seconds, ttl=seconds)
    assert msgpack.unpackb(encode_signal(signal, 0))[3:5] == [ms, ms]
    assert lifetime_ms(seconds) == ms


@pytest.mark.parametrize(
    ("age_ms", "wire"),
    [(-5, 0), (0, 0), (MAX_U32, MAX_U32), (MAX_U32 + 1, MAX_U32), (2**70, MAX_U32)],
)
def test_age_is_clamped(age_ms: int, wire: int) -> None:
    assert msgpack.unpackb(encode_signal(make_signal("t", 1.0, ttl=1), age_ms))[5] == wire


def test_encode_source_and_seq_overrides() -> None:
    signal = make_signal("t", 1.0, ttl=1, source=1, seq=2)
    assert msgpack.unpackb(encode_signal(signal, 0))[6:] == [1, 2]
    assert msgpack.unpackb(encode_signal(signal, 0, source=9, seq=MAX_U32))[6:] == [9, MAX_U32]
    for bad in (-1, MAX_U32 + 1):
        with pytest.raises(SignalError, match=r"^source"):
            encode_signal(signal, 0, source=bad)
        with pytest.raises(SignalError, match=r"^seq"):
            encode_signal(signal, 0, seq=bad)


def test_max_encoded_signal_is_the_largest_encoding() -> None:
    largest = make_signal(
        "a" * MAX_TOPIC_BYTES,
        [-1.7976931348623157e308] * MAX_VECTOR_DIM,
        confidence=0.3,
        half_life=86_400,
        ttl=86_400,
        source=MAX_U32,
        seq=MAX_U32,
        hops=MAX_HOPS,
    )
    assert len(encode_signal(largest, MAX_U32)) == MAX_ENCODED_SIGNAL == 313
    # The other kinds of value at their largest are smaller.
    for value in (b"x" * MAX_BYTES_VALUE, MAX_CATEGORY, 1.5):
        assert len(encode_signal(replace(largest, value=value), MAX_U32)) < MAX_ENCODED_SIGNAL
    # The largest signal fits an empty builder whose budget is one byte more.
    builder = PayloadBuilder(MAX_ENCODED_SIGNAL + 1)
    assert builder.fits(encode_signal(largest, MAX_U32))
    assert not PayloadBuilder(MAX_ENCODED_SIGNAL).fits(encode_signal(largest, MAX_U32))


# ---------------------------------------------------------------------------
# Strategies for valid signals
# ---------------------------------------------------------------------------

CONTROL = "".join(map(chr, range(0x20))) + "\x7f"
topic_chars = st.characters(codec="utf-8", exclude_characters=CONTROL)
topics = st.one_of(
    st.text(topic_chars, min_size=1, max_size=32),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=100, max_size=128),
).filter(lambda t: len(t.encode("utf-8")) <= MAX_TOPIC_BYTES)
finite = st.floats(allow_nan=False, allow_infinity=False)
values = st.one_of(
    finite,
    st.integers(0, MAX_CATEGORY),
    st.lists(st.one_of(finite, st.integers(-(2**60), 2**60)), min_size=1, max_size=16),
    st.binary(min_size=1, max_size=MAX_BYTES_VALUE),
)
lifetime = st.one_of(
    st.none(),
    st.floats(min_value=0.0, max_value=86_400.0, exclude_min=True),
    st.integers(1, 86_400),
)
u32 = st.integers(0, MAX_U32)


@st.composite
def valid_signals(draw: st.DrawFn) -> Signal:
    half_life, ttl = draw(st.tuples(lifetime, lifetime).filter(lambda p: p != (None, None)))
    return make_signal(
        draw(topics),
        draw(values),
        confidence=draw(st.floats(min_value=0.0, max_value=1.0, exclude_min=True)),
        half_life=half_life,
        ttl=ttl,
        qos=draw(st.sampled_from(QoS)),
        source=draw(u32),
        seq=draw(u32),
        age=draw(st.floats(min_value=0.0, max_value=1e9)),
    )


ages_ms = st.one_of(st.integers(0, MAX_U32), st.integers(-(2**40), 2**40))


# ---------------------------------------------------------------------------
# Round trips and interoperation with plain msgpack
# ---------------------------------------------------------------------------


@given(st.lists(st.tuples(valid_signals(), ages_ms), max_size=40), st.sampled_from(QoS))
def test_round_trip(batch: list[tuple[Signal, int]], qos: QoS) -> None:
    builder = PayloadBuilder(1 << 20)
    for signal, age_ms in batch:
        encoded = encode_signal(signal, age_ms)
        assert len(encoded) <= MAX_ENCODED_SIGNAL
        builder.add(encoded)
    payload = builder.build()
    decoded = decode_payload(payload, qos)
    assert len(decoded) == len(batch)
    for got, (signal, age_ms) in zip(decoded, batch, strict=True):
        assert same(got, on_the_wire(signal, age_ms, qos))
    # Decoded signals encode to the same bytes again.
    for got, (signal, age_ms) in zip(decoded, batch, strict=True):
        assert encode_signal(got, round(got.age * 1000)) == encode_signal(signal, age_ms)
    # Plain msgpack reads what we build.
    assert msgpack.unpackb(payload) == [msgpack.unpackb(encode_signal(s, a)) for s, a in batch]


@given(st.lists(valid_signals(), max_size=20))
def test_payloads_from_plain_msgpack_decode(batch: list[Signal]) -> None:
    arrays = [msgpack.unpackb(encode_signal(s, 5)) for s in batch]
    expected = [on_the_wire(s, 5, QoS.BULK) for s in batch]
    for body in (
        packed(*arrays),
        bytearray(packed(*arrays)),
        memoryview(b"\x00" + packed(*arrays))[1:],
    ):
        decoded = decode_payload(body, QoS.BULK)
        assert all(same(a, b) for a, b in zip(decoded, expected, strict=True))


def test_other_encoders_choices_decode() -> None:
    # float32 and non-minimal ints, str8 for a short topic, array16 for few
    # items: all valid msgpack for the same values.
    body = bytes.fromhex(
        "dc 0001"  # array16 of 1 signal
        "dc 0008"  # array16 of 8 items
        "d9 01 74"  # str8 "t"
        "ca 3fc00000"  # float32 1.5
        "ca 3f000000"  # float32 0.5
        "cf 0000000000000001"  # uint64 1: half-life 1 ms
        "c0"
        "d3 0000000000000000"  # int64 0: age
        "d2 00000007"  # int32 7: source
        "cc 00"  # uint8 0: seq
    )
    (signal,) = decode_payload(body, QoS.NORMAL)
    assert same(signal, Signal("t", 1.5, 0.5, 0.001, None, QoS.NORMAL, 7, 0, 0.0))


def test_empty_payload() -> None:
    assert decode_payload(PayloadBuilder(10).build(), QoS.NORMAL) == []
    assert decode_payload(b"\x90", QoS.NORMAL) == []
    assert decode_payload(b"\xdc\x00\x00", QoS.NORMAL) == []


def test_decoded_signals_are_real_signals() -> None:
    signal = make_signal("t", [1.0, 2.0], half_life=1, source=3, seq=4)
    (decoded,) = decode_payload(payload_of(signal), QoS.NORMAL)
    assert type(decoded) is Signal
    assert decoded == signal and hash(decoded) == hash(signal)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.age = 1.0  # type: ignore[misc]
    assert replace(decoded, age=2.0).age == 2.0
    assert repr(decoded).startswith("Signal(topic='t', value=(1.0, 2.0)")


# ---------------------------------------------------------------------------
# PayloadBuilder
# ---------------------------------------------------------------------------


def header_size(count: int) -> int:
    """msgpack's own array header length for ``count`` items."""
    return len(msgpack.packb([None] * count)) - count  # each nil is one byte


@pytest.mark.parametrize("count", [0, 1, 15, 16, 17, 1024, 65535, 65536, 70000])
def test_array_header_matches_msgpack(count: int) -> None:
    header = signals._array_header(count)
    assert len(header) == signals._array_header_len(count) == header_size(count)
    assert msgpack.packb([None] * count) == header + b"\xc0" * count


@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=MAX_SIGNALS_PER_PAYLOAD + 40),
    st.integers(1, 5000),
)
def test_builder_size_is_exact(parts: list[bytes], budget: int) -> None:
    builder = PayloadBuilder(budget)
    added: list[bytes] = []
    for part in parts:
        count = len(added) + 1
        would_be = header_size(count) + sum(map(len, added)) + len(part)
        fits = would_be <= budget and count <= MAX_SIGNALS_PER_PAYLOAD
        assert builder.fits(part) is fits
        if not fits:
            with pytest.raises(ValueError, match="does not fit"):
                builder.add(part)
            continue
        builder.add(part)
        added.append(part)
        assert len(builder) == len(added)
        assert builder.size == header_size(len(added)) + sum(map(len, added))
    size = builder.size
    payload = builder.build()
    assert len(payload) == size <= max(budget, 1)
    assert payload == signals._array_header(len(added)) + b"".join(added)
    assert len(builder) == 0 and builder.size == 1 and builder.build() == b"\x90"


def test_builder_crossing_sixteen_items_counts_the_longer_header() -> None:
    part = b"\xc0" * 10
    builder = PayloadBuilder(1 + 15 * 10 + 10)  # 16 parts would fit under a 1-byte header
    for _ in range(15):
        builder.add(part)
    assert builder.size == 151
    assert not builder.fits(part)  # 3 + 160 = 163 > 161
    builder = PayloadBuilder(3 + 16 * 10)
    for _ in range(16):
        builder.add(part)
    assert builder.size == 163 == len(builder.build())


def test_builder_caps_the_signal_count() -> None:
    builder = PayloadBuilder(1 << 20)
    nil = b"\xc0"
    for _ in range(MAX_SIGNALS_PER_PAYLOAD):
        builder.add(nil)
    assert not builder.fits(nil)
    with pytest.raises(ValueError, match="1024 signals"):
        builder.add(nil)
    assert msgpack.unpackb(builder.build()) == [None] * MAX_SIGNALS_PER_PAYLOAD


def test_builder_fills_a_real_budget() -> None:
    builder = PayloadBuilder(1150)
    sent: list[Signal] = []
    i = 0
    while True:
        signal = make_signal(f"swarm/robot-{i:03d}/battery", 12.5 + i, half_life=2.5, seq=i)
        encoded = encode_signal(signal, 0)
        if not builder.fits(encoded):
            break
        builder.add(encoded)
        sent.append(signal)
        i += 1
    payload = builder.build()
    assert 1150 - MAX_ENCODED_SIGNAL < len(payload) <= 1150
    assert decode_payload(payload, QoS.NORMAL) == sent


@pytest.mark.parametrize("budget", [0, -1, True, 1.5, "10", None])
def test_builder_refuses_bad_budgets(budget: Any) -> None:
    with pytest.raises(ValueError, match="budget"):
        PayloadBuilder(budget)


# ---------------------------------------------------------------------------
# decode_payload: a truth table of good and bad fields
# ---------------------------------------------------------------------------

# (value as msgpack.packb packs it, valid?)
WIRE_TOPICS = [
    ("t", True),
    ("a" * 128, True),
    ("\u00e9" * 64, True),
    ("\u00e9" * 64 + "a", False),  # 129 bytes
    ("a" * 129, False),
    (" \u00a0\u0085", True),
    ("", False),
    ("a\n", False),
    ("\x00", False),
    ("a\x7f", False),
    (5, False),
    (b"t", False),
    (None, False),
    (("t",), False),
]
WIRE_VALUES = [
    (1.5, True),
    (-0.0, True),
    (1.7976931348623157e308, True),
    (NAN, False),
    (INF, False),
    (-INF, False),
    (0, True),
    (MAX_CATEGORY, True),
    (MAX_CATEGORY + 1, False),
    (2**64 - 1, False),
    (-1, False),
    (-(2**63), False),
    (True, False),
    (False, False),
    ((1.0,), True),
    ((1.0,) * 16, True),
    ((1.0,) * 17, False),
    ((), False),
    ((1,), False),
    ((1.0, NAN), False),
    ((INF,), False),
    ((True,), False),
    ((None,), False),
    (((1.0,),), False),
    (b"x", True),
    (b"x" * 64, True),
    (b"", False),
    (b"x" * 65, False),
    ("s", False),
    (None, False),
    ({}, False),
]
WIRE_CONFIDENCES = [
    (1.0, True),
    (0.5, True),
    (5e-324, True),
    (0.0, False),
    (-0.0, False),
    (ABOVE_ONE, False),
    (-1.0, False),
    (NAN, False),
    (INF, False),
    (1, False),
    (True, False),
    (None, False),
]
# None is valid when the other lifetime is not None.
WIRE_LIFETIMES: list[tuple[object, bool]] = [
    (None, True),
    (1, True),
    (MAX_LIFETIME_MS, True),
    (0, False),
    (MAX_LIFETIME_MS + 1, False),
    (-1, False),
    (1.0, False),
    (True, False),
    ("1", False),
]
WIRE_U32 = [
    (0, True),
    (MAX_U32, True),
    (-1, False),
    (MAX_U32 + 1, False),
    (2**64 - 1, False),
    (1.0, False),
    (True, False),
    (None, False),
]


def table(rows: Sequence[tuple[object, bool]]) -> st.SearchStrategy[tuple[object, bool]]:
    return st.sampled_from(rows)


@given(
    st.lists(
        st.tuples(
            table(WIRE_TOPICS),
            table(WIRE_VALUES),
            table(WIRE_CONFIDENCES),
            table(WIRE_LIFETIMES),
            table(WIRE_LIFETIMES),
            table(WIRE_U32),
            table(WIRE_U32),
            table(WIRE_U32),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_decode_truth_table(rows: list[tuple[tuple[object, bool], ...]]) -> None:
    items: list[tuple[Any, ...]] = [tuple(value for value, _ in row) for row in rows]
    valid = all(
        all(ok for _, ok in row) and (row[3][0] is not None or row[4][0] is not None)
        for row in rows
    )
    body = packed(*items)
    if valid:
        decoded = decode_payload(body, QoS.CRITICAL)
        for signal, item in zip(decoded, items, strict=True):
            topic, value, confidence, half_life, ttl, age, source, seq = item
            expected = Signal(
                topic,
                value,
                confidence,
                None if half_life is None else half_life / 1000,
                None if ttl is None else ttl / 1000,
                QoS.CRITICAL,
                source,
                seq,
                age / 1000,
            )
            assert same(signal, expected)
    else:
        with pytest.raises(PayloadError) as caught:
            decode_payload_reference(body, QoS.CRITICAL)
        assert FALLBACK not in str(caught.value)
        with pytest.raises(PayloadError):
            decode_payload(body, QoS.CRITICAL)


# ---------------------------------------------------------------------------
# decode_payload: hand-made bad payloads
# ---------------------------------------------------------------------------

GOOD = ["t", 1.5, 0.5, 1000, None, 0, 1, 2]


def good_with(index: int, value: object) -> bytes:
    item = list(GOOD)
    item[index] = value
    return packed(item)


GOOD_PAYLOAD = packed(GOOD)
# The topic "t" starts at byte 2: 91 98 a1 74 ...
assert GOOD_PAYLOAD[:4] == b"\x91\x98\xa1\x74"


def with_topic_bytes(raw: bytes) -> bytes:
    """GOOD_PAYLOAD with the topic replaced by a str holding ``raw``."""
    return b"\x91\x98" + b"\xd9" + bytes((len(raw),)) + raw + GOOD_PAYLOAD[4:]


BAD_PAYLOADS: list[tuple[str, bytes, str]] = [
    ("empty body", b"", "incomplete"),
    ("top level nil", b"\xc0", "nil, not an array"),
    ("top level int", b"\x05", "int, not an array"),
    ("top level str", packed("x")[1:], "str, not an array"),
    ("top level map", b"\x80", "map, not an array"),
    ("top level map with items", b"\x81\x01\x02", "max_map_len"),
    ("top level ext", b"\xc7\x00\x05", "ext, not an array"),
    ("top level fixext", b"\xd4\x05\x00", "max_ext_len"),
    ("timestamp ext", b"\xd6\xff\x00\x00\x00\x00", "max_ext_len"),
    ("7 items", packed(GOOD[:7]), "has 7 items"),
    ("10 items", packed([*GOOD, 0, 0]), "has 10 items"),
    ("0 items", packed([]), "has 0 items"),
    ("signal is a str", packed("t"), "str, not an array"),
    ("signal is a map", b"\x91\x80", "map, not an array"),
    ("signal is an ext", b"\x91\xc7\x00\x05", "ext, not an array"),
    ("second signal bad", packed(GOOD, GOOD[:3]), "signal 1 of 2"),
    ("topic is bin", good_with(0, b"t"), "topic b't' is a msgpack bin"),
    ("topic empty", good_with(0, ""), "topic is empty"),
    ("topic 129 bytes", good_with(0, "a" * 129), "max_str_len"),
    ("topic control", good_with(0, "a\tb"), "U+0009"),
    ("topic DEL", good_with(0, "\x7f"), "U+007F"),
    ("topic invalid UTF-8", with_topic_bytes(b"a\xff"), "UnicodeDecodeError"),
    ("topic overlong UTF-8", with_topic_bytes(b"\xc0\xaf"), "UnicodeDecodeError"),
    ("topic surrogate UTF-8", with_topic_bytes(b"\xed\xa0\x80"), "UnicodeDecodeError"),
    ("value nan", good_with(1, NAN), "value nan is not finite"),
    ("value inf", good_with(1, INF), "value inf is not finite"),
    ("value -inf", good_with(1, -INF), "not finite"),
    ("value bool", good_with(1, True), "value True is a msgpack bool"),
    ("value nil", good_with(1, None), "value None is a msgpack nil"),
    ("value str", good_with(1, "1.5"), "msgpack str"),
    ("value negative", good_with(1, -1), "a category is 0..4294967295"),
    ("value 2**32", good_with(1, 2**32), "out of range"),
    ("value map", good_with(1, {}), "msgpack map"),
    ("value ext", GOOD_PAYLOAD[:4] + b"\xc7\x00\x05" + GOOD_PAYLOAD[13:], "msgpack ext"),
    ("vector empty", good_with(1, []), "has 0 items"),
    ("vector too long", good_with(1, [1.0] * 17), "has 17 items"),
    ("vector with int", good_with(1, [1.0, 2]), "value[1] 2 is a msgpack int"),
    ("vector with nan", good_with(1, [NAN]), r"value[0] nan is not finite"),
    ("vector nested", good_with(1, [[1.0]]), "msgpack array, not a float"),
    ("bin empty", good_with(1, b""), "value is empty"),
    ("bin too long", good_with(1, b"x" * 65), "max_bin_len"),
    ("confidence 0", good_with(2, 0.0), "confidence 0.0 is out of range"),
    ("confidence -0", good_with(2, -0.0), "out of range"),
    ("confidence > 1", good_with(2, ABOVE_ONE), "out of range"),
    ("confidence nan", good_with(2, NAN), "out of range"),
    ("confidence int", good_with(2, 1), "confidence 1 is a msgpack int"),
    ("confidence nil", good_with(2, None), "msgpack nil"),
    ("half-life 0", good_with(3, 0), "half-life 0 ms is out of range"),
    ("half-life too long", good_with(3, MAX_LIFETIME_MS + 1), "out of range"),
    ("half-life float", good_with(3, 1.0), "half-life 1.0 is a msgpack float"),
    ("half-life bool", good_with(3, True), "msgpack bool"),
    ("ttl negative", packed([*GOOD[:4], -1, *GOOD[5:]]), "ttl -1 ms is out of range"),
    ("both lifetimes nil", good_with(3, None), "both nil"),
    ("age negative", good_with(5, -1), "age -1 is out of range"),
    ("age 2**32", good_with(5, 2**32), "out of range"),
    ("age float", good_with(5, 0.0), "age 0.0 is a msgpack float"),
    ("source nil", good_with(6, None), "source None is a msgpack nil"),
    ("source uint64", good_with(6, 2**64 - 1), "out of range"),
    ("seq negative", good_with(7, -(2**63)), "seq"),
    ("seq bool", good_with(7, False), "msgpack bool"),
    ("trailing byte", GOOD_PAYLOAD + b"\x00", "ExtraData"),
    ("two payloads", GOOD_PAYLOAD + GOOD_PAYLOAD, "ExtraData"),
    ("truncated by one", GOOD_PAYLOAD[:-1], "incomplete"),
    ("header only", GOOD_PAYLOAD[:2], "incomplete"),
    ("array16 header short", b"\xdc\x00", "incomplete"),
    ("1025 signals", b"\xdc\x04\x01" + packed(GOOD)[1:] * 1025, "max_array_len"),
    ("array32 of 2**32-1", b"\xdd\xff\xff\xff\xff", "max_array_len"),
    ("reserved byte c1", b"\x91\xc1", "FormatError"),
    ("nested 100 deep", b"\x91" * 100 + b"\xc0", "has 1 items"),
    ("nested 5000 deep", b"\x91" * 5000 + b"\xc0", "StackError"),
    ("nested in value", good_with(1, [[[[[[1.0]]]]]]), "not a float"),
]


@pytest.mark.parametrize(
    ("body", "problem"), [case[1:] for case in BAD_PAYLOADS], ids=[c[0] for c in BAD_PAYLOADS]
)
def test_bad_payloads(body: bytes, problem: str) -> None:
    # The reference words each problem; the compiled decoder (when built)
    # refuses the same payloads in its own words.
    with pytest.raises(PayloadError, match=re.escape(problem)) as caught:
        decode_payload_reference(body, QoS.NORMAL)
    assert len(str(caught.value)) < 400
    with pytest.raises(PayloadError):
        decode_payload(body, QoS.NORMAL)


def test_good_payload_of_the_bad_cases_is_good() -> None:
    (signal,) = decode_payload(GOOD_PAYLOAD, QoS.NORMAL)
    assert same(signal, Signal("t", 1.5, 0.5, 1.0, None, QoS.NORMAL, 1, 2, 0.0))
    assert decode_payload(with_topic_bytes("\u00e9".encode()), QoS.NORMAL)[0].topic == "\u00e9"


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_payload_error(body: bytes) -> None:
    try:
        decoded = decode_payload(body, QoS.NORMAL)
    except PayloadError:
        return
    assert all(type(signal) is Signal for signal in decoded)


# ---------------------------------------------------------------------------
# decode_payload: fuzzing with mutated valid payloads
# ---------------------------------------------------------------------------

FUZZ_INPUTS = 20_000


def random_signal(rng: random.Random) -> Signal:
    kind = rng.randrange(4)
    value: object
    if kind == 0:
        value = rng.choice([0.0, -1.5, 1e300, rng.uniform(-1e6, 1e6)])
    elif kind == 1:
        value = rng.choice([0, 1, 255, 65536, MAX_CATEGORY, rng.randrange(MAX_CATEGORY)])
    elif kind == 2:
        value = [rng.uniform(-10, 10) for _ in range(rng.randint(1, MAX_VECTOR_DIM))]
    else:
        value = rng.randbytes(rng.randint(1, MAX_BYTES_VALUE))
    alphabet = "abcxyz/._-0123456789\u00e9\u20ac"
    topic = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
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


def mutate(rng: random.Random, body: bytes) -> bytes:
    """``body`` with one to three random mutations.

    Mostly bit flips and byte overwrites, which often leave valid msgpack with
    a bad signal in it; insertions, deletions and truncations mostly break the
    msgpack itself.
    """
    data = bytearray(body)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.random()
        if not data:
            data.append(rng.randrange(256))
        elif op < 0.4:  # flip a bit
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op < 0.7:  # overwrite a byte, often with a msgpack type byte
            special = [0xC0, 0xC2, 0xC3, 0xCA, 0xCB, 0xCE, 0xCF, 0xD3, 0xDC, 0xDD, 0x80, 0xFF]
            data[rng.randrange(len(data))] = rng.choice([rng.randrange(256), *special])
        elif op < 0.8:  # truncate
            del data[rng.randrange(len(data)) :]
        elif op < 0.9:  # insert bytes
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        else:  # delete a byte
            del data[rng.randrange(len(data))]
    return bytes(data)


def check_valid(signal: Signal) -> None:
    """A decoded signal keeps every limit: make_signal agrees field by field."""
    assert type(signal) is Signal
    again = check_signal(signal)
    assert same(again, signal)
    for seconds in (signal.half_life, signal.ttl, signal.age):
        if seconds is not None:  # whole milliseconds
            assert round(seconds * 1000) / 1000 == seconds


def test_fuzz_mutated_payloads() -> None:
    rng = random.Random(20240611)
    pool = [
        payload_of(
            *(random_signal(rng) for _ in range(rng.randint(1, 18))),
            age_ms=rng.choice([0, 7, MAX_U32]),
        )
        for _ in range(40)
    ]
    tally: Counter[str] = Counter()
    for _ in range(FUZZ_INPUTS):
        body = mutate(rng, rng.choice(pool))
        try:
            decoded = decode_payload_reference(body, QoS.BULK)
        except PayloadError as exc:
            message = str(exc)
            assert FALLBACK not in message
            tally["not msgpack" if "not msgpack" in message else "bad signal"] += 1
        else:
            tally["decoded"] += 1
            for signal in decoded:
                assert signal.qos is QoS.BULK
                check_valid(signal)
    # Every outcome must be common, or the mutations test little.
    assert min(tally.values()) > FUZZ_INPUTS // 40, tally
    assert len(tally) == 3, tally


def test_signal_fields_constant() -> None:
    # qos is the frame's; hops, a ninth item, only when relayed
    assert SIGNAL_FIELDS == len(GOOD) == len(dataclasses.fields(Signal)) - 2


# ---------------------------------------------------------------------------
# hop counts (relayed signals)


def test_a_relayed_signal_carries_its_hop_count_as_a_ninth_item() -> None:
    plain = make_signal("relay/t", 2.5, ttl=1)
    relayed = make_signal("relay/t", 2.5, ttl=1, source=7, seq=9, hops=3)
    plain_bytes = encode_signal(plain, 0, source=7, seq=9)
    relayed_bytes = encode_signal(relayed, 0)
    assert plain_bytes[0] == 0x98  # fixarray of 8: unchanged for signals not relayed
    assert relayed_bytes[0] == 0x99 and relayed_bytes[-1] == 3
    assert len(relayed_bytes) == len(plain_bytes) + 1
    for decode in (decode_payload, decode_payload_reference):
        body = b"\x92" + plain_bytes + relayed_bytes
        first, second = decode(body, QoS.NORMAL)
        assert (first.hops, second.hops) == (0, 3)
        assert (second.source, second.seq) == (7, 9)


@pytest.mark.parametrize("hops", [-1, 16, 1.0, True, "1"])
def test_hops_out_of_range_are_refused(hops: object) -> None:
    with pytest.raises(SignalError, match="hops"):
        make_signal("t", 1.0, ttl=1, hops=hops)  # type: ignore[arg-type]


@pytest.mark.parametrize("hops", [16, 255, -1, 1.5, None])
def test_bad_hop_counts_are_bad_payloads(hops: object) -> None:
    item = ["t", 1.0, 1.0, None, 1000, 0, 7, 9, hops]
    body = msgpack.packb([item], use_bin_type=True)
    for decode in (decode_payload, decode_payload_reference):
        with pytest.raises(PayloadError, match=r"hops|8 or 9|signal 0"):
            decode(body, QoS.NORMAL)


def test_ten_items_are_a_bad_payload() -> None:
    body = msgpack.packb([["t", 1.0, 1.0, None, 1000, 0, 7, 9, 1, 1]], use_bin_type=True)
    for decode in (decode_payload, decode_payload_reference):
        with pytest.raises(PayloadError):
            decode(body, QoS.NORMAL)
