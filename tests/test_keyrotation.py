"""Tests of :mod:`cloudkernel.keyrotation`: the daemon's side of the ``key-*`` ops."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudkernel.core.auth import KeyRing, SwarmKey
from cloudkernel.errors import KeyFileError
from cloudkernel.keyfile import generate_key, write_key_file
from cloudkernel.keyrotation import (
    DEFAULT_SWITCH_WINDOW,
    KeyOpRefused,
    key_status,
    load_next_key,
    retire,
    stage,
    switch,
)


def keyfile(path: Path) -> tuple[Path, SwarmKey]:
    secret = generate_key()
    write_key_file(path, secret)
    return path, SwarmKey(secret)


def test_a_whole_rotation(tmp_path: Path) -> None:
    old = SwarmKey(generate_key())
    ring = KeyRing(old)
    path, new = keyfile(tmp_path / "new.key")
    if new.key_id == old.key_id:  # 1 in 256
        pytest.skip("the random keys share a key id")
    status = key_status(ring, 0.0)
    assert status == {
        "keys": [{"role": "current", "key_id": old.key_id}],
        "current": old.key_id,
        "next": None,
        "previous": None,
        "window_left": None,
    }
    staged = stage(ring, str(path), 1.0)
    assert staged["staged"] == new.key_id and staged["next"] == new.key_id
    assert ring.current is old
    assert ring.lookup(new.key_id, 1.0) == new  # accepted before any node sends with it
    switched = switch(ring, 2.0, None)
    assert (switched["current"], switched["previous"]) == (new.key_id, old.key_id)
    assert switched["window_left"] == DEFAULT_SWITCH_WINDOW
    assert key_status(ring, 12.0)["window_left"] == DEFAULT_SWITCH_WINDOW - 10.0
    assert ring.current == new and ring.lookup(old.key_id, 3.0) is old
    retired = retire(ring, 4.0)
    assert retired["retired"] == old.key_id and retired["previous"] is None
    assert ring.lookup(old.key_id, 4.0) is None


def test_switch_with_a_window_then_it_ends(tmp_path: Path) -> None:
    ring = KeyRing(SwarmKey(bytes(32)))
    ring.install_next(SwarmKey(bytes([1]) * 32))
    assert switch(ring, 10.0, 5.0)["window_left"] == 5.0
    with pytest.raises(KeyOpRefused, match="no previous key to retire") as info:
        retire(ring, 15.0)  # the window ended by itself
    assert info.value.missing


def test_switch_needs_a_staged_key() -> None:
    with pytest.raises(KeyOpRefused, match="no key is staged") as info:
        switch(KeyRing(SwarmKey(bytes(32))), 0.0, None)
    assert info.value.missing


def test_stage_checks_the_file_as_start_up_does(tmp_path: Path) -> None:
    ring = KeyRing(SwarmKey(bytes(32)))
    open_key = tmp_path / "open.key"
    open_key.write_bytes(bytes(range(32)))
    open_key.chmod(0o644)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 31)
    short.chmod(0o600)
    cases = [
        (open_key, "has mode 0644, which gives group or others access"),
        (short, "holds 31 bytes; expected 32 raw bytes or 64 hex digits"),
        (tmp_path / "missing.key", "cannot open key file"),
        (tmp_path, "is a directory, not a regular file"),
    ]
    for path, words in cases:
        with pytest.raises(KeyOpRefused, match=words) as info:
            stage(ring, str(path), 0.0)
        assert not info.value.missing
    assert ring.keys(0.0) == [("current", ring.current.key_id)]


def test_stage_refuses_the_current_key(tmp_path: Path) -> None:
    path, key = keyfile(tmp_path / "k")
    ring = KeyRing(key)
    with pytest.raises(KeyOpRefused, match="it is the same key"):
        stage(ring, str(path), 0.0)


def test_load_next_key_at_start_up(tmp_path: Path) -> None:
    current = SwarmKey(bytes(32))
    ring = KeyRing(current)
    warn, line = load_next_key(ring, str(tmp_path / "absent.key"))
    assert warn and "does not exist: no next key held" in line
    assert ring.keys(0.0) == [("current", current.key_id)]
    path, new = keyfile(tmp_path / "new.key")
    if new.key_id == current.key_id:
        pytest.skip("the random keys share a key id")
    warn, line = load_next_key(ring, str(path))
    assert not warn and f"key 0x{new.key_id:02x} of node.next_key_file" in line
    assert ring.keys(0.0) == [("current", current.key_id), ("next", new.key_id)]
    # After the rotation, key_file holds the new key too: nothing to hold.
    ring = KeyRing(new)
    warn, line = load_next_key(ring, str(path))
    assert not warn and "holds the current key" in line
    assert ring.keys(0.0) == [("current", new.key_id)]
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="has mode 0640"):
        load_next_key(ring, str(path))
