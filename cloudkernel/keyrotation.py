"""Key rotation driven over the control socket: the daemon's side of the ``key-*`` ops.

A rotation, run from the CLI on every node (``docs/CONTROL.md``, "Key
rotation"):

1. ``cloudkernel key stage FILE`` on every node: the daemon reads FILE (with
   the checks of start-up: a regular file of mode 0600 holding 32 bytes) and
   holds the key as *next*: frames sealed with it are accepted, none is sent
   with it yet.
2. ``cloudkernel key switch`` on every node, in any order: the node sends
   with the new key; the old one stays accepted for a window (one hour by
   default), so nodes that have not switched yet are still heard.
3. Copy the new key over ``node.key_file`` on every node, so that a restart
   comes back sending with it.
4. ``cloudkernel key retire`` on every node: the old key is no longer
   accepted.  A node that never got the new key is no longer heard.

``node.next_key_file`` (:func:`load_next_key`) makes a node restarted between
steps 1 and 3 hold the new key as *next* again at start-up.

Each function here takes the key ring and returns the op's result as plain
data, or raises :class:`KeyOpRefused` with the message for the client.
"""

from __future__ import annotations

import os
from typing import Any, Final

from .core.auth import KeyRing, SwarmKey
from .errors import CloudkernelError, KeyFileError, KeyRingError
from .keyfile import load_key_file

__all__ = [
    "DEFAULT_SWITCH_WINDOW",
    "KeyOpRefused",
    "key_status",
    "load_next_key",
    "retire",
    "stage",
    "switch",
]

#: seconds the old key stays accepted after ``key switch`` without ``--window``
DEFAULT_SWITCH_WINDOW: Final = 3600.0


class KeyOpRefused(CloudkernelError):
    """A key op cannot be done; ``missing`` when the key it needs is not held."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def key_status(ring: KeyRing, now: float) -> dict[str, Any]:
    """The keys held: ``{"keys": [{"role", "key_id"}...], "current", "next",
    "previous", "window_left"}`` (key ids as ints, None when not held)."""
    held = ring.keys(now)
    roles = {role: key_id for role, key_id in held}
    deadline = ring.deadline()
    return {
        "keys": [{"role": role, "key_id": key_id} for role, key_id in held],
        "current": roles.get("current"),
        "next": roles.get("next"),
        "previous": roles.get("previous"),
        "window_left": None if deadline is None else max(0.0, deadline - now),
    }


def stage(ring: KeyRing, path: str, now: float) -> dict[str, Any]:
    """Load the key file ``path`` and hold its key as *next*.

    Staging the key already held as *next* again changes nothing.
    """
    try:
        key = SwarmKey(load_key_file(path))
        ring.install_next(key)
    except (KeyFileError, KeyRingError) as exc:
        raise KeyOpRefused(str(exc)) from None
    return {"staged": key.key_id, **key_status(ring, now)}


def switch(ring: KeyRing, now: float, window: float | None) -> dict[str, Any]:
    """Send with the *next* key; accept the old current for ``window`` seconds more."""
    if not any(role == "next" for role, _ in ring.keys(now)):
        raise KeyOpRefused(
            "no key is staged to switch to: stage one first (cloudkernel key stage FILE)",
            missing=True,
        )
    ring.promote(now, DEFAULT_SWITCH_WINDOW if window is None else window)
    return key_status(ring, now)


def retire(ring: KeyRing, now: float) -> dict[str, Any]:
    """Stop accepting the previous key now."""
    ring.expire(now)
    retired = ring.retire()
    if retired is None:
        raise KeyOpRefused(
            "no previous key to retire: none was switched away from, or its window ended",
            missing=True,
        )
    return {"retired": retired, **key_status(ring, now)}


def load_next_key(ring: KeyRing, path: str) -> tuple[bool, str]:
    """At start-up: hold the key in ``node.next_key_file`` ``path`` as *next*.

    :returns: ``(warning, line)``: a line to log, what was done or why nothing
        was (a missing file: a warning; the key is already the current one:
        the rotation is over).
    :raises KeyFileError: when the file exists but is not a good key file.
    :raises KeyRingError: when its key id clashes with the current key's.
    """
    if not os.path.lexists(path):
        return True, (
            f"node.next_key_file {path} does not exist: no next key held; "
            "remove the setting once a key rotation is over"
        )
    key = SwarmKey(load_key_file(path))
    if key == ring.current:
        return False, f"node.next_key_file {path} holds the current key: no next key held"
    ring.install_next(key)
    return False, f"key 0x{key.key_id:02x} of node.next_key_file {path} held as next"
