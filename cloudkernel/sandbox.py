"""A private network for a local swarm: a network namespace of our own, no root needed.

:class:`PrivateNetwork` creates a user namespace and a network namespace in
it (util-linux ``unshare --user --map-root-user --net``), brings its loopback
up with multicast on and a route for the multicast groups, and starts
processes inside it (``nsenter``).  Daemons started there talk to each other
over loopback multicast exactly as nodes of a swarm do over a radio, while
the host's own interfaces, routes and firewall are never touched.  Control
sockets are files, so clients outside the namespace reach the daemons
inside as usual.

Nothing outlives the owner: the namespace is held by a process that exits
when the owner's end of a pipe closes (also when the owner is killed), and
every process started inside gets SIGTERM when the owner dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from .errors import CloudkernelError

__all__ = ["PrivateNetwork", "SandboxError"]

_PR_SET_PDEATHSIG = 1
_SETUP = (
    "ip link set lo up && ip link set lo multicast on && "
    "ip route add 224.0.0.0/4 dev lo && echo ready && exec cat"
)


class SandboxError(CloudkernelError):
    """The private network could not be made; the message says what is missing."""


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class PrivateNetwork:
    """A network namespace with multicast on loopback (see the module docstring).

    Use as a context manager; :meth:`close` ends it.

    :param user_namespace: make the network namespace inside a user namespace
        of its own (no root needed).  False (root only) keeps the host's
        users and the caller's real capabilities: processes inside then see
        other users' real uids and gids (in a user namespace, every unmapped
        id shows as 65534), and may use SCHED_FIFO and mlockall, which no
        user namespace grants for real.
    """

    def __init__(self, *, user_namespace: bool = True) -> None:
        if not user_namespace and os.geteuid() != 0:
            raise SandboxError("a private network without a user namespace needs root")
        self._user = ["--user"] if user_namespace else []
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise SandboxError(
                    f"{tool} is not installed (Debian: apt-get install util-linux iproute2)"
                )
        self._holder = subprocess.Popen(
            [
                "unshare",
                *self._user,
                *(["--map-root-user"] if user_namespace else []),
                "--net",
                "sh",
                "-c",
                _SETUP,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline()
        if line.strip() != b"ready":
            err = self._holder.stderr.read().decode(errors="replace") if self._holder.stderr else ""
            self._holder.kill()
            self._holder.wait()
            raise SandboxError(
                "cannot make a private network namespace: "
                + (err.strip().splitlines()[-1] if err.strip() else "unshare failed")
                + " (unprivileged user namespaces must be allowed: "
                "sysctl kernel.unprivileged_userns_clone=1)"
            )
        self.pid = self._holder.pid
        self._children: list[subprocess.Popen[Any]] = []

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside the namespace."""
        return [
            "nsenter",
            "--preserve-credentials",
            *self._user,
            "--net",
            "--target",
            str(self.pid),
            "--",
            *argv,
        ]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the namespace; it gets SIGTERM if this process dies."""
        child = subprocess.Popen(self.command(argv), preexec_fn=_die_with_parent, **kwargs)
        self._children.append(child)
        return child

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside the namespace to completion."""
        return subprocess.run(self.command(argv), check=False, **kwargs)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every process started inside (SIGTERM, then SIGKILL) and the namespace."""
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()
        if self._holder.poll() is None:
            assert self._holder.stdin is not None
            with contextlib.suppress(OSError):
                self._holder.stdin.close()
            try:
                self._holder.wait(timeout)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait()

    def __enter__(self) -> PrivateNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._holder.poll() is None:
                self._holder.kill()
                os.waitpid(self._holder.pid, 0)
