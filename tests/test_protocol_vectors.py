"""The test vectors of ``docs/PROTOCOL.md`` (``tests/vectors/protocol.json``), checked byte-exactly.

Three kinds of check, so that neither the code nor the file can drift from the
document unnoticed:

* cloudkernel against the stored bytes: key derivation, ``pack_header`` and
  ``parse_header``, ``encode_signal``, ``PayloadBuilder`` and
  ``decode_payload``, every datagram a ``Sender`` makes from the stored
  inputs, and what a ``Receiver`` makes of the stored frames;
* the stored bytes against PROTOCOL.md written down independently of
  cloudkernel (the generator's ``spec_*`` functions: header fields at the
  table's offsets, a hand-written msgpack encoder, BLAKE2b and
  ChaCha20-Poly1305 straight from ``hashlib`` and ``cryptography``, parity
  from the pure-Python reference erasure code, byte RS from ``reedsolo``);
* the file against its generator, run in-process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# msgpack ships no type hints: what it returns is Any.
import msgpack  # type: ignore[import-untyped]
import pytest

from cloudkernel.core.auth import KeyRing, SwarmKey, derive_frame_key, derive_key_id
from cloudkernel.core.receiver import Receiver, ReceiverConfig
from cloudkernel.core.redundancy import RedundancyPolicy
from cloudkernel.core.sender import ClassConfig, Sender, SenderConfig
from cloudkernel.core.signals import PayloadBuilder, QoS, decode_payload, encode_signal
from cloudkernel.core.wire import Header, make_flags, pack_header, parse_header
from cloudkernel.errors import FrameError

# The generator lives next to the vectors; its spec_* functions are the independent checks.
sys.path.insert(0, str(Path(__file__).parent / "vectors"))

import make_protocol_vectors as gen

VECTOR_DIR = Path(__file__).parent / "vectors"
VECTORS = VECTOR_DIR / "protocol.json"
DOC: dict[str, Any] = json.loads(VECTORS.read_text(encoding="ascii"))
SECRETS = {key["name"]: bytes.fromhex(key["secret"]) for key in DOC["keys"]}
FRAMES = gen.all_frames(DOC)
MAX_BLOCK_SOURCES = 128  # the receiver default the vectors assume


def ids(items: list[dict[str, Any]], key: str = "description") -> list[str]:
    return [str(item[key]) for item in items]


def from_wire_json(items: list[Any]) -> list[Any]:
    """A stored wire array with its {"bin": hex} value back as bytes."""
    return [bytes.fromhex(x["bin"]) if isinstance(x, dict) else x for x in items]


# ---------------------------------------------------------------------------
# The file and its generator
# ---------------------------------------------------------------------------


def test_generator_reproduces_the_file() -> None:
    assert gen.render(gen.build()) == VECTORS.read_text(encoding="ascii")


def test_generator_secrets_are_the_stored_ones() -> None:
    assert gen.SECRETS == SECRETS


# ---------------------------------------------------------------------------
# Section 4: keys
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", DOC["keys"], ids=ids(DOC["keys"], "name"))
def test_key_derivation(key: dict[str, Any]) -> None:
    secret = bytes.fromhex(key["secret"])
    assert derive_key_id(secret) == key["key_id"] == gen.spec_key_id(secret)
    assert derive_frame_key(secret).hex() == key["frame_key"] == gen.spec_frame_key(secret).hex()
    assert SwarmKey(secret).key_id == key["key_id"]


def test_chacha20poly1305_is_rfc8439() -> None:
    gen.check_chacha20poly1305()


# ---------------------------------------------------------------------------
# Section 1: headers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", DOC["headers"], ids=ids(DOC["headers"]))
def test_header(vector: dict[str, Any]) -> None:
    fields: dict[str, int] = vector["fields"]
    header = bytes.fromhex(vector["hex"])
    assert len(header) == 28
    assert pack_header(**fields) == header
    assert gen.spec_header(fields) == header
    qos = QoS[vector["qos"].upper()]
    assert (
        make_flags(qos, encrypted=vector["encrypted"], repair=vector["repair"]) == fields["flags"]
    )

    frame = header + bytes(fields["length"] + 16)
    parsed = parse_header(frame, MAX_BLOCK_SOURCES)
    expected = {**fields, "position": fields["index"]}
    del expected["index"]
    assert parsed == Header(**expected)
    assert (parsed.qos, parsed.encrypted, parsed.repair) == (
        qos,
        vector["encrypted"],
        vector["repair"],
    )
    assert gen.spec_header_fields(frame) == fields


@pytest.mark.parametrize("vector", DOC["header_rejects"], ids=ids(DOC["header_rejects"]))
def test_header_reject(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["hex"])
    with pytest.raises(FrameError) as caught:
        parse_header(frame, MAX_BLOCK_SOURCES)
    assert caught.value.reason == vector["reason"]
    # A receiver drops it for that reason before reading anything else.
    events = gen.make_receiver({}).feed(frame, 0.0)
    assert [gen.event_json(e) for e in events] == [
        {"event": "dropped", "reason": vector["reason"], "sender": None, "count": 1}
    ]


# ---------------------------------------------------------------------------
# Section 3: signals and payloads
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", DOC["signals"], ids=ids(DOC["signals"]))
def test_signal_encoding(vector: dict[str, Any]) -> None:
    stored: dict[str, Any] = vector["signal"]
    encoded = bytes.fromhex(vector["hex"])
    wire = from_wire_json(vector["wire"])
    assert gen.wire_array(stored) == wire
    # cloudkernel
    signal = gen.signal_from_json(stored)
    assert encode_signal(signal, stored["age_ms"]) == encoded
    one = b"\x91" + encoded
    assert decode_payload(one, QoS.NORMAL) == [gen.decoded_signal(stored, "normal")]
    # independently
    assert gen.spec_msgpack(wire) == encoded
    assert msgpack.unpackb(encoded) == wire


def test_payload() -> None:
    vector = DOC["payload"]
    payload = bytes.fromhex(vector["hex"])
    chosen = [DOC["signals"][i] for i in vector["signals"]]
    builder = PayloadBuilder(1142)
    for item in chosen:
        builder.add(bytes.fromhex(item["hex"]))
    assert builder.build() == payload
    qos = vector["qos"]
    assert decode_payload(payload, QoS[qos.upper()]) == [
        gen.decoded_signal(item["signal"], qos) for item in chosen
    ]
    wire = [from_wire_json(item["wire"]) for item in chosen]
    assert gen.spec_msgpack(wire) == payload
    assert msgpack.unpackb(payload) == wire


# ---------------------------------------------------------------------------
# Sections 1-4 and 7: frames of a Sender
# ---------------------------------------------------------------------------


def sender_output(stream: dict[str, Any]) -> list[bytes]:
    """Run a Sender on a stream's stored parameters and steps."""
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
    sender = Sender(stream["node_id"], stream["epoch"], keyring, config)
    out: list[bytes] = []
    for step in stream["steps"]:
        if "publish" in step:
            sender.publish(gen.signal_from_json(step["publish"], step["qos"]), step["now"])
        elif "poll" in step:
            out += sender.poll(step["poll"])
        else:
            out += sender.flush(step["flush"])
    return out


@pytest.mark.parametrize("stream", DOC["streams"], ids=ids(DOC["streams"], "name"))
def test_sender_makes_the_stored_datagrams(stream: dict[str, Any]) -> None:
    assert [d.hex() for d in sender_output(stream)] == [f["hex"] for f in stream["frames"]]


@pytest.mark.parametrize("stream", DOC["streams"], ids=ids(DOC["streams"], "name"))
def test_stream_frames_follow_the_spec(stream: dict[str, Any]) -> None:
    """Every stored frame, rebuilt from PROTOCOL.md alone."""
    secret = SECRETS[stream["key"]]
    nsym = stream["frame_rs_nsym"]
    on_wire = stream["signals_on_wire"]
    assert on_wire == gen.stamped_signals(stream)
    blocks: dict[int, list[bytes]] = {}
    for seq, vector in enumerate(stream["frames"]):
        datagram = bytes.fromhex(vector["hex"])
        frame = bytes.fromhex(vector["frame"]) if nsym else datagram
        assert datagram == (gen.spec_rs(frame, nsym) if nsym else frame)
        fields: dict[str, int] = vector["header"]
        header = frame[:28]
        assert gen.spec_header(fields) == header
        assert gen.spec_header_fields(frame) == fields
        assert parse_header(frame, MAX_BLOCK_SOURCES).length == fields["length"]
        assert fields["length"] == len(frame) - 44
        assert (fields["sender"], fields["epoch"], fields["seq"], fields["key_id"]) == (
            stream["node_id"],
            stream["epoch"],
            seq,
            gen.spec_key_id(secret),
        )
        repair = bool(fields["flags"] & 2)
        encrypted = stream["encrypt"] and not repair
        assert bool(fields["flags"] & 1) == encrypted
        if repair:
            sources = blocks[fields["block"]]
            assert len(sources) == fields["k"]
            body = gen.spec_parity(sources, fields["m"])[fields["index"] - fields["k"]]
            assert len(body) == 2 + max(len(s) for s in sources)
        else:
            body = bytes.fromhex(vector["payload"])
            arrays = [gen.wire_array(on_wire[i]) for i in vector["signals"]]
            assert gen.spec_msgpack(arrays) == body
            assert fields["index"] == len(blocks.setdefault(fields["block"], []))
            blocks[fields["block"]].append(frame)
        assert gen.spec_seal(secret, header, body, encrypted) == frame
        assert gen.spec_open(secret, frame) == body


@pytest.mark.parametrize("vector", DOC["crafted"], ids=ids(DOC["crafted"], "name"))
def test_crafted_frames_follow_the_spec(vector: dict[str, Any]) -> None:
    header = gen.spec_header(vector["header"])
    payload = bytes.fromhex(vector["payload"])
    frame = gen.spec_seal(SECRETS[vector["key"]], header, payload, False)
    assert frame.hex() == vector["hex"]
    assert SwarmKey(SECRETS[vector["key"]]).seal(header, payload, False) == frame[28:]


@pytest.mark.parametrize("vector", DOC["derived"], ids=ids(DOC["derived"], "name"))
def test_derived_frames(vector: dict[str, Any]) -> None:
    assert gen.apply_mutation(FRAMES[vector["from"]], vector).hex() == vector["hex"]


# ---------------------------------------------------------------------------
# Sections 2, 4, 5, 6 and 7: a receiver's outcomes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", DOC["receiver_cases"], ids=ids(DOC["receiver_cases"]))
def test_receiver_case(case: dict[str, Any]) -> None:
    setup = case["receiver"]
    keyring = KeyRing(SwarmKey(SECRETS[setup.get("current", "A")]))
    if "next" in setup:
        keyring.install_next(SwarmKey(SECRETS[setup["next"]]))
    config = ReceiverConfig(
        node_id=setup.get("node_id", gen.RECEIVER_ID), frame_rs_nsym=setup.get("frame_rs_nsym", 0)
    )
    receiver = Receiver(keyring, config)
    for step in case["steps"]:
        if "feed" in step:
            events = receiver.feed(FRAMES[step["feed"]], step["now"])
        else:
            events = receiver.poll(step["poll"])
        assert [gen.event_json(e) for e in events] == step["events"], step
