"""The I/O side of :mod:`cloudkernel.core.access`: credentials and the control group.

:func:`peer_credentials` reads a connected Unix socket's peer credentials from
the kernel: ``SO_PEERCRED`` (pid, uid, gid) and the supplementary groups from
``SO_PEERGROUPS`` (Linux 4.13+), or from ``/proc/<pid>/status`` when that
option is missing or the list is too long for it.

:func:`resolve_group` turns the ``control.group`` setting into a gid: the
group of that name when it exists, else the daemon's own group, so that a
plain user's daemon works without any group set up.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from typing import Any

from ..core.access import Credentials

__all__ = ["peer_credentials", "resolve_group", "user_name"]

_UCRED = struct.Struct("=iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid
#: SO_PEERGROUPS (Linux 4.13+); Python's socket module does not name it
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
#: the largest buffer Python's getsockopt hands the kernel: 256 gids
_GROUPS_BUFFER = 1024


def peer_credentials(sock: Any) -> Credentials:
    """The credentials of the process at the other end of the Unix socket ``sock``.

    :param sock: a connected ``AF_UNIX`` socket (or asyncio's socket wrapper).
    :raises OSError: when the kernel does not give them.
    """
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return Credentials(pid, uid, gid, frozenset(_peer_groups(sock, pid)) | {gid})


def _peer_groups(sock: Any, pid: int) -> list[int]:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _GROUPS_BUFFER)
    except OSError:  # ENOPROTOOPT on old kernels, ERANGE past 256 groups
        return _proc_groups(pid)
    count = len(raw) // 4
    return list(struct.unpack(f"={count}I", raw[: count * 4]))


def _proc_groups(pid: int) -> list[int]:
    """The ``Groups:`` line of ``/proc/<pid>/status``; empty when it cannot be read.

    Only for a client in more groups than SO_PEERGROUPS returns.  The groups
    read are trusted as the client's, although the process may have exited
    and its pid been reused by now; an unreadable file (``ProtectProc=`` in
    the systemd unit hides other users' processes) gives no groups, so such
    a client is authorised by its primary group only.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return [int(word) for word in line.split()[1:] if word.isdigit()]
    except OSError:
        pass
    return []


def resolve_group(name: str) -> tuple[int, str, str | None]:
    """The control group's gid and name for the setting ``name``.

    :returns: ``(gid, name, note)``: the group called ``name`` when it exists,
        note None; otherwise the daemon's own effective group and a note to log
        (one line, saying what was used instead and how to set the group up).
    """
    if name:
        try:
            return grp.getgrnam(name).gr_gid, name, None
        except KeyError:
            pass
    gid = os.getegid()
    try:
        own = grp.getgrgid(gid).gr_name
    except KeyError:
        own = str(gid)
    wanted = f"group {name!r} does not exist" if name else "control.group is empty"
    return (
        gid,
        own,
        f"{wanted}: the control socket is open to the daemon's own group {own} (gid {gid}); "
        f"to share it, create the group (groupadd --system {name or 'cloudkernel'}) "
        "and restart the daemon",
    )


def user_name(uid: int) -> str | None:
    """The login name of ``uid``, or None."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
