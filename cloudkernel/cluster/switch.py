"""A userspace Ethernet switch that impairs every directed link on its own.

Run inside the cluster's switch namespace, one AF_PACKET socket per port::

    python -m cloudkernel.cluster.switch --port n1=n1 --port n2=n2 \\
        --config config.json --stats stats.json --seed 7 [--realtime 50]

It is a learning switch: it learns which port each source MAC address is
behind, sends unicast frames to that port, and floods broadcast, multicast
and unknown unicast frames to every other port.  Each copy of a frame that
leaves by a port crosses the directed link ``"<ingress>><egress>"`` (port
names) and is judged by that link's :class:`~cloudkernel.cluster.impair.LinkState`
alone: a multicast frame flooded to 7 ports meets 7 independent decisions,
as 7 radios lose frames independently.

The config file is a JSON object (every key optional)::

    {"default": {...},                 # the impairment of every link not named below
     "links": {"n1>n2": {...},         # frames in at port n1, out at port n2
               "n2>*": {...},          # frames in at n2, whatever port they leave by
               "*>n3": {...}},         # frames out at n3, whatever port they came in by
     "blocked": ["n1>n3", "n3>n1"]}    # links that carry nothing (a partition)

The most specific entry wins, whole (settings are not merged between
entries): ``"a>b"``, then ``"a>*"``, then ``"*>b"``, then ``"default"``.

Corruption changes bytes only inside the UDP payload of unfragmented IPv4
and IPv6 UDP frames and then recomputes the UDP checksum, so the datagram
reaches the receiver's own integrity checks instead of being dropped by
its kernel; other frames chosen for corruption go out intact and are
counted (``corrupt_skipped``).  Delayed and reordered frames wait in a heap
bounded by ``--max-held``; a frame that finds it full is dropped and
counted (``dropped_queue_full``).  Due times are served with millisecond
resolution (the poll timeout).  ``receive_overruns`` per port counts the
frames the kernel dropped because the switch did not read them in time: if
it grows, the switch, not the impairment, is losing frames.

Signals: SIGHUP re-reads the config file (a config that does not parse is
reported on stderr and counted, and the old one stays); SIGUSR1 writes the
stats file; SIGTERM and SIGINT write it and exit 0.  The stats file is
also written once the ports are open (so a caller knows the switch is
ready) and after every reload attempt.  It is replaced atomically.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from .impair import Impairment, ImpairmentError, LinkState

__all__ = [
    "Switch",
    "SwitchConfig",
    "SwitchConfigError",
    "corrupt_udp_payload",
    "internet_checksum",
    "locate_udp",
    "main",
    "parse_switch_config",
]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
PACKET_STATISTICS = 6
#: Linux's SO_RCVBUFFORCE (x86-64 and arm64), which Python's socket module lacks
SO_RCVBUFFORCE = 33
ETH_HEADER = 14
#: largest frame read (a 64 KiB GSO frame would not fit a veth's MTU anyway)
MAX_FRAME = 65_600
#: frames read from one port before the others get their turn
RECEIVE_BATCH = 64
#: bytes of kernel buffer per port for frames not read yet
RECEIVE_BUFFER = 8 << 20
#: learnt MAC addresses kept before the table is forgotten and relearnt
MAX_MACS = 4096
_PORT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_LINK_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,32}|\*)>([A-Za-z0-9_.-]{1,32}|\*)$")


class SwitchConfigError(ValueError):
    """The switch config is not valid (the message names the entry)."""


@dataclass(frozen=True)
class SwitchConfig:
    """The impairment of every directed link, and the links blocked."""

    default: Impairment = field(default_factory=Impairment)
    links: Mapping[str, Impairment] = field(default_factory=dict)
    blocked: frozenset[tuple[str, str]] = frozenset()

    def impairment_for(self, ingress: str, egress: str) -> Impairment:
        """The most specific entry for ``ingress>egress``."""
        for key in (f"{ingress}>{egress}", f"{ingress}>*", f"*>{egress}"):
            found = self.links.get(key)
            if found is not None:
                return found
        return self.default

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default.to_dict(),
            "links": {key: imp.to_dict() for key, imp in self.links.items()},
            "blocked": sorted(f"{a}>{b}" for a, b in self.blocked),
        }


def parse_switch_config(obj: Any, ports: Collection[str] | None = None) -> SwitchConfig:
    """Check and parse a config object; ``ports``: the port names links may name.

    :raises SwitchConfigError: naming the entry and what is wrong with it.
    """
    if not isinstance(obj, Mapping):
        raise SwitchConfigError(f"the config must be a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - {"default", "links", "blocked"})
    if unknown:
        raise SwitchConfigError(
            f"unknown config key(s) {', '.join(map(repr, unknown))}; known: default, links, blocked"
        )
    default = _impairment("default", obj.get("default", {}))
    links_obj = obj.get("links", {})
    if not isinstance(links_obj, Mapping):
        raise SwitchConfigError("links must be a JSON object of 'ingress>egress': impairment")
    links = {}
    for key, settings in links_obj.items():
        _link_names(key, ports, wildcards=True)
        links[key] = _impairment(f"links[{key!r}]", settings)
    blocked_obj = obj.get("blocked", [])
    if not isinstance(blocked_obj, list):
        raise SwitchConfigError("blocked must be a JSON list of 'ingress>egress'")
    blocked = frozenset(_link_names(key, ports, wildcards=False) for key in blocked_obj)
    return SwitchConfig(default, links, blocked)


def _impairment(where: str, settings: Any) -> Impairment:
    try:
        return Impairment.from_dict(settings)
    except ImpairmentError as exc:
        raise SwitchConfigError(f"{where}: {exc}") from None


def _link_names(key: Any, ports: Collection[str] | None, *, wildcards: bool) -> tuple[str, str]:
    match = _LINK_KEY.match(key) if isinstance(key, str) else None
    if match is None:
        raise SwitchConfigError(f"link {key!r} is not of the form 'ingress>egress'")
    ingress, egress = match.groups()
    if not wildcards and "*" in (ingress, egress):
        raise SwitchConfigError(f"link {key!r}: no wildcard allowed here")
    if ingress == egress:
        raise SwitchConfigError(f"link {key!r}: ingress and egress are the same (use 'default')")
    for name in (ingress, egress):
        if ports is not None and name != "*" and name not in ports:
            raise SwitchConfigError(
                f"link {key!r}: no port {name!r} (ports: {', '.join(sorted(ports))})"
            )
    return ingress, egress


def load_switch_config(path: str | None, ports: Collection[str]) -> SwitchConfig:
    """The config in file ``path`` (None: no impairment anywhere).

    :raises SwitchConfigError: also for a file that cannot be read or is not JSON.
    """
    if path is None:
        return SwitchConfig()
    try:
        with open(path, encoding="utf-8") as file:
            obj = json.load(file)
    except (OSError, ValueError) as exc:
        raise SwitchConfigError(f"cannot read config {path}: {exc}") from None
    return parse_switch_config(obj, ports)


# -- frames ----------------------------------------------------------------------------

_VLAN_TYPES = (0x8100, 0x88A8)
_IPV6_SKIPPABLE = (0, 43, 60)  # hop-by-hop, routing and destination options headers
_UDP = 17


def locate_udp(frame: bytes) -> tuple[int, int, bytes] | None:
    """Where the UDP datagram of an Ethernet frame is: (start, end, pseudo-header),
    or None when the frame is not an unfragmented, well-formed IPv4/IPv6 UDP one.

    Never raises, whatever the bytes.
    """
    size = len(frame)
    if size < ETH_HEADER:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    offset = ETH_HEADER
    while ethertype in _VLAN_TYPES and size >= offset + 4:
        ethertype = int.from_bytes(frame[offset + 2 : offset + 4], "big")
        offset += 4
    if ethertype == 0x0800:
        found = _locate_udp_ipv4(frame, offset)
    elif ethertype == 0x86DD:
        found = _locate_udp_ipv6(frame, offset)
    else:
        return None
    if found is None:
        return None
    start, end, addresses = found
    if end - start < 8:
        return None
    udp_length = int.from_bytes(frame[start + 4 : start + 6], "big")
    if not 8 <= udp_length <= end - start:
        return None
    if len(addresses) == 8:  # IPv4: addresses, zero, protocol, UDP length
        pseudo = addresses + bytes([0, _UDP]) + udp_length.to_bytes(2, "big")
    else:  # IPv6: addresses, UDP length (32 bits), three zeros, next header
        pseudo = addresses + udp_length.to_bytes(4, "big") + bytes([0, 0, 0, _UDP])
    return start, start + udp_length, pseudo


def _locate_udp_ipv4(frame: bytes, ip: int) -> tuple[int, int, bytes] | None:
    """(UDP start, IP payload end, source + destination address) of an IPv4 packet."""
    if len(frame) < ip + 20 or frame[ip] >> 4 != 4:
        return None
    header = (frame[ip] & 0x0F) * 4
    total = int.from_bytes(frame[ip + 2 : ip + 4], "big")
    fragment = int.from_bytes(frame[ip + 6 : ip + 8], "big") & 0x3FFF  # MF flag, offset
    if header < 20 or total < header or ip + total > len(frame):
        return None
    if fragment or frame[ip + 9] != _UDP:
        return None  # a fragment's checksum covers bytes this frame does not hold
    return ip + header, ip + total, frame[ip + 12 : ip + 20]


def _locate_udp_ipv6(frame: bytes, ip: int) -> tuple[int, int, bytes] | None:
    """(UDP start, IP payload end, source + destination address) of an IPv6 packet."""
    if len(frame) < ip + 40 or frame[ip] >> 4 != 6:
        return None
    end = ip + 40 + int.from_bytes(frame[ip + 4 : ip + 6], "big")
    if end > len(frame):
        return None
    next_header = frame[ip + 6]
    offset = ip + 40
    while next_header in _IPV6_SKIPPABLE:
        if offset + 8 > end:
            return None
        next_header, offset = frame[offset], offset + (frame[offset + 1] + 1) * 8
    if next_header != _UDP or offset > end:
        return None  # not UDP, or a fragment header (44)
    return offset, end, frame[ip + 8 : ip + 40]


def internet_checksum(data: bytes) -> int:
    """The ones' complement checksum of ``data`` as UDP sends it (never 0: 0xFFFF).

    The ones' complement sum of 16-bit words is the number the bytes spell,
    modulo 0xFFFF (2**16 is 1 modulo 0xFFFF), which one big-integer
    operation computes far faster than a loop over words in Python.
    """
    if len(data) % 2:
        data += b"\x00"
    total = int.from_bytes(data, "big") % 0xFFFF
    return (~total & 0xFFFF) or 0xFFFF


def corrupt_udp_payload(frame: bytes, count: int, rng: random.Random) -> bytes | None:
    """``frame`` with ``count`` bytes of its UDP payload changed (fewer if the payload
    is shorter) and the UDP checksum recomputed; None if it has no UDP payload.
    """
    found = locate_udp(frame)
    if found is None:
        return None
    start, end, pseudo = found
    payload = range(start + 8, end)
    if not payload:
        return None
    changed = bytearray(frame)
    for position in rng.sample(payload, min(count, len(payload))):
        changed[position] ^= rng.randrange(1, 256)  # never 0: the byte really changes
    changed[start + 6 : start + 8] = b"\x00\x00"
    segment = pseudo + bytes(changed[start:end])
    changed[start + 6 : start + 8] = internet_checksum(segment).to_bytes(2, "big")
    return bytes(changed)


# -- the switch ------------------------------------------------------------------------


@dataclass
class PortCounters:
    received: int = 0
    sent: int = 0
    receive_errors: int = 0
    send_errors: int = 0
    #: frames the kernel dropped because the switch read too slowly (it was the bottleneck)
    receive_overruns: int = 0


@dataclass
class LinkExtras:
    """What the switch did to a link's frames beyond the impairment model."""

    dropped_blocked: int = 0
    dropped_queue_full: int = 0
    corrupt_skipped: int = 0


@dataclass
class Port:
    name: str
    ifname: str
    sock: socket.socket
    counters: PortCounters = field(default_factory=PortCounters)


class Switch:
    """The forwarding state and the event loop of the switch."""

    def __init__(
        self,
        ports: Sequence[Port],
        config: SwitchConfig,
        rng: random.Random,
        *,
        max_held: int = 65_536,
    ) -> None:
        self.ports = list(ports)
        self.rng = rng
        self.max_held = max_held
        self.config = config
        count = len(self.ports)
        self.links = [
            [LinkState(config.impairment_for(a.name, b.name), rng) for b in self.ports]
            for a in self.ports
        ]
        self.extras = [[LinkExtras() for _ in self.ports] for _ in self.ports]
        self.blocked = [[False] * count for _ in self.ports]
        self._set_blocked(config)
        self.others = [tuple(j for j in range(count) if j != i) for i in range(count)]
        self.macs: dict[bytes, int] = {}
        # (due, sequence, egress port, frame): the sequence keeps equal due times in order
        self.held: list[tuple[float, int, int, bytes]] = []
        self._sequence = 0
        self.counters = {
            "runts": 0,
            "filtered": 0,
            "held_max": 0,
            "config_reloads": 0,
            "config_errors": 0,
            "stats_writes": 0,
        }

    def _set_blocked(self, config: SwitchConfig) -> None:
        for i, a in enumerate(self.ports):
            for j, b in enumerate(self.ports):
                self.blocked[i][j] = (a.name, b.name) in config.blocked

    def reconfigure(self, config: SwitchConfig) -> None:
        """Apply a new config; counters and held frames carry on."""
        self.config = config
        for i, a in enumerate(self.ports):
            for j, b in enumerate(self.ports):
                self.links[i][j].reconfigure(config.impairment_for(a.name, b.name))
        self._set_blocked(config)

    def forward(self, ingress: int, frame: bytes, now: float) -> None:
        """Switch one frame that came in on port ``ingress`` at ``now``."""
        if len(frame) < ETH_HEADER:
            self.counters["runts"] += 1
            return
        source = frame[6:12]
        if not source[0] & 1:  # a group address is never a source to learn
            if len(self.macs) >= MAX_MACS and source not in self.macs:
                self.macs.clear()
            self.macs[source] = ingress
        egress: Sequence[int]
        if frame[0] & 1:
            egress = self.others[ingress]
        else:
            known = self.macs.get(frame[0:6])
            if known is None:
                egress = self.others[ingress]
            elif known == ingress:
                self.counters["filtered"] += 1  # the destination is behind the port it came in
                return
            else:
                egress = (known,)
        links, extras, blocked = self.links[ingress], self.extras[ingress], self.blocked[ingress]
        for out in egress:
            if blocked[out]:
                extras[out].dropped_blocked += 1
                continue
            link = links[out]
            if link.clear:  # most links most of the time: skip the model's bookkeeping
                link.counters.frames_in += 1
                link.counters.forwarded += 1
                self.send(out, frame)
                continue
            for copy in link.decide(now):
                data = frame
                if copy.corrupt:
                    changed = corrupt_udp_payload(frame, link.impairment.corrupt_bytes, self.rng)
                    if changed is None:
                        extras[out].corrupt_skipped += 1
                    else:
                        data = changed
                if copy.due <= now:
                    self.send(out, data)
                elif len(self.held) >= self.max_held:
                    extras[out].dropped_queue_full += 1
                else:
                    self._sequence += 1
                    heapq.heappush(self.held, (copy.due, self._sequence, out, data))
        if len(self.held) > self.counters["held_max"]:
            self.counters["held_max"] = len(self.held)

    def send(self, out: int, frame: bytes) -> None:
        port = self.ports[out]
        try:
            port.sock.send(frame)
        except OSError:  # the link is down, or its queue is full: the wire lost it
            port.counters.send_errors += 1
        else:
            port.counters.sent += 1

    def send_due(self, now: float) -> None:
        """Send every held frame due by ``now``."""
        held = self.held
        while held and held[0][0] <= now:
            _, _, out, frame = heapq.heappop(held)
            self.send(out, frame)

    def poll_timeout_ms(self, now: float) -> int:
        """How long the loop may sleep: until the next held frame is due (-1: no limit)."""
        if not self.held:
            return -1
        return max(0, math.ceil((self.held[0][0] - now) * 1000.0))

    def receive(self, ingress: int) -> None:
        """Forward what port ``ingress`` has received, at most a batch."""
        port = self.ports[ingress]
        for _ in range(RECEIVE_BATCH):
            try:
                frame, address = port.sock.recvfrom(MAX_FRAME)
            except BlockingIOError:
                return
            except OSError:  # e.g. ENETDOWN once when the link went down
                port.counters.receive_errors += 1
                return
            if address[2] == PACKET_OUTGOING:
                continue  # our own transmission, seen again
            port.counters.received += 1
            self.forward(ingress, frame, time.monotonic())

    def _count_overruns(self) -> None:
        for port in self.ports:
            try:
                packed = port.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            except (OSError, AttributeError, TypeError):
                continue  # not an AF_PACKET socket (tests)
            _, dropped = struct.unpack("II", packed)  # the kernel resets them on each read
            port.counters.receive_overruns += dropped

    def stats(self) -> dict[str, Any]:
        """Counters per port, per directed link, their totals and the switch's own."""
        self._count_overruns()
        links: dict[str, dict[str, int]] = {}
        totals: dict[str, int] = {}
        for i, a in enumerate(self.ports):
            for j, b in enumerate(self.ports):
                if i == j:
                    continue
                counts = self.links[i][j].counters.as_dict()
                counts.update(vars(self.extras[i][j]))
                links[f"{a.name}>{b.name}"] = counts
                for key, value in counts.items():
                    totals[key] = totals.get(key, 0) + value
        return {
            **self.counters,
            "held": len(self.held),
            "macs_learnt": len(self.macs),
            "ports": {port.name: dict(vars(port.counters)) for port in self.ports},
            "links": links,
            "totals": totals,
            "config": self.config.to_dict(),
        }


def open_port(name: str, ifname: str) -> Port:
    """An AF_PACKET socket on interface ``ifname`` that sees every frame it carries."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.bind((ifname, ETH_P_ALL))
        # Promiscuous, so frames for other hosts' MACs are seen on any kind of link.
        ifindex = socket.if_nametoindex(ifname)
        membership = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
        try:
            # The kernel then skips handing our own transmissions back (Linux >= 4.20);
            # receive() still checks the packet type for older kernels.
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass
        try:
            # Room for bursts while the switch is busy: beyond net.core.rmem_max
            # (about 200 KiB, a few hundred frames), which only root may exceed.
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Port(name, ifname, sock)


def write_stats(path: str, stats: Mapping[str, Any]) -> None:
    """Replace ``path`` by the stats in one step (a reader never sees half a file)."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(stats, file, indent=1, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)


def set_realtime(priority: int) -> None:
    """SCHED_FIFO at ``priority``: the switch plays the wire and must not fall
    behind the nodes; a refusal is a warning, the switch runs on regardless.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        print(
            f"cloudkernel.cluster.switch: warning: SCHED_FIFO {priority} refused ({exc}); "
            "running with the normal scheduler",
            file=sys.stderr,
        )


class _Signals:
    """Flags that the signal handlers set; the loop acts on them between polls."""

    def __init__(self) -> None:
        self.reload = self.write_stats = self.stop = False
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup_fd = read_end
        # A signal writes a byte here, so poll() returns at once instead of
        # being restarted with its old timeout after the handler has run.
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        elif signum == signal.SIGUSR1:
            self.write_stats = True
        else:
            self.stop = True

    def drain(self) -> None:
        try:
            while os.read(self.wakeup_fd, 4096):
                pass
        except BlockingIOError:
            pass


def run(switch: Switch, config_path: str | None, stats_path: str) -> None:
    """Forward frames until SIGTERM or SIGINT; act on SIGHUP and SIGUSR1."""
    signals = _Signals()
    poller = select.poll()
    port_of_fd: dict[int, int] = {}
    for index, port in enumerate(switch.ports):
        poller.register(port.sock.fileno(), select.POLLIN)
        port_of_fd[port.sock.fileno()] = index
    poller.register(signals.wakeup_fd, select.POLLIN)

    def save_stats() -> None:
        switch.counters["stats_writes"] += 1
        write_stats(stats_path, switch.stats())

    save_stats()  # the caller waits for this file: the ports are open
    while not signals.stop:
        for fd, _ in poller.poll(switch.poll_timeout_ms(time.monotonic())):
            ingress = port_of_fd.get(fd)
            if ingress is None:
                signals.drain()
            else:
                switch.receive(ingress)
        switch.send_due(time.monotonic())
        if signals.reload:
            signals.reload = False
            reload(switch, config_path)
            save_stats()
        if signals.write_stats:
            signals.write_stats = False
            save_stats()
    save_stats()


def reload(switch: Switch, config_path: str | None) -> None:
    try:
        config = load_switch_config(config_path, [port.name for port in switch.ports])
    except SwitchConfigError as exc:
        switch.counters["config_errors"] += 1
        print(f"cloudkernel.cluster.switch: old config kept: {exc}", file=sys.stderr)
        return
    switch.reconfigure(config)
    switch.counters["config_reloads"] += 1


def _port_argument(text: str) -> tuple[str, str]:
    name, sep, ifname = text.partition("=")
    if not sep or not _PORT_NAME.match(name) or not ifname:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=IFNAME")
    return name, ifname


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cloudkernel.cluster.switch",
        description="A learning Ethernet switch on AF_PACKET sockets that impairs each "
        "directed link between its ports (run inside the switch's network namespace).",
    )
    parser.add_argument(
        "--port", action="append", type=_port_argument, required=True, metavar="NAME=IFNAME"
    )
    parser.add_argument("--config", help="JSON impairment config (default: none)")
    parser.add_argument("--stats", required=True, help="where to write the stats JSON")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random decision")
    parser.add_argument(
        "--realtime", type=int, metavar="PRIO", help="run under SCHED_FIFO at PRIO (1-99)"
    )
    parser.add_argument("--max-held", type=int, default=65_536, help="bound of delayed frames")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.port]
    if len(set(names)) != len(names):
        parser.error("port names must be unique")
    if args.realtime is not None and not 1 <= args.realtime <= 99:
        parser.error("--realtime must be in 1..99")
    if args.max_held < 1:
        parser.error("--max-held must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    names = [name for name, _ in args.port]
    try:
        config = load_switch_config(args.config, names)
    except SwitchConfigError as exc:
        print(f"cloudkernel.cluster.switch: {exc}", file=sys.stderr)
        return 2
    ports = []
    try:
        for name, ifname in args.port:
            ports.append(open_port(name, ifname))
        if args.realtime is not None:
            set_realtime(args.realtime)
        switch = Switch(ports, config, random.Random(args.seed), max_held=args.max_held)
        run(switch, args.config, args.stats)
    except OSError as exc:
        print(f"cloudkernel.cluster.switch: {exc}", file=sys.stderr)
        return 1
    finally:
        for port in ports:
            port.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
