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
* Sending never blocks and never raises: a full socket buffer or a dropped
  route is counted (``send_errors``) and the datagram is lost, which FEC and
  the next heartbeat absorb.
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
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CloudkernelError

__all__ = [
    "MulticastTransport",
    "TransportError",
    "TransportSettings",
    "TransportStatistics",
    "interface_flags",
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
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._senders.append((tx, (group, s.port)))
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
            tx.setblocking(False)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, s.ttl)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(s.loopback))

    # -- the data path ------------------------------------------------------

    def _readable(self, sock: socket.socket) -> None:
        counts = self._counts
        limit = self.settings.max_datagram
        drop = self.settings.drop_incoming
        for _ in range(self.settings.batch):
            try:
                # One byte more than allowed: a longer datagram shows as truncated.
                data = sock.recv(limit + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._log_once("recv", f"receive error: {exc}")
                return
            counts["received"] += 1
            counts["received_bytes"] += len(data)
            if len(data) > limit:
                counts["truncated"] += 1
            if drop and self._rng.random() < drop:
                counts["injected_drops"] += 1
                continue
            try:
                self._on_datagram(data, time.monotonic())
            except Exception as exc:  # a bug, not the peer's fault: keep serving
                counts["callback_errors"] += 1
                self._log_once(type(exc).__name__, f"error handling a datagram: {exc!r}")

    def send(self, datagrams: list[bytes]) -> None:
        """Send each datagram on every interface; failures are counted, never raised."""
        counts = self._counts
        for sock, address in self._senders:
            for datagram in datagrams:
                try:
                    sock.sendto(datagram, address)
                except OSError as exc:
                    counts["send_errors"] += 1
                    if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        self._log_once(f"send{exc.errno}", f"send error: {exc}")
                    continue
                counts["sent"] += 1
                counts["sent_bytes"] += len(datagram)

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged_errors:
            self._logged_errors.add(key)
            log.warning("%s (further ones are counted, not logged)", message)

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(**self._counts)

    def close(self) -> None:
        """Stop receiving and close every socket (safe to call twice)."""
        for sock in self._receivers:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for sock, _ in self._senders:
            sock.close()
        self._receivers.clear()
        self._senders.clear()


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
