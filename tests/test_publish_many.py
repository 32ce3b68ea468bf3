"""Batched publishing: Client.publish_many / AsyncClient.publish_many and the publish_many op.

The batching (how signals are cut into requests) is checked alone; the rest
on real daemons (tests/swarmproc.py): every signal of a batch is stamped in
order and delivered to the other node, and a batch with a bad signal is
refused whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmproc import LocalSwarm, running_swarm, sandbox_problem

from cloudkernel.client import AsyncClient, _batches
from cloudkernel.core.control import MAX_BATCH, MAX_REQUEST, encode_request
from cloudkernel.errors import ControlError

# -- cutting into requests --------------------------------------------------------


def test_batches_hold_at_most_max_batch_signals_and_fit_a_request() -> None:
    small = [{"topic": "t", "value": float(i)} for i in range(2500)]
    batches = list(_batches(small))
    assert [len(b["signals"]) for b in batches] == [MAX_BATCH, MAX_BATCH, 2500 - 2 * MAX_BATCH]
    big = [{"topic": "x" * 120, "value": bytes(64), "ttl": 1.0} for _ in range(2000)]
    batches = list(_batches(big))
    assert sum(len(b["signals"]) for b in batches) == 2000
    for batch in batches:
        assert len(encode_request("publish-many", batch)) <= MAX_REQUEST + 4  # checked, framed
    # Order is kept across batches.
    values = [s["value"] for b in _batches(small) for s in b["signals"]]
    assert values == [float(i) for i in range(2500)]


def test_nothing_to_publish_is_no_request() -> None:
    assert list(_batches([])) == []


@pytest.mark.parametrize(
    ("item", "words"),
    [
        (("t", 1.0), "signal 0 is a tuple; give a mapping"),
        ({"topic": "t"}, "it needs topic and value"),
        ({"topic": "t", "value": 1.0, "colour": 2}, "(unknown: colour)"),
    ],
)
def test_a_malformed_signal_is_refused_before_anything_is_sent(item: object, words: str) -> None:
    with pytest.raises(ControlError, match=words.replace("(", r"\(").replace(")", r"\)")):
        list(_batches([item]))  # type: ignore[list-item]


# -- real daemons ---------------------------------------------------------------------

_PROBLEM = sandbox_problem()
needs_sandbox = pytest.mark.skipif(
    _PROBLEM is not None, reason=f"no private network namespace: {_PROBLEM}"
)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[LocalSwarm]:
    with running_swarm(tmp_path, 2, port=47960) as swarm:
        yield swarm


def _delivered(swarm: LocalSwarm, node: int) -> int:
    with swarm.client(node) as client:
        return int(client.status()["signals"]["delivered"])


@needs_sandbox
def test_publish_many_stamps_in_order_and_every_signal_arrives(pair: LocalSwarm) -> None:
    n = 2 * MAX_BATCH + 100
    before = _delivered(pair, 2)
    with pair.client(1) as client:
        first = client.publish("solo", 1.0)
        result = client.publish_many(
            {"topic": f"many/{i % 7}", "value": float(i), "qos": "bulk"} for i in range(n)
        )
        assert result == {
            "published": n,
            "source": 1,
            "first_seq": first["seq"] + 1,
            "last_seq": first["seq"] + n,
        }
        assert client.status()["signals"]["published"] >= n + 1
    pair.wait_for(
        lambda: _delivered(pair, 2) - before >= n + 1,
        15.0,
        f"node 2 got {_delivered(pair, 2) - before} of {n + 1} signals",
    )
    with pair.client(2) as client:
        topics = {t["topic"]: t for t in client.topics("many/*")}
    assert sorted(topics) == [f"many/{k}" for k in range(7)]
    assert sum(t["updates"] for t in topics.values()) == n


@needs_sandbox
def test_a_batch_with_a_bad_signal_is_refused_whole(pair: LocalSwarm) -> None:
    async def main() -> None:
        async with AsyncClient(pair.socket(1), timeout=5.0) as client:
            with pytest.raises(ControlError, match=r"signals\[1\]"):
                await client.publish_many(
                    [{"topic": "ok", "value": 1.0}, {"topic": "bad", "value": float("inf")}]
                )
            done = await client.publish_many([{"topic": "ok2", "value": 2.0}])
            assert done["published"] == 1
            status = await client.status()
            assert status["signals"]["published"] == 1  # nothing of the refused batch

    asyncio.run(main())


@pytest.fixture
def classed_pair(tmp_path: Path) -> Iterator[LocalSwarm]:
    extra = '\n[[topic]]\npattern = "crit/*"\nqos = "critical"\n'
    with running_swarm(tmp_path, 2, port=47961, extra=extra) as swarm:
        yield swarm


@needs_sandbox
def test_a_signal_without_qos_takes_its_topics_configured_class(classed_pair: LocalSwarm) -> None:
    with classed_pair.client(2) as watcher, classed_pair.client(1) as client:
        stream = watcher.watch("*", raw=True, duration=10.0)
        client.publish("crit/stop", 1.0)  # [[topic]] qos = "critical"
        client.publish("crit/slow", 1.0, qos="bulk")  # given: kept
        client.publish("other", 1.0)  # [consensus] qos, "normal" by default
        client.publish_many(
            [
                {"topic": "crit/many", "value": 2.0},
                {"topic": "crit/given", "value": 2.0, "qos": "normal"},
            ]
        )
        classes: dict[str, str] = {}
        for event in stream:
            if event.get("type") == "signal":
                classes[event["signal"]["topic"]] = event["signal"]["qos"]
            if len(classes) == 5:
                break
        stream.close()
    assert classes == {
        "crit/stop": "critical",
        "crit/slow": "bulk",
        "other": "normal",
        "crit/many": "critical",
        "crit/given": "normal",
    }
