"""UDP multicast on several interfaces at once: the node's only network I/O.

A :class:`MulticastTransport` opens, for each configured interface, one
socket that sends to the group out of that interface, and one receive socket
per address family, bound to the group's port and joined to the group on
every interface.  Each datagram the node sends goes out on every interface
(redundant radios); the copies that come back in on several interfaces are
dropped by the receiver as duplicates.

Rules it keeps:

* Receiving is batched: one wake-up of the event loop drains up to
  ``batch`` datagrams from each socket before yielding.
* Nothing a peer sends can stop the loop: the callback's exceptions are
  counted and logged once per kind, never raised into the loop.
* Sending never blocks and never raises.  A datagram that finds its socket's
  buffer full waits in that socket's queue, by QoS class, and goes out when
  the socket has room, critical first.  Beyond ``send_queue_limit`` waiting
  datagrams, the oldest of the lowest class are shed: bulk, then normal,
  critical last, each counted (``shed_sent``).  Other send failures (no
  route, interface down) are counted (``send_errors``) and the datagram is
  lost, which FEC and the next heartbeat absorb.
* Under receive overload, the lowest classes are shed first: once a quarter
  of ``receive_backlog_limit`` datagrams (at least one full batch) have been
  read without catching up, bulk frames are dropped unread until a wake-up
  empties the socket; once ``receive_backlog_limit`` have, normal frames
  too.  A shorter burst - every peer's repair frames arriving at once, a
  wake-up delayed by a few milliseconds - is read in full: the 4 MiB socket
  buffer holds it, and shedding it would lose signals the node keeps up with.
  Critical frames are always read.  Each is counted
  (``shed_received``).  The class is read from the frame's flags byte
  before any check: a forged class only changes what is shed first.
* ``drop_incoming`` (0 by default) throws away that fraction of incoming
  datagrams at random before the node sees them: loss injection for demos
  and tests, without touching the host's network configuration.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import logging
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CloudkernelError

__all__ = [
    "MulticastTransport",
    "TransportError",
    "TransportSettings",
    "TransportStatistics",
    "interface_flags",
    "interface_has_ipv4",
    "resolve_interfaces",
]

log = logging.getLogger("cloudkernel.transport")

_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFF_MULTICAST = 0x1000


class TransportError(CloudkernelError):
    """The sockets could not be opened as configured; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """Where and how the node talks to the swarm."""

    #: IPv4 multicast group, or "" for none
    group: str
    #: IPv6 multicast group, or "" for none
    group6: str
    port: int
    #: interface names ("auto" resolved already: see :func:`resolve_interfaces`)
    interfaces: tuple[str, ...]
    ttl: int = 1
    #: deliver our own datagrams to other sockets on this host
    loopback: bool = True
    max_datagram: int = 1232
    #: datagrams drained per socket per wake-up
    batch: int = 64
    #: fraction of incoming datagrams dropped on purpose (demos and tests)
    drop_incoming: float = 0.0
    #: datagrams waiting for room per socket at most (then shed, bulk first)
    send_queue_limit: int = 4096
    #: datagrams read without catching up before normal frames are shed too
    receive_backlog_limit: int = 4096


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    """Counters of a transport since it was opened."""

    received: int
    received_bytes: int
    sent: int
    sent_bytes: int
    #: datagrams not sent: full buffer, no route, interface down
    send_errors: int
    #: incoming datagrams dropped by ``drop_incoming``
    injected_drops: int
    #: datagrams larger than ``max_datagram``, cut short by the socket
    truncated: int
    #: exceptions from the receive callback (each a bug to report)
    callback_errors: int
    #: datagrams shed from the send queues under overload, by class (critical, normal, bulk)
    shed_sent: tuple[int, int, int]
    #: datagrams shed unread under receive overload, by class (critical, normal, bulk)
    shed_received: tuple[int, int, int]
    #: datagrams waiting for room in the send queues now
    queued: int


_SIOCGIFFLAGS = 0x8913


def interface_flags(name: str) -> int | None:
    """The kernel's flags of interface ``name`` in this network namespace, or None.

    Asked of the kernel (``SIOCGIFFLAGS``), not read from /sys/class/net,
    which shows the namespace that mounted sysfs rather than ours.
    """
    encoded = name.encode()
    if not 0 < len(encoded) < 16:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, struct.pack("16sh", encoded, 0))
        except OSError:
            return None
    flags: int = struct.unpack_from("16sh", answer)[1]
    return flags & 0xFFFF


_SIOCGIFADDR = 0x8915


def interface_has_ipv4(name: str) -> bool:
    """Whether interface ``name`` has an IPv4 address in this network namespace."""
    encoded = name.encode()
    if not 0 < len(encoded) < 16:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", encoded))
        except OSError:
            return False
    return True


def _interface_names() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def resolve_interfaces(
    names: tuple[str, ...] | list[str],
    *,
    flags_of: Callable[[str], int | None] = interface_flags,
    all_names: Callable[[], list[str]] = _interface_names,
) -> tuple[str, ...]:
    """The interfaces to use: ``["auto"]`` means every up, multicast-capable,
    non-loopback interface, or ``lo`` when there is none.

    :param flags_of: an interface's flags (None: no such interface).
    :param all_names: every interface's name.
    :raises TransportError: for an interface that does not exist, is down, or
        cannot do multicast, naming the fix.
    """
    if list(names) == ["auto"]:
        chosen = []
        for name in all_names():
            flags = flags_of(name)
            if flags is None or flags & _IFF_LOOPBACK:
                continue
            if flags & _IFF_UP and flags & _IFF_MULTICAST:
                chosen.append(name)
        return tuple(chosen) if chosen else ("lo",)
    for name in names:
        flags = flags_of(name)
        if flags is None:
            raise TransportError(f"interface {name!r} does not exist (see `ip link`)")
        if not flags & _IFF_UP:
            raise TransportError(f"interface {name!r} is down (`ip link set {name} up`)")
        if not flags & _IFF_MULTICAST:
            raise TransportError(
                f"interface {name!r} has multicast off (`ip link set {name} multicast on`"
                + (" and `ip route add 224.0.0.0/4 dev lo`)" if name == "lo" else ")")
            )
    return tuple(names)


#: receive shedding: the lowest class shed (bulk = 2; normal = 1 and bulk)
_SHED_BULK = 2
_SHED_NORMAL = 1


class _SendQueue:
    """Datagrams one socket could not take yet, by class (critical, normal, bulk)."""

    __slots__ = ("by_class", "size", "writer")

    def __init__(self) -> None:
        self.by_class: tuple[deque[bytes], deque[bytes], deque[bytes]] = (
            deque(),
            deque(),
            deque(),
        )
        self.size = 0
        #: the loop watches the socket for room
        self.writer = False


class MulticastTransport:
    """The node's UDP multicast sockets (see the module docstring).

    :param settings: groups, port and interfaces.
    :param on_datagram: called with each datagram and the receive time
        (``time.monotonic()``).
    :param rng: the random source of ``drop_incoming``.
    """

    def __init__(
        self,
        settings: TransportSettings,
        on_datagram: Callable[[bytes, float], None],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._on_datagram = on_datagram
        self._rng = rng or random.Random()
        self._receivers: list[socket.socket] = []
        #: (socket, destination address) per interface and family
        self._senders: list[tuple[socket.socket, tuple[object, ...]]] = []
        #: per sender socket: datagrams waiting for room, by class
        self._queues: list[_SendQueue] = []
        self._shed_sent = [0, 0, 0]
        self._shed_received = [0, 0, 0]
        #: wake-ups in a row that drained a full batch
        self._behind = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counts = dict.fromkeys(
            (
                "received",
                "received_bytes",
                "sent",
                "sent_bytes",
                "send_errors",
                "injected_drops",
                "truncated",
                "callback_errors",
            ),
            0,
        )
        self._logged_errors: set[str] = set()

    # -- opening ------------------------------------------------------------

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open and join every socket and start receiving.

        :raises TransportError: naming the interface, group and cause.
        """
        s = self.settings
        if not s.group and not s.group6:
            raise TransportError("no multicast group configured (mesh.group or mesh.group6)")
        self._loop = loop
        try:
            if s.group:
                self._open_v4()
            if s.group6:
                self._open_v6()
        except BaseException:
            self.close()
            raise
        for sock in self._receivers:
            loop.add_reader(sock.fileno(), self._readable, sock)

    def _index(self, name: str) -> int:
        try:
            return socket.if_nametoindex(name)
        except OSError as exc:
            raise TransportError(f"interface {name!r} does not exist ({exc.strerror})") from None

    def _open_v4(self) -> None:
        s = self.settings
        group = _check_group(s.group, 4)
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._receivers.append(rx)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.setblocking(False)
        # Bound to the group, the socket hears this group's datagrams only.
        _bind(rx, (group, s.port), f"{group} port {s.port}")
        for name in s.interfaces:
            index = self._index(name)
            mreq = struct.pack("4s4si", socket.inet_aton(group), bytes(4), index)
            try:
                rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            except OSError as exc:
                raise TransportError(_join_problem(name, group, exc)) from None
            if not interface_has_ipv4(name):
                # The kernel still sends, from 0.0.0.0, and every receiver drops it.
                log.warning(
                    "interface %s has no IPv4 address: peers will drop its IPv4 datagrams; "
                    'give it an address, or set mesh.group = "" to use IPv6 only',
                    name,
                )
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._senders.append((tx, (group, s.port)))
            self._queues.append(_SendQueue())
            tx.setblocking(False)
            tx.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_MULTICAST_IF,
                struct.pack("4s4si", bytes(4), bytes(4), index),
            )
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, s.ttl)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(s.loopback))

    def _open_v6(self) -> None:
        s = self.settings
        group = _check_group(s.group6, 6)
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self._receivers.append(rx)
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.setblocking(False)
        _bind(rx, ("::", s.port), f"[::] port {s.port}")
        for name in s.interfaces:
            index = self._index(name)
            mreq = struct.pack("16sI", socket.inet_pton(socket.AF_INET6, group), index)
            try:
                rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as exc:
                raise TransportError(_join_problem(name, group, exc)) from None
            tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self._senders.append((tx, (group, s.port, 0, index)))
            self._queues.append(_SendQueue())
            tx.setblocking(False)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, s.ttl)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(s.loopback))

    # -- the data path ------------------------------------------------------

    def _readable(self, sock: socket.socket) -> None:
        counts = self._counts
        limit = self.settings.max_datagram
        drop = self.settings.drop_incoming
        # Behind on the last wake-up: the lowest classes wait no longer.
        backlog = self._behind * self.settings.batch
        limit_all = self.settings.receive_backlog_limit
        if backlog >= limit_all:
            shed_from = _SHED_NORMAL
        elif self._behind and backlog >= max(self.settings.batch, limit_all // 4):
            shed_from = _SHED_BULK
        else:
            shed_from = 3
        for _ in range(self.settings.batch):
            try:
                # One byte more than allowed: a longer datagram shows as truncated.
                data = sock.recv(limit + 1)
            except (BlockingIOError, InterruptedError):
                self._behind = 0
                return
            except OSError as exc:
                self._log_once("recv", f"receive error: {exc}")
                return
            counts["received"] += 1
            counts["received_bytes"] += len(data)
            if len(data) > limit:
                counts["truncated"] += 1
            if shed_from < 3 and len(data) > 3:
                qos = (data[3] >> 2) & 3
                if shed_from <= qos <= 2:
                    self._shed_received[qos] += 1
                    continue
            if drop and self._rng.random() < drop:
                counts["injected_drops"] += 1
                continue
            try:
                self._on_datagram(data, time.monotonic())
            except Exception as exc:  # a bug, not the peer's fault: keep serving
                counts["callback_errors"] += 1
                self._log_once(type(exc).__name__, f"error handling a datagram: {exc!r}")
        self._behind += 1  # a full batch: more is waiting

    def send(self, datagrams: list[bytes]) -> None:
        """Send each datagram on every interface; never blocks, never raises."""
        for index, (sock, address) in enumerate(self._senders):
            queue = self._queues[index]
            if queue.size:
                for datagram in datagrams:
                    self._enqueue(index, datagram)
                self._flush(index)
                continue
            for at, datagram in enumerate(datagrams):
                if not self._send_one(sock, address, datagram):
                    for rest in datagrams[at:]:
                        self._enqueue(index, rest)
                    self._wait_for_room(index)
                    break

    def _send_one(self, sock: socket.socket, address: tuple[object, ...], datagram: bytes) -> bool:
        """Send now; False when the socket's buffer is full (the datagram is not lost yet)."""
        counts = self._counts
        try:
            sock.sendto(datagram, address)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                return False
            counts["send_errors"] += 1
            self._log_once(f"send{exc.errno}", f"send error: {exc}")
            return True  # lost, not waiting: no route, interface down, ...
        counts["sent"] += 1
        counts["sent_bytes"] += len(datagram)
        return True

    def _enqueue(self, index: int, datagram: bytes) -> None:
        queue = self._queues[index]
        qos = (datagram[3] >> 2) & 3 if len(datagram) > 3 else 2
        queue.by_class[min(qos, 2)].append(datagram)
        queue.size += 1
        while queue.size > self.settings.send_queue_limit:
            for shed in (2, 1, 0):  # bulk first, critical last; the oldest of a class
                if queue.by_class[shed]:
                    queue.by_class[shed].popleft()
                    queue.size -= 1
                    self._shed_sent[shed] += 1
                    break

    def _flush(self, index: int) -> None:
        """Send what waits in a socket's queue, critical first, while it has room."""
        sock, address = self._senders[index]
        queue = self._queues[index]
        for waiting in queue.by_class:
            while waiting:
                if not self._send_one(sock, address, waiting[0]):
                    self._wait_for_room(index)
                    return
                waiting.popleft()
                queue.size -= 1
        if queue.writer and self._loop is not None:
            self._loop.remove_writer(sock.fileno())
            queue.writer = False

    def _wait_for_room(self, index: int) -> None:
        queue = self._queues[index]
        if not queue.writer and self._loop is not None:
            self._loop.add_writer(self._senders[index][0].fileno(), self._flush, index)
            queue.writer = True

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged_errors:
            self._logged_errors.add(key)
            log.warning("%s (further ones are counted, not logged)", message)

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            **self._counts,
            shed_sent=(self._shed_sent[0], self._shed_sent[1], self._shed_sent[2]),
            shed_received=(
                self._shed_received[0],
                self._shed_received[1],
                self._shed_received[2],
            ),
            queued=sum(q.size for q in self._queues),
        )

    def close(self) -> None:
        """Stop receiving and close every socket (safe to call twice)."""
        for sock in self._receivers:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for index, (sock, _) in enumerate(self._senders):
            if self._queues[index].writer and self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_writer(sock.fileno())
            sock.close()
        self._receivers.clear()
        self._senders.clear()
        self._queues.clear()


def _check_group(group: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(group)
    except ValueError:
        raise TransportError(f"{group!r} is not an IPv{version} address") from None
    if address.version != version or not address.is_multicast:
        raise TransportError(f"{group!r} is not an IPv{version} multicast group")
    return str(address)


def _bind(sock: socket.socket, address: tuple[str, int], shown: str) -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        raise TransportError(f"cannot bind {shown}: {exc.strerror}") from None


def _join_problem(name: str, group: str, exc: OSError) -> str:
    hint = ""
    if exc.errno == errno.ENODEV and name == "lo":
        hint = " (loopback needs `ip link set lo multicast on` and a route to the group)"
    elif exc.errno == errno.ENODEV:
        hint = " (no multicast route on it: check `ip route` and the interface's flags)"
    return f"cannot join {group} on {name}: {exc.strerror}{hint}"
