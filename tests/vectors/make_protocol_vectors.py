"""Generate ``protocol.json``, the test vectors that pin ``docs/PROTOCOL.md``.

Run by hand from the repository root; the output is committed, and rerunning
must reproduce it byte for byte (``tests/test_protocol_vectors.py`` checks
that, by calling :func:`build` in-process)::

    python tests/vectors/make_protocol_vectors.py

Where the bytes come from, and why they can be trusted beyond "our encoder
said so": every frame is built twice and the two must agree before anything is
written.

* By cloudkernel itself: ``pack_header``, ``encode_signal``, ``PayloadBuilder``
  and ``Sender`` with fixed keys, node ids, epochs, signals and clocks.
* From the text of PROTOCOL.md alone, by the ``spec_*`` functions below, which
  import nothing of cloudkernel but the pure-Python reference erasure code
  (whose own vectors are ``erasure_code.json``): headers are written field by
  field at the offsets of the section 1 table; signals are msgpack-encoded by
  a hand-written encoder of the few msgpack forms section 3 needs (and
  checked with ``msgpack.unpackb``); the key id, the frame key and every tag
  come from ``hashlib.blake2b`` and ``cryptography``'s ChaCha20Poly1305 as
  section 4 says (ChaCha20Poly1305 itself checked against RFC 8439 section
  2.8.2); repair bodies are the parity of the section 2 symbols
  ``u16(len(D_i)) || D_i || 0...``; byte-level RS (section 7) comes from the
  ``reedsolo`` package.

The receiver cases feed those frames (and hand-sealed and mutated ones) to a
fresh ``Receiver``; the outcome of every step is stated by hand here
(``_CASES``) and checked against what the receiver does before its full events
are recorded.

The test imports the ``spec_*`` functions and the JSON helpers from here, so
that the independent cross-checks run on every test run, not only when the
file is regenerated.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# msgpack ships no type hints: what it returns is Any, annotated where it leaves.
import msgpack  # type: ignore[import-untyped]
import reedsolo
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from cloudkernel.core import _fec_ref
from cloudkernel.core.auth import KeyRing, SwarmKey
from cloudkernel.core.events import Event, PacketDropped, SenderRestarted, SignalsReceived
from cloudkernel.core.receiver import Receiver, ReceiverConfig
from cloudkernel.core.redundancy import RedundancyPolicy
from cloudkernel.core.sender import ClassConfig, Sender, SenderConfig
from cloudkernel.core.signals import QoS, Signal, make_signal

OUTPUT = Path(__file__).with_name("protocol.json")

Json = dict[str, Any]

# ---------------------------------------------------------------------------
# Fixed inputs
# ---------------------------------------------------------------------------

#: the swarm keys, by name
SECRETS: dict[str, bytes] = {
    "A": bytes(range(32)),
    "B": bytes(range(32, 64)),
    "C": bytes([0xFF]) * 32,
}
_SECRET_TEXT = {"A": "bytes 0..31", "B": "bytes 32..63", "C": "32 bytes 0xff"}
#: the node id of every receiver below, unless a case says otherwise
RECEIVER_ID = 0x01020304

# ---------------------------------------------------------------------------
# PROTOCOL.md, written down independently of cloudkernel
# ---------------------------------------------------------------------------

#: Section 1: (offset, size, field).  The reserved fields are named apart.
HEADER_TABLE: tuple[tuple[int, int, str], ...] = (
    (0, 2, "magic"),
    (2, 1, "version"),
    (3, 1, "flags"),
    (4, 1, "key_id"),
    (5, 1, "reserved5"),
    (6, 2, "length"),
    (8, 4, "sender"),
    (12, 4, "epoch"),
    (16, 4, "seq"),
    (20, 4, "block"),
    (24, 1, "k"),
    (25, 1, "m"),
    (26, 1, "index"),
    (27, 1, "reserved27"),
)
#: the fields a caller gives; the others default to these fixed values
HEADER_FIXED = {"magic": 0x434B, "version": 1, "reserved5": 0, "reserved27": 0}
HEADER_FIELDS = tuple(name for _, _, name in HEADER_TABLE if name not in HEADER_FIXED)
HEADER_SIZE = 28
TAG_SIZE = 16
QOS_NAMES = ("critical", "normal", "bulk")

_offset = 0
for _start, _size, _name in HEADER_TABLE:
    assert _start == _offset, f"section 1 table has a gap before {_name}"
    _offset += _size
assert _offset == HEADER_SIZE


def spec_flags(qos: int, *, encrypted: bool = False, repair: bool = False) -> int:
    """Section 1: bit 0 ENCRYPTED, bit 1 REPAIR, bits 2-3 the QoS class."""
    return (1 if encrypted else 0) | (2 if repair else 0) | (qos << 2)


def spec_header(fields: Mapping[str, int], **raw: int) -> bytes:
    """The 28 header bytes: every field big-endian at its section 1 offset.

    ``raw`` overrides the fixed fields (magic, version, reserved5, reserved27)
    to build broken headers.
    """
    values = {**HEADER_FIXED, **raw, **fields}
    out = bytearray(HEADER_SIZE)
    for offset, size, name in HEADER_TABLE:
        out[offset : offset + size] = values[name].to_bytes(size, "big")
    return bytes(out)


def spec_header_fields(frame: bytes) -> dict[str, int]:
    """The caller-given fields of a header, read back at the section 1 offsets."""
    return {
        name: int.from_bytes(frame[offset : offset + size], "big")
        for offset, size, name in HEADER_TABLE
        if name in HEADER_FIELDS
    }


def spec_key_id(secret: bytes) -> int:
    """Section 4: byte 0 of BLAKE2b-256(key = swarm key, "cloudkernel key id v1")."""
    return hashlib.blake2b(b"cloudkernel key id v1", key=secret, digest_size=32).digest()[0]


def spec_frame_key(secret: bytes) -> bytes:
    """Section 4: BLAKE2b-256(key = swarm key, "cloudkernel frame key v1")."""
    return hashlib.blake2b(b"cloudkernel frame key v1", key=secret, digest_size=32).digest()


def spec_seal(secret: bytes, header: bytes, payload: bytes, encrypted: bool) -> bytes:
    """Section 4: the whole frame, header || body || tag, sealed under ``secret``."""
    aead = ChaCha20Poly1305(spec_frame_key(secret))
    nonce = header[8:20]
    if encrypted:
        return header + aead.encrypt(nonce, payload, header)
    return header + payload + aead.encrypt(nonce, b"", header + payload)


def spec_open(secret: bytes, frame: bytes) -> bytes:
    """Section 4: the plaintext body of a frame; raises ``InvalidTag`` if it does not verify."""
    aead = ChaCha20Poly1305(spec_frame_key(secret))
    header, nonce = frame[:HEADER_SIZE], frame[8:20]
    if frame[3] & 1:
        plaintext: bytes = aead.decrypt(nonce, frame[HEADER_SIZE:], header)
        return plaintext
    aead.decrypt(nonce, frame[-TAG_SIZE:], frame[:-TAG_SIZE])
    return frame[HEADER_SIZE:-TAG_SIZE]


def spec_msgpack(obj: object) -> bytes:
    """The msgpack forms a cloudkernel sender writes (section 3), by the msgpack spec.

    nil; non-negative ints in their shortest form; floats as float64; str and
    bin with the shortest length header; arrays (lists or tuples) likewise.
    """
    if obj is None:
        return b"\xc0"
    if isinstance(obj, bool):
        raise TypeError("no bools in a payload")
    if isinstance(obj, int):
        if obj < 0:
            raise ValueError("no negative ints in a payload")
        if obj < 0x80:
            return bytes([obj])  # positive fixint
        for prefix, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if obj < 1 << (8 * size):
                return bytes([prefix]) + obj.to_bytes(size, "big")
        raise ValueError("int too large")
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)  # float 64, IEEE 754 big-endian
    if isinstance(obj, str):
        data = obj.encode("utf-8")
        if len(data) < 32:
            return bytes([0xA0 | len(data)]) + data  # fixstr
        return _sized(data, ((0xD9, 1), (0xDA, 2), (0xDB, 4)))
    if isinstance(obj, bytes):
        return _sized(obj, ((0xC4, 1), (0xC5, 2), (0xC6, 4)))
    if isinstance(obj, list | tuple):
        body = b"".join(spec_msgpack(item) for item in obj)
        if len(obj) < 16:
            return bytes([0x90 | len(obj)]) + body  # fixarray
        for prefix, size in ((0xDC, 2), (0xDD, 4)):
            if len(obj) < 1 << (8 * size):
                return bytes([prefix]) + len(obj).to_bytes(size, "big") + body
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _sized(data: bytes, forms: Iterable[tuple[int, int]]) -> bytes:
    for prefix, size in forms:
        if len(data) < 1 << (8 * size):
            return bytes([prefix]) + len(data).to_bytes(size, "big") + data
    raise ValueError("too long")


def spec_symbols(frames: Sequence[bytes]) -> list[bytes]:
    """Section 2: S_i = u16(len(D_i)) || D_i || zeros, to L = 2 + max(len(D_i))."""
    length = 2 + max(len(frame) for frame in frames)
    return [
        len(frame).to_bytes(2, "big") + frame + bytes(length - 2 - len(frame)) for frame in frames
    ]


def spec_parity(frames: Sequence[bytes], m: int) -> list[bytes]:
    """Section 2: the bodies of the m repair frames of a block of source frames D_i."""
    return _fec_ref.ErasureCode(len(frames), m).encode(spec_symbols(frames))


def spec_rs(frame: bytes, nsym: int) -> bytes:
    """Section 7: the datagram of a frame under byte-level RS, by the reedsolo package."""
    return bytes(reedsolo.RSCodec(nsym).encode(frame))


def check_chacha20poly1305() -> None:
    """``cryptography``'s ChaCha20Poly1305 is RFC 8439's: the AEAD vector of its section 2.8.2."""
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
        b"for the future, sunscreen would be it."
    )
    sealed = ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    assert sealed[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert sealed[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"


# ---------------------------------------------------------------------------
# Signals as JSON
# ---------------------------------------------------------------------------
#
# A signal is {"topic", "value", "confidence", "half_life_ms", "ttl_ms",
# "age_ms", "source", "seq"} with "value" one of {"float": x},
# {"category": n}, {"vector": [x, ...]} or {"bytes": hex}: the wire values of
# section 3, with lifetimes and age in whole milliseconds.


def value_from_json(value: Mapping[str, Any]) -> float | int | tuple[float, ...] | bytes:
    ((kind, item),) = value.items()
    if kind == "float":
        return float(item)
    if kind == "category":
        return int(item)
    if kind == "vector":
        return tuple(float(x) for x in item)
    if kind == "bytes":
        return bytes.fromhex(item)
    raise ValueError(f"unknown value kind {kind!r}")


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def signal_from_json(signal: Mapping[str, Any], qos: str = "normal") -> Signal:
    """The :class:`Signal` a caller would make for these wire values."""
    return make_signal(
        signal["topic"],
        value_from_json(signal["value"]),
        confidence=signal["confidence"],
        half_life=_seconds(signal["half_life_ms"]),
        ttl=_seconds(signal["ttl_ms"]),
        qos=qos,
        source=signal["source"],
        seq=signal["seq"],
        age=signal["age_ms"] / 1000,
    )


def decoded_signal(signal: Mapping[str, Any], qos: str) -> Signal:
    """The :class:`Signal` a receiver decodes from these wire values (section 3)."""
    return Signal(
        signal["topic"],
        value_from_json(signal["value"]),
        signal["confidence"],
        _seconds(signal["half_life_ms"]),
        _seconds(signal["ttl_ms"]),
        QoS[qos.upper()],
        signal["source"],
        signal["seq"],
        signal["age_ms"] / 1000,
    )


def wire_array(signal: Mapping[str, Any]) -> list[Any]:
    """The eight items of section 3, as ``msgpack.unpackb`` returns them."""
    value = value_from_json(signal["value"])
    return [
        signal["topic"],
        list(value) if isinstance(value, tuple) else value,
        signal["confidence"],
        signal["half_life_ms"],
        signal["ttl_ms"],
        signal["age_ms"],
        signal["source"],
        signal["seq"],
    ]


def _signal(
    topic: str,
    value: Json,
    *,
    confidence: float = 1.0,
    half_life_ms: int | None = None,
    ttl_ms: int | None = None,
    age_ms: int = 0,
    source: int = 0,
    seq: int = 0,
) -> Json:
    return {
        "topic": topic,
        "value": value,
        "confidence": confidence,
        "half_life_ms": half_life_ms,
        "ttl_ms": ttl_ms,
        "age_ms": age_ms,
        "source": source,
        "seq": seq,
    }


# ---------------------------------------------------------------------------
# Sections: keys, headers, signals
# ---------------------------------------------------------------------------


def make_keys() -> list[Json]:
    out = []
    for name, secret in SECRETS.items():
        key_id, frame_key = spec_key_id(secret), spec_frame_key(secret)
        key = SwarmKey(secret)
        assert key.key_id == key_id
        out.append(
            {
                "name": name,
                "description": (
                    f"Section 4: swarm key {name} = {_SECRET_TEXT[name]}; "
                    "key_id = byte 0 of BLAKE2b-256(key = secret, "
                    "'cloudkernel key id v1'); frame_key = BLAKE2b-256(key = secret, "
                    "'cloudkernel frame key v1')"
                ),
                "secret": secret.hex(),
                "key_id": key_id,
                "frame_key": frame_key.hex(),
            }
        )
    ids = [key["key_id"] for key in out]
    assert len(set(ids)) == len(ids), "the vectors need distinct key ids"
    return out


def _fields(
    flags: int,
    key_id: int,
    length: int,
    sender: int,
    epoch: int,
    seq: int,
    block: int,
    k: int = 0,
    m: int = 0,
    index: int = 0,
) -> dict[str, int]:
    return {
        "flags": flags,
        "key_id": key_id,
        "length": length,
        "sender": sender,
        "epoch": epoch,
        "seq": seq,
        "block": block,
        "k": k,
        "m": m,
        "index": index,
    }


def make_headers() -> list[Json]:
    cases: list[tuple[str, dict[str, int]]] = [
        (
            "source frame, QoS critical, authenticated only",
            _fields(spec_flags(0), 0xBE, 5, 0x0A0B0C0D, 0x01020304, 0x11121314, 0x21222324),
        ),
        (
            "source frame, QoS normal, ENCRYPTED; index 127 is the highest a default "
            "receiver (max_block_sources 128) accepts",
            _fields(spec_flags(1, encrypted=True), 0x01, 0x0102, 1, 2, 3, 4, index=127),
        ),
        (
            "source frame, QoS bulk, all-ones numbers: every integer is big-endian",
            _fields(
                spec_flags(2), 0xFF, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, index=3
            ),
        ),
        (
            "repair frame, QoS normal: REPAIR, k = 3, m = 2, index 4 = k + 1",
            _fields(spec_flags(1, repair=True), 0xBE, 150, 0x1A2B3C4D, 7, 4, 0, 3, 2, 4),
        ),
        (
            "repair frame, QoS critical, the largest block a default receiver takes: "
            "k = 128, m = 127 (k + m = 255), index 254",
            _fields(spec_flags(0, repair=True), 0x00, 46, 0xDEADBEEF, 0, 0, 9, 128, 127, 254),
        ),
    ]
    out = []
    for description, fields in cases:
        header = spec_header(fields)
        assert struct.pack(
            ">2sBBBBHIIIIBBBB", b"CK", 1, fields["flags"], fields["key_id"], 0,
            fields["length"], fields["sender"], fields["epoch"], fields["seq"],
            fields["block"], fields["k"], fields["m"], fields["index"], 0,
        ) == header  # fmt: skip
        flags = fields["flags"]
        out.append(
            {
                "description": "Section 1. " + description,
                "fields": fields,
                "qos": QOS_NAMES[(flags >> 2) & 3],
                "encrypted": bool(flags & 1),
                "repair": bool(flags & 2),
                "hex": header.hex(),
            }
        )
    return out


def make_header_rejects() -> list[Json]:
    """Frames whose header breaks a rule: header, zero body of the length field, zero tag."""
    good = _fields(spec_flags(1), 0xBE, 4, 0x0A0B0C0D, 1, 2, 3)
    repair = _fields(spec_flags(1, repair=True), 0xBE, 4, 0x0A0B0C0D, 1, 2, 3, 3, 2, 3)

    def frame(fields: Mapping[str, int], **raw: int) -> bytes:
        return spec_header(fields, **raw) + bytes(fields["length"] + TAG_SIZE)

    def with_(base: Mapping[str, int], **changes: int) -> dict[str, int]:
        return {**base, **changes}

    cases: list[tuple[str, bytes, str]] = [
        ("43 bytes: shorter than 44", frame(good)[:43], "malformed"),
        ("magic 'CJ'", frame(good, magic=0x434A), "malformed"),
        ("version 2", frame(good, version=2), "unsupported-version"),
        ("version 0", frame(good, version=0), "unsupported-version"),
        (
            "version 2 and a length field that disagrees: the version is checked first",
            frame(good, version=2)[:-1],
            "unsupported-version",
        ),
        (
            "bad magic and version 2: the magic is checked first",
            frame(good, magic=0x4B43, version=2),
            "malformed",
        ),
        ("length field 4, body 5 bytes", frame(good) + b"\x00", "malformed"),
        ("length field 4, body 3 bytes", frame(good)[:-1], "malformed"),
        ("flags bit 4 set", frame(with_(good, flags=good["flags"] | 0x10)), "malformed"),
        ("flags bit 7 set", frame(with_(good, flags=good["flags"] | 0x80)), "malformed"),
        ("reserved byte 5 is 1", frame(good, reserved5=1), "malformed"),
        ("reserved byte 27 is 0x80", frame(good, reserved27=0x80), "malformed"),
        ("QoS class 3", frame(with_(good, flags=spec_flags(3))), "malformed"),
        ("source frame with k = 1", frame(with_(good, k=1)), "malformed"),
        ("source frame with m = 1", frame(with_(good, m=1)), "malformed"),
        (
            "source frame with index 128 = max_block_sources",
            frame(with_(good, index=128)),
            "malformed",
        ),
        ("repair frame with k = 0", frame(with_(repair, k=0, index=0)), "malformed"),
        ("repair frame with m = 0", frame(with_(repair, m=0)), "malformed"),
        ("repair frame with index < k", frame(with_(repair, index=2)), "malformed"),
        ("repair frame with index = k + m", frame(with_(repair, index=5)), "malformed"),
        (
            "repair frame with k = 129 > max_block_sources",
            frame(with_(repair, k=129, m=1, index=129)),
            "malformed",
        ),
        (
            "repair frame with k + m = 256",
            frame(with_(repair, k=100, m=156, index=100)),
            "malformed",
        ),
    ]
    return [
        {"description": "Section 1 and 2 header rules: " + text, "hex": data.hex(), "reason": why}
        for text, data, why in cases
    ]


#: single signals of section 3: (description, signal)
_SIGNALS: list[tuple[str, Json]] = [
    (
        "float value, half-life only; fixstr topic, float64, small ints as positive fixint",
        _signal("arm/temp", {"float": 21.5}, confidence=0.875, half_life_ms=2000, seq=1,
                source=0x0A0B0C0D),
    ),
    (
        "category value, ttl only; uint8 age, uint32 source",
        _signal("door/open", {"category": 1}, ttl_ms=30_000, age_ms=200, source=0x0A0B0C0D,
                seq=0x80),
    ),
    (
        "category 2^32 - 1 (uint32), lifetimes of 86 400 000 ms (the limit, uint32), both "
        "half-life and ttl, seq 2^32 - 1",
        _signal("count", {"category": 0xFFFFFFFF}, half_life_ms=86_400_000, ttl_ms=86_400_000,
                age_ms=0xFFFFFFFF, source=0xFFFFFFFF, seq=0xFFFFFFFF),
    ),
    (
        "vector of 3 floats (fixarray of float64), both lifetimes of 1 ms (the lower limit)",
        _signal("pose", {"vector": [0.5, -1.25, 3.0]}, confidence=1.0, half_life_ms=1, ttl_ms=1,
                age_ms=65_535, source=1, seq=65_536),
    ),
    (
        "vector of 16 floats (array16), 0.1 as float64 3fb999999999999a",
        _signal("lidar/ranges", {"vector": [0.1 * i for i in range(16)]}, confidence=0.5,
                ttl_ms=100, source=2, seq=3),
    ),
    (
        "bytes value (bin8), UTF-8 topic of 32 bytes (str8), smallest confidence here",
        _signal("température/ñ/" + "x" * 16, {"bytes": bytes(range(64)).hex()},
                confidence=2.0**-30, half_life_ms=250, ttl_ms=1_000, age_ms=1_500,
                source=0x11223344, seq=77),
    ),
]  # fmt: skip


def make_signals() -> list[Json]:
    out = []
    for description, signal in _SIGNALS:
        encoded = spec_msgpack(wire_array(signal))
        assert msgpack.unpackb(encoded) == wire_array(signal)
        out.append({"description": "Section 3. " + description, "signal": signal,
                    "wire": _jsonable(wire_array(signal)), "hex": encoded.hex()})  # fmt: skip
    return out


def _jsonable(items: list[Any]) -> list[Any]:
    """A wire array for JSON: a bin value as {"bin": hex}."""
    return [{"bin": x.hex()} if isinstance(x, bytes) else x for x in items]


def make_payload(signals: list[Json]) -> Json:
    chosen = [0, 1, 3, 5]
    arrays = [wire_array(signals[i]["signal"]) for i in chosen]
    encoded = spec_msgpack(arrays)
    assert encoded == bytes([0x90 | len(chosen)]) + b"".join(
        bytes.fromhex(signals[i]["hex"]) for i in chosen
    )
    return {
        "description": (
            "Section 3: a payload is a msgpack array of signals: fixarray header 0x94, "
            "then the encodings of signals 0, 1, 3 and 5 above, in frame QoS class bulk"
        ),
        "signals": chosen,
        "qos": "bulk",
        "hex": encoded.hex(),
    }


# ---------------------------------------------------------------------------
# Senders: streams of frames
# ---------------------------------------------------------------------------


def _classes(**overrides: tuple[int, int]) -> Json:
    """Every class: default budget, k_max 8, fixed m 0; ``overrides`` (k_max, fixed m)."""
    budgets = {"critical": 0.002, "normal": 0.010, "bulk": 0.050}
    out: Json = {}
    for name in QOS_NAMES:
        k_max, fixed_m = overrides.get(name, (8, 0))
        out[name] = {"budget": budgets[name], "k_max": k_max, "fixed_m": fixed_m}
    return out


def _pub(qos: str, now: float, signal: Json) -> Json:
    return {"publish": signal, "qos": qos, "now": now}


#: The streams.  "layout" is stated by hand from sections 1-2: one entry per
#: datagram, in sending order: (qos, block, index, publishes carried) for a
#: source frame, (qos, block, index, k, m) for a repair frame.
_STREAMS: list[Json] = [
    {
        "name": "auth",
        "description": (
            "Sections 1-4: authenticated-only source frames of the three QoS classes.  A poll "
            "seals one frame per class with queued signals, in class order; each class has its "
            "own block (ids 0, 1, 2 in the order they open); the fourth frame is the second of "
            "normal's block 1 (index 1).  Signal 2 is relayed: it keeps its source and seq; the "
            "own ones are stamped with the node id and seqs 0, 1, 2, 3.  Fixed m = 0: no repairs."
        ),
        "node_id": 0x0A0B0C0D,
        "epoch": 5,
        "key": "A",
        "encrypt": False,
        "frame_rs_nsym": 0,
        "classes": _classes(),
        "steps": [
            _pub("critical", 100.0, _signal("arm/temp", {"float": 21.5}, ttl_ms=1000)),
            _pub("normal", 100.0, _signal("door/open", {"category": 1}, half_life_ms=30_000)),
            _pub("bulk", 100.0, _signal("cam/thumb", {"bytes": bytes(range(20)).hex()},
                                        confidence=0.5, half_life_ms=500, age_ms=1500,
                                        source=0x11223344, seq=77)),
            _pub("normal", 100.0, _signal("pose", {"vector": [0.5, -1.25, 3.0]},
                                          half_life_ms=2000, ttl_ms=250)),
            {"poll": 100.0},
            _pub("normal", 100.001, _signal("door/open", {"category": 0}, half_life_ms=30_000)),
            {"poll": 100.001},
            {"flush": 100.1},
        ],
        "layout": [
            ("critical", 0, 0, [0]),
            ("normal", 1, 0, [1, 3]),
            ("bulk", 2, 0, [2]),
            ("normal", 1, 1, [4]),
        ],
    },
    {
        "name": "restart",
        "description": (
            "Section 5: the node of stream auth after a restart, in epoch 6: sequence numbers, "
            "block ids and signal seqs start again at 0"
        ),
        "node_id": 0x0A0B0C0D,
        "epoch": 6,
        "key": "A",
        "encrypt": False,
        "frame_rs_nsym": 0,
        "classes": _classes(),
        "steps": [
            _pub("normal", 200.0, _signal("door/open", {"category": 1}, half_life_ms=30_000)),
            {"flush": 200.0},
        ],
        "layout": [("normal", 0, 0, [0])],
    },
    {
        "name": "fec",
        "description": (
            "Section 2: one whole FEC block of QoS normal with k_max = 3 and fixed m = 2: three "
            "source frames of unequal length (seqs 0-2, indices 0-2), then, as the third fills "
            "the block, two repair frames (seqs 3-4, indices 3-4, k = 3, m = 2) whose bodies are "
            "parity symbols 0 and 1 over S_i = u16(len(D_i)) || D_i || zeros"
        ),
        "node_id": 0x1A2B3C4D,
        "epoch": 7,
        "key": "A",
        "encrypt": False,
        "frame_rs_nsym": 0,
        "classes": _classes(normal=(3, 2)),
        "steps": [
            _pub("normal", 50.0, _signal("a", {"float": 1.0}, ttl_ms=500)),
            {"poll": 50.0},
            _pub("normal", 50.001, _signal("wheel/left", {"float": -0.25}, half_life_ms=100)),
            _pub("normal", 50.001, _signal("wheel/right", {"float": 0.25}, half_life_ms=100)),
            {"poll": 50.001},
            _pub("normal", 50.002, _signal("map/tile", {"bytes": bytes(range(100, 140)).hex()},
                                           confidence=0.75, ttl_ms=5_000, age_ms=3)),
            {"poll": 50.002},
        ],
        "layout": [
            ("normal", 0, 0, [0]),
            ("normal", 0, 1, [1, 2]),
            ("normal", 0, 2, [3]),
            ("normal", 0, 3, 3, 2),
            ("normal", 0, 4, 3, 2),
        ],
    },
    {
        "name": "encrypted",
        "description": (
            "Sections 2 and 4: encryption on, QoS critical, k_max = 2, fixed m = 1: two "
            "ENCRYPTED source frames (body || tag = AEAD(K, nonce, payload, aad = header)) and "
            "one repair frame, authenticated only, whose body is the parity of the two "
            "encrypted frames as sent"
        ),
        "node_id": 0x2A2B2C2D,
        "epoch": 1,
        "key": "A",
        "encrypt": True,
        "frame_rs_nsym": 0,
        "classes": _classes(critical=(2, 1)),
        "steps": [
            _pub("critical", 60.0, _signal("estop", {"category": 1}, ttl_ms=100)),
            {"poll": 60.0},
            _pub("critical", 60.0005, _signal("estop/reason", {"bytes": b"bumper".hex()},
                                              ttl_ms=100)),
            {"poll": 60.0005},
        ],
        "layout": [("critical", 0, 0, [0]), ("critical", 0, 1, [1]), ("critical", 0, 2, 2, 1)],
    },
    {
        "name": "other_key",
        "description": "Section 4: a source frame sealed with key B (another key id)",
        "node_id": 0x3A3B3C3D,
        "epoch": 1,
        "key": "B",
        "encrypt": False,
        "frame_rs_nsym": 0,
        "classes": _classes(),
        "steps": [
            _pub("normal", 70.0, _signal("battery", {"float": 0.5}, half_life_ms=60_000)),
            {"flush": 70.0},
        ],
        "layout": [("normal", 0, 0, [0])],
    },
    {
        "name": "rs",
        "description": (
            "Section 7: frame_rs_nsym = 16: the datagram is the frame in chunks of 239 bytes, "
            "each followed by 16 RS parity bytes (reedsolo-compatible); here one chunk"
        ),
        "node_id": 0x4A4B4C4D,
        "epoch": 1,
        "key": "A",
        "encrypt": False,
        "frame_rs_nsym": 16,
        "classes": _classes(),
        "steps": [
            _pub("bulk", 80.0, _signal("log", {"bytes": b"radio link".hex()}, ttl_ms=10_000)),
            {"flush": 80.0},
        ],
        "layout": [("bulk", 0, 0, [0])],
    },
]  # fmt: skip


def make_sender(stream: Mapping[str, Any]) -> Sender:
    """The :class:`Sender` a stream's parameters describe."""
    classes = {
        QoS[name.upper()]: ClassConfig(
            c["budget"], c["k_max"], RedundancyPolicy(fixed_m=c["fixed_m"])
        )
        for name, c in stream["classes"].items()
    }
    config = SenderConfig(
        encrypt=stream["encrypt"], frame_rs_nsym=stream["frame_rs_nsym"], classes=classes
    )
    keyring = KeyRing(SwarmKey(SECRETS[stream["key"]]))
    return Sender(stream["node_id"], stream["epoch"], keyring, config)


def run_sender(stream: Mapping[str, Any]) -> list[bytes]:
    """Every datagram the stream's steps make its sender send, in order."""
    sender = make_sender(stream)
    out: list[bytes] = []
    for step in stream["steps"]:
        if "publish" in step:
            sender.publish(signal_from_json(step["publish"], step["qos"]), step["now"])
        elif "poll" in step:
            out += sender.poll(step["poll"])
        else:
            out += sender.flush(step["flush"])
    return out


def stamped_signals(stream: Mapping[str, Any]) -> list[Json]:
    """The published signals as they go on the wire: own ones (source 0) stamped.

    Section 3: source is the publisher's node id and seq its sequence number of
    the signal; a sender numbers its own signals 0, 1, 2, ... per run.
    """
    out, own = [], 0
    for step in stream["steps"]:
        if "publish" in step:
            signal = dict(step["publish"])
            if signal["source"] == 0:
                signal["source"], signal["seq"] = stream["node_id"], own
                own += 1
            out.append(signal)
    return out


def spec_stream_frames(stream: Mapping[str, Any], layout: Sequence[Sequence[Any]]) -> list[Json]:
    """A stream's frames built from sections 1-4 and its hand-stated layout alone."""
    secret = SECRETS[stream["key"]]
    signals = stamped_signals(stream)
    frames: list[Json] = []
    blocks: dict[int, list[bytes]] = {}
    for seq, entry in enumerate(layout):
        qos, block, index = QOS_NAMES.index(entry[0]), entry[1], entry[2]
        common = {"key_id": spec_key_id(secret), "sender": stream["node_id"],
                  "epoch": stream["epoch"], "seq": seq, "block": block}  # fmt: skip
        if isinstance(entry[3], list):
            carried = entry[3]
            payload = spec_msgpack([wire_array(signals[i]) for i in carried])
            encrypted = bool(stream["encrypt"])
            fields = _fields(spec_flags(qos, encrypted=encrypted), length=len(payload),
                             index=index, **common)  # fmt: skip
            frame = spec_seal(secret, spec_header(fields), payload, encrypted)
            blocks.setdefault(block, []).append(frame)
            info: Json = {"signals": carried, "payload": payload.hex()}
        else:
            k, m = entry[3], entry[4]
            sources = blocks[block]
            assert len(sources) == k
            body = spec_parity(sources, m)[index - k]
            fields = _fields(spec_flags(qos, repair=True), length=len(body), k=k, m=m,
                             index=index, **common)  # fmt: skip
            frame = spec_seal(secret, spec_header(fields), body, False)
            info = {}
        nsym = stream["frame_rs_nsym"]
        datagram = spec_rs(frame, nsym) if nsym else frame
        entry_json: Json = {"name": f"{stream['name']}.{seq}", "header": fields, **info}
        if nsym:
            entry_json["frame"] = frame.hex()
        entry_json["hex"] = datagram.hex()
        frames.append(entry_json)
    return frames


def make_streams() -> list[Json]:
    out = []
    for template in _STREAMS:
        stream = {key: value for key, value in template.items() if key != "layout"}
        frames = spec_stream_frames(stream, template["layout"])
        produced = [d.hex() for d in run_sender(stream)]
        assert produced == [f["hex"] for f in frames], f"Sender disagrees on {stream['name']}"
        stream["signals_on_wire"] = stamped_signals(stream)
        stream["frames"] = frames
        out.append(stream)
    return out


# ---------------------------------------------------------------------------
# Hand-sealed and mutated frames
# ---------------------------------------------------------------------------

_REPLAY_NODE = 0x5A5B5C5D
_BAD_PAYLOAD_NODE = 0x6A6B6C6D


def make_crafted() -> list[Json]:
    """Frames sealed here, not by a Sender: replay-window edges and a bad payload."""

    def ping(node: int, seq: int) -> bytes:
        return spec_msgpack([wire_array(_signal("ping", {"category": 7}, ttl_ms=1000,
                                                source=node, seq=seq))])  # fmt: skip

    # confidence 1.0 (cb 3ff0000000000000) made 0.0: breaks 0 < confidence <= 1
    bad = ping(_BAD_PAYLOAD_NODE, 0).replace(b"\xcb\x3f\xf0" + bytes(6), b"\xcb" + bytes(8))
    assert msgpack.unpackb(bad)[0][2] == 0.0
    cases: list[tuple[str, str, int, int, bytes]] = [
        ("replay.2000", "sequence 2000: the window now holds 977..2000", _REPLAY_NODE, 2000,
         ping(_REPLAY_NODE, 2000)),
        ("replay.976", "sequence 976 = 2000 - 1024: older than the window", _REPLAY_NODE, 976,
         ping(_REPLAY_NODE, 976)),
        ("replay.977", "sequence 977 = 2000 - 1023: the oldest in the window", _REPLAY_NODE, 977,
         ping(_REPLAY_NODE, 977)),
        ("bad_payload", "an authentic frame whose one signal has confidence 0.0",
         _BAD_PAYLOAD_NODE, 0, bad),
    ]  # fmt: skip
    out = []
    for name, text, node, seq, payload in cases:
        # each its own block (block id = sequence), as a sender of single frames makes
        fields = _fields(spec_flags(1), spec_key_id(SECRETS["A"]), len(payload), node, 9, seq, seq)
        frame = spec_seal(SECRETS["A"], spec_header(fields), payload, False)
        out.append(
            {
                "name": name,
                "description": "Sections 3-5, sealed by hand with key A: " + text,
                "key": "A",
                "header": fields,
                "payload": payload.hex(),
                "hex": frame.hex(),
            }
        )
    return out


def apply_mutation(frame: bytes, mutation: Mapping[str, Any]) -> bytes:
    """``frame`` with ``mutation``: "xor" [[offset, mask], ...], then "truncate" / "append" n."""
    out = bytearray(frame)
    for offset, mask in mutation.get("xor", []):
        out[offset] ^= mask
    if "truncate" in mutation:
        del out[len(out) - mutation["truncate"] :]
    out += bytes(mutation.get("append", 0))
    return bytes(out)


def make_derived(frames: Mapping[str, bytes]) -> list[Json]:
    """Real frames with bits flipped, bytes cut or added."""
    auth0 = len(frames["auth.0"])
    step = len(frames["rs.0"]) // 9
    rs_spread = [[step * i, 0xA5] for i in range(9)]  # 9 wrong bytes, one chunk
    cases: list[tuple[str, str, str, Json]] = [
        ("auth.0~tag", "auth.0", "bit 0 of the last tag byte flipped",
         {"xor": [[auth0 - 1, 0x01]]}),
        ("auth.0~seq", "auth.0", "bit 0 of header byte 19 flipped: sequence 0 becomes 1, the "
         "nonce and the authenticated header change", {"xor": [[19, 0x01]]}),
        ("encrypted.0~body", "encrypted.0", "bit 7 of the first ciphertext byte flipped",
         {"xor": [[28, 0x80]]}),
        ("auth.0~key_id", "auth.0", "key id byte (4) 0xbe xor 0x01 = 0xbf, a key not held",
         {"xor": [[4, 0x01]]}),
        ("auth.0~version", "auth.0", "version byte 1 xor 3 = 2", {"xor": [[2, 0x03]]}),
        ("auth.0~magic", "auth.0", "magic 'CK' becomes 'BK'", {"xor": [[0, 0x01]]}),
        ("auth.0~flag4", "auth.0", "reserved flags bit 4 set", {"xor": [[3, 0x10]]}),
        ("auth.0~qos3", "auth.0", "QoS class 0 xor 3 = 3", {"xor": [[3, 0x0C]]}),
        ("auth.0~reserved5", "auth.0", "reserved byte 5 set to 1", {"xor": [[5, 0x01]]}),
        ("auth.0~reserved27", "auth.0", "reserved byte 27 set to 0x80", {"xor": [[27, 0x80]]}),
        ("auth.0+1", "auth.0", "one zero byte appended: length field disagrees",
         {"append": 1}),
        ("auth.0-1", "auth.0", "last byte cut: length field disagrees", {"truncate": 1}),
        ("auth.0-tag", "auth.0", "cut to 43 bytes", {"truncate": auth0 - 43}),
        ("auth.0+pad", "auth.0", "zeros appended to 1233 bytes, one more than max_datagram",
         {"append": 1233 - auth0}),
        ("rs.0~8", "rs.0", "8 bytes of the one RS chunk xor 0xa5: correctable (16 parity bytes)",
         {"xor": rs_spread[:8]}),
        ("rs.0~9", "rs.0", "9 bytes of the one RS chunk xor 0xa5: beyond correction",
         {"xor": rs_spread}),
    ]  # fmt: skip
    out = []
    for name, source, text, mutation in cases:
        out.append(
            {
                "name": name,
                "description": f"Sections 1, 4 and 7: {source} mutated: {text}",
                "from": source,
                **mutation,
                "hex": apply_mutation(frames[source], mutation).hex(),
            }
        )
    return out


# ---------------------------------------------------------------------------
# Receiver cases
# ---------------------------------------------------------------------------

#: (description, receiver, steps).  A step is ("feed", frame name, now, outcome)
#: or ("poll", None, now, outcome); an outcome is a list of event summaries:
#: "restarted", "signals <frame>", "recovered <frame>" or "drop <reason>[*count]".
_CASES: list[tuple[str, Json, list[tuple[str, str | None, float, list[str]]]]] = [
    (
        "Section 5: stream auth in order: the first frame introduces the sender",
        {},
        [
            ("feed", "auth.0", 1000.0, ["restarted", "signals auth.0"]),
            ("feed", "auth.1", 1000.001, ["signals auth.1"]),
            ("feed", "auth.2", 1000.002, ["signals auth.2"]),
            ("feed", "auth.3", 1000.003, ["signals auth.3"]),
        ],
    ),
    (
        "Section 5: the same frame twice is a duplicate",
        {},
        [
            ("feed", "auth.0", 1000.0, ["restarted", "signals auth.0"]),
            ("feed", "auth.0", 1000.001, ["drop duplicate"]),
        ],
    ),
    (
        "Section 5: a restart (epoch 5 -> 6) makes frames of epoch 5 stale",
        {},
        [
            ("feed", "auth.0", 1000.0, ["restarted", "signals auth.0"]),
            ("feed", "restart.0", 1000.001, ["restarted", "signals restart.0"]),
            ("feed", "auth.1", 1000.002, ["drop stale-epoch"]),
        ],
    ),
    (
        "Sections 4-5: a frame that does not verify is bad-tag and leaves no trace in the replay "
        "state: the genuine frame is delivered after it",
        {},
        [
            ("feed", "auth.0~tag", 1000.0, ["drop bad-tag"]),
            ("feed", "auth.0~seq", 1000.001, ["drop bad-tag"]),
            ("feed", "encrypted.0~body", 1000.002, ["drop bad-tag"]),
            ("feed", "auth.0", 1000.003, ["restarted", "signals auth.0"]),
        ],
    ),
    (
        "Section 4: a key id the ring does not hold is unknown-key",
        {},
        [
            ("feed", "other_key.0", 1000.0, ["drop unknown-key"]),
            ("feed", "auth.0~key_id", 1000.001, ["drop unknown-key"]),
        ],
    ),
    (
        "Section 4: a key installed as next is accepted on receive",
        {"next": "B"},
        [("feed", "other_key.0", 1000.0, ["restarted", "signals other_key.0"])],
    ),
    (
        "Section 1: another version is unsupported-version",
        {},
        [("feed", "auth.0~version", 1000.0, ["drop unsupported-version"])],
    ),
    (
        "Section 1: header rule breaches are malformed and the frame is not looked at further",
        {},
        [
            ("feed", "auth.0~magic", 1000.0, ["drop malformed"]),
            ("feed", "auth.0~flag4", 1000.0, ["drop malformed"]),
            ("feed", "auth.0~qos3", 1000.0, ["drop malformed"]),
            ("feed", "auth.0~reserved5", 1000.0, ["drop malformed"]),
            ("feed", "auth.0~reserved27", 1000.0, ["drop malformed"]),
            ("feed", "auth.0+1", 1000.0, ["drop malformed"]),
            ("feed", "auth.0-1", 1000.0, ["drop malformed"]),
            ("feed", "auth.0-tag", 1000.0, ["drop malformed"]),
            ("feed", "auth.0", 1000.0, ["restarted", "signals auth.0"]),
        ],
    ),
    (
        "Section 1: a datagram longer than max_datagram (1232) is too-large",
        {},
        [("feed", "auth.0+pad", 1000.0, ["drop too-large"])],
    ),
    (
        "Section 6: a receiver drops its own frames looped back",
        {"node_id": 0x0A0B0C0D},
        [("feed", "auth.0", 1000.0, ["drop own-frame"])],
    ),
    (
        "Section 2: source frame 1 lost; the first repair frame makes k = 3 frames held and it "
        "is rebuilt (recovered); the second repair is then unneeded and frame 1, late, a duplicate",
        {},
        [
            ("feed", "fec.0", 1000.0, ["restarted", "signals fec.0"]),
            ("feed", "fec.2", 1000.001, ["signals fec.2"]),
            ("feed", "fec.3", 1000.002, ["recovered fec.1"]),
            ("feed", "fec.4", 1000.003, ["drop repair-unneeded"]),
            ("feed", "fec.1", 1000.004, ["drop duplicate"]),
        ],
    ),
    (
        "Section 2: source frames 0 and 1 lost, rebuilt in index order from frame 2 and both "
        "repair frames",
        {},
        [
            ("feed", "fec.2", 1000.0, ["restarted", "signals fec.2"]),
            ("feed", "fec.3", 1000.001, []),
            ("feed", "fec.4", 1000.002, ["recovered fec.0", "recovered fec.1"]),
            ("feed", "fec.0", 1000.003, ["drop duplicate"]),
        ],
    ),
    (
        "Section 2: a whole block needs no repair frames",
        {},
        [
            ("feed", "fec.0", 1000.0, ["restarted", "signals fec.0"]),
            ("feed", "fec.1", 1000.001, ["signals fec.1"]),
            ("feed", "fec.2", 1000.002, ["signals fec.2"]),
            ("feed", "fec.3", 1000.003, ["drop repair-unneeded"]),
            ("feed", "fec.4", 1000.004, ["drop repair-unneeded"]),
        ],
    ),
    (
        "Sections 2 and 6: two of three source frames lost and one repair frame: the block "
        "times out (default block_timeout 0.5 s) counting the 2 lost frames",
        {},
        [
            ("feed", "fec.0", 1000.0, ["restarted", "signals fec.0"]),
            ("feed", "fec.3", 1000.001, []),
            ("poll", None, 1000.499, []),
            ("poll", None, 1000.5, ["drop block-timeout*2"]),
        ],
    ),
    (
        "Sections 2 and 4: an encrypted source frame rebuilt from the other one and the "
        "authenticated-only repair frame, then decrypted",
        {},
        [
            ("feed", "encrypted.1", 1000.0, ["restarted", "signals encrypted.1"]),
            ("feed", "encrypted.2", 1000.001, ["recovered encrypted.0"]),
        ],
    ),
    (
        "Section 5: the replay window holds the last 1024 sequence numbers",
        {},
        [
            ("feed", "replay.2000", 1000.0, ["restarted", "signals replay.2000"]),
            ("feed", "replay.976", 1000.001, ["drop replay"]),
            ("feed", "replay.977", 1000.002, ["signals replay.977"]),
            ("feed", "replay.977", 1000.003, ["drop duplicate"]),
        ],
    ),
    (
        "Section 3: a bad payload is dropped whole, but its frame counts as received",
        {},
        [
            ("feed", "bad_payload", 1000.0, ["restarted", "drop bad-payload"]),
            ("feed", "bad_payload", 1000.001, ["drop duplicate"]),
        ],
    ),
    (
        "Section 7: with frame_rs_nsym = 16, 9 wrong bytes in a chunk are uncorrectable, 8 are "
        "corrected (the frame is delivered), and the clean datagram is then a duplicate",
        {"frame_rs_nsym": 16},
        [
            ("feed", "rs.0~9", 1000.0, ["drop uncorrectable"]),
            ("feed", "rs.0~8", 1000.001, ["restarted", "signals rs.0"]),
            ("feed", "rs.0", 1000.002, ["drop duplicate"]),
        ],
    ),
]


def make_receiver(setup: Mapping[str, Any]) -> Receiver:
    """A fresh receiver: key A current (plus key ``next``), node id and byte RS as given."""
    keyring = KeyRing(SwarmKey(SECRETS[setup.get("current", "A")]))
    if "next" in setup:
        keyring.install_next(SwarmKey(SECRETS[setup["next"]]))
    config = ReceiverConfig(
        node_id=setup.get("node_id", RECEIVER_ID), frame_rs_nsym=setup.get("frame_rs_nsym", 0)
    )
    return Receiver(keyring, config)


def event_json(event: Event) -> Json:
    """An event as the vectors record it (a drop's free-text detail left out)."""
    if isinstance(event, SenderRestarted):
        return {"event": "restarted", "sender": event.sender, "old_epoch": event.old_epoch,
                "new_epoch": event.new_epoch}  # fmt: skip
    if isinstance(event, SignalsReceived):
        return {
            "event": "signals",
            "sender": event.sender,
            "epoch": event.epoch,
            "qos": event.qos.name.lower(),
            "recovered": event.recovered,
            "received_at": event.received_at,
            "signals": [[s.source, s.seq] for s in event.signals],
        }
    assert isinstance(event, PacketDropped)
    return {"event": "dropped", "reason": event.reason.value, "sender": event.sender,
            "count": event.count}  # fmt: skip


def run_case(case: Mapping[str, Any], frames: Mapping[str, bytes]) -> list[list[Json]]:
    """The events of every step of a receiver case, as JSON."""
    receiver = make_receiver(case["receiver"])
    out = []
    for step in case["steps"]:
        if "feed" in step:
            events = receiver.feed(frames[step["feed"]], step["now"])
        else:
            events = receiver.poll(step["poll"])
        out.append([event_json(e) for e in events])
    return out


_Delivery = tuple[int, int, tuple[tuple[int, int], ...]]


def _summary(event: Json, deliveries: Mapping[_Delivery, str]) -> str:
    if event["event"] == "restarted":
        return "restarted"
    if event["event"] == "dropped":
        count = event["count"]
        return f"drop {event['reason']}" + (f"*{count}" if count != 1 else "")
    key = (event["sender"], event["epoch"], tuple((s, q) for s, q in event["signals"]))
    return ("recovered " if event["recovered"] else "signals ") + deliveries[key]


def make_cases(streams: list[Json], crafted: list[Json], frames: Mapping[str, bytes]) -> list[Json]:
    # Which frame carried which signals: (sender, epoch, [(source, seq), ...]) -> frame name.
    deliveries: dict[_Delivery, str] = {}
    for stream in streams:
        wire = stream["signals_on_wire"]
        for frame in stream["frames"]:
            if "signals" in frame:
                pairs = tuple((wire[i]["source"], wire[i]["seq"]) for i in frame["signals"])
                deliveries[stream["node_id"], stream["epoch"], pairs] = frame["name"]
    for frame in crafted:
        arrays = msgpack.unpackb(bytes.fromhex(frame["payload"]))
        pairs = tuple((a[6], a[7]) for a in arrays)
        deliveries[frame["header"]["sender"], frame["header"]["epoch"], pairs] = frame["name"]
    out = []
    for description, setup, steps in _CASES:
        case: Json = {
            "description": description,
            "receiver": setup,
            "steps": [
                {"feed": name, "now": now} if kind == "feed" else {"poll": now}
                for kind, name, now, _ in steps
            ],
        }
        outcomes = run_case(case, frames)
        for (kind, name, now, want), events in zip(steps, outcomes, strict=True):
            got = [_summary(e, deliveries) for e in events]
            assert got == want, (description, kind, name, now, got, want)
            for event in events:
                if event["event"] == "signals":
                    assert event["received_at"] == now
        for step, events in zip(case["steps"], outcomes, strict=True):
            step["events"] = events
        out.append(case)
    return out


# ---------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------


def all_frames(document: Mapping[str, Any]) -> dict[str, bytes]:
    """Every named frame of a document: stream frames, crafted and derived ones."""
    frames = {f["name"]: bytes.fromhex(f["hex"]) for s in document["streams"] for f in s["frames"]}
    frames.update((f["name"], bytes.fromhex(f["hex"])) for f in document["crafted"])
    frames.update((f["name"], bytes.fromhex(f["hex"])) for f in document.get("derived", []))
    return frames


def build() -> Json:
    """The whole vector document; deterministic."""
    check_chacha20poly1305()
    signals = make_signals()
    document: Json = {
        "description": (
            "Test vectors of docs/PROTOCOL.md (wire protocol version 1), generated by "
            "tests/vectors/make_protocol_vectors.py and checked byte-exactly by "
            "tests/test_protocol_vectors.py.  Bytes are hex; times are seconds; lifetimes "
            "and ages of signals are whole milliseconds as on the wire.  Every frame was "
            "built both by cloudkernel and from the text of PROTOCOL.md alone (see the "
            "generator's docstring), and the two agreed."
        ),
        "keys": make_keys(),
        "headers": make_headers(),
        "header_rejects": make_header_rejects(),
        "signals": signals,
        "payload": make_payload(signals),
        "streams_description": (
            "Frames made by Sender(node_id, epoch, KeyRing(SwarmKey(key)), SenderConfig(encrypt, "
            "frame_rs_nsym, classes)) with each class ClassConfig(budget, k_max, "
            "RedundancyPolicy(fixed_m=fixed_m)), fed the steps in order: publish (a signal of "
            "the given qos at now), poll or flush at a time; 'hex' lists every datagram returned, "
            "in order.  A source frame lists the indices of the published signals it carries "
            "(signals_on_wire: as stamped) and its plaintext payload."
        ),
        "streams": make_streams(),
        "crafted": make_crafted(),
    }
    document["derived"] = make_derived(all_frames(document))
    document["receiver_cases_description"] = (
        "Each case feeds named frames to a fresh Receiver (key A current, plus key 'next' if "
        f"given; node_id {RECEIVER_ID:#010x} unless given; other settings default) at the given "
        "now, or polls it; 'events' are what each step returns, in order (sender None: the "
        "header was not readable)."
    )
    document["receiver_cases"] = make_cases(
        document["streams"], document["crafted"], all_frames(document)
    )
    return document


def render(document: Json) -> str:
    return json.dumps(document, indent=1, ensure_ascii=True) + "\n"


def main() -> None:
    OUTPUT.write_text(render(build()), encoding="ascii")


if __name__ == "__main__":
    main()
