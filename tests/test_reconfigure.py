"""A config reload in the sans-I/O core: MeshNode.reconfigure and what it changes.

The daemon's side (SIGHUP, ``cloudkernel reload``) is in tests/test_reload.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from meshsim import Swarm

from cloudkernel.config import (
    LIVE_RELOADABLE,
    RESTART_ONLY,
    is_live_reloadable,
    load_config,
    parse_config,
)
from cloudkernel.consensus import FilterConfig
from cloudkernel.core.membership import MembershipConfig, PhiAccrualDetector
from cloudkernel.core.mesh import MeshConfig, MeshNode, Policy
from cloudkernel.core.redundancy import RedundancyPolicy
from cloudkernel.core.sender import ClassConfig, default_classes
from cloudkernel.core.signals import QoS, make_signal
from cloudkernel.errors import ConfigError


def policy_of(**overrides: object) -> Policy:
    def policy(topic: str, kind: str, dims: int) -> FilterConfig:
        return replace(FilterConfig(kind=kind, dims=dims), **overrides)  # type: ignore[arg-type]

    return policy


def fused_swarm(n: int = 4, **overrides: object) -> Swarm:
    """n nodes, each publishing one reading of "t" (node k reads 20 + k/10)."""
    swarm = Swarm(n, config=MeshConfig(policy=policy_of(**overrides)))
    for node in range(1, n + 1):
        swarm.publish(node, make_signal("t", 20.0 + node / 10, half_life=60.0))
    swarm.run(0.2)
    return swarm


def reconfigure(node: MeshNode, policy: Policy, now: float) -> list[str]:
    return node.reconfigure(
        membership=node.config.membership,
        classes=node.config.sender.classes,
        policy=policy,
        now=now,
    )


# -- topics -------------------------------------------------------------------


def test_a_changed_topic_policy_rebuilds_the_filter_with_its_readings() -> None:
    swarm = fused_swarm(4, min_sources=3)
    node = swarm.nodes[1]
    before = node.estimate("t", swarm.now)
    assert before is not None and before.state == "ok" and before.sources_total == 4

    # More sources required than there are: no consensus at once, with the
    # same four readings held (nobody published again).
    assert reconfigure(node, policy_of(min_sources=5), swarm.now) == ["t"]
    after = node.estimate("t", swarm.now)
    assert after is not None
    assert after.state != "ok" and after.sources_total == 4

    # Back to three: the estimate returns from the held readings alone.
    assert reconfigure(node, policy_of(min_sources=3), swarm.now) == ["t"]
    again = node.estimate("t", swarm.now)
    assert again is not None and again.state == "ok"
    assert again.value == pytest.approx(before.value)
    assert again.sources_total == 4


def test_an_unchanged_policy_rebuilds_nothing() -> None:
    swarm = fused_swarm(4, min_sources=3)
    node = swarm.nodes[2]
    assert reconfigure(node, policy_of(min_sources=3), swarm.now) == []


def test_readings_the_new_settings_refuse_are_counted_not_fused() -> None:
    swarm = fused_swarm(4, min_sources=2)
    node = swarm.nodes[1]
    refused_before = node.statistics().unfused.get("consensus-out-of-range", 0)
    # Only readings up to 20.25 stay in range: nodes 1 and 2 (20.1, 20.2).
    assert reconfigure(node, policy_of(min_sources=2, upper=20.25), swarm.now) == ["t"]
    estimate = node.estimate("t", swarm.now)
    assert estimate is not None and estimate.sources_total == 2
    assert estimate.value == pytest.approx(20.15, abs=0.06)
    refused = node.statistics().unfused.get("consensus-out-of-range", 0) - refused_before
    assert refused == 2


def test_new_topics_take_the_new_policy() -> None:
    swarm = fused_swarm(3, min_sources=3)
    for node in swarm.nodes.values():
        reconfigure(node, policy_of(min_sources=1), swarm.now)
    swarm.publish(2, make_signal("u", 5.0, half_life=60.0))
    swarm.run(0.2)
    estimate = swarm.nodes[1].estimate("u", swarm.now)
    assert estimate is not None and estimate.state == "ok" and estimate.value == 5.0


# -- QoS classes and membership -------------------------------------------------


def test_queued_signals_go_out_under_the_old_classes_then_the_new_apply() -> None:
    swarm = Swarm(2)
    node = swarm.nodes[1]
    swarm.publish(1, make_signal("a", 1.0, half_life=60.0))
    small = dict(default_classes())
    small[QoS.NORMAL] = ClassConfig(
        budget=0.5, k_max=2, policy=RedundancyPolicy(target=1e-6, m_min=1, m_max=4, fixed_m=3)
    )
    node.reconfigure(
        membership=node.config.membership, classes=small, policy=node.config.policy, now=swarm.now
    )
    assert node.sender.config.classes[QoS.NORMAL].k_max == 2
    swarm.run(0.1)
    assert [s.topic for s in swarm.delivered(2, "a")] == ["a"]
    # Under the new class two source frames close a block with 3 repair frames.
    repairs_before = node.sender.statistics().repair_frames
    for i in range(2):
        swarm.publish(1, make_signal(f"b{i}", 1.0, half_life=60.0))
        swarm.tick()  # one source frame each
    swarm.run(0.1)
    assert node.sender.statistics().repair_frames - repairs_before == 3
    assert {s.topic for s in swarm.delivered(2)} >= {"b0", "b1"}


def test_membership_settings_change_and_peers_are_kept() -> None:
    swarm = Swarm(3, config=MeshConfig(membership=MembershipConfig(heartbeat_interval=0.5)))
    swarm.run(2.0)
    node = swarm.nodes[1]
    assert len(node.peers(swarm.now)) == 2
    faster = MembershipConfig(heartbeat_interval=0.1, phi_threshold=6.0, max_samples=10)
    node.reconfigure(
        membership=faster,
        classes=node.config.sender.classes,
        policy=node.config.policy,
        now=swarm.now,
    )
    assert node.membership.config == faster
    assert len(node.peers(swarm.now)) == 2
    # The next heartbeat comes within the new interval.
    deadline = node.deadline()
    assert deadline is not None and deadline <= swarm.now + 0.1 + 1e-9


def test_a_detector_keeps_its_arrivals_when_retuned() -> None:
    detector = PhiAccrualDetector(1.0, acceptable_pause=0.0, max_samples=100)
    t = 0.0
    for _ in range(50):
        t += 1.0
        detector.heartbeat(t)
    phi_before = detector.phi(t + 3.0)
    samples_before = detector.samples
    detector.retune(acceptable_pause=2.0, min_std_deviation=0.1, max_samples=100)
    assert detector.samples == samples_before == 51  # 49 intervals and 2 seeds, kept
    # A longer acceptable pause makes the same silence less suspicious.
    assert detector.phi(t + 3.0) < phi_before
    detector.retune(acceptable_pause=2.0, min_std_deviation=0.1, max_samples=5)
    assert detector.samples == 5
    with pytest.raises(ConfigError):
        detector.retune(acceptable_pause=-1.0, min_std_deviation=0.1, max_samples=5)


# -- which settings are live ------------------------------------------------------

# One change in every section: each must take the new value when live, keep
# the old one when it needs a restart.
CHANGED_EVERYWHERE = """
[node]
state_dir = "/tmp/elsewhere"
[mesh]
port = 40001
[membership]
phi_threshold = 6.0
[qos.bulk]
k_max = 16
[control]
max_clients = 3
[realtime]
cpu = 1
[metrics]
listen = "127.0.0.1:9999"
max_topic_series = 7
[log]
level = "debug"
[consensus]
min_sources = 2
[consensus.reputation]
forgetting = 0.5
[[topic]]
pattern = "x/*"
min_sources = 1
"""


def test_reloaded_takes_exactly_the_live_settings() -> None:
    old = load_config(None)
    new = parse_config(CHANGED_EVERYWHERE)
    running = old.reloaded(new)
    changed = old.changed(new)
    assert len(changed) == 12
    for name in changed:
        got = old.changed(running)
        if is_live_reloadable(name):
            assert name in got, name
        else:
            assert name not in got, name
    assert set(old.restart_required(new)) == {
        "node.state_dir",
        "mesh.port",
        "control.max_clients",
        "realtime.cpu",
        "metrics.listen",
        "consensus.reputation.forgetting",
    }
    assert running.policy_for("x/1").filter.min_sources == 1
    assert running.consensus.reputation == old.consensus.reputation
    assert RESTART_ONLY <= {"consensus.reputation"} and "consensus" in LIVE_RELOADABLE
