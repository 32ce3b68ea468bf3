"""Tests of :mod:`cloudkernel.core.control`: the control protocol of ``docs/CONTROL.md``.

* Every op round-trips through ``encode_request`` and ``RequestDecoder``, and
  replies, errors and events through their encoders and ``ReplyDecoder``;
  a few messages are pinned byte by byte.
* Every error code the decoder gives is reached, with the message naming the
  field, the value and the rule; the codes only the daemon gives round-trip.
* The results are the same whether the bytes come whole, one at a time or in
  random pieces; a length of 0 or over the limit is fatal and ends the input.
* Fuzzing (random bytes, mutated frames, random msgpack in a frame) gives only
  the documented outcomes, and the buffer never holds more than one message.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any, get_args

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.core.control import (
    DEFAULT_HALF_LIFE,
    HEADER,
    MAX_DEPTH,
    MAX_ERROR_MESSAGE,
    MAX_REPLY,
    MAX_REQUEST,
    MUTATING_OPS,
    PROTOCOL_VERSION,
    READ_ONLY_OPS,
    ControlFailure,
    ControlOp,
    ErrorCode,
    GetRequest,
    KeyRetireRequest,
    KeyStageRequest,
    KeyStatusRequest,
    KeySwitchRequest,
    PeersRequest,
    PublishManyRequest,
    PublishRequest,
    ReloadRequest,
    Reply,
    ReplyDecoder,
    Request,
    RequestDecoder,
    SourceStatsRequest,
    StatusRequest,
    StreamEvent,
    TopicsRequest,
    WatchRequest,
    encode_error,
    encode_event,
    encode_reply,
    encode_request,
)
from cloudkernel.core.signals import MAX_U32, QoS, make_signal
from cloudkernel.errors import ControlError, ControlProtocolError

Outcome = Request | ControlFailure


def frame(obj: object) -> bytes:
    """``obj`` packed as msgpack and framed, with no checks."""
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def request(op: object, args: object = None, id: int = 1, **extra: object) -> bytes:
    """A request map framed without checks; ``args=None`` leaves the field out."""
    message: dict[str, object] = {"v": 1, "id": id, "op": op}
    if args is not None:
        message["args"] = args
    message.update(extra)
    return frame(message)


def decode_one(data: bytes) -> Outcome:
    out = RequestDecoder().feed(data)
    assert len(out) == 1, out
    return out[0]


def failure(data: bytes) -> ControlFailure:
    result = decode_one(data)
    assert isinstance(result, ControlFailure), result
    return result


def pieces(data: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    """``data`` cut at the sorted, deduplicated positions ``cuts``."""
    start = 0
    for cut in sorted(set(cuts)):
        yield data[start:cut]
        start = cut
    yield data[start:]


def feed_requests(chunks: Iterator[bytes] | Sequence[bytes]) -> list[Outcome]:
    decoder = RequestDecoder()
    out: list[Outcome] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
        assert decoder.buffered <= HEADER + MAX_REQUEST
    return out


def feed_replies(
    chunks: Iterator[bytes] | Sequence[bytes],
) -> tuple[list[Reply | StreamEvent], str | None]:
    """Everything decoded, and the first error's message (None if none)."""
    decoder = ReplyDecoder()
    out: list[Reply | StreamEvent] = []
    for chunk in chunks:
        try:
            out += decoder.feed(chunk)
        except ControlProtocolError as exc:
            out += exc.decoded  # type: ignore[arg-type]
            return out, str(exc)
        assert decoder.buffered <= HEADER + MAX_REPLY
    return out, None


# -- constants and enums ----------------------------------------------------------


def test_constants() -> None:
    assert (PROTOCOL_VERSION, HEADER, MAX_REQUEST, MAX_REPLY) == (1, 4, 65536, 1 << 20)
    assert [op.value for op in ControlOp] == [
        "publish",
        "get",
        "watch",
        "topics",
        "status",
        "peers",
        "reload",
        "publish-many",
        "key-stage",
        "key-switch",
        "key-retire",
        "key-status",
        "sourcestats",
    ]
    assert [code.value for code in ErrorCode] == [
        "malformed",
        "too-large",
        "unsupported-version",
        "unknown-op",
        "bad-argument",
        "not-found",
        "not-authorised",
        "busy",
        "invalid-config",
        "internal",
    ]


def test_every_op_is_read_only_or_mutating() -> None:
    assert READ_ONLY_OPS | MUTATING_OPS == frozenset(ControlOp)
    assert not READ_ONLY_OPS & MUTATING_OPS
    assert MUTATING_OPS == {
        ControlOp.PUBLISH,
        ControlOp.PUBLISH_MANY,
        ControlOp.RELOAD,
        ControlOp.KEY_STAGE,
        ControlOp.KEY_SWITCH,
        ControlOp.KEY_RETIRE,
    }


def test_request_classes_name_their_op() -> None:
    signal = make_signal("t", 1.0, half_life=1.0)
    requests: list[Request] = [
        PublishRequest(1, signal),
        GetRequest(1, "t"),
        WatchRequest(1, "*", False),
        TopicsRequest(1, None),
        StatusRequest(1),
        PeersRequest(1),
        ReloadRequest(1),
        PublishManyRequest(1, (signal,), (True,)),
        KeyStageRequest(1, "/k"),
        KeySwitchRequest(1, None),
        KeyRetireRequest(1),
        KeyStatusRequest(1),
        SourceStatsRequest(1, None),
    ]
    assert [r.op for r in requests] == list(ControlOp)


# -- round trips ----------------------------------------------------------------

ROUND_TRIPS: list[tuple[ControlOp, dict[str, Any] | None, Request]] = [
    (
        ControlOp.PUBLISH,
        {"topic": "room/temp", "value": 21.5},
        PublishRequest(7, make_signal("room/temp", 21.5, half_life=DEFAULT_HALF_LIFE), False),
    ),
    (
        ControlOp.PUBLISH,
        {
            "topic": "arm/pose",
            "value": [1.0, -2.0, 3],
            "confidence": 0.25,
            "half_life": None,
            "ttl": 2.5,
            "qos": "critical",
        },
        PublishRequest(
            7,
            make_signal("arm/pose", (1.0, -2.0, 3.0), confidence=0.25, ttl=2.5, qos=QoS.CRITICAL),
        ),
    ),
    (
        ControlOp.PUBLISH,
        {"topic": "mode", "value": 3, "half_life": 1.0, "ttl": 5.0, "qos": "bulk"},
        PublishRequest(7, make_signal("mode", 3, half_life=1.0, ttl=5.0, qos=QoS.BULK)),
    ),
    (
        ControlOp.PUBLISH,
        {"topic": "tag", "value": b"\x00\xff", "ttl": 1},
        PublishRequest(7, make_signal("tag", b"\x00\xff", ttl=1.0), False),
    ),
    (
        ControlOp.PUBLISH,
        {"topic": "tag", "value": 1.0, "qos": None},
        PublishRequest(7, make_signal("tag", 1.0, half_life=DEFAULT_HALF_LIFE), False),
    ),
    (ControlOp.GET, {"topic": "room/temp"}, GetRequest(7, "room/temp")),
    (ControlOp.WATCH, {"pattern": "room/*"}, WatchRequest(7, "room/*", False)),
    (ControlOp.WATCH, {"pattern": "[ab]?", "raw": True}, WatchRequest(7, "[ab]?", True)),
    (ControlOp.TOPICS, None, TopicsRequest(7, None)),
    (ControlOp.TOPICS, {"pattern": None}, TopicsRequest(7, None)),
    (ControlOp.TOPICS, {"pattern": "a*"}, TopicsRequest(7, "a*")),
    (ControlOp.STATUS, None, StatusRequest(7)),
    (ControlOp.STATUS, {}, StatusRequest(7)),
    (ControlOp.PEERS, None, PeersRequest(7)),
    (ControlOp.RELOAD, None, ReloadRequest(7)),
    (
        ControlOp.PUBLISH_MANY,
        {
            "signals": [
                {"topic": "a", "value": 1.5},
                {"topic": "b", "value": b"x", "ttl": 2, "qos": "bulk"},
            ]
        },
        PublishManyRequest(
            7,
            (
                make_signal("a", 1.5, half_life=DEFAULT_HALF_LIFE),
                make_signal("b", b"x", ttl=2.0, qos=QoS.BULK),
            ),
            (False, True),
        ),
    ),
    (ControlOp.KEY_STAGE, {"path": "/etc/ck/new.key"}, KeyStageRequest(7, "/etc/ck/new.key")),
    (ControlOp.KEY_SWITCH, None, KeySwitchRequest(7, None)),
    (ControlOp.KEY_SWITCH, {"window": None}, KeySwitchRequest(7, None)),
    (ControlOp.KEY_SWITCH, {"window": 0}, KeySwitchRequest(7, 0.0)),
    (ControlOp.KEY_SWITCH, {"window": 604800.0}, KeySwitchRequest(7, 604800.0)),
    (ControlOp.KEY_RETIRE, None, KeyRetireRequest(7)),
    (ControlOp.KEY_STATUS, {}, KeyStatusRequest(7)),
    (ControlOp.SOURCESTATS, None, SourceStatsRequest(7, None)),
    (ControlOp.SOURCESTATS, {"pattern": None}, SourceStatsRequest(7, None)),
    (ControlOp.SOURCESTATS, {"pattern": "temp/*"}, SourceStatsRequest(7, "temp/*")),
]


@pytest.mark.parametrize(("op", "args", "expected"), ROUND_TRIPS)
def test_request_round_trip(op: ControlOp, args: dict[str, Any] | None, expected: Request) -> None:
    assert decode_one(encode_request(op, args, 7)) == expected
    # The op as a plain str, and args left out of the map entirely.
    assert decode_one(encode_request(op.value, args, 7)) == expected
    if not args:
        assert decode_one(request(op.value, None, 7)) == expected


def test_publish_defaults() -> None:
    result = decode_one(encode_request("publish", {"topic": "t", "value": 1.0}, 3))
    assert isinstance(result, PublishRequest)
    signal = result.signal
    assert (signal.confidence, signal.half_life, signal.ttl, signal.qos) == (
        1.0,
        DEFAULT_HALF_LIFE,
        None,
        QoS.NORMAL,
    )
    assert (signal.source, signal.seq, signal.age) == (0, 0, 0.0)
    # Only ttl: no default half-life.
    result = decode_one(encode_request("publish", {"topic": "t", "value": 1.0, "ttl": 4.0}))
    assert isinstance(result, PublishRequest)
    assert (result.signal.half_life, result.signal.ttl) == (None, 4.0)


@pytest.mark.parametrize("id", [0, 1, 0xFFFF, MAX_U32])
def test_ids_round_trip(id: int) -> None:
    assert decode_one(encode_request("status", None, id)) == StatusRequest(id)
    assert feed_replies([encode_reply(id, None)])[0] == [Reply(id, True, None, None, None)]


def test_pinned_bytes() -> None:
    # {"v": 1, "id": 7, "op": "status", "args": {}}
    status = bytes.fromhex("00000018 84 a176 01 a26964 07 a26f70 a6737461747573 a461726773 80")
    assert encode_request("status", None, 7) == status
    # {"v": 1, "id": 7, "ok": true, "result": null}
    assert encode_reply(7, None) == bytes.fromhex(
        "00000014 84 a176 01 a26964 07 a26f6b c3 a6726573756c74 c0"
    )
    # {"v": 1, "id": 0, "ok": false, "error": {"code": "busy", "message": "x"}}
    assert encode_error(0, ErrorCode.BUSY, "x") == bytes.fromhex(
        "00000027 84 a176 01 a26964 00 a26f6b c2 a56572726f72"
        " 82 a4636f6465 a462757379 a76d657373616765 a178"
    )
    # {"v": 1, "id": 9, "event": {}}
    assert encode_event(9, {}) == bytes.fromhex("0000000f 83 a176 01 a26964 09 a56576656e74 80")


RESULTS: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64 - 1,
    1.5,
    "",
    "ünïcode",
    b"\x00bytes",
    [],
    [1, [2, [3]]],
    {"topics": ["a", "b"], "count": 2, "nested": {"x": None, b"k": 1.0}},
]


@pytest.mark.parametrize("result", RESULTS)
def test_reply_round_trip(result: Any) -> None:
    assert feed_replies([encode_reply(5, result)]) == ([Reply(5, True, result, None, None)], None)


def test_tuples_come_back_as_lists() -> None:
    out, _ = feed_replies([encode_reply(5, {"v": (1, (2.0, "x"))})])
    assert out == [Reply(5, True, {"v": [1, [2.0, "x"]]}, None, None)]


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_round_trip(code: ErrorCode) -> None:
    message = f"{code} happened"
    for given_code in (code, code.value):
        out, error = feed_replies([encode_error(3, given_code, message)])
        assert error is None
        assert out == [Reply(3, False, None, code, message)]
        assert isinstance(out[0], Reply) and type(out[0].error_code) is ErrorCode


def test_unsupported_version_reply_lists_the_versions() -> None:
    body = encode_error(3, ErrorCode.UNSUPPORTED_VERSION, "no")[HEADER:]
    assert msgpack.unpackb(body)["error"]["supported"] == [1]
    assert "supported" not in msgpack.unpackb(encode_error(3, "busy", "no")[HEADER:])["error"]


def test_error_message_is_cut() -> None:
    out, _ = feed_replies([encode_error(1, "internal", "x" * 5000)])
    assert isinstance(out[0], Reply) and out[0].error_message is not None
    assert len(out[0].error_message) == MAX_ERROR_MESSAGE
    assert out[0].error_message.endswith("...")


def test_event_round_trip() -> None:
    event = {"topic": "a", "value": [1.0, 2.0], "sources": 3}
    stream = encode_event(4, event) + encode_event(4, {}) + encode_reply(4, {"ended": "closed"})
    assert feed_replies([stream]) == (
        [
            StreamEvent(4, event),
            StreamEvent(4, {}),
            Reply(4, True, {"ended": "closed"}, None, None),
        ],
        None,
    )


# -- the daemon's failures ------------------------------------------------------

MALFORMED_BODIES: list[tuple[bytes, str]] = [
    (b"\xc1", "0xC1"),
    (b"\x92\x01", "declares 2 items; 1 bytes are left for 2 items"),
    (b"\xa5ab", "body ends at byte 3 inside an object"),
    (b"\xdc\x00", "body ends at byte 2 inside a header"),
    (b"\x01\x02", "1 bytes follow the object"),
    (b"\xa2\xff\xfe", "UnicodeDecodeError"),
    (msgpack.packb([1, 2]), "array, not a map"),
    (msgpack.packb("status"), "str, not a map"),
    (msgpack.packb({1: 2}), "map key"),
    (b"\x81\xa1v\xd6\x01\x00\x00\x00\x00", "max_ext_len"),
    (msgpack.packb({"id": 1, "op": "status"}), "no field v"),
    (msgpack.packb({"v": "1", "id": 1, "op": "status"}), "field v '1' is a msgpack str"),
    (msgpack.packb({"v": True, "id": 1, "op": "status"}), "msgpack bool, not an int"),
    (msgpack.packb({"v": 1, "id": 1, "op": "status", "x": 0}), "unknown field 'x'"),
    (msgpack.packb({"v": 1, "id": 1, "op": "status", b"op": 0}), "unknown field b'op'"),
    (msgpack.packb({"v": 1, "op": "status"}), "no field id"),
    (msgpack.packb({"v": 1, "id": "1", "op": "status"}), "field id '1' is a msgpack str"),
    (msgpack.packb({"v": 1, "id": -1, "op": "status"}), "field id -1 is out of range"),
    (msgpack.packb({"v": 1, "id": 2**32, "op": "status"}), "out of range; the limit is 0.."),
    (msgpack.packb({"v": 1, "id": 1.0, "op": "status"}), "msgpack float, not an int"),
    (msgpack.packb({"v": 1, "id": 1}), "no field op"),
    (msgpack.packb({"v": 1, "id": 1, "op": 5}), "field op 5 is a msgpack int, not a str"),
    (msgpack.packb({"v": 1, "id": 1, "op": b"get"}), "msgpack bin, not a str"),
    (msgpack.packb({"v": 1, "id": 1, "op": "get", "args": []}), "args [] is a msgpack array"),
    (msgpack.packb({"v": 1, "id": 1, "op": "get", "args": None}), "msgpack nil, not a map"),
]


@pytest.mark.parametrize(("body", "words"), MALFORMED_BODIES)
def test_malformed(body: bytes, words: str) -> None:
    result = failure(raw_frame(body))
    assert result.code == ErrorCode.MALFORMED
    assert not result.fatal
    assert words in result.message


def test_failure_keeps_a_readable_id() -> None:
    assert failure(request("get", [], id=42)).id == 42
    assert failure(request("nope", id=42)).id == 42
    assert failure(frame({"v": 1, "id": 42, "op": "status", "x": 1})).id == 42
    assert failure(frame({"v": 2, "id": 42})).id == 42
    assert failure(frame({"v": 1, "id": 2**32, "op": "status"})).id == 0
    assert failure(frame({"v": 1, "id": True, "op": "status"})).id == 0
    assert failure(raw_frame(b"\xc1")).id == 0


@pytest.mark.parametrize("version", [0, 2, -1, 255, 2**40])
def test_unsupported_version(version: int) -> None:
    # Checked before anything else in the map: the other fields may be anything.
    result = failure(frame({"v": version, "id": 9, "op": 1, "future": [1]}))
    assert result == ControlFailure(
        9,
        ErrorCode.UNSUPPORTED_VERSION,
        f"protocol version {version} is not supported; supported versions: 1",
        False,
    )


@pytest.mark.parametrize("op", ["", "Publish", "Reload", "status ", "\x00"])
def test_unknown_op(op: str) -> None:
    result = failure(request(op))
    assert result.code == ErrorCode.UNKNOWN_OP
    assert repr(op) in result.message
    assert (
        "get, key-retire, key-stage, key-status, key-switch, peers, publish, publish-many, "
        "reload, sourcestats, status, topics, watch" in result.message
    )


BAD_ARGUMENTS: list[tuple[str, dict[Any, Any], str]] = [
    # unknown and missing
    ("publish", {"topic": "t", "value": 1.0, "topik": "t"}, "unknown argument 'topik'"),
    ("publish", {"topic": "t", "value": 1.0, b"qos": "bulk"}, "unknown argument b'qos'"),
    ("publish", {"value": 1.0}, "argument topic is missing"),
    ("publish", {"topic": "t"}, "argument value is missing"),
    ("get", {}, "argument topic is missing"),
    ("get", {"topic": "t", "pattern": "x"}, "the arguments of get are topic"),
    ("watch", {}, "argument pattern is missing"),
    ("watch", {"pattern": "*", "estimates": True}, "are pattern, raw"),
    ("topics", {"topic": "a"}, "the arguments of topics are pattern"),
    ("status", {"verbose": True}, "the arguments of status are none"),
    ("peers", {"x": None}, "unknown argument 'x'"),
    ("sourcestats", {"topic": "a"}, "the arguments of sourcestats are pattern"),
    ("sourcestats", {"pattern": 3}, "pattern 3 is a int; give a str"),
    ("sourcestats", {"pattern": ""}, "pattern is empty"),
    ("sourcestats", {"pattern": "a\x01"}, "control character U+0001"),
    # publish: every field, through make_signal
    ("publish", {"topic": 5, "value": 1.0}, "topic 5 is a int; give a str"),
    ("publish", {"topic": "", "value": 1.0}, "topic '' is empty"),
    ("publish", {"topic": "x" * 129, "value": 1.0}, "129 bytes of UTF-8; the limit is 128"),
    ("publish", {"topic": "a\nb", "value": 1.0}, "control character U+000A"),
    ("publish", {"topic": "t", "value": True}, "value True is a bool"),
    ("publish", {"topic": "t", "value": None}, "value None is a NoneType"),
    ("publish", {"topic": "t", "value": -1}, "a category is 0..4294967295"),
    ("publish", {"topic": "t", "value": 2**32}, "a category is 0..4294967295"),
    ("publish", {"topic": "t", "value": []}, "has 0 items; a vector has 1..16"),
    ("publish", {"topic": "t", "value": [0.0] * 17}, "has 17 items; a vector has 1..16"),
    ("publish", {"topic": "t", "value": [1.0, "x"]}, "value[1] 'x' is a str"),
    ("publish", {"topic": "t", "value": math.nan}, "value nan is not finite"),
    ("publish", {"topic": "t", "value": b""}, "is 0 bytes; the limit is 1..64"),
    ("publish", {"topic": "t", "value": b"x" * 65}, "is 65 bytes; the limit is 1..64"),
    ("publish", {"topic": "t", "value": {"a": 1}}, "is a dict"),
    ("publish", {"topic": "t", "value": 1.0, "confidence": 0.0}, "0 < confidence <= 1"),
    ("publish", {"topic": "t", "value": 1.0, "confidence": 1.5}, "0 < confidence <= 1"),
    ("publish", {"topic": "t", "value": 1.0, "confidence": "1"}, "confidence '1' is a str"),
    ("publish", {"topic": "t", "value": 1.0, "half_life": 0}, "half_life 0 is not > 0"),
    ("publish", {"topic": "t", "value": 1.0, "ttl": -1.0}, "ttl -1.0 is not > 0"),
    ("publish", {"topic": "t", "value": 1.0, "ttl": 1e9}, "the limit is 86400000 ms"),
    ("publish", {"topic": "t", "value": 1.0, "ttl": "1"}, "ttl '1' is a str"),
    ("publish", {"topic": "t", "value": 1.0, "half_life": None}, "both None"),
    ("publish", {"topic": "t", "value": 1.0, "half_life": None, "ttl": None}, "both None"),
    ("publish", {"topic": "t", "value": 1.0, "qos": "urgent"}, "qos 'urgent' is not a QoS"),
    ("publish", {"topic": "t", "value": 1.0, "qos": "NORMAL"}, "qos 'NORMAL' is not a QoS"),
    ("publish", {"topic": "t", "value": 1.0, "qos": 1}, "qos 1 is not a QoS class"),
    ("publish", {"topic": "t", "value": 1.0, "qos": 1}, "qos 1 is not a QoS class"),
    # reserved topics
    ("publish", {"topic": "$sys/load", "value": 1.0}, "'$sys/load' starts with '$'"),
    ("publish", {"topic": "$", "value": 1.0}, "reserved for the daemon's own use"),
    # get, watch, topics
    ("get", {"topic": 1}, "argument topic 1 is a int; give a str"),
    ("get", {"topic": None}, "argument topic None is a nil; give a str"),
    ("get", {"topic": ""}, "argument topic is empty; a topic is 1..128 bytes"),
    ("get", {"topic": "é" * 65}, "is 130 bytes of UTF-8; the limit is 128"),
    ("get", {"topic": "a\x7f"}, "control character U+007F at index 1"),
    ("watch", {"pattern": ""}, "argument pattern is empty; a pattern is 1..128 bytes"),
    ("watch", {"pattern": "*" * 129}, "is 129 bytes of UTF-8; the limit is 128"),
    ("watch", {"pattern": b"*"}, "argument pattern b'*' is a bin; give a str"),
    ("watch", {"pattern": "*", "raw": 1}, "argument raw 1 is a int; give a bool"),
    ("watch", {"pattern": "*", "raw": None}, "argument raw None is a nil; give a bool"),
    ("topics", {"pattern": ""}, "argument pattern is empty"),
    ("topics", {"pattern": 3}, "argument pattern 3 is a int; give a str"),
    ("topics", {"pattern": "\t"}, "control character U+0009"),
    # key ops
    ("key-stage", {}, "argument path is missing"),
    ("key-stage", {"path": b"/k"}, "argument path b'/k' is a bin; give a str"),
    ("key-stage", {"path": ""}, "path is 0 bytes of UTF-8; a path is 1..4096"),
    ("key-stage", {"path": "/" * 4097}, "path is 4097 bytes of UTF-8; a path is 1..4096"),
    ("key-stage", {"path": "/a\0b"}, "contains a NUL character"),
    ("key-stage", {"path": "new.key"}, "'new.key' is relative; give an absolute path"),
    ("key-stage", {"path": "/k", "key": "x"}, "the arguments of key-stage are path"),
    ("key-switch", {"window": -1}, "window -1 is out of range; the limit is 0..604800"),
    ("key-switch", {"window": 604801}, "the limit is 0..604800 seconds"),
    ("key-switch", {"window": math.nan}, "window nan is out of range"),
    ("key-switch", {"window": True}, "window True is a bool; give a number"),
    ("key-switch", {"window": "60"}, "window '60' is a str; give a number"),
    ("key-retire", {"now": True}, "the arguments of key-retire are none"),
    ("key-status", {"x": 1}, "the arguments of key-status are none"),
]


@pytest.mark.parametrize(("op", "args", "words"), BAD_ARGUMENTS)
def test_bad_argument(op: str, args: dict[Any, Any], words: str) -> None:
    result = failure(request(op, args, id=11))
    assert result.code == ErrorCode.BAD_ARGUMENT, result
    assert (result.id, result.fatal) == (11, False)
    assert result.message.startswith(f"{op}: ")
    assert words in result.message, result.message
    # encode_request refuses the same arguments, with the same message.
    if not any(isinstance(key, bytes) for key in args):
        with pytest.raises(ControlError) as info:
            encode_request(op, args, 11)
        assert str(info.value) == f"bad-argument: {result.message}"


def test_a_reserved_topic_may_be_read() -> None:
    assert decode_one(encode_request("get", {"topic": "$sys/load"})) == GetRequest(0, "$sys/load")


def test_limits_at_the_edge_are_accepted() -> None:
    long = "é" * 64  # 128 bytes
    assert decode_one(encode_request("get", {"topic": long})) == GetRequest(0, long)
    assert decode_one(encode_request("watch", {"pattern": long})) == WatchRequest(0, long, False)
    result = decode_one(encode_request("publish", {"topic": long, "value": [0.5] * 16}))
    assert isinstance(result, PublishRequest) and result.signal.value == (0.5,) * 16


# -- framing --------------------------------------------------------------------


def test_zero_length_is_fatal() -> None:
    decoder = RequestDecoder()
    out = decoder.feed(encode_request("status", None, 1) + b"\0\0\0\0" + encode_request("peers"))
    assert out == [
        StatusRequest(1),
        ControlFailure(
            0, ErrorCode.MALFORMED, "request length is 0; a request is 1..65536 bytes", True
        ),
    ]
    assert decoder.broken
    assert decoder.feed(encode_request("status")) == []
    assert decoder.buffered == 0


@pytest.mark.parametrize("length", [MAX_REQUEST + 1, 2**31, 2**32 - 1])
def test_oversized_length_is_fatal(length: int) -> None:
    decoder = RequestDecoder()
    out = decoder.feed(struct.pack(">I", length) + b"\x80" * 100)
    assert out == [
        ControlFailure(
            0,
            ErrorCode.TOO_LARGE,
            f"request length {length} is over the limit of 65536 bytes",
            True,
        )
    ]
    assert decoder.broken and decoder.buffered == 0
    assert decoder.feed(encode_request("status")) == []


def test_largest_request_is_read() -> None:
    # A body of exactly MAX_REQUEST bytes: the empty bin (c4 00) at the end grows to a bin16.
    body = msgpack.packb({"v": 1, "id": 1, "op": "status", "args": {"pad": b""}})[:-2]
    pad = MAX_REQUEST - len(body) - 3
    body += b"\xc5" + struct.pack(">H", pad) + b"x" * pad
    assert len(body) == MAX_REQUEST
    decoder = RequestDecoder()
    result = decoder.feed(raw_frame(body))
    assert len(result) == 1 and isinstance(result[0], ControlFailure)
    assert result[0].code == ErrorCode.BAD_ARGUMENT and not result[0].fatal
    assert "unknown argument 'pad'" in result[0].message


def test_buffer_never_exceeds_one_message() -> None:
    decoder = RequestDecoder()
    data = struct.pack(">I", MAX_REQUEST) + b"\xc1" * MAX_REQUEST
    high = 0
    for start in range(0, len(data), 4093):
        assert decoder.feed(data[start : start + 4093]) in ([], [failure(raw_frame(b"\xc1"))])
        high = max(high, decoder.buffered)
    assert high <= HEADER + MAX_REQUEST
    assert decoder.buffered == 0
    # One huge feed of many frames does not grow the buffer either.
    decoder = RequestDecoder()
    many = encode_request("status", None, 1) * 5000 + b"\0\0"
    out = decoder.feed(many)
    assert out == [StatusRequest(1)] * 5000 and decoder.buffered == 2


def test_request_too_large_to_encode() -> None:
    # The daemon's limit is the client's: encode_request never sends what is refused.
    with pytest.raises(ControlError, match="the limit is 65536"):
        encode_request("publish", {"topic": "t", "value": 1.0, "x": b"x" * MAX_REQUEST})


MIXED_STREAM = (
    encode_request("status", None, 1)
    + encode_request("publish", {"topic": "t", "value": [1.0, 2.0], "ttl": 1.0}, 2)
    + request("nope", id=3)
    + raw_frame(b"\xc1")
    + request("get", {"topic": ""}, id=4)
    + frame({"v": 2, "id": 5})
    + encode_request("watch", {"pattern": "*", "raw": True}, 6)
    + encode_request("peers", None, 7)
)


def test_mixed_stream() -> None:
    out = feed_requests([MIXED_STREAM])
    assert [type(x).__name__ for x in out] == [
        "StatusRequest",
        "PublishRequest",
        "ControlFailure",
        "ControlFailure",
        "ControlFailure",
        "ControlFailure",
        "WatchRequest",
        "PeersRequest",
    ]
    assert [x.code for x in out if isinstance(x, ControlFailure)] == [
        ErrorCode.UNKNOWN_OP,
        ErrorCode.MALFORMED,
        ErrorCode.BAD_ARGUMENT,
        ErrorCode.UNSUPPORTED_VERSION,
    ]


STREAMS = [
    MIXED_STREAM,
    MIXED_STREAM + b"\0\0\0\0" + MIXED_STREAM,
    MIXED_STREAM + struct.pack(">I", MAX_REQUEST + 1) + MIXED_STREAM,
    MIXED_STREAM[:-3],
]


@pytest.mark.parametrize("stream", STREAMS)
def test_whole_and_byte_by_byte_agree(stream: bytes) -> None:
    whole = feed_requests([stream])
    assert feed_requests([stream[i : i + 1] for i in range(len(stream))]) == whole
    assert feed_requests([b"", stream, b""]) == whole


@given(st.sampled_from(STREAMS), st.lists(st.integers(0, len(STREAMS[1]))))
def test_random_splits_agree(stream: bytes, cuts: list[int]) -> None:
    cuts = [c for c in cuts if c <= len(stream)]
    assert feed_requests(pieces(stream, cuts)) == feed_requests([stream])


REPLY_STREAM = (
    encode_reply(1, {"a": [1, 2]})
    + encode_error(2, ErrorCode.NOT_FOUND, "get: topic 'x' is not known")
    + encode_event(3, {"topic": "x"})
    + encode_reply(3, {"ended": "closed"})
)


@given(st.lists(st.integers(0, len(REPLY_STREAM) + 8)))
def test_reply_random_splits_agree(cuts: list[int]) -> None:
    for stream in (REPLY_STREAM, REPLY_STREAM + b"\0\0\0\0", REPLY_STREAM + raw_frame(b"\x01")):
        good = [c for c in cuts if c <= len(stream)]
        assert feed_replies(pieces(stream, good)) == feed_replies([stream])


# -- encoders: our own misuse -----------------------------------------------------


@pytest.mark.parametrize("id", [-1, 2**32, 1.0, True, None, "1"])
def test_bad_ids_are_refused(id: Any) -> None:
    encoders: list[Callable[[], bytes]] = [
        lambda: encode_request("status", None, id),
        lambda: encode_reply(id, None),
        lambda: encode_error(id, "busy", "x"),
        lambda: encode_event(id, {}),
    ]
    for encode in encoders:
        with pytest.raises(ControlError, match=r"^id .* is not an int 0\.\.4294967295$"):
            encode()


def test_encode_request_misuse() -> None:
    with pytest.raises(ControlError, match="unknown-op: op 'restart' is not an op"):
        encode_request("restart")
    with pytest.raises(ControlError, match="op 1 is a int; give a str"):
        encode_request(1)  # type: ignore[arg-type]
    with pytest.raises(ControlError, match=r"args \[\] is a list; give a dict"):
        encode_request("status", [])  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="request is not plain data"):
        encode_request("get", {"topic": object()})
    with pytest.raises(ControlError, match=r"malformed: .*map key"):
        encode_request("get", {1: "t"})  # type: ignore[dict-item]


def test_encode_request_unchecked() -> None:
    # check=False sends what the daemon will refuse, to test the daemon.
    assert failure(encode_request("restart", None, 5, check=False)).code == ErrorCode.UNKNOWN_OP
    data = encode_request("get", {"topic": 1}, 5, check=False)
    assert failure(data).code == ErrorCode.BAD_ARGUMENT
    with pytest.raises(ControlError):
        encode_request("status", None, -1, check=False)


@pytest.mark.parametrize(
    ("result", "words"),
    [
        (object(), "reply is not plain data"),
        ({1, 2}, "reply is not plain data"),
        ("\ud800", "reply is not plain data"),
        (2**64, "reply is not plain data"),
        ({1: "x"}, "would not decode: .*map key"),
        (b"x" * MAX_REPLY, f"the limit is {MAX_REPLY}"),
    ],
)
def test_encode_reply_misuse(result: Any, words: str) -> None:
    with pytest.raises(ControlError, match=words):
        encode_reply(1, result)


def test_result_depth_limit() -> None:
    def nest(depth: int) -> Any:
        value: Any = 0
        for _ in range(depth):
            value = [value]
        return value

    # The reply map is depth 1, so a result may nest MAX_DEPTH - 1 deep.
    good = nest(MAX_DEPTH - 1)
    assert feed_replies([encode_reply(1, good)])[0] == [Reply(1, True, good, None, None)]
    with pytest.raises(ControlError, match=f"nest more than {MAX_DEPTH} deep"):
        encode_reply(1, nest(MAX_DEPTH))
    with pytest.raises(ControlError):
        encode_reply(1, nest(10_000))


def test_encode_error_and_event_misuse() -> None:
    with pytest.raises(ControlError, match="code 'oops' is not an error code; the codes are bad"):
        encode_error(1, "oops", "x")
    with pytest.raises(ControlError, match="code 5 is not an error code"):
        encode_error(1, 5, "x")  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="message 5 is a int; give a str"):
        encode_error(1, "busy", 5)  # type: ignore[arg-type]
    with pytest.raises(ControlError, match=r"event \[\] is a list; give a dict"):
        encode_event(1, [])  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="event is not plain data"):
        encode_event(1, {"x": object()})


# -- the client's errors ----------------------------------------------------------

BAD_REPLIES: list[tuple[bytes, str]] = [
    (raw_frame(b"\xc1"), "reply is not msgpack"),
    (frame([1]), "reply is a msgpack array, not a map"),
    (frame({"v": 2, "id": 1, "ok": True, "result": None}), "reply has protocol version 2"),
    (frame({"id": 1, "ok": True, "result": None}), "reply has protocol version None"),
    (frame({"v": 1, "id": -1, "ok": True, "result": None}), "reply field id -1"),
    (frame({"v": 1, "ok": True, "result": None}), "reply field id None"),
    (frame({"v": 1, "id": 1, "ok": 1, "result": None}), "reply field ok 1 is not a bool"),
    (frame({"v": 1, "id": 1, "ok": True}), "it must have id, ok, result, v"),
    (frame({"v": 1, "id": 1, "ok": True, "result": 1, "x": 1}), "has fields id, ok, result"),
    (frame({"v": 1, "id": 1, "ok": False, "result": 1}), "it must have error, id, ok, v"),
    (frame({"v": 1, "id": 1, "ok": False, "error": "x"}), "reply field error 'x'"),
    (frame({"v": 1, "id": 1, "ok": False, "error": {"code": "x", "message": ""}}), "code 'x'"),
    (frame({"v": 1, "id": 1, "ok": False, "error": {"code": "busy"}}), "message None"),
    (frame({"v": 1, "id": 1, "event": []}), "event [] is a msgpack array"),
    (frame({"v": 1, "id": 1, "event": {}, "ok": True}), "an event has event, id, v"),
    (b"\0\0\0\0", "reply length 0 is not in 1..1048576"),
    (struct.pack(">I", MAX_REPLY + 1), "reply length 1048577 is not in 1..1048576"),
]


@pytest.mark.parametrize(("data", "words"), BAD_REPLIES)
def test_bad_replies_raise(data: bytes, words: str) -> None:
    decoder = ReplyDecoder()
    good = encode_reply(1, "fine")
    with pytest.raises(ControlProtocolError) as info:
        decoder.feed(good + data + good)
    assert words in str(info.value)
    assert info.value.decoded == (Reply(1, True, "fine", None, None),)
    # It stays broken.
    with pytest.raises(ControlProtocolError, match="the stream broke earlier"):
        decoder.feed(good)


def test_error_replies_may_carry_more() -> None:
    error = {"code": "unsupported-version", "message": "m", "supported": [1, 2]}
    out, problem = feed_replies([frame({"v": 1, "id": 1, "ok": False, "error": error})])
    assert problem is None
    assert out == [Reply(1, False, None, ErrorCode.UNSUPPORTED_VERSION, "m")]


def test_largest_reply_is_read() -> None:
    # The empty bin (c4 00) at the end grows to a bin32 that fills the body.
    pad = MAX_REPLY - (len(encode_reply(1, b"")) - HEADER - 2) - 5
    data = encode_reply(1, b"x" * pad)
    assert len(data) == HEADER + MAX_REPLY
    decoder = ReplyDecoder()
    assert decoder.feed(data[:-1]) == [] and decoder.buffered == MAX_REPLY - 1
    assert decoder.feed(data[-1:]) == [Reply(1, True, b"x" * pad, None, None)]


# -- bounded memory ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\xdd\xff\xff\xff\xff" + b"\x00" * 100,  # array32 claiming 2^32-1 items
        b"\xdf\xff\xff\xff\xff" + b"\x00" * 100,  # map32 claiming 2^32-1 pairs
        b"\xdc\xff\xff" * 1000,  # nested array16s, each claiming 65535 items
        b"\x91" * (MAX_DEPTH + 1) + b"\x00",  # too deep
        b"\x91" * 60_000 + b"\x00",  # far too deep
        b"\xdb\xff\xff\xff\xff" + b"x" * 100,  # str32 claiming 4 GiB
        b"\xc6\xff\xff\xff\xff",  # bin32 claiming 4 GiB
    ],
)
def test_allocation_bombs_are_malformed(body: bytes) -> None:
    result = failure(raw_frame(body))
    assert result.code == ErrorCode.MALFORMED and not result.fatal
    with pytest.raises(ControlProtocolError):
        ReplyDecoder().feed(raw_frame(body))


def test_deepest_request_is_read() -> None:
    value: Any = 1.0
    for _ in range(MAX_DEPTH - 2):  # the request map and args map take two levels
        value = [value]
    result = failure(request("publish", {"topic": "t", "value": value}))
    assert result.code == ErrorCode.BAD_ARGUMENT  # reached the arguments
    deeper = failure(request("publish", {"topic": "t", "value": [value]}))
    assert deeper.code == ErrorCode.MALFORMED
    assert f"nest more than {MAX_DEPTH} deep" in deeper.message


# -- fuzz -----------------------------------------------------------------------


def check_outcomes(out: list[Outcome]) -> None:
    """Only documented outcomes: requests, and failures with at most one fatal, last."""
    for index, item in enumerate(out):
        assert isinstance(item, (*get_args(Request), ControlFailure))
        if isinstance(item, ControlFailure):
            assert type(item.code) is ErrorCode
            assert item.code in {
                ErrorCode.MALFORMED,
                ErrorCode.TOO_LARGE,
                ErrorCode.UNSUPPORTED_VERSION,
                ErrorCode.UNKNOWN_OP,
                ErrorCode.BAD_ARGUMENT,
            }
            assert 0 <= item.id <= MAX_U32
            assert isinstance(item.message, str) and len(item.message) < 2000
            assert not item.fatal or index == len(out) - 1
            # Every failure can be answered.
            assert encode_error(item.id, item.code, item.message)


def fuzz_both(data: bytes) -> int:
    """Feed ``data`` to both decoders; how many requests and failures the daemon's gave.

    The outcomes are checked (check_outcomes); the client's decoder raises
    nothing but ControlProtocolError (caught in feed_replies).
    """
    outcomes = feed_requests([data])
    check_outcomes(outcomes)
    feed_replies([data])
    return len(outcomes)


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    # Each outcome but a final fatal one takes a 4-byte length and a body.
    assert fuzz_both(data) <= len(data) // 5 + 1
    # One frame holds at most one message: one request, or one failure.
    assert fuzz_both(raw_frame(data)) <= 1


VALID = [encode_request(op, args, 7) for op, args, _ in ROUND_TRIPS] + [
    encode_reply(1, {"a": [1, 2.0, "x", b"y", None, True]}),
    encode_error(2, "busy", "later"),
    encode_event(3, {"topic": "t"}),
]


@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_fuzz_mutated_frames(data: bytes, edits: list[tuple[int, int]]) -> None:
    mutated = bytearray(data)
    for position, byte in edits:
        if position < len(mutated):
            mutated[position] = byte
    # Each outcome but a final fatal one takes a 4-byte length and a body.
    for data in (bytes(mutated), bytes(mutated[: len(mutated) // 2])):
        assert fuzz_both(data) <= len(data) // 5 + 1


msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.sampled_from(["v", "id", "op", "args", "publish", "get", "watch", "topic", "$x"])
)
msgpack_objects = st.recursive(
    msgpack_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(["v", "id", "op", "args", "topic", "value", "pattern", "raw", "x"])
            | st.text(max_size=5),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(msgpack_objects)
def test_fuzz_msgpack_objects(obj: Any) -> None:
    assert fuzz_both(frame(obj)) == 1  # a well-framed body: one request or one failure


@given(
    st.sampled_from([op.value for op in ControlOp] + ["x"]),
    st.dictionaries(
        st.sampled_from(
            [
                "topic",
                "value",
                "confidence",
                "half_life",
                "ttl",
                "qos",
                "pattern",
                "raw",
                "path",
                "window",
                "y",
            ]
        ),
        msgpack_objects,
        max_size=6,
    ),
    st.integers(0, MAX_U32),
)
def test_fuzz_requests(op: str, args: dict[str, Any], id: int) -> None:
    data = frame({"v": 1, "id": id, "op": op, "args": args})
    out = feed_requests([data])
    check_outcomes(out)
    assert len(out) == 1 and out[0].id == id
    # The client accepts exactly what the daemon accepts, and gives the same bytes.
    try:
        encoded = encode_request(op, args, id)
    except ControlError:
        assert isinstance(out[0], ControlFailure)
    else:
        assert not isinstance(out[0], ControlFailure)
        assert feed_requests([encoded]) == out


def test_fuzz_seeded_mutations() -> None:
    rng = random.Random(20240601)
    stream = MIXED_STREAM + REPLY_STREAM
    for _ in range(3000):
        data = bytearray(stream)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        chunk = bytes(data[rng.randrange(len(data)) :])
        whole = feed_requests([chunk])
        check_outcomes(whole)
        cuts = [rng.randrange(len(chunk) + 1) for _ in range(rng.randint(0, 10))]
        assert feed_requests(pieces(chunk, cuts)) == whole
        assert feed_replies(pieces(chunk, cuts)) == feed_replies([chunk])


@pytest.mark.parametrize(
    ("signals", "words"),
    [
        ([], "not an array of 1..1024 signals"),
        ("x", "not an array of 1..1024 signals"),
        ([{"topic": "a", "value": 1.0}] * 1025, "not an array of 1..1024 signals"),
        ([{"topic": "a", "value": 1.0}, 3], "signals[1] is 3, not a map"),
        (
            [{"topic": "a", "value": 1.0, "colour": 1}],
            "signals[0] has unknown argument(s) 'colour'",
        ),
        ([{"value": 1.0}], "signals[0] argument topic is missing"),
        (
            [{"topic": "a", "value": 1.0}, {"topic": "$hb", "value": 1.0}],
            "signals[1] argument topic",
        ),
        ([{"topic": "a", "value": float("nan")}], "signals[0]"),
        ([{"topic": "a", "value": 1.0, "qos": "urgent"}], "signals[0] argument qos 'urgent'"),
    ],
)
def test_publish_many_refuses_the_whole_batch_naming_the_signal(
    signals: object, words: str
) -> None:
    result = failure(request("publish-many", {"signals": signals}))
    assert result.code == ErrorCode.BAD_ARGUMENT
    assert result.message.startswith("publish-many: ")
    assert words in result.message
