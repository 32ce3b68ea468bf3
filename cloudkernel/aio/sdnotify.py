"""systemd's service notifications (``sd_notify``): READY, STATUS, WATCHDOG, STOPPING.

A service of ``Type=notify`` tells systemd how it is doing by sending
datagrams of newline-separated ``KEY=value`` assignments to the AF_UNIX
socket named in ``$NOTIFY_SOCKET`` (sd_notify(3)): ``READY=1`` once it serves,
``STATUS=`` a line shown by ``systemctl status``, ``WATCHDOG=1`` at least once
per ``$WATCHDOG_USEC`` or systemd kills and restarts it, ``STOPPING=1`` when
it shuts down.

The pure part is at the top: :func:`notify_address` (a path, or ``@name``
for an abstract socket), :func:`watchdog_interval` (half of
``$WATCHDOG_USEC``, for this process only when ``$WATCHDOG_PID`` names
another), :func:`encode` (one datagram, checked) and :func:`status_line`
(the one-line summary of the daemon's status).  :class:`ServiceNotifier`
is the I/O: it sends from a non-blocking socket and pings the watchdog from
a timer on the daemon's own event loop, so a loop that is stuck stops the
pings and systemd restarts the daemon.

Rules it keeps:

* Without ``$NOTIFY_SOCKET`` every method does nothing.
* A notification that cannot be sent never stops the daemon: it is counted
  and the first failure is logged as a warning.
* A bad ``$NOTIFY_SOCKET`` or ``$WATCHDOG_USEC`` is a one-line warning and
  that part is left off; the daemon runs on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..errors import CloudkernelError

__all__ = [
    "NotifyError",
    "NotifyStatistics",
    "ServiceNotifier",
    "encode",
    "notify_address",
    "status_line",
    "watchdog_interval",
]

log = logging.getLogger("cloudkernel.sdnotify")

#: the longest AF_UNIX address (``sun_path`` is 108 bytes, with the NUL)
MAX_ADDRESS: Final = 107
#: the longest STATUS= text sent; a longer summary is cut with "..."
MAX_STATUS: Final = 300
#: seconds between two STATUS= refreshes
STATUS_INTERVAL: Final = 5.0
_KEY: Final = re.compile(r"[A-Z][A-Z0-9_]*")
_DIGITS: Final = re.compile(r"[0-9]{1,20}")
#: drop reasons of normal operation, left out of the status line's count:
#: our own frames heard back, copies from redundant links, repair not needed
_ROUTINE_DROPS: Final = frozenset({"own-frame", "duplicate", "repair-unneeded"})


class NotifyError(CloudkernelError, ValueError):
    """A notify setting or message is not usable; the message says why."""


def notify_address(value: str | None) -> bytes | None:
    """The socket address ``$NOTIFY_SOCKET`` names, as ``sendto`` takes it.

    :param value: the variable's value; None or "" when it is not set.
    :returns: None when not set; the path's bytes; or for ``@name`` the
        abstract address (a NUL byte, then the name).
    :raises NotifyError: for a relative path, an empty abstract name, a
        NUL byte, an address family other than AF_UNIX or a name too long.
    """
    if not value:
        return None
    raw = os.fsencode(value)
    if b"\0" in raw:
        raise NotifyError("NOTIFY_SOCKET holds a NUL byte")
    if raw.startswith(b"@"):
        if len(raw) == 1:
            raise NotifyError("NOTIFY_SOCKET is '@' without an abstract socket name")
        address = b"\0" + raw[1:]
    elif raw.startswith(b"/"):
        address = raw
    else:
        raise NotifyError(
            f"NOTIFY_SOCKET {value!r} is neither an absolute path nor an @abstract name"
        )
    if len(address) > MAX_ADDRESS:
        raise NotifyError(f"NOTIFY_SOCKET is {len(address)} bytes long, at most {MAX_ADDRESS} fit")
    return address


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two WATCHDOG=1 pings: half of ``$WATCHDOG_USEC``.

    :param environ: the environment (``os.environ``).
    :param pid: this process's id; when ``$WATCHDOG_PID`` is set and names
        another process, the watchdog is not ours and None is returned.
    :returns: None when there is no watchdog for this process.
    :raises NotifyError: when either variable is not a positive integer.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner:
        if _positive(owner) is None:
            raise NotifyError(f"WATCHDOG_PID is {owner!r}, not a process id")
        if int(owner) != pid:
            return None
    value = _positive(usec)
    if value is None:
        raise NotifyError(f"WATCHDOG_USEC is {usec!r}, not a positive number of microseconds")
    return value / 2e6


def _positive(text: str) -> int | None:
    """``text`` as an integer in 1..2**64-1 (ASCII digits only), else None."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if 0 < value < 2**64 else None


def encode(fields: Sequence[tuple[str, str]]) -> bytes:
    """One notification datagram: ``KEY=value`` lines, each ending in a newline.

    :raises NotifyError: for a key that is not upper-case letters, digits and
        ``_``, or a value holding a newline or a NUL byte.
    """
    lines = []
    for key, value in fields:
        if not _KEY.fullmatch(key):
            raise NotifyError(f"{key!r} is not a notification key")
        if "\n" in value or "\0" in value:
            raise NotifyError(f"the value of {key} holds a newline or a NUL byte")
        lines.append(f"{key}={value}\n")
    return "".join(lines).encode("utf-8", "replace")


def one_line(text: str, limit: int = MAX_STATUS) -> str:
    """``text`` with all runs of white space (newlines too) made one space, cut to ``limit``."""
    text = " ".join(text.replace("\0", " ").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(section: Any, key: str) -> int:
    if isinstance(section, Mapping):
        value = section.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def status_line(status: Mapping[str, Any]) -> str:
    """The daemon's status (``Daemon.status()``) in one line for ``STATUS=``.

    For example ``"3 peers alive, 1 suspect; 12 topics; 4567 signals
    delivered, 20 published; 5 packets dropped; real time ok: SCHED_FIFO 50,
    CPUs 0-3, memory locked"``: dropped packets leave out those of normal
    operation (:data:`_ROUTINE_DROPS`); a refused reload comes first.
    """
    peers = status.get("peers")
    parts = [f"{_count(peers, 'alive')} peers alive"]
    for state in ("suspect", "dead"):
        if n := _count(peers, state):
            parts[0] += f", {n} {state}"
    topics = status.get("topics")
    parts.append(f"{topics if isinstance(topics, int) else 0} topics")
    signals = status.get("signals")
    delivered, published = _count(signals, "delivered"), _count(signals, "published")
    parts.append(f"{delivered} signals delivered, {published} published")
    drops = status.get("drops")
    if isinstance(drops, Mapping):
        dropped = sum(_count(drops, k) for k in drops if k not in _ROUTINE_DROPS)
        if dropped:
            parts.append(f"{dropped} packets dropped")
    realtime = status.get("realtime")
    if isinstance(realtime, Mapping) and isinstance(realtime.get("summary"), str):
        parts.append(realtime["summary"])
    reload = status.get("reload")
    if isinstance(reload, Mapping) and reload.get("last_ok") is False:
        # First, so that the length limit never cuts it off.
        parts.insert(0, f"last reload refused: {reload.get('last_error', '')}")
    return one_line("; ".join(parts))


@dataclass(frozen=True, slots=True)
class NotifyStatistics:
    """What a :class:`ServiceNotifier` sent."""

    #: notifications sent
    sent: int
    #: notifications that could not be sent
    errors: int
    #: WATCHDOG=1 pings sent
    watchdog_pings: int
    #: seconds between pings; None without a watchdog
    watchdog_interval: float | None


class ServiceNotifier:
    """Notifications to systemd for one daemon run (see the module docstring).

    :param address: the socket address (:func:`notify_address`); None: do nothing.
    :param watchdog: seconds between WATCHDOG=1 pings; None: no pings.
    :param status: returns the current ``STATUS=`` line.
    :param status_interval: seconds between two STATUS= refreshes.
    """

    def __init__(
        self,
        address: bytes | None,
        *,
        watchdog: float | None = None,
        status: Callable[[], str] | None = None,
        status_interval: float = STATUS_INTERVAL,
    ) -> None:
        self.address = address
        self.watchdog = watchdog if address is not None else None
        self._status = status
        self._status_interval = status_interval
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog_timer: asyncio.TimerHandle | None = None
        self._status_timer: asyncio.TimerHandle | None = None
        self._sent = 0
        self._errors = 0
        self._pings = 0

    @classmethod
    def from_environ(
        cls,
        status: Callable[[], str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        pid: int | None = None,
    ) -> ServiceNotifier:
        """A notifier for ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC``; a bad value
        is logged as a warning and that part left off."""
        env = os.environ if environ is None else environ
        try:
            address = notify_address(env.get("NOTIFY_SOCKET"))
        except NotifyError as exc:
            log.warning("not notifying systemd: %s", exc)
            address = None
        interval = None
        if address is not None:  # pings without a socket would go nowhere
            try:
                interval = watchdog_interval(env, os.getpid() if pid is None else pid)
            except NotifyError as exc:
                log.warning("no watchdog pings: %s", exc)
        return cls(address, watchdog=interval, status=status)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def statistics(self) -> NotifyStatistics:
        return NotifyStatistics(self._sent, self._errors, self._pings, self.watchdog)

    def send(self, *fields: tuple[str, str]) -> bool:
        """Send one notification now; True when it went out."""
        if self.address is None:
            return False
        data = encode(fields)
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(data, self.address)
        except OSError as exc:
            self._errors += 1
            if self._errors == 1:
                log.warning(
                    "cannot notify systemd at %s: %s (counted from now on, not logged)",
                    os.fsdecode(self.address).replace("\0", "@", 1),
                    exc.strerror or exc,
                )
            return False
        self._sent += 1
        return True

    def ready(self, loop: asyncio.AbstractEventLoop) -> None:
        """READY=1 with the first STATUS=, then start the watchdog and status timers."""
        if self.address is None:
            return
        self._loop = loop
        self.send(("READY", "1"), ("STATUS", self._status_text()))
        if self.watchdog is not None:
            self._ping()
        if self._status is not None:
            self._status_timer = loop.call_later(self._status_interval, self._refresh)

    def stopping(self, text: str = "stopping") -> None:
        """STOPPING=1; the timers end and the socket closes."""
        if self.address is None:
            return
        for timer in (self._watchdog_timer, self._status_timer):
            if timer is not None:
                timer.cancel()
        self._watchdog_timer = self._status_timer = None
        self.send(("STOPPING", "1"), ("STATUS", one_line(text)))
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _status_text(self) -> str:
        if self._status is None:
            return "running"
        try:
            return one_line(self._status())
        except Exception as exc:  # the summary must never take the daemon down
            log.debug("no status summary: %r", exc)
            return "running"

    def _ping(self) -> None:
        assert self._loop is not None and self.watchdog is not None
        if self.send(("WATCHDOG", "1")):
            self._pings += 1
        self._watchdog_timer = self._loop.call_later(self.watchdog, self._ping)

    def _refresh(self) -> None:
        assert self._loop is not None
        self.send(("STATUS", self._status_text()))
        self._status_timer = self._loop.call_later(self._status_interval, self._refresh)
