"""The node's protocol core, cloudkernel.core.mesh, on an in-memory swarm (tests/meshsim.py)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from linksim import Impairment, keyring
from meshsim import Swarm

from cloudkernel.consensus import FilterConfig
from cloudkernel.core.events import SignalsReceived
from cloudkernel.core.membership import (
    MembershipConfig,
    PeerDied,
    PeerJoined,
    PeerRestarted,
    PeerState,
    PeerSuspected,
)
from cloudkernel.core.mesh import (
    HEARTBEAT_TOPIC,
    MeshConfig,
    MeshNode,
    SignalDelivered,
)
from cloudkernel.core.signals import QoS, Signal, make_signal
from cloudkernel.errors import SignalError


def reading(topic: str, value: object, qos: QoS = QoS.NORMAL) -> Signal:
    return make_signal(topic, value, half_life=10.0, qos=qos)


def test_signals_reach_every_node_and_fuse() -> None:
    swarm = Swarm(3)
    swarm.run(0.05)
    for node, value in ((1, 20.0), (2, 20.4), (3, 19.8)):
        swarm.publish(node, reading("room/temp", value))
    swarm.run(0.1)
    for node in (1, 2, 3):
        others = swarm.delivered(node, "room/temp")
        assert sorted(s.source for s in others) == sorted({1, 2, 3} - {node})
        estimate = swarm.nodes[node].estimate("room/temp", swarm.now)
        assert estimate is not None
        assert estimate.state == "ok", estimate.reason
        assert estimate.sources_used == 3
        assert isinstance(estimate.value, float) and 19.8 <= estimate.value <= 20.4


def test_own_signal_is_stamped_and_counted() -> None:
    swarm = Swarm(2)
    stamped = swarm.publish(1, reading("a", 1.0))
    assert (stamped.source, stamped.seq) == (1, stamped.seq)
    assert swarm.nodes[1].statistics().published == 1
    local = [e for e in swarm.nodes[1]._events if isinstance(e, SignalDelivered)]
    assert local and local[0].local


def test_reserved_topics_are_refused() -> None:
    node = MeshNode(1, 1, keyring(), now=0.0)
    with pytest.raises(SignalError, match="reserved"):
        node.publish(reading("$ck/hb", 1.0), 0.0)


def test_peers_join_suspect_die_and_restart() -> None:
    swarm = Swarm(3)
    swarm.run(2.0)
    for node in (1, 2):
        joined = {e.node for e in swarm.of_type(node, PeerJoined)}
        assert joined == {1, 2, 3} - {node}
        states = {p.node: p.state for p in swarm.nodes[node].peers(swarm.now)}
        assert states == {p: PeerState.ALIVE for p in {1, 2, 3} - {node}}
    swarm.stop(3)
    stopped_at = swarm.now
    swarm.run(20.0, dt=0.002)
    for node in (1, 2):
        suspected = [e for e in swarm.of_type(node, PeerSuspected) if e.node == 3]
        died = [e for e in swarm.of_type(node, PeerDied) if e.node == 3]
        assert suspected and died
        assert {p.node: p.state for p in swarm.nodes[node].peers(swarm.now)}[3] == PeerState.DEAD
    del stopped_at
    swarm.start(3)  # epoch 2
    swarm.run(2.0, dt=0.002)
    for node in (1, 2):
        restarted = [e for e in swarm.of_type(node, PeerRestarted) if e.node == 3]
        assert restarted and restarted[-1].new_epoch == 2
        views = {p.node: p for p in swarm.nodes[node].peers(swarm.now)}
        assert views[3].state == PeerState.ALIVE and views[3].epoch == 2
    # The restarted node's signals numbered afresh are delivered, not taken for copies.
    swarm.publish(3, reading("after/restart", 5.0))
    swarm.run(0.1)
    for node in (1, 2):
        assert [s.value for s in swarm.delivered(node, "after/restart")] == [5.0]


def test_no_false_suspicion_under_steady_loss() -> None:
    swarm = Swarm(4, impairment=Impairment(loss=0.2), seed=3)
    swarm.run(60.0, dt=0.005)
    for node in swarm.nodes:
        assert not swarm.of_type(node, PeerSuspected), f"node {node} suspected a live peer"


def test_fec_recovers_what_the_link_loses() -> None:
    swarm = Swarm(3, impairment=Impairment(loss=0.1), seed=7)
    # Traffic first, so that the receivers measure the loss and report it.
    for i in range(400):
        swarm.publish(1, reading("warm-up", float(i)))
        swarm.run(0.005)
    sent = 0
    for _ in range(300):
        swarm.publish(1, reading("load", float(sent)))
        sent += 1
        swarm.run(0.002)
    swarm.run(1.0)
    for node in (2, 3):
        got = {s.value for s in swarm.delivered(node, "load")}
        assert len(got) >= 0.999 * sent, f"node {node}: {len(got)} of {sent}"
        assert swarm.nodes[node].statistics().recovered > 0


def test_copies_on_redundant_radios_are_delivered_once() -> None:
    swarm = Swarm(2, copies=3)
    swarm.run(0.5)
    for i in range(20):
        swarm.publish(1, reading("dup", float(i)))
    swarm.run(0.2)
    values = [s.value for s in swarm.delivered(2, "dup")]
    assert sorted(values) == [float(i) for i in range(20)]
    assert swarm.nodes[2].statistics().drops["duplicate"] > 0


LINE = [(1, 2), (2, 1), (2, 3), (3, 2)]


def test_relay_carries_signals_across_a_line_exactly_once() -> None:
    swarm = Swarm(3, edges=LINE, config=MeshConfig(relay=True))
    swarm.run(2.0)
    for i in range(10):
        swarm.publish(1, reading("far", float(i)))
    swarm.run(0.3)
    assert sorted(s.value for s in swarm.delivered(3, "far")) == [float(i) for i in range(10)]
    # node 1 hears its own signals relayed back and drops them as its own
    assert swarm.nodes[1].statistics().drops["own-signal"] > 0
    # and through heartbeats relayed by 2, 1 and 3 know each other
    assert {p.node for p in swarm.nodes[3].peers(swarm.now)} == {1, 2}


def test_without_relay_the_line_ends_at_the_neighbour() -> None:
    swarm = Swarm(3, edges=LINE)
    swarm.run(0.5)
    swarm.publish(1, reading("far", 1.0))
    swarm.run(0.3)
    assert [s.value for s in swarm.delivered(2, "far")] == [1.0]
    assert swarm.delivered(3, "far") == []


def test_topic_kind_follows_the_policy_and_mismatches_are_counted() -> None:
    def policy(topic: str, kind: str, dims: int) -> FilterConfig:
        if topic == "pose":
            return FilterConfig(kind="vector", dims=2, min_sources=1)
        return FilterConfig(kind=kind, dims=dims, min_sources=1)

    swarm = Swarm(2, config=MeshConfig(policy=policy))
    swarm.publish(1, reading("pose", (1.0, 2.0)))
    swarm.publish(1, reading("pose", 3.0))  # not a 2-vector
    swarm.publish(1, reading("label", 4))
    swarm.publish(1, reading("blob", b"\x01\x02"))
    swarm.run(0.1)
    node = swarm.nodes[2]
    kinds = {t.topic: t.kind for t in node.topics(swarm.now)}
    assert kinds == {"pose": "vector", "label": "category", "blob": "bytes"}
    assert node.statistics().unfused["kind-mismatch"] == 1
    assert [s.value for s in node.latest("blob")] == [b"\x01\x02"]
    assert node.estimate("blob", swarm.now) is None
    estimate = node.estimate("pose", swarm.now)
    assert estimate is not None and estimate.value == (1.0, 2.0)


def test_heartbeat_topics_are_never_listed_or_fused() -> None:
    swarm = Swarm(2)
    swarm.run(2.0)
    for node in swarm.nodes.values():
        assert node.topics(swarm.now) == []
        assert node.estimate(HEARTBEAT_TOPIC, swarm.now) is None


def test_loss_reports_reach_the_sender() -> None:
    swarm = Swarm(2, impairment=Impairment(loss=0.2), seed=11)
    swarm.run(1.0, dt=0.002)
    # Before node 2 has measured anything, node 1 plans for its default loss.
    assert swarm.nodes[1].sender.reports.worst(swarm.now) == (0.05, 1.0)
    for i in range(600):
        swarm.publish(1, reading("traffic", float(i)))
        swarm.run(0.005)
    loss, _ = swarm.nodes[1].sender.reports.worst(swarm.now)
    assert 0.1 < loss < 0.3


def test_a_first_report_of_few_clean_frames_still_plans_for_some_loss() -> None:
    # A handful of frames without a loss does not show a link without loss:
    # the receiver reports the upper bound of its estimate, so the sender
    # never drops to the fewest repair frames on the strength of a few.
    swarm = Swarm(2, seed=3)
    default = swarm.nodes[1].sender.reports.worst(swarm.now)
    for i in range(2000):
        swarm.publish(1, reading("traffic", float(i)))
        swarm.run(0.005)
        planned = swarm.nodes[1].sender.reports.worst(swarm.now)
        if planned != default:
            break
    else:
        pytest.fail("no loss report arrived")
    settled = swarm.nodes[2].receiver.link_statistics(1)
    assert settled is not None and settled.lost == 0
    assert 0.0 < planned[0] <= 0.2
    # with more frames the bound comes down towards the (zero) loss
    for i in range(600):
        swarm.publish(1, reading("traffic", float(i)))
        swarm.run(0.005)
    later, _ = swarm.nodes[1].sender.reports.worst(swarm.now)
    assert 0.0 < later < planned[0]


def test_topic_table_is_bounded() -> None:
    config = MeshConfig(max_topics=3, membership=MembershipConfig())
    node = MeshNode(1, 1, keyring(), config, now=0.0)
    for i in range(5):
        node.publish(reading(f"t{i}", 1.0), 0.0)
    assert len(node.topics(0.0)) == 3
    assert node.statistics().unfused["too-many-topics"] == 2


def test_forged_heartbeats_are_counted_drops() -> None:
    swarm = Swarm(2)
    bad = [
        Signal(HEARTBEAT_TOPIC, (1.0, 2.0), ttl=1.0, qos=QoS.CRITICAL),
        Signal(HEARTBEAT_TOPIC, (-1.0, 0.0, 0.5, 0.0), ttl=1.0, qos=QoS.CRITICAL),
        Signal(HEARTBEAT_TOPIC, (1.5, 0.0, 0.5, 0.0), ttl=1.0, qos=QoS.CRITICAL),
        Signal("$ck/other", 1.0, ttl=1.0, qos=QoS.CRITICAL),
        Signal("$ck/hr", (0.0, 2.0, 1.0, 0.0, 9.0, 0.1, 1.0), ttl=1.0, qos=QoS.CRITICAL),
    ]
    sender = swarm.nodes[1].sender
    for i, signal in enumerate(bad):
        sender.publish(replace(signal, source=1, seq=10_000 + i), swarm.now)
    swarm.run(0.1)
    assert swarm.nodes[2].statistics().drops["bad-heartbeat"] == len(bad)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(0, 2**32))
def test_any_bytes_are_a_counted_drop(datagrams: list[bytes], seed: int) -> None:
    node = MeshNode(1, 1, keyring(), now=0.0)
    for datagram in datagrams:
        node.feed(datagram, 1.0)
    assert node.statistics().datagrams == len(datagrams)
    assert node.statistics().delivered == 0


def test_mutated_frames_never_raise() -> None:
    rng = random.Random(2)
    swarm = Swarm(2)
    captured: list[bytes] = []
    for i in range(30):
        swarm.publish(1, reading("m", float(i), qos=QoS.CRITICAL))
        captured.extend(swarm.nodes[1].datagrams_to_send(swarm.now))
        swarm.run(0.003)
    target = swarm.nodes[2]
    for _ in range(2000):
        frame = bytearray(rng.choice(captured))
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        target.feed(bytes(frame), swarm.now)
    drops = target.statistics().drops
    assert sum(drops.values()) > 0


def _line(n: int) -> list[tuple[int, int]]:
    return [pair for a in range(1, n) for pair in ((a, a + 1), (a + 1, a))]


@pytest.mark.parametrize(("hop_limit", "reach"), [(1, 3), (2, 4), (3, 5)])
def test_the_hop_limit_bounds_how_far_relays_carry(hop_limit: int, reach: int) -> None:
    swarm = Swarm(5, edges=_line(5), config=MeshConfig(relay=True, hop_limit=hop_limit))
    swarm.run(0.5)
    swarm.publish(1, reading("far", 7.0))
    swarm.run(0.5)
    for node in range(2, 6):
        got = swarm.delivered(node, "far")
        if node <= reach:
            assert [s.value for s in got] == [7.0], f"node {node}"
            assert got[0].hops == node - 2  # relayed node - 2 times on the way
        else:
            assert got == [], f"node {node} is past the hop limit"


def test_a_bad_hop_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="hop_limit"):
        MeshConfig(hop_limit=0)
    with pytest.raises(ValueError, match="hop_limit"):
        MeshConfig(hop_limit=16)


def test_a_restart_is_noticed_across_a_relay() -> None:
    """The source's new epoch comes in a heartbeat relayed like its data: the
    heartbeat gets through although its numbers start afresh, and resets
    the numbering before the new run's data is checked."""
    swarm = Swarm(3, edges=LINE, config=MeshConfig(relay=True))
    swarm.run(1.0)
    for i in range(600):
        swarm.publish(1, reading("before", float(i)))
        if i % 50 == 0:
            swarm.run(0.01)
    swarm.run(0.5)
    assert len(swarm.delivered(3, "before")) == 600
    swarm.stop(1)
    swarm.run(0.5)
    swarm.start(1)  # epoch 2: its signal numbers start at 0 again
    swarm.run(1.0)
    for i in range(200):
        swarm.publish(1, reading("after", float(i)))
    swarm.run(0.5)
    assert sorted(s.value for s in swarm.delivered(3, "after")) == [float(i) for i in range(200)]
    restarted = [e for e in swarm.of_type(3, PeerRestarted) if e.node == 1]
    assert restarted and restarted[-1].new_epoch == 2


def test_signals_with_no_source_or_a_borrowed_one_are_dropped() -> None:
    swarm = Swarm(2)
    sender = swarm.nodes[1].sender
    # source 3 is not the frame's sender (node 1), and the signal was not relayed
    for i, source in enumerate((0, 3)):
        forged = replace(reading("forged", 1.0), source=source, seq=50 + i)
        sender.publish(forged, swarm.now)
    swarm.run(0.1)
    # A sender stamps source 0 as its own, so that one arrives as node 1's;
    # the borrowed source 3 is dropped.
    assert [s.source for s in swarm.delivered(2, "forged")] == [1]
    assert swarm.nodes[2].statistics().drops["bad-source"] == 1


def test_source_zero_from_the_network_is_dropped_not_taken_for_our_own() -> None:
    node = MeshNode(1, 1, keyring(), MeshConfig(relay=True), now=0.0)
    anonymous = replace(reading("anon", 1.0), source=0, seq=5, hops=1)
    node._received(SignalsReceived(2, 1, QoS.NORMAL, [anonymous], 0.0, False), 0.0)
    stats = node.statistics()
    assert (stats.drops["bad-source"], stats.delivered, stats.relayed) == (1, 0, 0)
