"""Hostile and broken frames: each dropped with the right reason, nothing delivered, no exception.

Also the bounds: an attacker holding the swarm key cannot make a receiver's
memory grow without limit, and key rotation keeps a swarm talking.
"""

from __future__ import annotations

import os

import pytest
from linksim import RECEIVER_ID, SECRET, SENDER_ID, keyring, payload_signals

from cloudkernel.core.auth import KeyRing, SwarmKey
from cloudkernel.core.events import Event, PacketDropped, SenderRestarted, SignalsReceived
from cloudkernel.core.receiver import Receiver, ReceiverConfig
from cloudkernel.core.redundancy import RedundancyPolicy
from cloudkernel.core.sender import ClassConfig, Sender, SenderConfig, default_classes
from cloudkernel.core.signals import QoS, make_signal
from cloudkernel.core.wire import HEADER, make_flags, pack_header
from cloudkernel.errors import ConfigError


def frames_from(sender: Sender, count: int, now: float = 0.0) -> list[bytes]:
    """``count`` source frames of one signal each (repair frames left out)."""
    out: list[bytes] = []
    for i in range(count):
        sender.publish(make_signal("door/open", i % 2, ttl=2.0), now)
        out.extend(d for d in sender.poll(now) if not d[3] & 0x02)
    return out


def receiver(**kwargs: object) -> Receiver:
    return Receiver(keyring(), ReceiverConfig(node_id=RECEIVER_ID, **kwargs))  # type: ignore[arg-type]


def reasons(events: list[Event]) -> list[str]:
    return [e.reason.value for e in events if isinstance(e, PacketDropped)]


def delivered(events: list[Event]) -> int:
    return sum(len(e.signals) for e in events if isinstance(e, SignalsReceived))


@pytest.fixture
def frame() -> bytes:
    (only,) = frames_from(Sender(SENDER_ID, 1, keyring()), 1)
    return only


def test_valid_frame_is_delivered(frame: bytes) -> None:
    events = receiver().feed(frame, 0.0)
    assert delivered(events) == 1
    assert isinstance(events[0], SenderRestarted)


def test_forged_with_another_key_is_bad_tag() -> None:
    other = KeyRing(SwarmKey(os.urandom(32)))
    (forged,) = frames_from(Sender(SENDER_ID, 1, other), 1)
    r = Receiver(KeyRing(SwarmKey(SECRET)), ReceiverConfig(node_id=RECEIVER_ID))
    events = r.feed(forged, 0.0)
    assert delivered(events) == 0
    # The key id is a byte: another key almost always has another id.
    assert reasons(events) in (["unknown-key"], ["bad-tag"])


def test_forged_with_our_key_id_is_bad_tag(frame: bytes) -> None:
    forged = frame[:-16] + bytes(16)
    events = receiver().feed(forged, 0.0)
    assert reasons(events) == ["bad-tag"] and delivered(events) == 0


@pytest.mark.parametrize("cut", [0, 1, 27, 28, 43, -1, -16])
def test_truncated_is_malformed(frame: bytes, cut: int) -> None:
    events = receiver().feed(frame[:cut], 0.0)
    assert reasons(events) == ["malformed"] and delivered(events) == 0


def test_oversized_is_too_large_and_not_parsed(frame: bytes) -> None:
    events = receiver().feed(frame + bytes(1232), 0.0)
    assert reasons(events) == ["too-large"]
    assert receiver(max_datagram=4000).feed(frame + bytes(10), 0.0) != []


def test_every_single_bit_flip_is_dropped(frame: bytes) -> None:
    r = receiver()
    seen: set[str] = set()
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        events = r.feed(bytes(damaged), 0.0)
        assert delivered(events) == 0, bit
        (reason,) = reasons(events)
        seen.add(reason)
    assert seen == {"malformed", "unsupported-version", "unknown-key", "bad-tag"}
    assert delivered(r.feed(frame, 0.0)) == 1  # nothing above disturbed the state


def test_replayed_frame_is_duplicate_then_too_old_is_replay() -> None:
    sender = Sender(SENDER_ID, 1, keyring())
    frames = frames_from(sender, 1100)
    r = receiver()
    first = r.feed(frames[0], 0.0)
    assert delivered(first) == 1
    assert reasons(r.feed(frames[0], 0.0)) == ["duplicate"]
    for f in frames[1:]:
        r.feed(f, 0.0)
    assert reasons(r.feed(frames[0], 0.0)) == ["replay"]
    assert r.statistics().drops["duplicate"] == 1


def test_frames_from_before_a_restart_are_stale() -> None:
    old = frames_from(Sender(SENDER_ID, 5, keyring()), 3)
    new = frames_from(Sender(SENDER_ID, 6, keyring()), 3)
    r = receiver()
    assert delivered(r.feed(old[0], 0.0)) == 1
    events = r.feed(new[0], 0.0)
    assert delivered(events) == 1
    assert SenderRestarted(SENDER_ID, 5, 6) in events
    # The attacker recorded old[1], old[2] and replays them after the restart.
    for f in old[1:]:
        assert reasons(r.feed(f, 0.0)) == ["stale-epoch"]
    # Same sequence numbers in the new epoch are new frames.
    assert delivered(r.feed(new[1], 0.0)) == 1


def test_own_frames_looped_back_are_dropped() -> None:
    (mine,) = frames_from(Sender(RECEIVER_ID, 1, keyring()), 1)
    assert reasons(receiver().feed(mine, 0.0)) == ["own-frame"]


def test_bad_payload_under_a_valid_tag() -> None:
    key = SwarmKey(SECRET)
    header = pack_header(
        flags=make_flags(QoS.NORMAL), key_id=key.key_id, length=3, sender=SENDER_ID,
        epoch=1, seq=0, block=0,
    )  # fmt: skip
    frame = header + key.seal(header, b"\x91\x01\x02", False)
    events = receiver().feed(frame, 0.0)
    assert reasons(events) == ["bad-payload"] and delivered(events) == 0


def test_unknown_key_id(frame: bytes) -> None:
    other = bytearray(frame)
    other[4] ^= 0xFF
    assert reasons(receiver().feed(bytes(other), 0.0)) == ["unknown-key"]


def test_reserved_bits_and_bad_block_fields_are_malformed(frame: bytes) -> None:
    fields = list(HEADER.unpack_from(frame))
    for position, value in [(2, 0x10), (2, 0x0C), (4, 1), (13, 1), (10, 5), (12, 200)]:
        bad = list(fields)
        bad[position] = value
        damaged = HEADER.pack(*bad) + frame[28:]
        assert reasons(receiver().feed(damaged, 0.0)) == ["malformed"], position


# -- bounds ---------------------------------------------------------------------


def sources_only_config() -> SenderConfig:
    # Blocks of 4 that never get repair frames: every block stays pending on a
    # receiver that sees a gap, as an attacker holding the key could arrange.
    classes = default_classes()
    classes[QoS.NORMAL] = ClassConfig(0.010, 4, RedundancyPolicy(fixed_m=0, m_min=0))
    return SenderConfig(classes=classes)


def test_pending_blocks_per_sender_are_bounded() -> None:
    sender = Sender(SENDER_ID, 1, keyring(), sources_only_config())
    r = receiver(max_pending_blocks=8)
    evicted = 0
    for i, f in enumerate(frames_from(sender, 400)):
        if i % 4 == 0:
            continue  # the first source of every block is lost: blocks stay open
        for event in r.feed(f, 0.0):
            if isinstance(event, PacketDropped) and event.reason == "evicted":
                evicted += event.count
        assert r.statistics().pending_blocks <= 8
    assert evicted > 0


def test_pending_bytes_over_all_senders_are_bounded() -> None:
    r = receiver(max_pending_bytes=65536, max_block_sources=32, max_senders=64)
    for node in range(1, 200):
        sender = Sender(node + 1000, 1, keyring(), sources_only_config())
        for i, f in enumerate(frames_from(sender, 12)):
            if i % 4:
                r.feed(f, 0.0)
        stats = r.statistics()
        assert stats.pending_bytes <= 65536
        assert len(stats.senders) <= 64


def test_key_rotation_keeps_frames_flowing() -> None:
    new_secret = bytes(range(100, 132))
    send_ring = KeyRing(SwarmKey(SECRET), rotation_window=30.0)
    recv_ring = KeyRing(SwarmKey(SECRET), rotation_window=30.0)
    for ring in (send_ring, recv_ring):
        ring.install_next(SwarmKey(new_secret))
    sender = Sender(SENDER_ID, 1, send_ring)
    r = Receiver(recv_ring, ReceiverConfig(node_id=RECEIVER_ID))
    old_frames = frames_from(sender, 3, now=0.0)
    send_ring.promote(10.0)
    new_frames = frames_from(sender, 3, now=10.0)
    assert delivered(r.feed(new_frames[0], 10.0)) == 1  # next key accepted before promotion
    recv_ring.promote(11.0)
    assert delivered(r.feed(old_frames[0], 11.0)) == 1  # old key within the window
    assert delivered(r.feed(new_frames[1], 12.0)) == 1
    assert reasons(r.feed(old_frames[1], 45.0)) == ["unknown-key"]  # window over


def test_no_exception_and_nothing_delivered_for_garbage() -> None:
    r = receiver()
    rng = os.urandom
    for size in range(0, 1300, 7):
        events = r.feed(rng(size), 0.0)
        assert delivered(events) == 0
        assert len(reasons(events)) == 1


def test_every_reason_is_counted_in_statistics(frame: bytes) -> None:
    r = receiver()
    r.feed(frame, 0.0)
    r.feed(frame, 0.0)
    r.feed(b"xx", 0.0)
    drops = r.statistics().drops
    assert drops["duplicate"] == 1 and drops["malformed"] == 1
    assert set(drops) >= {"bad-tag", "replay", "stale-epoch", "block-timeout", "evicted"}
    assert payload_signals([]) == []


def test_without_a_node_id_no_frame_counts_as_our_own() -> None:
    key = SwarmKey(SECRET)
    body = bytes.fromhex("91 98 a1 74 cb 3f f8 00 00 00 00 00 00 cb 3f f0 00 00 00 00 00 00")
    body += bytes.fromhex("c0 cd 03 e8 00 00 00")  # no half-life, ttl 1000 ms, age/source/seq 0
    header = pack_header(
        flags=make_flags(QoS.NORMAL), key_id=key.key_id, length=len(body), sender=0,
        epoch=1, seq=0, block=0,
    )  # fmt: skip
    frame = header + key.seal(header, body, False)
    r = Receiver(keyring(), ReceiverConfig())  # node_id 0: none
    assert delivered(r.feed(frame, 0.0)) == 1


def test_pending_bytes_must_hold_one_block() -> None:
    with pytest.raises(ConfigError, match="cannot hold one block"):
        ReceiverConfig(max_pending_bytes=65536)  # 128 x 1232 bytes do not fit


def repair_policy(k: int, m: int) -> SenderConfig:
    classes = default_classes()
    classes[QoS.NORMAL] = ClassConfig(0.010, k, RedundancyPolicy(fixed_m=m, m_max=m))
    return SenderConfig(classes=classes)


def block_of(k: int, m: int, node: int = SENDER_ID) -> list[bytes]:
    sender = Sender(node, 1, keyring(), repair_policy(k, m))
    out: list[bytes] = []
    for i in range(k):
        sender.publish(make_signal(f"t/{i}", float(i), ttl=1.0), 0.0)
        out.extend(sender.poll(0.0))
    return out + sender.flush(0.0)


def test_the_block_being_filled_is_evicted_last() -> None:
    r = receiver(max_pending_bytes=65536, max_block_sources=32)
    frames = block_of(4, 1)
    for f in frames[1:4]:  # source 0 lost
        r.feed(f, 0.0)
    for node in range(2, 200):  # other senders' open blocks fill the budget
        for f in block_of(4, 1, node=node)[1:3]:
            r.feed(f, 0.0)
    events = r.feed(frames[4], 0.0)  # the repair frame rebuilds source 0
    assert [getattr(e, "recovered", None) for e in events] == [True]
    assert r.statistics().pending_bytes <= 65536


def test_a_second_frame_for_a_taken_position_is_not_delivered() -> None:
    key = SwarmKey(SECRET)
    frames = block_of(3, 1)
    r = receiver()
    r.feed(frames[0], 0.0)
    fields = list(HEADER.unpack_from(frames[0]))
    fields[8] += 100  # a new sequence number, the same block and position
    body = key.open(frames[0], False)
    assert body is not None
    header = HEADER.pack(*fields)
    events = r.feed(header + key.seal(header, body, False), 0.0)
    assert reasons(events) == ["duplicate"] and delivered(events) == 0


def test_a_source_beyond_k_is_not_delivered() -> None:
    key = SwarmKey(SECRET)
    frames = block_of(3, 1)
    r = receiver()
    r.feed(frames[3], 0.0)  # the repair frame: k = 3
    fields = list(HEADER.unpack_from(frames[0]))
    fields[8], fields[12] = 50, 5  # position 5 of a block of 3
    body = key.open(frames[0], False)
    assert body is not None
    header = HEADER.pack(*fields)
    events = r.feed(header + key.seal(header, body, False), 0.0)
    assert reasons(events) == ["malformed"] and delivered(events) == 0


def test_repair_frames_after_a_timeout_count_the_trailing_losses() -> None:
    frames = block_of(4, 2)
    r = receiver(block_timeout=0.5)
    for f in frames[:2]:  # sources 2 and 3 lost; k unknown until a repair arrives
        r.feed(f, 0.0)
    assert r.poll(0.6) == []  # nothing known lost yet
    events = r.feed(frames[4], 0.7)
    assert [(e.reason, e.count) for e in events if isinstance(e, PacketDropped)] == [
        ("block-timeout", 1),
        ("block-timeout", 2),
    ]
    assert reasons(r.feed(frames[5], 0.7)) == ["block-timeout"]


def test_a_block_interleaved_with_much_other_traffic_is_still_rebuilt() -> None:
    # 1100 critical frames pass while a bulk block is open: more than the
    # replay window.  The sender closes the bulk block within MAX_BLOCK_SPAN
    # sequence numbers, so its lost frame is rebuilt inside the window.
    classes = default_classes()
    classes[QoS.BULK] = ClassConfig(1.0, 4, RedundancyPolicy(fixed_m=1, m_max=1))
    sender = Sender(SENDER_ID, 1, keyring(), SenderConfig(classes=classes))
    r = receiver()
    sender.publish(make_signal("bulk/0", 0.0, ttl=1.0, qos=QoS.BULK), 0.0)
    lost = sender.poll(0.0)  # bulk source 0: lost
    assert len(lost) == 1
    events = []
    for i in range(1100):
        sender.publish(make_signal("c", float(i), ttl=1.0, qos=QoS.CRITICAL), 0.0)
        for f in sender.poll(0.0):
            events += r.feed(f, 0.0)
    rebuilt = [
        s.topic for e in events if isinstance(e, SignalsReceived) and e.recovered for s in e.signals
    ]
    assert rebuilt == ["bulk/0"]
    assert r.statistics().drops["replay"] == 0


def test_a_replayed_repair_frame_cannot_deliver_again() -> None:
    # Block 0 (k=1, m=1): the source arrives, the repair is recorded by an
    # attacker; after 1100 more frames the receiver has forgotten block 0.
    classes = default_classes()
    classes[QoS.NORMAL] = ClassConfig(0.010, 1, RedundancyPolicy(fixed_m=1, m_max=1))
    sender = Sender(SENDER_ID, 1, keyring(), SenderConfig(classes=classes))
    r = receiver()
    sender.publish(make_signal("once", 1.0, ttl=1.0), 0.0)
    source, recorded = sender.poll(0.0)
    assert delivered(r.feed(source, 0.0)) == 1
    for i in range(1100):
        sender.publish(make_signal("later", float(i), ttl=1.0), 0.0)
        for f in sender.poll(0.0):
            r.feed(f, 0.0)
    events = r.feed(recorded, 1.0)
    assert delivered(events) == 0
    assert reasons(events) in (["replay"], ["repair-unneeded"])
