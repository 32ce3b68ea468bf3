"""Soak agent for Zenoh in peer mode (multicast scouting, TCP unicast data).

Usage: python bench/soak_agents/zenoh_agent.py --plan PLAN.json --node I --out RECORDS.csv
       [--iface-addr 10.77.0.I]

The agents form a peer mesh with no router: each one opens a zenoh session
in ``peer`` mode, listens on TCP on its node's address and finds the others
by multicast scouting on its node's interface.  Data then flows over the
TCP links between peers: reliable and retransmitting, so a lossy link shows
up as latency (and as drops only when zenoh's send queue overflows), not as
lost messages.

Configuration (the plan's optional ``"zenoh"`` object; defaults in brackets):

* ``scouting_address``  multicast group:port of scouting [224.0.0.224:7446]
* ``scouting_interface`` interface name or address [--iface-addr, else "lo"]
* ``listen``            endpoints [["tcp/<--iface-addr>:0"], else ["tcp/127.0.0.1:0"]]
* ``congestion_control`` "drop" or "block" when the send queue is full [drop,
  zenoh's default]
* ``express_classes``   plan classes sent without batching [["critical"]]
* ``config``            any other zenoh config keys, ``{"path/to/key": value}``,
  inserted last

Plan classes map to zenoh priorities: critical -> INTERACTIVE_HIGH,
normal -> DATA, bulk -> DATA_LOW (others -> DATA).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import zenoh
from agent_runtime import Agent, run_agent

DEFAULT_SCOUTING_ADDRESS = "224.0.0.224:7446"
PRIORITY_BY_CLASS = {
    "critical": zenoh.Priority.INTERACTIVE_HIGH,
    "normal": zenoh.Priority.DATA,
    "bulk": zenoh.Priority.DATA_LOW,
}
CONGESTION_CONTROL = {"drop": zenoh.CongestionControl.DROP, "block": zenoh.CongestionControl.BLOCK}


def zenoh_settings(agent: Agent) -> dict[str, Any]:
    """The plan's "zenoh" object with every default filled in."""
    given: dict[str, Any] = dict(agent.plan.extra.get("zenoh") or {})
    host = agent.iface_addr or "127.0.0.1"
    settings: dict[str, Any] = {
        "scouting_address": DEFAULT_SCOUTING_ADDRESS,
        "scouting_interface": agent.iface_addr or "lo",
        "listen": [f"tcp/{host}:0"],
        "congestion_control": "drop",
        "express_classes": ["critical"],
        "config": {},
    }
    unknown = set(given) - set(settings)
    if unknown:
        raise ValueError(f"unknown keys in the plan's zenoh settings: {sorted(unknown)}")
    settings.update(given)
    if settings["congestion_control"] not in CONGESTION_CONTROL:
        raise ValueError(f"congestion_control must be one of {sorted(CONGESTION_CONTROL)}")
    return settings


def zenoh_config(settings: dict[str, Any]) -> zenoh.Config:
    config = zenoh.Config()
    config.insert_json5("mode", json.dumps("peer"))
    config.insert_json5("scouting/multicast/enabled", "true")
    config.insert_json5("scouting/multicast/address", json.dumps(settings["scouting_address"]))
    config.insert_json5("scouting/multicast/interface", json.dumps(settings["scouting_interface"]))
    config.insert_json5("listen/endpoints", json.dumps(settings["listen"]))
    for key, value in settings["config"].items():
        config.insert_json5(key, json.dumps(value))
    return config


class ZenohTransport:
    def __init__(self, agent: Agent, on_message: Callable[[str, bytes], None]) -> None:
        settings = zenoh_settings(agent)
        zenoh.init_log_from_env_or("error")
        self._session = zenoh.open(zenoh_config(settings))
        self._subscribers = [
            self._session.declare_subscriber(
                topic,
                self._callback(topic, on_message),
                # our own messages are not recorded: do not deliver them at all
                allowed_origin=zenoh.Locality.REMOTE,
            )
            for topic in agent.plan.topics
        ]
        congestion = CONGESTION_CONTROL[settings["congestion_control"]]
        self._publishers = {
            p.topic: self._session.declare_publisher(
                p.topic,
                congestion_control=congestion,
                priority=PRIORITY_BY_CLASS.get(p.qos, zenoh.Priority.DATA),
                express=p.qos in settings["express_classes"],
            )
            for p in agent.local_publishers
        }

    @staticmethod
    def _callback(
        topic: str, on_message: Callable[[str, bytes], None]
    ) -> Callable[[zenoh.Sample], None]:
        # One subscriber per topic, so the topic is known without decoding the
        # sample's key expression on every message.
        def deliver(sample: zenoh.Sample) -> None:
            on_message(topic, sample.payload.to_bytes())

        return deliver

    def publish(self, topic: str, data: bytes) -> None:
        self._publishers[topic].put(data)

    def close(self) -> None:
        # zenoh's stubs leave these three unannotated (they return None)
        for subscriber in self._subscribers:
            subscriber.undeclare()  # type: ignore[no-untyped-call]
        for publisher in self._publishers.values():
            publisher.undeclare()  # type: ignore[no-untyped-call]
        self._session.close()  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None) -> int:
    return run_agent(argv, "zenoh", ZenohTransport)


if __name__ == "__main__":
    sys.exit(main())
