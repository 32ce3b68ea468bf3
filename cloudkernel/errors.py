"""Exceptions raised by cloudkernel.

Every error a caller can provoke with bad input is a subclass of
:class:`CloudkernelError`; decoders of untrusted bytes raise a subclass that is
also a :class:`ValueError`, so ``except ValueError`` catches bad input without
catching our own bugs.
"""

from __future__ import annotations

__all__ = [
    "CloudkernelError",
    "ConfigError",
    "ControlError",
    "ControlProtocolError",
    "DaemonNotAuthorised",
    "DaemonNotRunning",
    "DaemonTimeout",
    "DaemonUnreachable",
    "FECError",
    "FrameError",
    "KeyFileError",
    "KeyRingError",
    "PayloadError",
    "RequestFailed",
    "SignalError",
]


class CloudkernelError(Exception):
    """Base class of every cloudkernel exception."""


class FECError(CloudkernelError, ValueError):
    """An erasure or Reed-Solomon code cannot do what was asked.

    Raised for parameters out of range, packets of the wrong count, length or
    index, and for blocks or codewords that cannot be rebuilt.  The message
    names the offending value.
    """


class SignalError(CloudkernelError, ValueError):
    """A signal given to publish breaks a limit of the protocol.

    Our caller's mistake, not a peer's: the message names the field, the
    value and the limit.
    """


class PayloadError(CloudkernelError, ValueError):
    """A peer's signal payload cannot be decoded or breaks a limit."""


class FrameError(CloudkernelError, ValueError):
    """A peer's frame breaks the wire format.

    ``reason`` is one of the drop reasons of ``docs/PROTOCOL.md`` section 6.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyFileError(CloudkernelError):
    """A swarm key file is missing, unreadable, malformed or too open."""


class KeyRingError(CloudkernelError, ValueError):
    """A key cannot join the key ring (wrong length, clashing key id)."""


class ConfigError(CloudkernelError, ValueError):
    """A configuration value is out of range or inconsistent.

    Objects that check their own settings raise it with a message alone.  The
    config file loader (``cloudkernel.config``) adds where the error is:
    ``source`` (the file's path), ``line`` (1-based, None when unknown) and
    ``field`` (a dotted path such as ``mesh.port`` or ``topic[2].kind``).
    ``str()`` is one line fit to print as it is, e.g.
    ``/etc/cloudkernel/cloudkernel.toml:12: mesh.port: must be an integer in
    1..65535, got 70000``; ``message`` is the part after the place.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.field = field

    def __str__(self) -> str:
        place = ""
        if self.source is not None:
            place = self.source if self.line is None else f"{self.source}:{self.line}"
            place += ": "
        elif self.line is not None:
            place = f"line {self.line}: "
        if self.field:
            place += f"{self.field}: "
        return place + self.message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str], dict[str, object]]:
        # The default pickles args only, which would lose the place.
        state: dict[str, object] = {"source": self.source, "line": self.line, "field": self.field}
        return (type(self), (self.message,), state)


class ControlError(CloudkernelError, ValueError):
    """A control message we are about to encode breaks the control protocol.

    Our own mistake, not a peer's: a request with a bad op or argument, a
    reply that is not plain data or is over ``MAX_REPLY``.  The message names
    the field, the value and the limit.
    """


class ControlProtocolError(CloudkernelError, ValueError):
    """The daemon's bytes on the control socket break the control protocol.

    ``decoded`` holds the replies and events that the same ``feed`` call
    decoded from the good bytes before the bad ones, in order, so that none
    is lost however the bytes were split.
    """

    def __init__(self, message: str, decoded: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.decoded = decoded


class DaemonUnreachable(CloudkernelError):
    """The client cannot talk to the daemon over its control socket.

    ``socket_path`` is the socket tried.  The subclasses say why when the
    cause is known; this class itself is raised for the rest (permission
    denied on the socket, a path too long for a socket address, ...).
    ``cloudkernel`` exits with status 3 for every one of them.
    """

    def __init__(self, message: str, *, socket_path: str = "") -> None:
        super().__init__(message)
        self.socket_path = socket_path

    def __reduce__(self) -> tuple[type[DaemonUnreachable], tuple[str], dict[str, object]]:
        # The default pickles args only, which would lose the path.
        return (type(self), (str(self),), {"socket_path": self.socket_path})


class DaemonNotRunning(DaemonUnreachable):
    """No daemon serves the control socket.

    The socket file is missing, nobody listens on it (``ECONNREFUSED``), or
    the daemon closed the connection.  The message names the socket path and
    says how to start the daemon or how to name another socket.
    """


class DaemonNotAuthorised(DaemonUnreachable):
    """The file mode of the control socket keeps this user out (``EACCES``).

    The message names the socket's group and how to join it.  ``cloudkernel``
    exits with status 5 for it, as for a ``not-authorised`` reply.
    """


class DaemonTimeout(DaemonUnreachable):
    """The daemon did not accept, read or answer a request within the client's timeout."""


class RequestFailed(CloudkernelError):
    """The daemon answered a request with an error reply.

    ``code`` is the error code of ``docs/CONTROL.md`` section 5 (``not-found``,
    ``bad-argument``, ``busy``, ...); ``message`` is the daemon's message for a
    human.  ``str()`` is ``"<code>: <message>"``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[RequestFailed], tuple[str, str]]:
        return (type(self), (self.code, self.message))
