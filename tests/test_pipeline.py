"""Sender and receiver joined by a simulated link: delivery, exactly once, whatever the link does.

The loss figures of the issue are checked here on 100,000 signals each
(fewer on the pure-Python FEC, whose rebuilds are ~100x slower; the ratios
asked for are the same).
"""

from __future__ import annotations

import random
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from linksim import RECEIVER_ID, SENDER_ID, Impairment, Link, Pair, keyring, payload_signals

from cloudkernel import fec
from cloudkernel.core.receiver import Receiver, ReceiverConfig
from cloudkernel.core.redundancy import RedundancyPolicy
from cloudkernel.core.sender import ClassConfig, Sender, SenderConfig, default_classes
from cloudkernel.core.signals import QoS, Signal, make_signal
from cloudkernel.core.wire import HEADER
from cloudkernel.errors import CloudkernelError, ConfigError, SignalError

PURE_PYTHON = fec.IMPLEMENTATION == "python"
BIG = 100_000


def fixed_m_config(k_max: int, m: int, **kwargs: object) -> SenderConfig:
    classes = default_classes()
    classes[QoS.NORMAL] = ClassConfig(
        0.010, k_max, RedundancyPolicy(fixed_m=m, m_min=min(1, m), m_max=m)
    )
    return SenderConfig(classes=classes, **kwargs)  # type: ignore[arg-type]


def check_exactly_once(pair: Pair) -> None:
    assert pair.duplicates() == 0
    for source, seq in pair.delivered:
        assert source == SENDER_ID
        assert 0 <= seq < pair.published


def test_clean_link_delivers_every_signal_once_without_rebuilding() -> None:
    pair = Pair(Impairment())
    pair.run(5_000, per_tick=7)
    check_exactly_once(pair)
    assert len(pair.delivered) == 5_000
    assert pair.recovered == 0
    assert pair.drops.keys() <= {"repair-unneeded"}


def test_values_arrive_unchanged() -> None:
    pair = Pair(Impairment(loss=0.1), seed=3)
    pair.run(3_000, per_tick=5)
    for signal in payload_signals(pair.events):
        assert signal.value == float(signal.seq)
        assert signal.confidence == 0.9
        assert signal.half_life == 5.0
        assert signal.qos is QoS.NORMAL


class _AtMostMPerBlock(Link):
    """Drops frames at random, but never more than m of any one block."""

    def __init__(self, rng: random.Random, m: int) -> None:
        super().__init__(rng, Impairment())
        self.m = m
        self.dropped: dict[int, int] = {}

    def send(self, datagrams: object, now: float) -> None:
        kept = []
        for datagram in datagrams:  # type: ignore[attr-defined]
            block = HEADER.unpack_from(datagram)[9]
            if self.dropped.get(block, 0) < self.m and self.rng.random() < 0.3:
                self.dropped[block] = self.dropped.get(block, 0) + 1
                continue
            kept.append(datagram)
        super().send(kept, now)


@pytest.mark.parametrize(("k_max", "m"), [(1, 1), (4, 2), (8, 3), (32, 4)])
def test_at_most_m_losses_per_block_lose_nothing(k_max: int, m: int) -> None:
    pair = Pair(Impairment(), sender_config=fixed_m_config(k_max, m), seed=k_max)
    link = _AtMostMPerBlock(random.Random(m), m)
    pair.link = link
    pair.run(4_000, per_tick=3)
    check_exactly_once(pair)
    assert len(pair.delivered) == 4_000
    assert sum(link.dropped.values()) > 0
    assert pair.recovered > 0
    assert pair.drops["block-timeout"] == 0


@pytest.mark.parametrize(("loss", "required"), [(0.10, 0.9999), (0.30, 0.999)])
def test_iid_loss_with_adaptive_redundancy(loss: float, required: float) -> None:
    pair = Pair(Impairment(loss=loss), seed=11)
    pair.run(BIG, per_tick=4)
    check_exactly_once(pair)
    ratio = pair.delivery_ratio()
    assert ratio >= required, (ratio, dict(pair.drops))
    # Without FEC the link alone would lose about `loss` of the frames.
    assert pair.link.lost / pair.link.sent == pytest.approx(loss, abs=0.02)
    assert pair.recovered > 0


def test_burst_loss_is_measured_and_survived() -> None:
    pair = Pair(Impairment(loss=0.05, burst=3.0), seed=5)
    pair.run(BIG // 4, per_tick=4)
    check_exactly_once(pair)
    assert pair.delivery_ratio() >= 0.999
    stats = pair.receiver.link_statistics(SENDER_ID)
    assert stats is not None
    assert stats.mean_burst > 1.5


def test_duplication_and_reordering_deliver_exactly_once() -> None:
    imp = Impairment(loss=0.05, duplicate=0.3, reorder=0.3, reorder_delay=0.02)
    pair = Pair(imp, seed=9)
    pair.run(10_000, per_tick=3)
    check_exactly_once(pair)
    assert pair.delivery_ratio() >= 0.999
    assert pair.drops["duplicate"] > 0


def test_corrupted_frames_are_dropped_never_delivered() -> None:
    pair = Pair(Impairment(corrupt=0.2), seed=21)
    pair.run(5_000, per_tick=3)
    check_exactly_once(pair)
    for signal in payload_signals(pair.events):
        assert signal.value == float(signal.seq)
    assert pair.drops["bad-tag"] + pair.drops["malformed"] + pair.drops["unknown-key"] > 0
    assert pair.delivery_ratio() >= 0.99


def test_byte_rs_frames_correct_corruption() -> None:
    pair = Pair(
        Impairment(corrupt=0.3),
        seed=22,
        sender_config=SenderConfig(frame_rs_nsym=16),
        receiver_config=ReceiverConfig(node_id=RECEIVER_ID, frame_rs_nsym=16),
    )
    pair.run(2_000 if PURE_PYTHON else 5_000, per_tick=3)
    check_exactly_once(pair)
    assert len(pair.delivered) == pair.published
    assert pair.drops["bad-tag"] == 0


def test_encrypted_payloads_round_trip_and_hide_the_topic() -> None:
    pair = Pair(Impairment(loss=0.1), seed=4, sender_config=SenderConfig(encrypt=True))
    sent: list[bytes] = []
    original_send = pair.link.send

    def spy(datagrams: object, now: float) -> None:
        batch = list(datagrams)  # type: ignore[call-overload]
        sent.extend(batch)
        original_send(batch, now)

    pair.link.send = spy  # type: ignore[method-assign]
    pair.run(3_000, per_tick=3)
    check_exactly_once(pair)
    assert pair.delivery_ratio() >= 0.999
    assert sent and not any(b"swarm/temp" in d for d in sent)


@pytest.mark.parametrize("qos", list(QoS))
def test_every_class_gets_through(qos: QoS) -> None:
    pair = Pair(Impairment(loss=0.1), seed=int(qos) + 30)
    pair.run(3_000, per_tick=2, qos=qos)
    check_exactly_once(pair)
    assert pair.delivery_ratio() >= 0.999
    assert {e.qos for e in pair.events if hasattr(e, "qos")} == {qos}


# -- one block, any order ---------------------------------------------------------


def one_block(k: int, m: int) -> tuple[list[bytes], set[tuple[int, int]]]:
    """The k source and m repair frames of one block of one signal per frame."""
    sender = Sender(SENDER_ID, 1, keyring(), fixed_m_config(k, m))
    frames: list[bytes] = []
    for i in range(k):
        sender.publish(make_signal("t", float(i), ttl=1.0), 0.0)
        frames.extend(sender.poll(0.0))
    frames.extend(sender.poll(1.0))
    assert len(frames) == k + m
    return frames, {(SENDER_ID, i) for i in range(k)}


@given(
    k=st.integers(1, 12),
    m=st.integers(0, 6),
    data=st.data(),
)
def test_any_order_and_duplication_of_a_block_delivers_the_same_set_once(
    k: int, m: int, data: st.DataObject
) -> None:
    frames, everything = one_block(k, m)
    chosen = data.draw(st.lists(st.integers(0, k + m - 1), max_size=3 * (k + m)))
    receiver = Receiver(keyring(), ReceiverConfig(node_id=RECEIVER_ID))
    delivered: list[tuple[int, int]] = []
    for t, index in enumerate(chosen):
        for event in receiver.feed(frames[index], 0.001 * t):
            for signal in getattr(event, "signals", ()):
                delivered.append((signal.source, signal.seq))
    assert len(delivered) == len(set(delivered))
    distinct = set(chosen)
    expected = {(SENDER_ID, i) for i in distinct if i < k}
    if len(distinct) >= k:
        expected = everything
    assert set(delivered) == expected


def test_sources_only_then_repair_is_unneeded() -> None:
    frames, _ = one_block(4, 2)
    receiver = Receiver(keyring(), ReceiverConfig(node_id=RECEIVER_ID))
    for frame in frames[:4]:
        receiver.feed(frame, 0.0)
    (event,) = receiver.feed(frames[4], 0.0)
    assert getattr(event, "reason", None) == "repair-unneeded"
    stats = receiver.statistics()
    assert stats.pending_blocks == 0 and stats.pending_bytes == 0


def test_unrecoverable_block_times_out_with_its_lost_count() -> None:
    frames, _ = one_block(6, 2)
    receiver = Receiver(keyring(), ReceiverConfig(node_id=RECEIVER_ID, block_timeout=0.2))
    for frame in frames[:3] + frames[6:7]:  # 3 sources and 1 repair: 2 short of k
        receiver.feed(frame, 0.0)
    assert receiver.deadline() == pytest.approx(0.2)
    events = receiver.poll(0.25)
    assert [(e.reason, e.count) for e in events] == [("block-timeout", 3)]  # type: ignore[union-attr]
    assert receiver.statistics().pending_blocks == 0


def test_rebuilt_signals_are_aged_by_the_wait() -> None:
    frames, _ = one_block(3, 1)
    receiver = Receiver(keyring(), ReceiverConfig(node_id=RECEIVER_ID))
    receiver.feed(frames[0], 10.0)
    receiver.feed(frames[1], 10.0)
    events = receiver.feed(frames[3], 10.5)
    (signal,) = payload_signals(events)
    assert signal.seq == 2
    assert signal.age == pytest.approx(0.5)
    assert [getattr(e, "recovered", None) for e in events] == [True]


def test_loss_reports_raise_redundancy() -> None:
    sender = Sender(SENDER_ID, 1, keyring())
    counts = []
    for loss in (0.0, 0.1, 0.3):
        sender.reports.report(RECEIVER_ID, loss, 1.0, 0.0)
        frames = []
        for i in range(32):
            sender.publish(make_signal("t", float(i), ttl=1.0), 0.0)
            frames.extend(sender.poll(0.0))
        counts.append(sum(1 for f in frames if HEADER.unpack_from(f)[2] & 2))
    assert counts[0] < counts[1] < counts[2]


def test_frames_fit_the_datagram_budget() -> None:
    for config in (SenderConfig(), SenderConfig(frame_rs_nsym=32), SenderConfig(max_datagram=600)):
        sender = Sender(SENDER_ID, 1, keyring(), config)
        sender.reports.report(RECEIVER_ID, 0.3, 1.0, 0.0)
        sizes: list[int] = []
        for i in range(2_000):
            sender.publish(make_signal("x" * (i % 128 + 1), (1.0,) * (i % 16 + 1), ttl=1.0), 0.0)
            if i % 50 == 0:
                sizes.extend(len(d) for d in sender.poll(0.0))
        sizes.extend(len(d) for d in sender.flush(1.0))
        assert max(sizes) <= config.max_datagram
        assert max(sizes) >= config.max_datagram - 200


def test_header_fields_of_a_source_frame() -> None:
    sender = Sender(SENDER_ID, 9, keyring())
    sender.publish(make_signal("t", 1.0, ttl=1.0, qos=QoS.CRITICAL), 0.0)
    (frame,) = sender.poll(0.0)
    fields = HEADER.unpack_from(frame)
    assert fields[:3] == (b"CK", 1, 0x00)
    assert fields[6:] == (SENDER_ID, 9, 0, 0, 0, 0, 0, 0)
    assert struct.unpack_from(">H", frame, 6)[0] == len(frame) - 44


def test_sender_moves_to_the_next_epoch_before_sequence_numbers_run_out() -> None:
    sender = Sender(SENDER_ID, 41, keyring())
    sender._seq = 2**32 - 4096 + 1  # as if it had sent that many frames
    sender.publish(make_signal("t", 1.0, ttl=1.0), 0.0)
    (frame,) = sender.poll(0.0)
    fields = HEADER.unpack_from(frame)
    assert (fields[7], fields[8]) == (42, 0)
    assert sender.epoch == 42


def test_sender_refuses_to_wrap_its_epoch() -> None:
    sender = Sender(SENDER_ID, 2**32 - 1, keyring())
    sender._seq = 2**32 - 1
    sender.publish(make_signal("t", 1.0, ttl=1.0), 0.0)
    with pytest.raises(CloudkernelError, match="exhausted"):
        sender.poll(0.0)


@pytest.mark.parametrize(
    ("signal", "field"),
    [
        (Signal("x" * 129, 1.0, ttl=1.0), "topic"),
        (Signal("t", float("nan"), ttl=1.0), "value"),
        (Signal("t", 1.0), "half_life"),
        (Signal("t", 1.0, confidence=2.0, ttl=1.0), "confidence"),
        (Signal("t", (1.0,) * 17, ttl=1.0), "value"),
    ],
)
def test_publish_refuses_a_signal_that_breaks_a_limit(signal: Signal, field: str) -> None:
    sender = Sender(SENDER_ID, 1, keyring())
    with pytest.raises(SignalError, match=field):
        sender.publish(signal, 0.0)
    assert sender.poll(0.0) == []


def test_a_block_takes_no_frame_after_its_time_budget() -> None:
    sender = Sender(SENDER_ID, 1, keyring())
    sender.publish(make_signal("t", 1.0, ttl=1.0), 0.0)
    first = sender.poll(0.0)
    sender.publish(make_signal("t", 2.0, ttl=1.0), 0.5)  # normal budget: 10 ms
    later = sender.poll(0.5)
    blocks = [(HEADER.unpack_from(f)[9], HEADER.unpack_from(f)[12], bool(f[3] & 2)) for f in later]
    assert [b for b in blocks if b[2]] and all(b[0] == 0 for b in blocks if b[2])
    (new_source,) = [b for b in blocks if not b[2]]
    assert new_source[:2] == (1, 0)  # a new block, first position
    assert len(first) == 1


def test_an_enormous_age_is_sent_as_the_largest() -> None:
    sender = Sender(SENDER_ID, 1, keyring())
    sender.publish(make_signal("t", 1.0, ttl=1.0, age=1e306), 0.0)
    (frame,) = sender.poll(0.0)
    (event,) = [e for e in Receiver(keyring()).feed(frame, 0.0) if hasattr(e, "signals")]
    assert event.signals[0].age == (2**32 - 1) / 1000


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClassConfig(0.0, 8, RedundancyPolicy()), "budget"),
        (lambda: ClassConfig(0.01, 0, RedundancyPolicy()), "k_max"),
        (lambda: ClassConfig(0.01, 128, RedundancyPolicy(m_max=200)), "k_max + m_max"),
        (lambda: SenderConfig(max_datagram=300), "largest signal"),
        (lambda: SenderConfig(max_datagram=70_000), "UDP maximum"),
        (lambda: SenderConfig(frame_rs_nsym=129), "frame_rs_nsym"),
        (lambda: SenderConfig(classes={QoS.NORMAL: default_classes()[QoS.NORMAL]}), "classes"),
        (lambda: Sender(0, 1, keyring()), "node id"),
        (lambda: Sender(SENDER_ID, 2**32, keyring()), "epoch"),
        (lambda: ReceiverConfig(max_datagram=20), "max_datagram"),
        (lambda: ReceiverConfig(block_timeout=0.0), "block_timeout"),
        (lambda: ReceiverConfig(replay_window=64), "replay_window"),
        (lambda: ReceiverConfig(max_senders=0), "max_senders"),
    ],
)
def test_bad_settings_are_clear_config_errors(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make()  # type: ignore[operator]
