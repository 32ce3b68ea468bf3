"""Swarm key files: make a key, write it, read it back (the I/O side of ``core.auth``).

A key file holds one 32-byte swarm key, either as 64 hex digits (what
:func:`write_key_file` writes, with a newline) or as the 32 raw bytes.  It must
be a regular file that gives no permission to group or others (mode 0600 or
stricter).

Rules of this module:

* No message, exception or ``repr`` contains key material: errors describe
  what was found (a length, a mode), never the bytes.
* Every failure is a :class:`~cloudkernel.errors.KeyFileError` naming the path
  and the reason in one line, fit to show an operator as it is.
* Permissions are checked with ``fstat`` on the descriptor that is then read,
  so the file cannot be swapped between the check and the read.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from typing import Final

from .core.auth import KEY_BYTES
from .errors import KeyFileError

__all__ = ["generate_key", "load_key_file", "write_key_file"]

_HEX_DIGITS: Final = 2 * KEY_BYTES
_HEX_CHARS: Final = frozenset(b"0123456789abcdefABCDEF")
_HEX_KEY: Final = re.compile(rb"[0-9a-fA-F]{%d}" % _HEX_DIGITS)
# The longest file worth reading: 64 hex digits with generous whitespace.  Reading
# stops beyond it, so a wrong path to a huge file fails fast.
_MAX_READ: Final = 4096

StrPath = str | os.PathLike[str]


def _reason(exc: OSError) -> str:
    """The OS's words for ``exc`` ("No such file or directory"), without the path."""
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def generate_key() -> bytes:
    """A new random swarm key: 32 bytes from the OS's CSPRNG (``os.urandom``).

    :returns: the key.
    """
    return os.urandom(KEY_BYTES)


def write_key_file(path: StrPath, secret: bytes, *, overwrite: bool = False) -> None:
    """Write ``secret`` to ``path`` as 64 lowercase hex digits and a newline, mode 0600.

    Without ``overwrite`` the file is created with ``O_EXCL``, so an existing
    file (or symlink) at ``path`` is never touched.  With ``overwrite`` the key
    goes to a temporary file in the same directory, which then replaces
    ``path`` in one rename: a reader sees the old key or the new one, never a
    part.  Either way the file is mode 0600 whatever the umask, and is synced
    to disk before this returns.

    :param path: where to write.
    :param secret: the 32-byte swarm key.
    :param overwrite: replace an existing file at ``path``.
    :raises KeyFileError: if ``secret`` is not 32 bytes, if ``path`` exists and
        ``overwrite`` is false, or if the OS refuses.
    """
    name = os.fspath(path)
    if len(secret) != KEY_BYTES:
        raise KeyFileError(
            f"a swarm key is {KEY_BYTES} bytes, got {len(secret)}; not writing {name}"
        )
    data = bytes(secret).hex().encode("ascii") + b"\n"
    if not overwrite:
        try:
            _create(name, data)
        except FileExistsError:
            raise KeyFileError(
                f"key file {name} already exists; refusing to overwrite it"
            ) from None
        except OSError as exc:
            raise KeyFileError(f"cannot write key file {name}: {_reason(exc)}") from None
        _sync_dir(name)
        return
    # Replace only a regular file, and keep its owner: a key file belongs to
    # the daemon's user even when root writes it.
    try:
        old = os.lstat(name)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {name}: {_reason(exc)}") from None
    if old is not None and not stat.S_ISREG(old.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(old.st_mode) else _file_kind(old.st_mode)
        raise KeyFileError(f"{name} is {kind}, not a key file; refusing to replace it")
    directory, base = os.path.split(name)
    while True:
        temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            _create(temp, data)
        except FileExistsError:
            continue
        except OSError as exc:
            raise KeyFileError(f"cannot write key file {name}: {_reason(exc)}") from None
        break
    try:
        if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(temp, old.st_uid, old.st_gid)
        os.replace(temp, name)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise KeyFileError(f"cannot write key file {name}: {_reason(exc)}") from None
    _sync_dir(name)


def _create(path: str, data: bytes) -> None:
    """Create ``path`` (never an existing one), mode 0600, holding ``data``, synced.

    On failure after creating it, removes it again, so that no half-written key
    file is left behind to be loaded later.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        # The umask can only have removed bits from 0600; this puts back any it did.
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def _sync_dir(path: str) -> None:
    """Make the new directory entry of ``path`` durable; best effort."""
    directory = os.path.dirname(path) or "."
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_key_file(path: StrPath) -> bytes:
    """Read the swarm key in ``path``.

    The file must be a regular file (a symlink to one is followed), must give
    no permission to group or others, and must hold either exactly 32 raw
    bytes or 64 hex digits (either case) with optional whitespace around them.

    :param path: the key file.
    :returns: the 32-byte swarm key.
    :raises KeyFileError: if the file is missing or unreadable, is not a
        regular file, is open to group or others, or holds anything else; the
        message names the path and says what is wrong (never the content).
    """
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {name}: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {name} is {_file_kind(st.st_mode)}, not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {name} has mode {mode:04o}, which gives group or others access "
                f"to the swarm key; fix it with: chmod 600 {name}"
            )
        data = _read_at_most(fd, _MAX_READ + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {name}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    return _parse(name, data)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        chunk = os.read(fd, limit - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _parse(name: str, data: bytes) -> bytes:
    """The key in a key file's ``data``; the messages describe, never quote."""
    text = data.strip()
    is_hex = bool(text) and all(c in _HEX_CHARS for c in text)
    # 32 random bytes are all hex digits once in ~1e34 keys; 32 hex digits are
    # a half-length key in hex (or a cut-off one), so that is refused.
    # Blank or whitespace-only "raw" keys are a damaged file, not a key.
    if len(data) == KEY_BYTES and not is_hex and text:
        return data
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text.decode("ascii"))
    expected = f"expected {KEY_BYTES} raw bytes or {_HEX_DIGITS} hex digits"
    if not text:
        found = "is empty" if not data else "holds only whitespace"
    elif len(data) > _MAX_READ:
        found = f"holds more than {_MAX_READ} bytes"
    elif len(text) == _HEX_DIGITS and text.isascii():
        found = f"holds {_HEX_DIGITS} characters that are not all hex digits"
    elif is_hex:
        found = f"holds {len(text)} hex digits"
    else:
        found = f"holds {len(data)} bytes"
    raise KeyFileError(f"key file {name} {found}; {expected}")


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "something else"
