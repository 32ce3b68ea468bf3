"""Starting the harness's child processes so that none escapes its teardown.

Two rules for every process the cluster harness starts (switch, daemons,
agents, other commands inside a node's namespace):

* **It dies with the harness.**  The child asks the kernel for SIGTERM when
  its parent dies (``PR_SET_PDEATHSIG``), so even a SIGKILLed harness leaves
  no process behind; the next run then removes the namespaces and cgroups.
* **A Ctrl-C never lands half-way through starting it.**  A KeyboardInterrupt
  raised inside ``subprocess.Popen`` (between fork and the child's exec, or
  while the parent waits for the exec to succeed) leaves a child that the
  harness has no handle on, and can leave Popen itself waiting.  So
  SIGINT, SIGTERM and SIGHUP are held back while a child is started and put
  on record (:func:`signals_deferred`); one that arrives meanwhile takes
  effect right after, and the teardown then knows every child.  The child
  gets the signals back before it runs its program.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["DEFERRED_SIGNALS", "die_with_parent", "signals_deferred", "spawn"]

_PR_SET_PDEATHSIG = 1

#: the signals that stop the harness, held back while a child starts
DEFERRED_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the harness dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back for the ``with`` block.

    Start a child and record it for teardown inside the block; a signal that
    arrives meanwhile is delivered when the block ends (Python then raises
    KeyboardInterrupt or runs the handler as usual).  Only the calling
    thread's mask changes: call it from the thread that handles signals.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def spawn(
    argv: Sequence[str],
    *,
    setup: Callable[[], None] | None = None,
    **kwargs: Any,
) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **kwargs)`` for a child that dies with the harness.

    Call it inside :func:`signals_deferred` together with recording the
    result.  In the child, before its program runs: the deferred signals are
    unblocked (a blocked mask would survive exec), it asks for SIGTERM when
    the harness dies, then ``setup`` runs (e.g. joining a cgroup).
    """

    def child() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, DEFERRED_SIGNALS)
        die_with_parent()
        if setup is not None:
            setup()

    return subprocess.Popen(list(argv), preexec_fn=child, **kwargs)
