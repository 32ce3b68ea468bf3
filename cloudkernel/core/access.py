"""Who may use which op of the control socket (``docs/CONTROL.md``, "Access").

The control socket is a Unix socket of mode ``control.mode`` (0660 by
default) owned by the daemon's user and ``control.group``.  On top of the file
mode, the daemon reads each client's credentials from the kernel
(``SO_PEERCRED``: uid and gid; ``SO_PEERGROUPS``: its supplementary groups)
and decides per request with :func:`authorise`:

* *fully authorised* are root (uid 0), the daemon's own user, and members of
  the control group (as primary or supplementary group): they may use every
  op;
* anyone else may use the read-only ops (:data:`~.control.READ_ONLY_OPS`)
  when ``control.readers`` is ``"any"``, and nothing when it is ``"group"``
  (the default).

An op that is not known to be read-only counts as mutating, so that an op
added later is never open to readers by accident.

Pure: the caller reads the credentials; this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from .control import READ_ONLY_OPS

__all__ = ["READERS", "AccessPolicy", "Credentials", "Readers", "authorise"]

Readers: TypeAlias = Literal["group", "any"]
"""Who may use the read-only ops: the fully authorised only, or any local user."""
READERS: Final[tuple[Readers, ...]] = ("group", "any")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A control client's credentials, as the kernel reports them."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]
    """Supplementary group ids (may include ``gid``)."""

    def describe(self, user: str | None = None) -> str:
        """``user alice (uid 1000, pid 42)``, or ``uid 1000 (pid 42)`` without a name."""
        if user:
            return f"user {user} (uid {self.uid}, pid {self.pid})"
        return f"uid {self.uid} (pid {self.pid})"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """What :func:`authorise` is measured against.

    :param daemon_uid: the daemon's effective uid.
    :param group_gid: the control group's gid.
    :param group_name: its name, for messages.
    :param readers: who may use the read-only ops.
    """

    daemon_uid: int
    group_gid: int
    group_name: str
    readers: Readers = "group"


def authorise(
    op: str,
    uid: int,
    gids: Iterable[int],
    policy: AccessPolicy,
) -> str | None:
    """Whether a client may use ``op``: None when it may, else why it may not.

    :param op: the op's name (a :class:`~.control.ControlOp` or any str).
    :param uid: the client's uid.
    :param gids: the client's primary and supplementary gids.
    :param policy: the daemon's uid, the control group and the readers setting.
    :returns: None, or the reason for the refusal (to go after "who is refused").
    """
    if uid == 0 or uid == policy.daemon_uid or policy.group_gid in gids:
        return None
    if op in READ_ONLY_OPS and policy.readers == "any":
        return None
    kind = "read-only" if op in READ_ONLY_OPS else "mutating"
    return (
        f"may not use {kind} op {op}: only root, the daemon's user (uid {policy.daemon_uid}) "
        f"and members of group {policy.group_name} (gid {policy.group_gid}) may"
        + ("" if kind == "mutating" else ' (control.readers = "group")')
        + f"; add the user to group {policy.group_name} (then log in again)"
    )
