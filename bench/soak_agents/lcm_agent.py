"""Soak agent for LCM (UDP multicast, no retransmission, no FEC).

Usage: python bench/soak_agents/lcm_agent.py --plan PLAN.json --node I --out RECORDS.csv
       [--iface-addr 10.77.0.I]

Each plan topic is an LCM channel; a message is published as raw bytes with
``LCM.publish`` (no lcm-gen types).  The provider URL is the plan's
``lcm_url``, by default ``udpm://239.255.76.67:7667?ttl=1``: ttl=1 so that the
datagrams leave the host (LCM's own default, ttl=0, keeps them on it).  LCM's
udpm provider has no option to pick an interface: it sends and joins the group
on the interface the route to 224.0.0.0/4 names (eth0 on a soak node, lo in a
``PrivateNetwork``), so ``--iface-addr`` is accepted and not used.

The receive path is a thread looping on ``handle_timeout``, which releases
the GIL while it waits and calls the subscription callback for each message.
It has an LCM instance of its own, and the publisher thread another one: the
Python binding saves the thread state of a call that releases the GIL in one
slot per instance (older releases did so for ``publish`` too), so one thread
per instance is the use that is safe in every release.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Sequence

import lcm
from agent_runtime import Agent, run_agent

DEFAULT_URL = "udpm://239.255.76.67:7667?ttl=1"
#: how long one handle_timeout call waits, so that close() is noticed promptly
HANDLE_TIMEOUT_MS = 100


class LcmTransport:
    def __init__(self, agent: Agent, on_message: Callable[[str, bytes], None]) -> None:
        url = str(agent.plan.extra.get("lcm_url") or DEFAULT_URL)
        # one instance per thread (see the module docstring)
        self._sending = lcm.LCM(url)
        self._receiving = lcm.LCM(url)
        for topic in agent.plan.topics:
            # LCM channel patterns are anchored regular expressions: escape the
            # topic so that it matches itself only.
            self._receiving.subscribe(re.escape(topic), on_message)
        self._closing = threading.Event()
        self._receiver = threading.Thread(target=self._receive, name="lcm-receive", daemon=True)
        self._receiver.start()

    def _receive(self) -> None:
        # Bounded by close(); each call waits at most HANDLE_TIMEOUT_MS.
        while not self._closing.is_set():
            if self._receiving.handle_timeout(HANDLE_TIMEOUT_MS) < 0:
                print("lcm agent: handle_timeout failed; receive stops", file=sys.stderr)
                return

    def publish(self, topic: str, data: bytes) -> None:
        self._sending.publish(topic, data)

    def close(self) -> None:
        self._closing.set()
        self._receiver.join()


def main(argv: Sequence[str] | None = None) -> int:
    return run_agent(argv, "lcm", LcmTransport)


if __name__ == "__main__":
    sys.exit(main())
