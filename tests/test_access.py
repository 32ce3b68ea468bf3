"""Tests of who may use the control socket: :mod:`cloudkernel.core.access` (pure)
and :mod:`cloudkernel.aio.peercred` (credentials from the kernel, the group)."""

from __future__ import annotations

import grp
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.aio.peercred import _proc_groups, peer_credentials, resolve_group, user_name
from cloudkernel.core.access import AccessPolicy, Credentials, authorise
from cloudkernel.core.control import MUTATING_OPS, READ_ONLY_OPS, ControlOp

DAEMON_UID = 990
GROUP = 995
STRICT = AccessPolicy(DAEMON_UID, GROUP, "cloudkernel", "group")
OPEN = AccessPolicy(DAEMON_UID, GROUP, "cloudkernel", "any")

# (uid, gids): fully authorised whatever the op and the readers setting
AUTHORISED = [
    (0, []),  # root
    (0, [5, 6]),
    (DAEMON_UID, []),  # the daemon's own user
    (1000, [GROUP]),  # the group as primary group
    (1000, [100, 27, GROUP]),  # the group as a supplementary group
]
OUTSIDERS = [(1000, []), (1000, [100, 27]), (65534, [65534]), (DAEMON_UID + 1, [GROUP + 1])]


@pytest.mark.parametrize(("uid", "gids"), AUTHORISED)
@pytest.mark.parametrize("op", list(ControlOp))
@pytest.mark.parametrize("policy", [STRICT, OPEN])
def test_authorised_may_use_every_op(
    uid: int, gids: list[int], op: ControlOp, policy: AccessPolicy
) -> None:
    assert authorise(op, uid, gids, policy) is None


@pytest.mark.parametrize(("uid", "gids"), OUTSIDERS)
@pytest.mark.parametrize("op", sorted(MUTATING_OPS))
@pytest.mark.parametrize("policy", [STRICT, OPEN])
def test_outsiders_may_never_mutate(
    uid: int, gids: list[int], op: ControlOp, policy: AccessPolicy
) -> None:
    why = authorise(op, uid, gids, policy)
    assert why is not None
    assert f"may not use mutating op {op}" in why
    assert "add the user to group cloudkernel" in why
    assert f"uid {DAEMON_UID}" in why and f"gid {GROUP}" in why


@pytest.mark.parametrize(("uid", "gids"), OUTSIDERS)
@pytest.mark.parametrize("op", sorted(READ_ONLY_OPS))
def test_outsiders_read_only_per_setting(uid: int, gids: list[int], op: ControlOp) -> None:
    assert authorise(op, uid, gids, OPEN) is None
    why = authorise(op, uid, gids, STRICT)
    assert why is not None
    assert f"may not use read-only op {op}" in why
    assert 'control.readers = "group"' in why


@pytest.mark.parametrize("op", ["reload", "shutdown", "", "GET"])
def test_an_op_not_known_to_be_read_only_counts_as_mutating(op: str) -> None:
    why = authorise(op, 1000, [], OPEN)
    assert why is not None and "mutating" in why
    assert authorise(op, 0, [], OPEN) is None


@given(
    st.sampled_from([*ControlOp, "reload", "x"]),
    st.integers(0, 2**32 - 1),
    st.frozensets(st.integers(0, 2**32 - 1), max_size=8),
    st.sampled_from([STRICT, OPEN]),
)
def test_authorise_is_the_rule(
    op: str, uid: int, gids: frozenset[int], policy: AccessPolicy
) -> None:
    full = uid in (0, DAEMON_UID) or GROUP in gids
    reader = op in READ_ONLY_OPS and policy.readers == "any"
    assert (authorise(op, uid, gids, policy) is None) == (full or reader)


def test_credentials_describe() -> None:
    who = Credentials(42, 1000, 1000, frozenset({1000}))
    assert who.describe("alice") == "user alice (uid 1000, pid 42)"
    assert who.describe(None) == "uid 1000 (pid 42)"


# -- the kernel's side ----------------------------------------------------------


def test_peer_credentials_of_a_socket_pair() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        who = peer_credentials(right)
    assert (who.pid, who.uid, who.gid) == (os.getpid(), os.geteuid(), os.getegid())
    assert who.gid in who.groups
    assert set(os.getgroups()) <= who.groups


def test_proc_groups_reads_status() -> None:
    assert set(_proc_groups(os.getpid())) == set(os.getgroups())
    assert _proc_groups(2**22 + 12345) == []  # beyond pid_max: no such process


def test_resolve_group_existing_and_fallback() -> None:
    root = grp.getgrgid(0).gr_name
    assert resolve_group(root) == (0, root, None)
    gid, _, note = resolve_group("ck-no-such-group-x")
    assert gid == os.getegid()
    assert note is not None
    assert "group 'ck-no-such-group-x' does not exist" in note
    assert "groupadd --system ck-no-such-group-x" in note
    gid, _, note = resolve_group("")
    assert gid == os.getegid() and note is not None and "control.group is empty" in note


def test_user_name() -> None:
    assert user_name(0) == "root"
    assert user_name(2**31 - 7) is None
