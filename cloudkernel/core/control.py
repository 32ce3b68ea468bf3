"""The control protocol of ``docs/CONTROL.md``: requests, replies and events as bytes.

What this module holds:

* :class:`ControlOp` and :class:`ErrorCode`, the closed sets of ops and error
  codes (an error code is also the label of the cloudkernel_control_errors_total metric);
* the parsed requests (:class:`PublishRequest`, :class:`GetRequest`,
  :class:`WatchRequest`, :class:`TopicsRequest`, :class:`StatusRequest`,
  :class:`PeersRequest`, :class:`SourceStatsRequest`) and :class:`ControlFailure`,
  a request refused;
* :class:`RequestDecoder`, the daemon's side: bytes in, requests and failures
  out; and :func:`encode_reply`, :func:`encode_error`, :func:`encode_event`;
* :func:`encode_request` and :class:`ReplyDecoder`, the client's side;
* the limits of ``docs/CONTROL.md`` as module constants.

The rules it keeps:

* Pure: no sockets, no asyncio, no clocks.  Bytes go in, objects come out.
* A message is a 4-byte big-endian length and that many bytes of msgpack.  A
  length of 0 or over the limit cannot be skipped (nothing says where the next
  message starts): it is fatal, and a :class:`RequestDecoder` ignores all
  input after it.
* Checks run in a fixed order, as chrony's ``cmdmon.c`` runs them: length,
  msgpack, map, version, fields, op, then the op's arguments.  The version is
  checked before anything else in the map, so that a later version may change
  every other field.
* A peer's bad bytes are an outcome, not an exception: :meth:`RequestDecoder.feed`
  returns a :class:`ControlFailure` for them and raises nothing, whatever the
  bytes.  :class:`ReplyDecoder` raises
  :class:`~cloudkernel.errors.ControlProtocolError` and nothing else.  Our own
  misuse of an encoder raises :class:`~cloudkernel.errors.ControlError`.
* Bounded: a decoder holds at most one message (``HEADER + MAX_REQUEST`` or
  ``HEADER + MAX_REPLY`` bytes).  Before msgpack builds any object, a scan of
  the headers proves that the body nests at most :data:`MAX_DEPTH` deep and
  that every array and map it declares is backed by bytes, so what msgpack
  allocates is proportional to the body's length.
* Whatever an encoder returns, the matching decoder accepts and gives back.
"""

from __future__ import annotations

import enum
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

# msgpack ships no type hints: what it returns is Any, annotated where it leaves.
import msgpack  # type: ignore[import-untyped]

from ..errors import ControlError, ControlProtocolError, SignalError
from .signals import MAX_TOPIC_BYTES, MAX_U32, QoS, Signal, make_signal

__all__ = [
    "DEFAULT_HALF_LIFE",
    "HEADER",
    "MAX_BATCH",
    "MAX_DEPTH",
    "MAX_ERROR_MESSAGE",
    "MAX_KEY_WINDOW",
    "MAX_PATH_BYTES",
    "MAX_PATTERN_BYTES",
    "MAX_REPLY",
    "MAX_REQUEST",
    "MUTATING_OPS",
    "PROTOCOL_VERSION",
    "READ_ONLY_OPS",
    "SUPPORTED_VERSIONS",
    "ControlFailure",
    "ControlOp",
    "ErrorCode",
    "GetRequest",
    "KeyRetireRequest",
    "KeyStageRequest",
    "KeyStatusRequest",
    "KeySwitchRequest",
    "PeersRequest",
    "PublishManyRequest",
    "PublishRequest",
    "ReloadRequest",
    "Reply",
    "ReplyDecoder",
    "Request",
    "RequestDecoder",
    "SourceStatsRequest",
    "StatusRequest",
    "StreamEvent",
    "TopicsRequest",
    "WatchRequest",
    "encode_error",
    "encode_event",
    "encode_reply",
    "encode_request",
]

PROTOCOL_VERSION = 1
#: every version this module speaks; an unsupported-version error lists them
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
#: bytes of the length prefix
HEADER = 4
#: the longest request body (client to daemon), in bytes
MAX_REQUEST = 65_536
#: the longest reply or event body (daemon to client), in bytes
MAX_REPLY = 1 << 20
#: the deepest nesting of arrays and maps in any body (the top-level map is depth 1)
MAX_DEPTH = 32
#: the longest pattern of watch and topics, in bytes of UTF-8
MAX_PATTERN_BYTES = 128
#: error messages longer than this many characters are cut by encode_error
MAX_ERROR_MESSAGE = 1024
#: signals one publish-many request carries at most
MAX_BATCH = 1024
#: seconds: the half-life of a publish that gives neither half_life nor ttl
DEFAULT_HALF_LIFE = 10.0
#: the longest key file path of key-stage, in bytes of UTF-8 (Linux's PATH_MAX)
MAX_PATH_BYTES = 4096
#: seconds: the longest window of key-switch (a week)
MAX_KEY_WINDOW = 7 * 86400.0


class ControlOp(enum.StrEnum):
    """An op of the control protocol; the value is its name on the wire."""

    PUBLISH = "publish"
    GET = "get"
    WATCH = "watch"
    TOPICS = "topics"
    STATUS = "status"
    PEERS = "peers"
    RELOAD = "reload"
    PUBLISH_MANY = "publish-many"
    KEY_STAGE = "key-stage"
    KEY_SWITCH = "key-switch"
    KEY_RETIRE = "key-retire"
    KEY_STATUS = "key-status"
    SOURCESTATS = "sourcestats"


#: ops that change nothing in the daemon
READ_ONLY_OPS = frozenset(
    {
        ControlOp.GET,
        ControlOp.WATCH,
        ControlOp.TOPICS,
        ControlOp.STATUS,
        ControlOp.PEERS,
        ControlOp.KEY_STATUS,
        ControlOp.SOURCESTATS,
    }
)
#: ops that change what the daemon holds or sends
MUTATING_OPS = frozenset(
    {
        ControlOp.PUBLISH,
        ControlOp.PUBLISH_MANY,
        ControlOp.RELOAD,
        ControlOp.KEY_STAGE,
        ControlOp.KEY_SWITCH,
        ControlOp.KEY_RETIRE,
    }
)


class ErrorCode(enum.StrEnum):
    """Why a request failed; the value is the code on the wire and the metrics label."""

    MALFORMED = "malformed"
    """Not msgpack, not a map, a field missing, unknown or of the wrong type, a
    length of 0."""
    TOO_LARGE = "too-large"
    """A length over ``MAX_REQUEST``."""
    UNSUPPORTED_VERSION = "unsupported-version"
    """Field ``v`` is an int that is not in :data:`SUPPORTED_VERSIONS`."""
    UNKNOWN_OP = "unknown-op"
    """Field ``op`` is a str that is not a :class:`ControlOp`."""
    BAD_ARGUMENT = "bad-argument"
    """An argument is unknown, missing, of the wrong type or out of range."""
    NOT_FOUND = "not-found"
    """The request names something the daemon does not have (a topic)."""
    NOT_AUTHORISED = "not-authorised"
    """The client may not use this op."""
    BUSY = "busy"
    """The daemon is overloaded; the client may try again later."""
    INVALID_CONFIG = "invalid-config"
    """A reload found the config file unreadable or invalid; the running config stays."""
    INTERNAL = "internal"
    """The daemon failed (a bug, or a reply over ``MAX_REPLY``)."""


# -- requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """Publish a signal."""

    op: ClassVar[ControlOp] = ControlOp.PUBLISH
    id: int
    """The request id, 0..2^32-1; the reply carries it back."""
    signal: Signal
    """The signal, checked by :func:`~cloudkernel.core.signals.make_signal`
    (source, seq and age are 0: the daemon stamps them)."""
    qos_given: bool = True
    """False when the client gave no ``qos``: the daemon gives the signal its
    topic's configured class (``signal.qos`` is ``normal`` until then)."""


@dataclass(frozen=True, slots=True)
class GetRequest:
    """Read the current estimate of one topic."""

    op: ClassVar[ControlOp] = ControlOp.GET
    id: int
    """The request id, 0..2^32-1."""
    topic: str
    """The topic: 1..128 bytes of UTF-8 without control characters."""


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """Stream the estimates (or raw signals) of every topic that matches a pattern."""

    op: ClassVar[ControlOp] = ControlOp.WATCH
    id: int
    """The request id, 0..2^32-1; every event of the stream carries it."""
    pattern: str
    """An fnmatch-style glob: 1..128 bytes of UTF-8 without control characters."""
    raw: bool
    """True: every raw signal as it arrives; False: the estimates."""


@dataclass(frozen=True, slots=True)
class TopicsRequest:
    """List the topics the daemon knows, optionally only those matching a pattern."""

    op: ClassVar[ControlOp] = ControlOp.TOPICS
    id: int
    """The request id, 0..2^32-1."""
    pattern: str | None
    """An fnmatch-style glob as for :class:`WatchRequest`, or None for every topic."""


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """Report the daemon's status."""

    op: ClassVar[ControlOp] = ControlOp.STATUS
    id: int
    """The request id, 0..2^32-1."""


@dataclass(frozen=True, slots=True)
class PeersRequest:
    """List the peers the daemon hears."""

    op: ClassVar[ControlOp] = ControlOp.PEERS
    id: int
    """The request id, 0..2^32-1."""


@dataclass(frozen=True, slots=True)
class PublishManyRequest:
    """Publish several signals at once, in order (one round trip for all)."""

    op: ClassVar[ControlOp] = ControlOp.PUBLISH_MANY
    id: int
    """The request id, 0..2^32-1."""
    signals: tuple[Signal, ...]
    """1..:data:`MAX_BATCH` signals, each checked as a publish's."""
    qos_given: tuple[bool, ...]
    """For each signal, as :attr:`PublishRequest.qos_given`."""


@dataclass(frozen=True, slots=True)
class ReloadRequest:
    """Re-read the config file and apply its live settings (as SIGHUP does)."""

    op: ClassVar[ControlOp] = ControlOp.RELOAD
    id: int
    """The request id, 0..2^32-1."""


@dataclass(frozen=True, slots=True)
class KeyStageRequest:
    """Load a key file and hold its key as *next*: accepted, not yet sent with."""

    op: ClassVar[ControlOp] = ControlOp.KEY_STAGE
    id: int
    """The request id, 0..2^32-1."""
    path: str
    """The key file, an absolute path (the daemon reads it)."""


@dataclass(frozen=True, slots=True)
class KeySwitchRequest:
    """Send with the *next* key from now on; keep the old one accepted for a window."""

    op: ClassVar[ControlOp] = ControlOp.KEY_SWITCH
    id: int
    """The request id, 0..2^32-1."""
    window: float | None
    """Seconds the old key stays accepted, 0..:data:`MAX_KEY_WINDOW`; None: the
    daemon's default."""


@dataclass(frozen=True, slots=True)
class KeyRetireRequest:
    """Stop accepting the *previous* key now."""

    op: ClassVar[ControlOp] = ControlOp.KEY_RETIRE
    id: int
    """The request id, 0..2^32-1."""


@dataclass(frozen=True, slots=True)
class KeyStatusRequest:
    """Report the keys held: their ids and roles, and the window left."""

    op: ClassVar[ControlOp] = ControlOp.KEY_STATUS
    id: int
    """The request id, 0..2^32-1."""


@dataclass(frozen=True, slots=True)
class SourceStatsRequest:
    """Per-source statistics across readings, of the topics matching a pattern."""

    op: ClassVar[ControlOp] = ControlOp.SOURCESTATS
    id: int
    """The request id, 0..2^32-1."""
    pattern: str | None
    """An fnmatch-style glob as for :class:`WatchRequest`, or None for every topic."""


Request: TypeAlias = (
    PublishRequest
    | GetRequest
    | WatchRequest
    | TopicsRequest
    | StatusRequest
    | PeersRequest
    | ReloadRequest
    | PublishManyRequest
    | KeyStageRequest
    | KeySwitchRequest
    | KeyRetireRequest
    | KeyStatusRequest
    | SourceStatsRequest
)


@dataclass(frozen=True, slots=True)
class ControlFailure:
    """A request the daemon refuses: answer it with :func:`encode_error`."""

    id: int
    """The request's id, or 0 when it cannot be read."""
    code: ErrorCode
    """Why."""
    message: str
    """What was wrong, for a human: the field, the value and the rule."""
    fatal: bool
    """True for a framing error: answer, then close the connection (nothing
    after it can be read).  False: answer and read on."""


# -- replies --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """The daemon's answer to one request."""

    id: int
    """The request's id (0 if the daemon could not read it)."""
    ok: bool
    """True: :attr:`result` holds the result.  False: the error fields are set."""
    result: Any
    """The op's result as plain data (None when not :attr:`ok`)."""
    error_code: ErrorCode | None
    """Why the request failed, or None when :attr:`ok`."""
    error_message: str | None
    """What was wrong, for a human, or None when :attr:`ok`."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a watch stream."""

    id: int
    """The id of the watch request."""
    event: dict[str, Any]
    """The event as plain data."""


# -- messages -------------------------------------------------------------------

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 48
_repr.maxother = 48
_repr.maxlong = 24
_repr.maxtuple = _repr.maxlist = _repr.maxdict = 6


def _show(value: object) -> str:
    """A short repr of ``value`` for a message (bounded in length and depth)."""
    return _repr.repr(value)


_WIRE_TYPES: dict[type, str] = {
    str: "str",
    bytes: "bin",
    list: "array",
    dict: "map",
    int: "int",
    float: "float",
    bool: "bool",
    type(None): "nil",
}


def _wire_type(value: object) -> str:
    """The msgpack name of a decoded value's type."""
    return _WIRE_TYPES.get(type(value), type(value).__name__)


def _names(names: tuple[str, ...] | frozenset[str]) -> str:
    return ", ".join(sorted(names)) if names else "none"


# -- msgpack within limits ------------------------------------------------------

# For each first byte 0xc0..0xdf: (bytes in the header before any length field,
# bytes of the length field, what the length counts).  "data": that many bytes
# follow, "array": items, "map": pairs; None: the first byte is never used.
_DATA, _ARRAY, _MAP = 0, 1, 2
_SIZES: dict[int, tuple[int, int, int]] = {
    0xC0: (1, 0, _DATA),  # nil
    0xC2: (1, 0, _DATA),  # false
    0xC3: (1, 0, _DATA),  # true
    0xC4: (1, 1, _DATA),  # bin 8
    0xC5: (1, 2, _DATA),  # bin 16
    0xC6: (1, 4, _DATA),  # bin 32
    0xC7: (2, 1, _DATA),  # ext 8 (the type byte follows the length; counted here)
    0xC8: (2, 2, _DATA),  # ext 16
    0xC9: (2, 4, _DATA),  # ext 32
    0xCA: (5, 0, _DATA),  # float 32
    0xCB: (9, 0, _DATA),  # float 64
    0xCC: (2, 0, _DATA),  # uint 8
    0xCD: (3, 0, _DATA),
    0xCE: (5, 0, _DATA),
    0xCF: (9, 0, _DATA),
    0xD0: (2, 0, _DATA),  # int 8
    0xD1: (3, 0, _DATA),
    0xD2: (5, 0, _DATA),
    0xD3: (9, 0, _DATA),
    0xD4: (3, 0, _DATA),  # fixext 1: type byte and 1 byte
    0xD5: (4, 0, _DATA),
    0xD6: (6, 0, _DATA),
    0xD7: (10, 0, _DATA),
    0xD8: (18, 0, _DATA),
    0xD9: (1, 1, _DATA),  # str 8
    0xDA: (1, 2, _DATA),
    0xDB: (1, 4, _DATA),
    0xDC: (1, 2, _ARRAY),  # array 16
    0xDD: (1, 4, _ARRAY),
    0xDE: (1, 2, _MAP),  # map 16
    0xDF: (1, 4, _MAP),
}


def _scan(body: bytes) -> str | None:
    """Why ``body`` is not one msgpack object of bounded shape, or None.

    Reads headers only, and allocates nothing that grows with what a header
    claims.  It proves that the body is exactly one object, nests at most
    :data:`MAX_DEPTH` arrays and maps deep, and that every item an array or map
    declares is backed by at least one byte of the body.  msgpack presizes
    each list and dict from its header, so after this scan what it allocates
    is proportional to ``len(body)``.  The contents (UTF-8, ext types, map
    keys) are left to msgpack.
    """
    end = len(body)
    pos = 0
    # Items still to read in each open container; the bottom entry is the body itself.
    left = [1]
    pending = 1  # items still to read in all of them: each takes at least one byte
    while left:
        if pos >= end:
            return f"body ends at byte {end} inside an object"
        first = body[pos]
        children = 0
        if first <= 0x7F or first >= 0xE0:  # fixint
            size = 1
        elif first <= 0x8F:  # fixmap
            size, children = 1, 2 * (first & 0x0F)
        elif first <= 0x9F:  # fixarray
            size, children = 1, first & 0x0F
        elif first <= 0xBF:  # fixstr
            size = 1 + (first & 0x1F)
        else:
            shape = _SIZES.get(first)
            if shape is None:
                return f"byte {pos} is 0x{first:02X}, which msgpack never uses"
            head, field, kind = shape
            if pos + 1 + field > end:
                return f"body ends at byte {end} inside a header"
            count = int.from_bytes(body[pos + 1 : pos + 1 + field], "big")
            size = head + field
            if kind == _DATA:
                size += count
            else:
                children = count if kind == _ARRAY else 2 * count
        pos += size
        if pos > end:
            return f"body ends at byte {end} inside an object"
        left[-1] -= 1
        pending -= 1
        if children:
            if len(left) > MAX_DEPTH:
                return f"arrays and maps nest more than {MAX_DEPTH} deep"
            left.append(children)
            pending += children
            if pos + pending > end:
                return (
                    f"an array or map at byte {pos - size} declares {children} items; "
                    f"{end - pos} bytes are left for {pending} items"
                )
        while left and left[-1] == 0:
            left.pop()
    if pos != end:
        return f"{end - pos} bytes follow the object"
    return None


_unpackb = msgpack.unpackb


def _unpack(body: bytes, limit: int) -> tuple[Any, str | None]:
    """The object in ``body`` and None, or None and why it cannot be read."""
    problem = _scan(body)
    if problem is not None:
        return None, problem
    try:
        return _unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=len(body),
            max_map_len=len(body),
            max_ext_len=0,
        ), None
    # msgpack documents that unpacking "may raise exception other than
    # subclass of UnpackException"; whatever it raises on bytes, the bytes are
    # at fault.
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


def _pack(what: str, obj: object) -> bytes:
    """``obj`` as msgpack; :class:`ControlError` if it is not plain data."""
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
    # The compiled packer raises ValueError for nesting too deep, its pure-Python
    # fallback RecursionError.
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ControlError(
            f"{what} is not plain data (dict, list, str, int, float, bool, None, bytes): "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    return packed


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(HEADER, "big") + body


def _check_id(id: object) -> int:
    if isinstance(id, bool) or not isinstance(id, int) or not 0 <= id <= MAX_U32:
        raise ControlError(f"id {_show(id)} is not an int 0..{MAX_U32}")
    return int(id)


# -- framing --------------------------------------------------------------------


class _Deframer:
    """Cuts a byte stream into message bodies of 1..``limit`` bytes.

    Holds at most ``limit`` bytes: the header while it is incomplete, then the
    body while it is.
    """

    __slots__ = ("_buffer", "_limit", "_need")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._need = 0  # 0: reading a header; else the body's length

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[list[bytes], int | None]:
        """The bodies completed by ``data``, and the bad length that ended the stream, or None.

        After a bad length, the rest of ``data`` is not read.
        """
        view = memoryview(data).cast("B")
        end = len(view)
        pos = 0
        buffer = self._buffer
        bodies: list[bytes] = []
        while True:
            want = (self._need or HEADER) - len(buffer)
            take = min(want, end - pos)
            buffer += view[pos : pos + take]
            pos += take
            if take < want:
                return bodies, None
            if self._need:
                bodies.append(bytes(buffer))
                self._need = 0
                buffer.clear()
                continue
            length = int.from_bytes(buffer, "big")
            buffer.clear()
            if not 1 <= length <= self._limit:
                return bodies, length
            self._need = length


# -- the daemon's side ----------------------------------------------------------


class _Refused(Exception):
    """A request refused while it is parsed (internal to this module)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_REQUEST_FIELDS = frozenset({"v", "id", "op", "args"})
_MISSING: Any = object()


def _malformed(message: str) -> _Refused:
    return _Refused(ErrorCode.MALFORMED, message)


def _bad(op: ControlOp, message: str) -> _Refused:
    return _Refused(ErrorCode.BAD_ARGUMENT, f"{op}: {message}")


def _field_type(name: str, value: object, want: str) -> _Refused:
    return _malformed(f"field {name} {_show(value)} is a msgpack {_wire_type(value)}, not {want}")


def _parse_request(body: bytes) -> Request | ControlFailure:
    """The request in one message body, or why it is refused (never fatal)."""
    obj, problem = _unpack(body, MAX_REQUEST)
    if problem is not None:
        return ControlFailure(0, ErrorCode.MALFORMED, f"request is not msgpack: {problem}", False)
    id = 0
    if type(obj) is dict:
        candidate = obj.get("id")
        if type(candidate) is int and 0 <= candidate <= MAX_U32:
            id = candidate
    try:
        return _request_from_map(obj)
    except _Refused as refused:
        return ControlFailure(id, refused.code, refused.message, False)


def _request_from_map(obj: object) -> Request:
    if type(obj) is not dict:
        raise _malformed(f"request is a msgpack {_wire_type(obj)}, not a map")
    # The version first: a later version may change every other field.
    version = obj.get("v", _MISSING)
    if version is _MISSING:
        raise _malformed("request has no field v (the protocol version)")
    if type(version) is not int:
        raise _field_type("v", version, "an int")
    if version not in SUPPORTED_VERSIONS:
        raise _Refused(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {_show(version)} is not supported; "
            f"supported versions: {', '.join(map(str, SUPPORTED_VERSIONS))}",
        )
    unknown = [key for key in obj if key not in _REQUEST_FIELDS]
    if unknown:
        raise _malformed(
            f"request has unknown field {_show(unknown[0])}; "
            f"the fields are {_names(_REQUEST_FIELDS)}"
        )
    id = obj.get("id", _MISSING)
    if id is _MISSING:
        raise _malformed("request has no field id")
    if type(id) is not int:
        raise _field_type("id", id, "an int")
    if not 0 <= id <= MAX_U32:
        raise _malformed(f"field id {id} is out of range; the limit is 0..{MAX_U32}")
    name = obj.get("op", _MISSING)
    if name is _MISSING:
        raise _malformed("request has no field op")
    if type(name) is not str:
        raise _field_type("op", name, "a str")
    if name not in _PARSERS:
        raise _Refused(
            ErrorCode.UNKNOWN_OP,
            f"op {_show(name)} is not an op; the ops are {_names(frozenset(_PARSERS))}",
        )
    args = obj.get("args", _MISSING)
    if args is _MISSING:
        args = {}
    elif type(args) is not dict:
        raise _field_type("args", args, "a map")
    op = ControlOp(name)
    parser, allowed = _PARSERS[name]
    for key in args:
        if key not in allowed:
            raise _bad(
                op,
                f"unknown argument {_show(key)}; the arguments of {op} are {_names(allowed)}",
            )
    return parser(id, args)


def _required(op: ControlOp, args: dict[str, Any], name: str) -> Any:
    if name not in args:
        raise _bad(op, f"argument {name} is missing")
    return args[name]


def _check_name(op: ControlOp, name: str, value: object, what: str, limit: int) -> str:
    """``value`` as a topic or pattern: 1..``limit`` bytes of UTF-8, no control characters."""
    if type(value) is not str:
        raise _bad(op, f"argument {name} {_show(value)} is a {_wire_type(value)}; give a str")
    if not value:
        raise _bad(op, f"argument {name} is empty; {what} is 1..{limit} bytes of UTF-8")
    # msgpack gives valid UTF-8 only; surrogatepass keeps a stray surrogate from raising.
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _bad(
            op,
            f"argument {name} {_show(value)} is {size} bytes of UTF-8; the limit is {limit}",
        )
    for index, char in enumerate(value):
        if char < "\x20" or char == "\x7f":
            raise _bad(
                op,
                f"argument {name} {_show(value)} contains the control character "
                f"U+{ord(char):04X} at index {index}; U+0000..U+001F and U+007F are not allowed",
            )
    return value


_QOS_NAMES = {q.name.lower(): q for q in QoS}


_PUBLISH_FIELDS = frozenset({"topic", "value", "confidence", "half_life", "ttl", "qos"})


def _parse_publish(id: int, args: dict[str, Any]) -> PublishRequest:
    return PublishRequest(id, *_signal_of(ControlOp.PUBLISH, args))


def _parse_publish_many(id: int, args: dict[str, Any]) -> PublishManyRequest:
    op = ControlOp.PUBLISH_MANY
    items = _required(op, args, "signals")
    if type(items) is not list or not 1 <= len(items) <= MAX_BATCH:
        raise _bad(
            op,
            f"argument signals {_show(items)} is not an array of 1..{MAX_BATCH} signals",
        )
    signals = []
    given = []
    for index, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise _bad(op, f"is {_show(item)}, not a map of a publish's arguments")
            unknown = sorted(map(_show, set(item) - _PUBLISH_FIELDS))
            if unknown:
                raise _bad(
                    op,
                    f"has unknown argument(s) {', '.join(unknown)}; "
                    f"a signal takes {_names(_PUBLISH_FIELDS)}",
                )
            signal, qos_given = _signal_of(op, item)
            signals.append(signal)
            given.append(qos_given)
        except _Refused as exc:
            reason = exc.message.removeprefix(f"{op}: ")
            raise _bad(op, f"signals[{index}] {reason}") from None
    return PublishManyRequest(id, tuple(signals), tuple(given))


def _signal_of(op: ControlOp, args: dict[str, Any]) -> tuple[Signal, bool]:
    """The signal a publish's arguments make, checked as make_signal checks it,
    and whether they gave its QoS class (else the daemon gives the topic's)."""
    topic = _required(op, args, "topic")
    value = _required(op, args, "value")
    qos = args.get("qos")
    qos_given = qos is not None
    if qos is None:
        qos = "normal"
    elif type(qos) is not str or qos not in _QOS_NAMES:
        raise _bad(
            op,
            f"argument qos {_show(qos)} is not a QoS class; give 'critical', 'normal' or 'bulk'",
        )
    if "half_life" in args or "ttl" in args:
        half_life, ttl = args.get("half_life"), args.get("ttl")
    else:
        half_life, ttl = DEFAULT_HALF_LIFE, None
    try:
        signal = make_signal(
            topic,
            value,
            confidence=args.get("confidence", 1.0),
            half_life=half_life,
            ttl=ttl,
            qos=_QOS_NAMES[qos],
        )
    except SignalError as exc:
        raise _bad(op, str(exc)) from None
    if signal.topic.startswith("$"):
        raise _bad(
            op,
            f"argument topic {_show(signal.topic)} starts with '$'; "
            "topics starting with '$' are reserved for the daemon's own use",
        )
    return signal, qos_given


def _parse_get(id: int, args: dict[str, Any]) -> GetRequest:
    topic = _required(ControlOp.GET, args, "topic")
    return GetRequest(id, _check_name(ControlOp.GET, "topic", topic, "a topic", MAX_TOPIC_BYTES))


def _parse_watch(id: int, args: dict[str, Any]) -> WatchRequest:
    op = ControlOp.WATCH
    pattern = _check_name(
        op, "pattern", _required(op, args, "pattern"), "a pattern", MAX_PATTERN_BYTES
    )
    raw = args.get("raw", False)
    if type(raw) is not bool:
        raise _bad(op, f"argument raw {_show(raw)} is a {_wire_type(raw)}; give a bool")
    return WatchRequest(id, pattern, raw)


def _parse_topics(id: int, args: dict[str, Any]) -> TopicsRequest:
    pattern = args.get("pattern")
    if pattern is not None:
        pattern = _check_name(ControlOp.TOPICS, "pattern", pattern, "a pattern", MAX_PATTERN_BYTES)
    return TopicsRequest(id, pattern)


def _parse_status(id: int, args: dict[str, Any]) -> StatusRequest:
    return StatusRequest(id)


def _parse_peers(id: int, args: dict[str, Any]) -> PeersRequest:
    return PeersRequest(id)


def _parse_reload(id: int, args: dict[str, Any]) -> ReloadRequest:
    return ReloadRequest(id)


def _parse_key_stage(id: int, args: dict[str, Any]) -> KeyStageRequest:
    op = ControlOp.KEY_STAGE
    path = _required(op, args, "path")
    if type(path) is not str:
        raise _bad(op, f"argument path {_show(path)} is a {_wire_type(path)}; give a str")
    size = len(path.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_PATH_BYTES:
        raise _bad(op, f"argument path is {size} bytes of UTF-8; a path is 1..{MAX_PATH_BYTES}")
    if "\0" in path:
        raise _bad(op, f"argument path {_show(path)} contains a NUL character")
    if not path.startswith("/"):
        raise _bad(
            op,
            f"argument path {_show(path)} is relative; give an absolute path "
            "(the daemon does not share the client's working directory)",
        )
    return KeyStageRequest(id, path)


def _parse_key_switch(id: int, args: dict[str, Any]) -> KeySwitchRequest:
    op = ControlOp.KEY_SWITCH
    window = args.get("window")
    if window is None:
        return KeySwitchRequest(id, None)
    if type(window) not in (int, float):
        raise _bad(op, f"argument window {_show(window)} is a {_wire_type(window)}; give a number")
    if not 0.0 <= window <= MAX_KEY_WINDOW:  # False for NaN too
        raise _bad(
            op,
            f"argument window {_show(window)} is out of range; "
            f"the limit is 0..{MAX_KEY_WINDOW:g} seconds",
        )
    return KeySwitchRequest(id, float(window))


def _parse_key_retire(id: int, args: dict[str, Any]) -> KeyRetireRequest:
    return KeyRetireRequest(id)


def _parse_key_status(id: int, args: dict[str, Any]) -> KeyStatusRequest:
    return KeyStatusRequest(id)


def _parse_sourcestats(id: int, args: dict[str, Any]) -> SourceStatsRequest:
    pattern = args.get("pattern")
    if pattern is not None:
        pattern = _check_name(
            ControlOp.SOURCESTATS, "pattern", pattern, "a pattern", MAX_PATTERN_BYTES
        )
    return SourceStatsRequest(id, pattern)


_PARSERS: dict[str, tuple[Callable[[int, dict[str, Any]], Request], frozenset[str]]] = {
    ControlOp.PUBLISH: (_parse_publish, _PUBLISH_FIELDS),
    ControlOp.PUBLISH_MANY: (_parse_publish_many, frozenset({"signals"})),
    ControlOp.GET: (_parse_get, frozenset({"topic"})),
    ControlOp.WATCH: (_parse_watch, frozenset({"pattern", "raw"})),
    ControlOp.TOPICS: (_parse_topics, frozenset({"pattern"})),
    ControlOp.STATUS: (_parse_status, frozenset()),
    ControlOp.PEERS: (_parse_peers, frozenset()),
    ControlOp.RELOAD: (_parse_reload, frozenset()),
    ControlOp.KEY_STAGE: (_parse_key_stage, frozenset({"path"})),
    ControlOp.KEY_SWITCH: (_parse_key_switch, frozenset({"window"})),
    ControlOp.KEY_RETIRE: (_parse_key_retire, frozenset()),
    ControlOp.KEY_STATUS: (_parse_key_status, frozenset()),
    ControlOp.SOURCESTATS: (_parse_sourcestats, frozenset({"pattern"})),
}


class RequestDecoder:
    """The daemon's side of one control connection: bytes in, requests out.

    Feed it what the socket reads; answer each :class:`ControlFailure` with
    :func:`encode_error`, and close the connection after a fatal one.  The
    results are the same however the bytes are split between calls.
    """

    __slots__ = ("_broken", "_deframer")

    def __init__(self) -> None:
        self._deframer = _Deframer(MAX_REQUEST)
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes held of an incomplete message: at most ``HEADER + MAX_REQUEST``."""
        return self._deframer.buffered

    @property
    def broken(self) -> bool:
        """True after a fatal failure: every later :meth:`feed` returns nothing."""
        return self._broken

    def feed(self, data: bytes | bytearray | memoryview) -> list[Request | ControlFailure]:
        """The requests and failures completed by ``data``, in order.

        :param data: bytes from the client; untrusted.  The list holds at most
            one item per 5 bytes of ``data`` (plus one).
        :returns: a request for each good message, a non-fatal
            :class:`ControlFailure` for each well-framed bad one, and at the end
            a fatal :class:`ControlFailure` if a length was 0 or over
            ``MAX_REQUEST``.  Raises nothing, whatever the bytes.
        """
        if self._broken:
            return []
        bodies, bad_length = self._deframer.feed(data)
        out: list[Request | ControlFailure] = [_parse_request(body) for body in bodies]
        if bad_length is not None:
            self._broken = True
            if bad_length == 0:
                out.append(
                    ControlFailure(
                        0,
                        ErrorCode.MALFORMED,
                        f"request length is 0; a request is 1..{MAX_REQUEST} bytes",
                        True,
                    )
                )
            else:
                out.append(
                    ControlFailure(
                        0,
                        ErrorCode.TOO_LARGE,
                        f"request length {bad_length} is over the limit of {MAX_REQUEST} bytes",
                        True,
                    )
                )
        return out


def _shape_problem(obj: object, depth: int) -> str | None:
    """Why a client's decoder would refuse ``obj`` (packed already), or None.

    What packs but does not decode: nesting past :data:`MAX_DEPTH` and map
    keys that are neither str nor bytes (msgpack's strict_map_key).  Walking
    the object costs a few microseconds for an event, where decoding the
    packed bytes again would cost ten times more.
    """
    if isinstance(obj, dict):
        if depth >= MAX_DEPTH:
            return f"arrays and maps nest more than {MAX_DEPTH} deep"
        for key, value in obj.items():
            if not isinstance(key, (str, bytes)):
                return f"map key {_show(key)} is a {type(key).__name__}, not a str or bytes"
            if isinstance(value, (dict, list, tuple)):
                problem = _shape_problem(value, depth + 1)
                if problem is not None:
                    return problem
    elif isinstance(obj, (list, tuple)):
        if depth >= MAX_DEPTH:
            return f"arrays and maps nest more than {MAX_DEPTH} deep"
        for value in obj:
            if isinstance(value, (dict, list, tuple)):
                problem = _shape_problem(value, depth + 1)
                if problem is not None:
                    return problem
    return None


def _reply_body(what: str, message: dict[str, Any]) -> bytes:
    body = _pack(what, message)
    if len(body) > MAX_REPLY:
        raise ControlError(f"{what} is {len(body)} bytes; the limit is {MAX_REPLY}")
    problem = _shape_problem(message, 0)
    if problem is not None:
        raise ControlError(f"{what} would not decode: {problem}")
    return body


def encode_reply(id: int, result: object) -> bytes:
    """A success reply, framed.

    :param id: the request's id, 0..2^32-1.
    :param result: the op's result as plain data: dict (keys str or bytes),
        list, tuple, str, int, float, bool, None, bytes; nested at most
        ``MAX_DEPTH - 1`` deep.
    :raises ControlError: if ``result`` is not such data, or the reply is over
        ``MAX_REPLY`` bytes (answer with an ``internal`` error instead).
    """
    return _frame(
        _reply_body(
            "reply", {"v": PROTOCOL_VERSION, "id": _check_id(id), "ok": True, "result": result}
        )
    )


def encode_error(id: int, code: ErrorCode | str, message: str) -> bytes:
    """An error reply, framed.

    An ``unsupported-version`` error also lists :data:`SUPPORTED_VERSIONS`
    (field ``supported``).

    :param id: the request's id, or 0 if it is unknown.
    :param code: an :class:`ErrorCode` or its value.
    :param message: for a human; cut to :data:`MAX_ERROR_MESSAGE` characters.
    :raises ControlError: for a bad id, code or message type.
    """
    if not isinstance(code, str) or code not in _ERROR_CODES:
        raise ControlError(
            f"code {_show(code)} is not an error code; the codes are {_names(_ERROR_CODES)}"
        )
    if not isinstance(message, str):
        raise ControlError(f"message {_show(message)} is a {type(message).__name__}; give a str")
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 3] + "..."
    error: dict[str, Any] = {"code": str(code), "message": str.__str__(message)}
    if code == ErrorCode.UNSUPPORTED_VERSION:
        error["supported"] = list(SUPPORTED_VERSIONS)
    return _frame(
        _reply_body(
            "error reply",
            {"v": PROTOCOL_VERSION, "id": _check_id(id), "ok": False, "error": error},
        )
    )


def encode_event(id: int, event: dict[str, Any]) -> bytes:
    """One event of a watch stream, framed.

    :param id: the watch request's id.
    :param event: the event: a dict of plain data, as ``result`` of :func:`encode_reply`.
    :raises ControlError: if ``event`` is not such a dict, or the message is
        over ``MAX_REPLY`` bytes.
    """
    if not isinstance(event, dict):
        raise ControlError(f"event {_show(event)} is a {type(event).__name__}; give a dict")
    return _frame(
        _reply_body("event", {"v": PROTOCOL_VERSION, "id": _check_id(id), "event": event})
    )


_ERROR_CODES = frozenset(code.value for code in ErrorCode)


# -- the client's side ----------------------------------------------------------


def encode_request(
    op: ControlOp | str,
    args: dict[str, Any] | None = None,
    id: int = 0,
    *,
    check: bool = True,
) -> bytes:
    """A request, framed.

    :param op: a :class:`ControlOp` or its value.
    :param args: the op's arguments (``docs/CONTROL.md``), or None for none.
    :param id: the request id, 0..2^32-1; the reply carries it back.
    :param check: when True (the default), the request must be one the daemon
        accepts: the op and every argument are checked as the daemon checks
        them.  False sends any str op and any arguments (to test the daemon).
    :raises ControlError: naming the op, argument, value and rule; or if the
        request is over ``MAX_REQUEST`` bytes.
    """
    id = _check_id(id)
    if not isinstance(op, str):
        raise ControlError(f"op {_show(op)} is a {type(op).__name__}; give a str")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlError(f"args {_show(args)} is a {type(args).__name__}; give a dict")
    message = {"v": PROTOCOL_VERSION, "id": id, "op": str.__str__(op), "args": args}
    body = _pack("request", message)
    if len(body) > MAX_REQUEST:
        raise ControlError(f"request is {len(body)} bytes; the limit is {MAX_REQUEST}")
    if check:
        parsed = _parse_request(body)
        if isinstance(parsed, ControlFailure):
            raise ControlError(f"{parsed.code}: {parsed.message}")
    return _frame(body)


_REPLY_FIELDS = frozenset({"v", "id", "ok", "result"})
_ERROR_FIELDS = frozenset({"v", "id", "ok", "error"})
_EVENT_FIELDS = frozenset({"v", "id", "event"})


def _parse_reply(body: bytes) -> Reply | StreamEvent:
    """The reply or event in one message body.

    :raises ControlProtocolError: naming what is wrong.
    """
    obj, problem = _unpack(body, MAX_REPLY)
    if problem is not None:
        raise ControlProtocolError(f"reply is not msgpack: {problem}")
    if type(obj) is not dict:
        raise ControlProtocolError(f"reply is a msgpack {_wire_type(obj)}, not a map")
    version = obj.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ControlProtocolError(
            f"reply has protocol version {_show(version)}; "
            f"supported versions: {', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    id = obj.get("id")
    if type(id) is not int or not 0 <= id <= MAX_U32:
        raise ControlProtocolError(f"reply field id {_show(id)} is not an int 0..{MAX_U32}")
    keys = frozenset(obj)
    if "event" in obj:
        event = obj["event"]
        if keys != _EVENT_FIELDS:
            raise ControlProtocolError(
                f"event has fields {_names(keys)}; an event has {_names(_EVENT_FIELDS)}"
            )
        if type(event) is not dict:
            raise ControlProtocolError(
                f"event {_show(event)} is a msgpack {_wire_type(event)}, not a map"
            )
        return StreamEvent(id, event)
    ok = obj.get("ok")
    if type(ok) is not bool:
        raise ControlProtocolError(f"reply field ok {_show(ok)} is not a bool")
    expected = _REPLY_FIELDS if ok else _ERROR_FIELDS
    if keys != expected:
        raise ControlProtocolError(
            f"reply with ok {ok} has fields {_names(keys)}; it must have {_names(expected)}"
        )
    if ok:
        return Reply(id, True, obj["result"], None, None)
    error = obj["error"]
    if type(error) is not dict:
        raise ControlProtocolError(
            f"reply field error {_show(error)} is a msgpack {_wire_type(error)}, not a map"
        )
    code, message = error.get("code"), error.get("message")
    if type(code) is not str or code not in _ERROR_CODES:
        raise ControlProtocolError(f"error code {_show(code)} is not one of {_names(_ERROR_CODES)}")
    if type(message) is not str:
        raise ControlProtocolError(f"error message {_show(message)} is not a str")
    return Reply(id, False, None, ErrorCode(code), message)


class ReplyDecoder:
    """The client's side of one control connection: bytes in, replies and events out.

    Once it has raised, it raises again on every later :meth:`feed`.
    """

    __slots__ = ("_deframer", "_error")

    def __init__(self) -> None:
        self._deframer = _Deframer(MAX_REPLY)
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of an incomplete message: at most ``HEADER + MAX_REPLY``."""
        return self._deframer.buffered

    def feed(self, data: bytes | bytearray | memoryview) -> list[Reply | StreamEvent]:
        """The replies and events completed by ``data``, in order.

        :param data: bytes from the daemon.
        :raises ControlProtocolError: if they break the protocol; its
            ``decoded`` holds what this call decoded before the bad message.
            Nothing else, whatever the bytes.
        """
        if self._error is not None:
            raise ControlProtocolError(f"the stream broke earlier: {self._error}")
        bodies, bad_length = self._deframer.feed(data)
        out: list[Reply | StreamEvent] = []
        for body in bodies:
            try:
                out.append(_parse_reply(body))
            except ControlProtocolError as exc:
                self._error = str(exc)
                raise ControlProtocolError(str(exc), tuple(out)) from None
        if bad_length is not None:
            self._error = f"reply length {bad_length} is not in 1..{MAX_REPLY}"
            raise ControlProtocolError(self._error, tuple(out))
        return out
