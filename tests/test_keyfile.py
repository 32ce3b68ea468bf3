"""Tests of :mod:`cloudkernel.keyfile`: writing, loading and refusing swarm key files.

Runs as root and as an ordinary user; the one case root cannot provoke (a read
refused by permissions) is skipped under root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudkernel.errors import KeyFileError
from cloudkernel.keyfile import generate_key, load_key_file, write_key_file

SECRET = bytes(range(0xA0, 0xC0))  # not all hex digits as raw bytes
IS_ROOT = os.geteuid() == 0


def leaks(message: str, content: bytes) -> bool:
    """Does ``message`` show ``content`` in any form an operator might see?"""
    forms = {content.hex(), content.hex().upper(), repr(content), str(list(content))}
    try:
        forms.add(content.decode("ascii").strip())
    except UnicodeDecodeError:
        pass
    return any(form and form in message for form in forms)


def put(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def refused(path: Path, *fragments: str) -> str:
    """Load ``path``, expect a one-line KeyFileError naming it and ``fragments``."""
    with pytest.raises(KeyFileError) as info:
        load_key_file(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert "Traceback" not in message
    # No chained OSError for a traceback to show.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    return message


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------
# generate, write, load
# ---------------------------------------------------------------------------


def test_generate_key() -> None:
    a, b = generate_key(), generate_key()
    assert type(a) is bytes
    assert len(a) == len(b) == 32
    assert a != b


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    secret = generate_key()
    write_key_file(path, secret)
    assert path.read_bytes() == secret.hex().encode() + b"\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path) == secret
    assert load_key_file(str(path)) == secret


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277, 0o377])
@pytest.mark.parametrize("overwrite", [False, True])
def test_created_mode_is_0600_whatever_the_umask(
    tmp_path: Path, umask: None, mask: int, overwrite: bool
) -> None:
    path = tmp_path / "swarm.key"
    if overwrite:
        put(path, b"old", 0o644)
    os.umask(mask)
    write_key_file(path, SECRET, overwrite=overwrite)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path) == SECRET


def test_write_refuses_to_overwrite(tmp_path: Path) -> None:
    path = put(tmp_path / "swarm.key", b"precious")
    with pytest.raises(KeyFileError, match="already exists") as info:
        write_key_file(path, SECRET)
    assert str(path) in str(info.value)
    assert not leaks(str(info.value), SECRET)
    assert path.read_bytes() == b"precious"


def test_write_refuses_an_existing_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "swarm.key"
    link.symlink_to(target)  # dangling: O_EXCL must still refuse it
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(link, SECRET)
    assert not target.exists()


def test_overwrite_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    write_key_file(path, SECRET)
    new = generate_key()
    write_key_file(path, new, overwrite=True)
    assert load_key_file(path) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swarm.key"]


def test_overwrite_may_create(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    write_key_file(path, SECRET, overwrite=True)
    assert load_key_file(path) == SECRET


def test_overwrite_of_a_directory_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    path.mkdir()
    with pytest.raises(KeyFileError, match="is a directory, not a key file"):
        write_key_file(path, SECRET, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swarm.key"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_write_into_a_missing_directory(tmp_path: Path, overwrite: bool) -> None:
    path = tmp_path / "nowhere" / "swarm.key"
    with pytest.raises(KeyFileError, match="No such file or directory") as info:
        write_key_file(path, SECRET, overwrite=overwrite)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_write_refuses_a_wrong_length(tmp_path: Path, length: int) -> None:
    path = tmp_path / "swarm.key"
    with pytest.raises(KeyFileError, match=f"32 bytes, got {length}"):
        write_key_file(path, bytes(length))
    assert not path.exists()


# ---------------------------------------------------------------------------
# load: accepted forms
# ---------------------------------------------------------------------------


def test_raw_32_bytes_accepted(tmp_path: Path) -> None:
    assert load_key_file(put(tmp_path / "k", SECRET)) == SECRET
    # Raw bytes that happen to be whitespace at either end are still raw.
    edgy = b"\n" + SECRET[1:-1] + b" "
    assert load_key_file(put(tmp_path / "k2", edgy)) == edgy


@pytest.mark.parametrize(
    "text",
    [
        SECRET.hex(),
        SECRET.hex() + "\n",
        SECRET.hex().upper() + "\r\n",
        "  \t" + SECRET.hex() + "\n\n",
    ],
)
def test_hex_accepted(tmp_path: Path, text: str) -> None:
    assert load_key_file(put(tmp_path / "k", text.encode())) == SECRET


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o500])
def test_private_modes_accepted(tmp_path: Path, mode: int) -> None:
    assert load_key_file(put(tmp_path / "k", SECRET, mode)) == SECRET


def test_symlink_to_a_private_file_accepted(tmp_path: Path) -> None:
    target = put(tmp_path / "real.key", SECRET)
    link = tmp_path / "swarm.key"
    link.symlink_to(target)
    assert load_key_file(link) == SECRET


# ---------------------------------------------------------------------------
# load: refusals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode", [0o640, 0o604, 0o660, 0o644, 0o666, 0o710, 0o770, 0o601, 0o620, 0o602, 0o777]
)
def test_modes_open_to_others_refused(tmp_path: Path, mode: int) -> None:
    path = put(tmp_path / "swarm.key", SECRET.hex().encode() + b"\n", mode)
    message = refused(path, f"{mode:04o}", f"chmod 600 {path}")
    assert not leaks(message, SECRET)


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", "is empty"),
        (b"\n", "holds only whitespace"),
        (SECRET[:31], "holds 31 bytes"),
        (SECRET + b"\n", "holds 33 bytes"),
        (SECRET * 2, "holds 64 bytes"),
        (SECRET.hex()[:-1].encode(), "holds 63 hex digits"),
        (SECRET.hex().encode() + b"a\n", "holds 65 hex digits"),
        (SECRET.hex()[:32].encode(), "holds 32 hex digits"),
        (b"g" * 64, "64 characters that are not all hex digits"),
        (b"zz" + SECRET.hex()[2:].encode() + b"\n", "not all hex digits"),
        (b"0x" + SECRET.hex().encode(), "holds 66 bytes"),
        (" ".join(f"{b:02x}" for b in SECRET).encode(), "holds 95 bytes"),
        (SECRET.hex().encode() * 100, "more than 4096 bytes"),
    ],
)
def test_bad_content_refused(tmp_path: Path, content: bytes, found: str) -> None:
    path = put(tmp_path / "swarm.key", content)
    message = refused(path, found, "expected 32 raw bytes or 64 hex digits")
    if content.strip():
        assert not leaks(message, content)
        assert not leaks(message, SECRET)


def test_directory_refused(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    path.mkdir(mode=0o700)
    assert refused(path, "is a directory, not a regular file")


def test_named_pipe_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    os.mkfifo(path, 0o600)
    assert refused(path, "is a named pipe, not a regular file")


def test_device_refused() -> None:
    assert refused(Path("/dev/null"), "is a device, not a regular file")


def test_missing_file_refused(tmp_path: Path) -> None:
    assert refused(tmp_path / "absent.key", "cannot open key file", "No such file or directory")


def test_path_through_a_file_refused(tmp_path: Path) -> None:
    path = put(tmp_path / "plain", b"x") / "swarm.key"
    assert refused(path, "Not a directory")


@pytest.mark.skipif(IS_ROOT, reason="root reads any file, so a permission error cannot be provoked")
def test_unreadable_file_refused(tmp_path: Path) -> None:
    path = put(tmp_path / "swarm.key", SECRET, 0o200)
    try:
        assert refused(path, "cannot open key file", "Permission denied")
    finally:
        path.chmod(0o600)


def test_overwrite_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    link = tmp_path / "link"
    link.symlink_to(put(tmp_path / "target", SECRET))
    for path, kind in ((fifo, "a named pipe"), (link, "a symbolic link")):
        with pytest.raises(KeyFileError, match=f"is {kind}, not a key file"):
            write_key_file(path, SECRET, overwrite=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another user")
def test_overwrite_keeps_the_owner(tmp_path: Path) -> None:
    path = put(tmp_path / "swarm.key", SECRET)
    os.chown(path, 65534, 65534)
    write_key_file(path, bytes(range(32)), overwrite=True)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)


def test_whitespace_is_not_a_raw_key(tmp_path: Path) -> None:
    assert refused(put(tmp_path / "swarm.key", b"\n" * 32), "holds only whitespace")
