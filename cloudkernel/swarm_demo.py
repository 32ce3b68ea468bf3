"""``cloudkernel demo``: a real swarm of daemons on this host, under loss, with liars.

It makes a temporary directory with a swarm key and one config per node,
starts N daemon processes (``python -m cloudkernel run``) in a private network
namespace (:mod:`cloudkernel.sandbox`: loopback multicast, the host's network
untouched), and has every node publish a noisy reading of one slowly moving
true temperature on ``demo/temperature`` — the liars a value far off.  Each
daemon throws away ``loss`` of the datagrams it receives, so FEC has work to
do.  Every second it shows what each node's consensus says; at the end it
sums up: signals published and delivered, datagrams lost and frames rebuilt
by FEC, each node's value against the truth, and the liars' reputation.

Everything it started is stopped and removed on the way out, Ctrl-C included.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import SOCKET_ENV, Client
from .errors import CloudkernelError
from .keyfile import generate_key, write_key_file
from .sandbox import PrivateNetwork

__all__ = ["DemoResult", "run_swarm_demo"]

TOPIC = "demo/temperature"
#: readings per second per node
RATE = 20.0
#: how far the liars' readings are from the truth
LIE = 25.0
#: sigma of an honest node's reading
NOISE = 0.2

# Each node's file: who it is and where its files are; everything else is the
# embedded default (interfaces "auto" finds only loopback in the namespace),
# except the metrics exporter: the nodes share one namespace and one address.
_CONFIG = """
[node]
id = {node}
key_file = "{base}/swarm.key"
state_dir = "{base}/node{node}/state"

[mesh]
port = {port}

[control]
socket = "{base}/node{node}/control.sock"

[metrics]
listen = ""
"""


def truth(t: float) -> float:
    """The true temperature at ``t`` seconds into the demo."""
    return 21.0 + 1.5 * math.sin(t / 8.0)


@dataclass
class NodeSummary:
    """One node at the end of the demo."""

    node: int
    liar: bool
    published: int
    delivered: int
    recovered: int
    injected_drops: int
    state: str
    value: float | None
    sigma: float | None
    confidence: float
    sources_used: int
    sources_total: int
    #: this node's reputation of each other node
    reputation: dict[int, float] = field(default_factory=dict)


@dataclass
class DemoResult:
    """What the demo measured."""

    nodes: list[NodeSummary]
    liars: list[int]
    truth: float
    duration: float

    @property
    def published(self) -> int:
        return sum(n.published for n in self.nodes)

    @property
    def expected(self) -> int:
        """Deliveries if nothing were lost: every signal at every other node."""
        return self.published * (len(self.nodes) - 1)

    @property
    def delivered(self) -> int:
        return sum(n.delivered for n in self.nodes)


def _start(net: PrivateNetwork, base: Path, node: int, loss: float) -> subprocess.Popen[bytes]:
    log = open(base / f"node{node}" / "daemon.log", "ab")
    try:
        return net.popen(
            [
                sys.executable,
                "-m",
                "cloudkernel",
                "run",
                "--config",
                str(base / f"node{node}" / "cloudkernel.toml"),
                "--inject-loss",
                str(loss),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # The demo's daemons use the sockets their configs name, whatever
            # daemon the user's shell points clients at.
            env={k: v for k, v in os.environ.items() if k != SOCKET_ENV},
        )
    finally:
        log.close()


def _wait_ready(base: Path, node: int, proc: subprocess.Popen[bytes], timeout: float) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            text = (base / f"node{node}" / "daemon.log").read_text(errors="replace")
            raise CloudkernelError(f"node {node} did not start: {text.strip()[-400:]}")
        client = Client(str(base / f"node{node}" / "control.sock"), timeout=2.0)
        try:
            client.status()
            return client
        except CloudkernelError:
            client.close()
            if time.monotonic() > deadline:
                raise CloudkernelError(f"node {node} did not answer within {timeout:g} s") from None
            time.sleep(0.05)


def run_swarm_demo(
    *,
    nodes: int = 5,
    loss: float = 0.10,
    liars: int = 1,
    duration: float = 15.0,
    seed: int = 1,
    show: Callable[[str], None] = print,
    port: int = 47475,
) -> DemoResult:
    """Run the demo swarm (see the module docstring) and return what it measured.

    :raises CloudkernelError: when the swarm cannot be started (the message says why).
    """
    if not 3 <= nodes <= 32:
        raise ValueError(f"nodes must be 3..32, got {nodes}")
    if not 0 <= liars <= (nodes - 1) // 3:
        raise ValueError(f"liars must be 0..{(nodes - 1) // 3} for {nodes} nodes, got {liars}")
    rng = random.Random(seed)
    liar_ids = list(range(nodes - liars + 1, nodes + 1))
    with tempfile.TemporaryDirectory(prefix="cloudkernel-demo-") as tmp:
        base = Path(tmp)
        write_key_file(base / "swarm.key", generate_key())
        for node in range(1, nodes + 1):
            (base / f"node{node}").mkdir()
            (base / f"node{node}" / "cloudkernel.toml").write_text(
                _CONFIG.format(node=node, base=base, port=port)
            )
        procs: dict[int, subprocess.Popen[bytes]] = {}
        clients: dict[int, Client] = {}
        previous = signal.getsignal(signal.SIGTERM)
        # SIGTERM ends the demo like Ctrl-C: through the finally below.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            with PrivateNetwork() as net:
                try:
                    show(
                        f"starting {nodes} daemons ({liars} lying) in a private network, "
                        f"{loss:.0%} of datagrams dropped at every receiver"
                    )
                    for node in range(1, nodes + 1):
                        procs[node] = _start(net, base, node, loss)
                    for node in range(1, nodes + 1):
                        clients[node] = _wait_ready(base, node, procs[node], 20.0)
                    return _drive(clients, liar_ids, rng, duration, show)
                finally:
                    for client in clients.values():
                        client.close()
        finally:
            signal.signal(signal.SIGTERM, previous)


def _drive(
    clients: dict[int, Client],
    liar_ids: list[int],
    rng: random.Random,
    duration: float,
    show: Callable[[str], None],
) -> DemoResult:
    start = time.monotonic()
    published = dict.fromkeys(clients, 0)
    next_show = start + 1.0
    step = 1.0 / RATE
    tick = 0
    while True:
        now = time.monotonic()
        t = now - start
        if t >= duration:
            break
        for node, client in clients.items():
            value = truth(t) + rng.gauss(0.0, NOISE)
            if node in liar_ids:
                value = truth(t) + LIE * (1 if node % 2 else -1)
            client.publish(TOPIC, value, half_life=2.0, confidence=0.9)
            published[node] += 1
        if now >= next_show:
            next_show += 1.0
            show(_live_line(clients, t))
        tick += 1
        time.sleep(max(0.0, start + tick * step - time.monotonic()))
    time.sleep(1.0)  # let the last blocks and their repair frames land
    end_truth = truth(time.monotonic() - start)
    summaries = [
        _summary(node, client, node in liar_ids, published[node])
        for node, client in clients.items()
    ]
    return DemoResult(summaries, liar_ids, end_truth, duration)


def _live_line(clients: dict[int, Client], t: float) -> str:
    parts = []
    for node, client in clients.items():
        try:
            estimate = client.get(TOPIC)
        except CloudkernelError:
            parts.append(f"{node}: -")
            continue
        if estimate.get("state") == "ok" and isinstance(estimate.get("value"), float):
            parts.append(f"{node}: {estimate['value']:6.2f}")
        else:
            parts.append(f"{node}: {estimate.get('state', '?')}")
    return f"t={t:5.1f}s truth {truth(t):6.2f} | " + "  ".join(parts)


def _summary(node: int, client: Client, liar: bool, published: int) -> NodeSummary:
    status = client.status()
    estimate: dict[str, Any] = client.get(TOPIC)
    reputation = {
        int(row["source"]): float(row["reputation"])
        for row in estimate.get("sources", [])
        if row["source"] != node
    }
    value = estimate.get("value")
    return NodeSummary(
        node=node,
        liar=liar,
        published=published,
        delivered=int(status["signals"]["delivered"]),
        recovered=int(status["signals"]["recovered"]),
        injected_drops=int(status["datagrams"]["injected_drops"]),
        state=str(estimate.get("state")),
        value=value if isinstance(value, float) else None,
        sigma=estimate.get("sigma"),
        confidence=float(estimate.get("confidence", 0.0)),
        sources_used=int(estimate.get("sources_used", 0)),
        sources_total=int(estimate.get("sources_total", 0)),
        reputation=reputation,
    )


def report(result: DemoResult) -> list[str]:
    """The summary, line by line."""
    lines = [
        "",
        f"signals: {result.published} published, {result.delivered} of {result.expected} "
        f"deliveries made ({result.delivered / max(result.expected, 1):.4%})",
        f"datagrams dropped on purpose: {sum(n.injected_drops for n in result.nodes)}; "
        f"signals rebuilt by FEC: {sum(n.recovered for n in result.nodes)}",
        f"truth at the end: {result.truth:.3f}",
        "",
        "node  role   state  value     +-sigma  confidence  used/total",
    ]
    for n in result.nodes:
        value = f"{n.value:8.3f}" if n.value is not None else "       -"
        sigma = f"{n.sigma:7.3f}" if isinstance(n.sigma, float) else "      -"
        lines.append(
            f"{n.node:>4}  {'liar ' if n.liar else 'node '}  {n.state:<5}  {value}  {sigma}  "
            f"{n.confidence:10.3f}  {n.sources_used}/{n.sources_total}"
        )
    if result.liars:
        honest = [n for n in result.nodes if not n.liar]
        for liar in result.liars:
            seen = [n.reputation.get(liar) for n in honest if liar in n.reputation]
            shown = ", ".join(f"{r:.3f}" for r in seen if r is not None)
            lines.append(f"liar {liar}: reputation on the honest nodes {shown}")
    return lines
