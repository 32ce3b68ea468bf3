"""Signals and the signal payload of ``docs/PROTOCOL.md`` section 3.

What this module holds:

* :class:`QoS`, the three QoS classes with their wire values;
* :class:`Signal`, one signal as the rest of cloudkernel sees it, and
  :func:`make_signal`, the only way to make one from a caller's values;
* :func:`encode_signal` and :class:`PayloadBuilder`, which turn signals into
  the msgpack payload of a source frame within a byte budget;
* :func:`decode_payload`, which turns a peer's payload back into signals;
* the limits of section 3 as module constants.

The rules it keeps:

* Pure: no I/O, no clocks, no asyncio.  Ages are handed in and out as numbers.
* Seconds in the API, whole milliseconds on the wire: half-life and time to
  live are rounded half up to milliseconds (``floor(s * 1000 + 0.5)`` in
  floating point, at least 1 ms) when encoded, ages are given to
  :func:`encode_signal` in milliseconds, and decoded ones come back as
  ``ms / 1000``.
* A bad value handed to :func:`make_signal` is the caller's mistake and raises
  :class:`~cloudkernel.errors.SignalError` naming the field, the value and the
  limit.  A bad payload is a peer's and raises
  :class:`~cloudkernel.errors.PayloadError`; :func:`decode_payload` raises
  nothing else, whatever the bytes.
* A :class:`Signal` from :func:`make_signal` or :func:`decode_payload` keeps
  every limit, so :func:`encode_signal` checks nothing again.
"""

from __future__ import annotations

import enum
import math
import re
import reprlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

# msgpack ships no type hints: what it returns is Any, annotated where it leaves.
import msgpack  # type: ignore[import-untyped]

from .._impl import pure_python_forced
from ..errors import PayloadError, SignalError

__all__ = [
    "MAX_BYTES_VALUE",
    "MAX_CATEGORY",
    "MAX_ENCODED_SIGNAL",
    "MAX_HOPS",
    "MAX_LIFETIME_MS",
    "MAX_SIGNALS_PER_PAYLOAD",
    "MAX_TOPIC_BYTES",
    "MAX_U32",
    "MAX_VECTOR_DIM",
    "SHED_ORDER",
    "SIGNAL_FIELDS",
    "PayloadBuilder",
    "QoS",
    "Signal",
    "Value",
    "check_signal",
    "decode_payload",
    "encode_signal",
    "make_signal",
]

MAX_TOPIC_BYTES = 128
MAX_VECTOR_DIM = 16
MAX_BYTES_VALUE = 64
MAX_CATEGORY = 2**32 - 1
MAX_LIFETIME_MS = 86_400_000
MAX_U32 = 2**32 - 1
#: items in the msgpack array of one signal
#: items of a signal as its source publishes it; a relayed one has a ninth, its hop count
SIGNAL_FIELDS = 8
#: times a signal may have been relayed (the ninth item, 0..15: one msgpack byte)
MAX_HOPS = 15
MAX_SIGNALS_PER_PAYLOAD = 1024

#: The largest encoding :func:`encode_signal` can return.  A sender's payload
#: budget must be at least this plus 1 (the array header of a one-signal
#: payload), so that any signal fits in an empty :class:`PayloadBuilder`.
MAX_ENCODED_SIGNAL = (
    1  # fixarray header of the 8 or 9 items
    + (2 + MAX_TOPIC_BYTES)  # str8 header and the topic
    + (3 + 9 * MAX_VECTOR_DIM)  # array16 of float64s, the largest value (bin8 of 64: 66)
    + 9  # confidence: float64
    + 5 * 5  # half-life, ttl, age, source, seq: uint32 at most
    + 1  # hops, a positive fixint, when relayed
)

Value: TypeAlias = float | int | tuple[float, ...] | bytes


class QoS(enum.IntEnum):
    """QoS class of a signal; the values are the wire values of the frame flags.

    A class sets a signal's latency budget and redundancy (the sender's
    ``ClassConfig``) and its place in :data:`SHED_ORDER`.
    """

    CRITICAL = 0
    NORMAL = 1
    BULK = 2

    @classmethod
    def parse(cls, x: object) -> QoS:
        """The QoS class ``x`` names.

        :param x: a :class:`QoS`, its value 0..2, or its name in any case
            (``"critical"``, ``"normal"``, ``"bulk"``).
        :raises SignalError: for anything else.
        """
        if isinstance(x, QoS):
            return x
        if type(x) is int and 0 <= x <= 2:
            return cls(x)
        # isascii first: str.lower maps some non-ASCII letters to ASCII ones
        # (the Kelvin sign to "k"), which must not spell a name.
        if isinstance(x, str) and x.isascii() and x.lower() in _QOS_NAMES:
            return cls[x.upper()]
        raise SignalError(
            f"qos {_show(x)} is not a QoS class; the choices are "
            "'critical', 'normal' and 'bulk', or 0, 1 and 2"
        )


_QOS_NAMES = frozenset(q.name.lower() for q in QoS)

#: Under overload, what goes first: bulk, then normal; critical last.
SHED_ORDER = (QoS.BULK, QoS.NORMAL, QoS.CRITICAL)


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal: a value on a topic, with confidence and lifetime.

    Make one with :func:`make_signal`, which checks every limit; signals from
    :func:`decode_payload` keep them too.  The constructor checks nothing.
    """

    topic: str
    """Topic: 1..128 bytes of UTF-8 without control characters."""
    value: Value
    """A finite float; an int category 0..2^32-1; a tuple of 1..16 finite
    floats; or 1..64 bytes.  :attr:`kind` says which."""
    confidence: float = 1.0
    """The publisher's confidence in the value, 0 < confidence <= 1."""
    half_life: float | None = None
    """Half-life in seconds, or None.  At least one of :attr:`half_life` and
    :attr:`ttl` is set; on the wire both are whole milliseconds."""
    ttl: float | None = None
    """Time to live in seconds, or None."""
    qos: QoS = QoS.NORMAL
    """QoS class: on the wire, the class of the frame that carries it."""
    source: int = 0
    """Node id of the publisher, 0..2^32-1; 0 until a sender stamps it."""
    seq: int = 0
    """The publisher's sequence number of the signal, 0..2^32-1."""
    age: float = 0.0
    """Seconds: the age the sender reported (0 for a signal made here)."""
    hops: int = 0
    """Times the signal has been relayed, 0..15 (0: as its source sent it)."""

    @property
    def kind(self) -> Literal["float", "category", "vector", "bytes"]:
        """What the value is: ``"float"``, ``"category"``, ``"vector"`` or ``"bytes"``."""
        value = self.value
        if isinstance(value, float):
            return "float"
        if isinstance(value, int):
            return "category"
        if isinstance(value, tuple):
            return "vector"
        return "bytes"


# -- messages -----------------------------------------------------------------

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 48
_repr.maxother = 48
_repr.maxlong = 24
_repr.maxtuple = _repr.maxlist = 6


def _show(value: object) -> str:
    """A short repr of ``value`` for a message (bounded in length and depth)."""
    return _repr.repr(value)


_WIRE_TYPES: dict[type, str] = {
    str: "str",
    bytes: "bin",
    tuple: "array",
    dict: "map",
    int: "int",
    float: "float",
    bool: "bool",
    type(None): "nil",
}


def _wire_type(value: object) -> str:
    """The msgpack name of a decoded value's type (ext for anything else)."""
    return _WIRE_TYPES.get(type(value), "ext")


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _control_problem(topic: str) -> str | None:
    """Why ``topic`` breaks the no-control-characters rule, or None."""
    bad = _CONTROL.search(topic)
    if bad is None:
        return None
    return (
        f"contains the control character U+{ord(bad.group()):04X} at index {bad.start()}; "
        "U+0000..U+001F and U+007F are not allowed"
    )


# -- make_signal ----------------------------------------------------------------

_VALUE_KINDS = (
    f"a finite float, an int category 0..{MAX_CATEGORY}, a list or tuple of "
    f"1..{MAX_VECTOR_DIM} finite numbers, or 1..{MAX_BYTES_VALUE} bytes"
)


def _fail(field: str, value: object, problem: str) -> SignalError:
    return SignalError(f"{field} {_show(value)} {problem}")


def _real(field: str, x: object) -> float:
    """``x`` as a finite float; ints are welcome, bools are not."""
    if isinstance(x, bool):
        raise _fail(field, x, "is a bool; give a number")
    if isinstance(x, float):
        result = float(x)
    elif isinstance(x, int):
        try:
            result = float(x)
        except OverflowError:
            raise _fail(field, x, "is too large for a float") from None
    else:
        raise _fail(field, x, f"is a {type(x).__name__}; give a number")
    if not math.isfinite(result):
        raise _fail(field, x, "is not finite")
    return result


def _u32(field: str, x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise _fail(field, x, f"is a {type(x).__name__}; give an int 0..{MAX_U32}")
    if not 0 <= x <= MAX_U32:
        raise _fail(field, x, f"is out of range; the limit is 0..{MAX_U32}")
    return int(x)


def _lifetime_ms(seconds: float) -> int:
    """Seconds as whole milliseconds, rounded half up, at least 1."""
    ms = math.floor(seconds * 1000.0 + 0.5)
    return ms if ms >= 1 else 1


def _lifetime(field: str, x: object) -> float | None:
    if x is None:
        return None
    seconds = _real(field, x)
    if seconds <= 0.0:
        raise _fail(field, x, "is not > 0; give seconds > 0, or None")
    # Compared before rounding: a huge float would overflow math.floor.
    if seconds * 1000.0 + 0.5 >= MAX_LIFETIME_MS + 1:
        raise _fail(
            field,
            x,
            f"seconds is more than {MAX_LIFETIME_MS} ms once rounded to whole milliseconds; "
            f"the limit is {MAX_LIFETIME_MS} ms ({MAX_LIFETIME_MS // 1000} s)",
        )
    return seconds


def _topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise _fail("topic", topic, f"is a {type(topic).__name__}; give a str")
    topic = str.__str__(topic)  # an exact str, whatever the subclass
    if not topic:
        raise _fail("topic", topic, f"is empty; a topic is 1..{MAX_TOPIC_BYTES} bytes of UTF-8")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _fail(
            "topic", topic, f"cannot be encoded as UTF-8 ({exc.reason} at index {exc.start})"
        ) from None
    if size > MAX_TOPIC_BYTES:
        raise _fail("topic", topic, f"is {size} bytes of UTF-8; the limit is {MAX_TOPIC_BYTES}")
    problem = _control_problem(topic)
    if problem is not None:
        raise _fail("topic", topic, problem)
    return topic


def _value(value: object) -> Value:
    if isinstance(value, bool):
        raise _fail("value", value, f"is a bool; give {_VALUE_KINDS}")
    if isinstance(value, float):
        return _real("value", value)
    if isinstance(value, int):
        if not 0 <= value <= MAX_CATEGORY:
            raise _fail("value", value, f"is out of range; a category is 0..{MAX_CATEGORY}")
        return int(value)
    if isinstance(value, (list, tuple)):
        if not 1 <= len(value) <= MAX_VECTOR_DIM:
            raise _fail(
                "value",
                value,
                f"has {len(value)} items; a vector has 1..{MAX_VECTOR_DIM}",
            )
        return tuple(_real(f"value[{i}]", x) for i, x in enumerate(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            size = value.nbytes if isinstance(value, memoryview) else len(value)
            if 1 <= size <= MAX_BYTES_VALUE:
                return bytes(value)
        except ValueError as exc:  # a released memoryview
            raise _fail("value", value, f"cannot be read: {exc}") from None
        raise _fail("value", value, f"is {size} bytes; the limit is 1..{MAX_BYTES_VALUE}")
    raise _fail("value", value, f"is a {type(value).__name__}; give {_VALUE_KINDS}")


def make_signal(
    topic: str,
    value: object,
    *,
    confidence: float = 1.0,
    half_life: float | None = None,
    ttl: float | None = None,
    qos: QoS | int | str = QoS.NORMAL,
    source: int = 0,
    seq: int = 0,
    age: float = 0.0,
    hops: int = 0,
) -> Signal:
    """A :class:`Signal` from a caller's values, checked against every limit.

    :param topic: 1..128 bytes of UTF-8, no control characters.
    :param value: a finite float; an int category 0..2^32-1; a list or tuple
        of 1..16 finite numbers (kept as a tuple of floats); or 1..64 bytes
        (bytes, bytearray or memoryview; kept as bytes).  Bools are refused.
    :param confidence: 0 < confidence <= 1.
    :param half_life: seconds, > 0 and at most 86 400 once rounded to whole
        milliseconds (round half up, at least 1 ms); or None.
    :param ttl: seconds, with the limits of ``half_life``; or None.  At least
        one of ``half_life`` and ``ttl`` must be given.
    :param qos: a :class:`QoS`, as :meth:`QoS.parse` takes it.
    :param source: node id of the publisher, 0..2^32-1 (0: this node's own).
    :param seq: the publisher's sequence number, 0..2^32-1.
    :param age: seconds, finite and >= 0.
    :param hops: times the signal has been relayed, 0..15.
    :raises SignalError: naming the field, the value and the limit.
    """
    checked_topic = _topic(topic)
    checked_value = _value(value)
    checked_confidence = _real("confidence", confidence)
    if not 0.0 < checked_confidence <= 1.0:
        raise _fail("confidence", confidence, "is out of range; the limit is 0 < confidence <= 1")
    checked_half_life = _lifetime("half_life", half_life)
    checked_ttl = _lifetime("ttl", ttl)
    if checked_half_life is None and checked_ttl is None:
        raise SignalError(
            "half_life and ttl are both None; give at least one "
            f"(seconds, at most {MAX_LIFETIME_MS // 1000})"
        )
    checked_age = _real("age", age)
    if checked_age < 0.0:
        raise _fail("age", age, "is negative; the limit is age >= 0")
    if type(hops) is not int or not 0 <= hops <= MAX_HOPS:
        raise _fail("hops", hops, f"is not an int in 0..{MAX_HOPS}")
    return Signal(
        checked_topic,
        checked_value,
        checked_confidence,
        checked_half_life,
        checked_ttl,
        QoS.parse(qos),
        _u32("source", source),
        _u32("seq", seq),
        checked_age,
        hops,
    )


# -- encoding -----------------------------------------------------------------

_packb = msgpack.packb


def check_signal(signal: Signal) -> Signal:
    """``signal`` checked against every limit, normalised as :func:`make_signal` does.

    For signals built with the plain constructor, which checks nothing.

    :raises SignalError: naming the first field that breaks a limit.
    """
    return make_signal(
        signal.topic,
        signal.value,
        confidence=signal.confidence,
        half_life=signal.half_life,
        ttl=signal.ttl,
        qos=signal.qos,
        source=signal.source,
        seq=signal.seq,
        age=signal.age,
        hops=signal.hops,
    )


def encode_signal(
    signal: Signal, age_ms: int, *, source: int | None = None, seq: int | None = None
) -> bytes:
    """The msgpack array of one signal, in the order of PROTOCOL.md section 3.

    Floats go out as float64, a vector as an array of float64, bytes as bin, a
    category and the milliseconds as the smallest msgpack int.

    :param signal: a signal from :func:`make_signal` or :func:`decode_payload`
        (not checked again).
    :param age_ms: the signal's age in milliseconds when the frame is sealed;
        clamped to 0..2^32-1.
    :param source: overrides ``signal.source`` (a sender stamping its own
        signals); 0..2^32-1.
    :param seq: overrides ``signal.seq``; 0..2^32-1.
    :raises SignalError: when ``source`` or ``seq`` is out of range.
    """
    half_life = signal.half_life
    ttl = signal.ttl
    age_ms = int(age_ms)
    items: tuple[object, ...] = (
        signal.topic,
        signal.value,
        signal.confidence,
        None if half_life is None else _lifetime_ms(half_life),
        None if ttl is None else _lifetime_ms(ttl),
        0 if age_ms < 0 else MAX_U32 if age_ms > MAX_U32 else age_ms,
        signal.source if source is None else _u32("source", source),
        signal.seq if seq is None else _u32("seq", seq),
    )
    if signal.hops:
        # Only a relayed signal carries its hop count: what a source sends
        # is the same eight items with or without relaying in the swarm.
        items += (signal.hops,)
    encoded: bytes = _packb(items, use_bin_type=True, use_single_float=False)
    return encoded


def _array_header(count: int) -> bytes:
    """The msgpack array header for ``count`` items: fixarray, array16 or array32."""
    if count <= 15:
        return bytes((0x90 | count,))
    if count <= 0xFFFF:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _array_header_len(count: int) -> int:
    return 1 if count <= 15 else 3 if count <= 0xFFFF else 5


class PayloadBuilder:
    """A payload in the making: encoded signals under a byte budget.

    The sender checks :meth:`fits` before :meth:`add`, and builds the payload
    when a signal does not fit (or the batch is due).  The sender must make
    sure that its budget is at least ``MAX_ENCODED_SIGNAL + 1``: then every
    signal fits in an empty builder.  A builder takes at most
    ``MAX_SIGNALS_PER_PAYLOAD`` signals, the most a receiver accepts.

    :param budget: the most bytes a built payload may have, >= 1.
    """

    __slots__ = ("_body_size", "_budget", "_parts")

    def __init__(self, budget: int) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be an int >= 1, got {budget!r}")
        self._budget = budget
        self._parts: list[bytes] = []
        self._body_size = 0

    @property
    def budget(self) -> int:
        """The most bytes a built payload may have."""
        return self._budget

    @property
    def size(self) -> int:
        """The exact length of what :meth:`build` would return now."""
        return _array_header_len(len(self._parts)) + self._body_size

    def __len__(self) -> int:
        """The number of signals added since the last :meth:`build`."""
        return len(self._parts)

    def fits(self, encoded: bytes) -> bool:
        """Whether the payload with ``encoded`` added stays within the budget.

        :param encoded: one signal from :func:`encode_signal`.
        """
        count = len(self._parts) + 1
        return (
            count <= MAX_SIGNALS_PER_PAYLOAD
            and _array_header_len(count) + self._body_size + len(encoded) <= self._budget
        )

    def add(self, encoded: bytes) -> None:
        """Add one encoded signal.

        :param encoded: one signal from :func:`encode_signal`.
        :raises ValueError: if it does not fit (see :meth:`fits`).
        """
        if not self.fits(encoded):
            raise ValueError(
                f"a {len(encoded)}-byte signal does not fit: the payload holds "
                f"{len(self._parts)} signals in {self.size} bytes, the budget is "
                f"{self._budget} bytes and {MAX_SIGNALS_PER_PAYLOAD} signals"
            )
        self._parts.append(bytes(encoded))
        self._body_size += len(encoded)

    def build(self) -> bytes:
        """The payload: a msgpack array of the signals added.  Empties the builder."""
        parts = self._parts
        payload = _array_header(len(parts)) + b"".join(parts)
        self._parts = []
        self._body_size = 0
        return payload


# -- decoding -----------------------------------------------------------------


class _BlankSignal:
    """Signal's slots without its frozen ``__setattr__``.

    decode_payload fills one with plain attribute stores and then makes it a
    Signal by assigning ``__class__`` (allowed: the slot layouts are the same).
    That is about twice as fast as ``object.__setattr__`` for each field, as
    Signal's own ``__init__`` does.
    """

    __slots__ = Signal.__slots__


_new = object.__new__
_unpackb = msgpack.unpackb
_VECTOR_TYPES = (float,) * MAX_VECTOR_DIM
_isfinite = math.isfinite
_control = _CONTROL.search


def decode_payload_reference(
    body: bytes | bytearray | memoryview, qos: QoS, age_offset: float = 0.0
) -> list[Signal]:
    """The signals of a peer's payload (the body of a source frame): the pure-Python decoder.

    The test oracle of the compiled decoder, and the fallback without it.

    Lifetimes and ages come back in seconds (the wire's milliseconds / 1000);
    every signal gets ``qos``, its frame's class.

    :param body: the payload; untrusted.
    :param qos: the QoS class of the frame it came in.
    :param age_offset: seconds added to every signal's age (a rebuilt frame's
        wait for its repair frames).
    :raises PayloadError: if the payload breaks any rule of PROTOCOL.md
        section 3; no other exception, whatever ``body`` holds.
    """
    try:
        items = _unpackb(
            body,
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_TOPIC_BYTES,
            max_bin_len=MAX_BYTES_VALUE,
            max_array_len=MAX_SIGNALS_PER_PAYLOAD,
            max_map_len=0,
            max_ext_len=0,
        )
    # msgpack documents that unpacking "may raise exception other than
    # subclass of UnpackException": ValueError (ExtraData, FormatError,
    # StackError, UnicodeDecodeError, limits exceeded), and from its fallback
    # also others.  Whatever it raises on bytes, the bytes are at fault.
    except Exception as exc:
        raise PayloadError(
            f"payload is not msgpack within the limits: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if type(items) is not tuple:
        raise PayloadError(f"payload is a msgpack {_wire_type(items)}, not an array")
    if type(qos) is not QoS:
        qos = QoS(qos)

    signals: list[Signal] = []
    append = signals.append
    for item in items:
        if type(item) is not tuple:
            raise PayloadError(_payload_problem(items))
        if len(item) == SIGNAL_FIELDS:
            topic, value, confidence, half_life, ttl, age, source, seq = item
            hops = 0
        elif len(item) == SIGNAL_FIELDS + 1:
            topic, value, confidence, half_life, ttl, age, source, seq, hops = item
        else:
            raise PayloadError(_payload_problem(items))
        kind = type(value)
        # unpackb enforced the topic's length in bytes and a bin's upper bound
        # (max_str_len, max_bin_len).  A printable str has no control
        # characters; one that is not may still be fine (U+00A0, say).  For a
        # float, x - x == 0.0 exactly when x is finite (inf - inf is nan).
        # For ints, (a | b) >> 32 == 0 exactly when both are in 0..2^32-1.
        if not (
            type(topic) is str
            and topic
            and (topic.isprintable() or not _control(topic))
            and (
                (kind is float and value - value == 0.0)
                or (kind is int and not value >> 32)
                or (kind is bytes and value)
                or (
                    kind is tuple
                    and 0 < len(value) <= MAX_VECTOR_DIM
                    and tuple(map(type, value)) == _VECTOR_TYPES[: len(value)]
                    and all(map(_isfinite, value))
                )
            )
            and type(confidence) is float
            and 0.0 < confidence <= 1.0
            and (half_life is None or (type(half_life) is int and 0 < half_life <= MAX_LIFETIME_MS))
            and (ttl is None or (type(ttl) is int and 0 < ttl <= MAX_LIFETIME_MS))
            and (half_life is not None or ttl is not None)
            and type(age) is int
            and type(source) is int
            and type(seq) is int
            and not (age | source | seq) >> 32
            and type(hops) is int
            and 0 <= hops <= MAX_HOPS
        ):
            raise PayloadError(_payload_problem(items))
        signal: Any = _new(_BlankSignal)
        signal.topic = topic
        signal.value = value
        signal.confidence = confidence
        signal.half_life = None if half_life is None else half_life / 1000
        signal.ttl = None if ttl is None else ttl / 1000
        signal.qos = qos
        signal.source = source
        signal.seq = seq
        signal.age = age / 1000 + age_offset
        signal.hops = hops
        signal.__class__ = Signal
        append(signal)
    return signals


def _payload_problem(items: tuple[object, ...]) -> str:
    """The message for a payload the fast checks of decode_payload refused.

    Checks the signals again, one rule at a time, and names the first broken.
    """
    for index, item in enumerate(items):
        problem = _signal_problem(item)
        if problem is not None:
            return f"signal {index} of {len(items)}: {problem}"
    return "payload breaks PROTOCOL.md section 3"  # pragma: no cover - the checks agree


def _signal_problem(item: object) -> str | None:
    """Why one decoded item is not a valid signal, or None if it is."""
    if type(item) is not tuple:
        return f"is a msgpack {_wire_type(item)}, not an array"
    if len(item) not in (SIGNAL_FIELDS, SIGNAL_FIELDS + 1):
        return f"has {len(item)} items; a signal has {SIGNAL_FIELDS} or {SIGNAL_FIELDS + 1}"
    topic, value, confidence, half_life, ttl, age, source, seq = item[:SIGNAL_FIELDS]
    hops = item[SIGNAL_FIELDS] if len(item) > SIGNAL_FIELDS else 0
    if type(topic) is not str:
        return f"topic {_show(topic)} is a msgpack {_wire_type(topic)}, not a str"
    if not topic:
        return "topic is empty"
    problem = _control_problem(topic)
    if problem is not None:
        return f"topic {_show(topic)} {problem}"
    problem = _value_problem(value)
    if problem is not None:
        return problem
    if type(confidence) is not float:
        return f"confidence {_show(confidence)} is a msgpack {_wire_type(confidence)}, not a float"
    if not 0.0 < confidence <= 1.0:
        return f"confidence {confidence!r} is out of range; the limit is 0 < confidence <= 1"
    for name, ms in (("half-life", half_life), ("ttl", ttl)):
        if ms is None:
            continue
        if type(ms) is not int:
            return f"{name} {_show(ms)} is a msgpack {_wire_type(ms)}, not an int or nil"
        if not 1 <= ms <= MAX_LIFETIME_MS:
            return f"{name} {ms} ms is out of range; the limit is 1..{MAX_LIFETIME_MS}"
    if half_life is None and ttl is None:
        return "half-life and ttl are both nil; at least one is required"
    for name, number in (("age", age), ("source", source), ("seq", seq)):
        if type(number) is not int:
            return f"{name} {_show(number)} is a msgpack {_wire_type(number)}, not an int"
        if not 0 <= number <= MAX_U32:
            return f"{name} {number} is out of range; the limit is 0..{MAX_U32}"
    if type(hops) is not int:
        return f"hops {_show(hops)} is a msgpack {_wire_type(hops)}, not an int"
    if not 0 <= hops <= MAX_HOPS:
        return f"hops {hops} is out of range; the limit is 0..{MAX_HOPS}"
    return None


def _value_problem(value: object) -> str | None:
    if type(value) is float:
        return None if math.isfinite(value) else f"value {value!r} is not finite"
    if type(value) is int:
        if 0 <= value <= MAX_CATEGORY:
            return None
        return f"value {value} is out of range; a category is 0..{MAX_CATEGORY}"
    if type(value) is bytes:
        return None if value else f"value is empty; the limit is 1..{MAX_BYTES_VALUE} bytes"
    if type(value) is tuple:
        if not 1 <= len(value) <= MAX_VECTOR_DIM:
            return f"value has {len(value)} items; a vector has 1..{MAX_VECTOR_DIM}"
        for i, x in enumerate(value):
            if type(x) is not float:
                return f"value[{i}] {_show(x)} is a msgpack {_wire_type(x)}, not a float"
            if not math.isfinite(x):
                return f"value[{i}] {x!r} is not finite"
        return None
    return (
        f"value {_show(value)} is a msgpack {_wire_type(value)}; "
        "a value is a float, an int, an array of floats or a bin"
    )


# -- the compiled decoder ---------------------------------------------------------

_Decoder = Callable[[bytes | bytearray | memoryview, QoS, float], list[Signal]]


def _choose_decoder() -> tuple[str, _Decoder]:
    if pure_python_forced():
        return "python", decode_payload_reference
    try:
        from . import _payload
    except ImportError as exc:  # pragma: no cover - depends on the build
        warnings.warn(
            f"cloudkernel's compiled payload decoder is not available ({exc}); "
            "using the pure-Python one, which is much slower",
            RuntimeWarning,
            stacklevel=3,
        )
        return "python", decode_payload_reference
    _payload.bind(Signal, PayloadError, QoS)
    return "compiled", _payload.decode_payload


#: "compiled" when :func:`decode_payload` uses ``cloudkernel.core._payload``
#: (csrc/ck_payload.c), "python" when it uses :func:`decode_payload_reference`.
PAYLOAD_IMPLEMENTATION, _decoder = _choose_decoder()


def decode_payload(
    body: bytes | bytearray | memoryview, qos: QoS, age_offset: float = 0.0
) -> list[Signal]:
    """The signals of a peer's payload (the body of a source frame).

    Lifetimes and ages come back in seconds (the wire's milliseconds / 1000);
    every signal gets ``qos``, its frame's class.  Uses the compiled decoder
    when it is built (see :data:`PAYLOAD_IMPLEMENTATION`); both accept and
    refuse the same payloads and give equal signals.

    :param body: the payload; untrusted.
    :param qos: the QoS class of the frame it came in.
    :param age_offset: seconds added to every signal's age (a rebuilt frame's
        wait for its repair frames).
    :raises PayloadError: if the payload breaks any rule of PROTOCOL.md
        section 3; no other exception, whatever ``body`` holds.
    """
    return _decoder(body, qos, age_offset)
