"""What the daemon remembers of its config reloads, for ``status`` and the metrics.

A reload (SIGHUP or ``cloudkernel reload``) reads the config file again,
validates all of it, and only then applies the settings that change live;
a config that fails validation is never applied.  :class:`ReloadStats` counts
both outcomes so an operator can alert on a reload that did not take.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReloadStats"]


@dataclass
class ReloadStats:
    """Reload outcomes since the daemon started."""

    #: reloads whose config was valid and applied
    succeeded: int = 0
    #: reloads refused because the new config was invalid or unreadable
    failed: int = 0
    #: whether the latest reload was applied; True before any reload (the
    #: config the daemon started with is valid)
    last_ok: bool = True
    #: wall-clock time (Unix seconds) of the latest reload attempt; None before any
    last_attempt_unix: float | None = None
    #: wall-clock time (Unix seconds) of the latest config applied (start-up or reload)
    last_success_unix: float | None = None
    #: the latest failure's one-line message; "" when the latest reload succeeded
    last_error: str = ""
