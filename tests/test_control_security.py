"""Control-socket access and key rotation, on real daemons (:mod:`tests.swarmproc`).

Access: a CLI run as user ``nobody`` (the privileges dropped with
``os.setresuid`` after Python has started, since the interpreter may live
where ``nobody`` cannot read) is refused with exit status 5 and a one-line
message, or let in as a member of the control group (``nogroup`` here, so
that no user or group has to be created), per ``control.readers``.

Rotation: three daemons, node 1 publishing all the time; the new key is
staged on nodes 1 and 2, they switch one at a time and retire the old key.
Node 2 must receive every signal node 1 published, counted exactly, and no
frame may be dropped for an unknown key until the retirement; node 3, which
never got the new key, is then no longer heard (its frames counted as
``unknown-key`` drops) and no longer hears them.  A node restarted
mid-rotation holds the new key again from ``node.next_key_file``.

Needs root (network namespaces, changing user); skipped otherwise.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from swarmproc import FAST_MEMBERSHIP, ROOT, LocalSwarm

from cloudkernel.errors import RequestFailed
from cloudkernel.keyfile import generate_key, write_key_file

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: network namespaces and changing user"
)

NOBODY = 65534
NOGROUP = grp.getgrnam("nogroup").gr_gid if os.geteuid() == 0 else 65534
#: a gid that is neither nogroup nor root's: an outsider's only group
OUTSIDER_GID = 54321

_AS_USER = """
import os, sys
sys.path.insert(0, sys.argv[1])
import cloudkernel.cli as cli
uid, gid = int(sys.argv[2]), int(sys.argv[3])
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
sys.argv = ["cloudkernel", *sys.argv[4:]]
cli.main(prog_name="cloudkernel")
"""


def cli_as(uid: int, gid: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``cloudkernel ARGS`` as ``uid``:``gid`` with no supplementary groups."""
    return subprocess.run(
        [sys.executable, "-c", _AS_USER, str(ROOT), str(uid), str(gid), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory others may traverse (pytest's tmp_path is closed to them)."""
    path = Path(tempfile.mkdtemp(prefix="ck-sec-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_peer_credentials_decide(base: Path) -> None:
    settings = {
        1: 'mode = "0666"\ngroup = "nogroup"\nreaders = "group"',
        2: 'mode = "0666"\ngroup = "nogroup"\nreaders = "any"',
        3: 'mode = "0660"\ngroup = "nogroup"',
    }
    # No user namespace: inside one, nobody's ids would show as the overflow id 65534.
    swarm = LocalSwarm(
        base, 3, port=47611, control=lambda node: settings[node], user_namespace=False
    )
    try:
        swarm.start_all()
        s1, s2, s3 = (swarm.socket(n) for n in (1, 2, 3))
        assert os.stat(s1).st_gid == NOGROUP  # chowned to the control group
        assert os.stat(s3).st_mode & 0o777 == 0o660

        # An outsider, readers = "group": refused even a read, exit 5, one clear line.
        result = cli_as(NOBODY, OUTSIDER_GID, "--socket", s1, "status")
        assert result.returncode == 5, result
        line = one_line(result)
        assert line.startswith("error: not-authorised: user nobody (uid 65534, pid ")
        assert "may not use read-only op status" in line
        assert "add the user to group nogroup" in line
        result = cli_as(NOBODY, OUTSIDER_GID, "--socket", s1, "publish", "t", "1")
        assert result.returncode == 5 and "mutating op publish" in one_line(result)

        # readers = "any": the outsider reads, but may not publish or touch keys.
        assert cli_as(NOBODY, OUTSIDER_GID, "--socket", s2, "status").returncode == 0
        assert cli_as(NOBODY, OUTSIDER_GID, "--socket", s2, "key", "status").returncode == 0
        for args in (("publish", "t", "1"), ("key", "switch"), ("key", "retire")):
            result = cli_as(NOBODY, OUTSIDER_GID, "--socket", s2, *args)
            assert result.returncode == 5, (args, result)
            assert "not-authorised" in one_line(result)
        result = cli_as(NOBODY, OUTSIDER_GID, "--socket", s2, "key", "stage", "/dev/null")
        assert result.returncode == 5 and "mutating op key-stage" in one_line(result)

        # A member of the control group may do everything; so may root.
        member_args: list[tuple[str, ...]] = [("status",), ("publish", "t", "2")]
        for socket_path in (s1, s2, s3):
            for member in member_args:
                result = cli_as(NOBODY, NOGROUP, "--socket", socket_path, *member)
                assert result.returncode == 0, (socket_path, member, result)
        with swarm.client(1) as client:
            client.publish("t", 3.0)
            status = client.status()
        assert status["control"]["not_authorised"] == 2  # the two refusals on node 1

        # Mode 0660: the file mode keeps the outsider out before the daemon sees it.
        result = cli_as(NOBODY, OUTSIDER_GID, "--socket", s3, "status")
        assert result.returncode == 5, result
        line = one_line(result)
        assert line.startswith(
            f"error: not authorised: cannot open the cloudkernel daemon's socket {s3}"
        )
        assert "group nogroup" in line
    finally:
        swarm.close()


class Collector:
    """Every raw signal of one topic that a node delivers, from a watch in a thread."""

    def __init__(self, swarm: LocalSwarm, node: int, topic: str) -> None:
        self.values: list[Any] = []
        self._client = swarm.client(node)
        self._watch = self._client.watch(topic, raw=True, duration=120.0)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch:
                if event.get("type") == "signal":
                    self.values.append(event["signal"]["value"])
        except Exception:  # closed under us at the end of the test
            pass

    def close(self) -> None:
        self._watch.close()
        self._client.close()
        self._thread.join(10)


def drops(swarm: LocalSwarm, node: int, reason: str = "unknown-key") -> int:
    with swarm.client(node) as client:
        return int(client.status()["drops"].get(reason, 0))


def test_key_rotation_loses_nothing(base: Path) -> None:
    swarm = LocalSwarm(base, 3, port=47613, extra=FAST_MEMBERSHIP)
    new_key = base / "new.key"
    write_key_file(new_key, generate_key())
    collectors: list[Collector] = []
    stop = threading.Event()
    published: list[int] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            with swarm.client(1) as client:
                n = 0
                while not stop.is_set() and n < 5000:
                    client.publish("rot", n, ttl=60.0, qos="critical")
                    published.append(n)
                    n += 1
                    time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)

    publisher = threading.Thread(target=publish, daemon=True)
    try:
        swarm.start_all()
        swarm.wait_for(
            lambda: all(swarm.client(n).status()["peers"].get("alive", 0) == 2 for n in (1, 2, 3)),
            20.0,
            "the three nodes never all saw each other alive",
        )
        collectors = [Collector(swarm, 2, "rot"), Collector(swarm, 3, "rot")]
        time.sleep(0.3)
        publisher.start()
        time.sleep(0.5)
        with swarm.client(1) as c1, swarm.client(2) as c2:
            before = c1.key_status()
            staged = c1.key_stage(new_key)
            if staged["staged"] == before["current"]:
                pytest.skip("the new key's id is the old one's (1 in 256)")
            assert c2.key_stage(new_key)["next"] == staged["staged"]
            time.sleep(0.5)
            assert c1.key_switch()["current"] == staged["staged"]
            time.sleep(0.7)  # node 2 hears node 1's new key as its next key
            switched = c2.key_switch(window=600)
            assert (switched["current"], switched["previous"]) == (
                staged["staged"],
                before["current"],
            )
            assert 599.0 < switched["window_left"] <= 600.0 + 1e-6  # float rounding of now + window
            time.sleep(0.7)
            # Node 3 (old key only) is still heard by both while the old key is held.
            with swarm.client(3) as c3:
                c3.publish("old", 1.0, ttl=60.0)
            swarm.wait_for(lambda: _has(swarm, 2, "old"), 10.0, "node 3 not heard before retire")
            assert drops(swarm, 1) == 0 and drops(swarm, 2) == 0
            assert c1.key_retire()["retired"] == before["current"]
            assert c2.key_retire()["previous"] is None
            with pytest.raises(RequestFailed) as info:
                c2.key_retire()
            assert info.value.code == "not-found"
        time.sleep(0.5)
        stop.set()
        publisher.join(10)
        assert not errors, errors
        assert len(published) > 200
        swarm.wait_for(
            lambda: len(collectors[0].values) >= len(published),
            20.0,
            f"node 2 got {len(collectors[0].values)} of {len(published)} signals",
        )
        got = collectors[0].values
        assert sorted(got) == published  # every one, once: none lost mid-rotation
        # Node 3 never got the new key: after node 1 switched it hears nothing of it.
        assert len(collectors[1].values) < len(published)
        assert drops(swarm, 3) > 0
        # After the retirement node 3 is no longer heard: its frames are unknown keys.
        base1, base2 = drops(swarm, 1), drops(swarm, 2)
        with swarm.client(3) as c3:
            c3.publish("gone", 1.0, ttl=60.0)
        swarm.wait_for(
            lambda: drops(swarm, 1) > base1 and drops(swarm, 2) > base2,
            10.0,
            "node 3's frames were not counted as unknown-key drops after retire",
        )
        time.sleep(0.5)
        assert not _has(swarm, 2, "gone")
    finally:
        stop.set()
        for collector in collectors:
            collector.close()
        swarm.close()


def _has(swarm: LocalSwarm, node: int, topic: str) -> bool:
    with swarm.client(node) as client:
        return any(row.get("topic") == topic for row in client.topics())


def test_next_key_file_survives_a_restart_mid_rotation(base: Path) -> None:
    swarm = LocalSwarm(base, 2, port=47615, extra=FAST_MEMBERSHIP)
    new_key = base / "new.key"
    write_key_file(new_key, generate_key())
    config = swarm.configs[2]
    config.write_text(
        config.read_text().replace("[node]\n", f'[node]\nnext_key_file = "{new_key}"\n', 1)
    )
    try:
        swarm.start_all()
        with swarm.client(1) as c1:
            old = c1.key_status()["current"]
            staged = c1.key_stage(new_key)["staged"]
            if staged == old:
                pytest.skip("the new key's id is the old one's (1 in 256)")
        with swarm.client(2) as c2:
            assert c2.key_status()["next"] == staged  # held from start-up
        with swarm.client(1) as c1:
            c1.key_switch()
            c1.publish("before", 1.0, ttl=60.0)
        swarm.wait_for(lambda: _has(swarm, 2, "before"), 10.0, "node 2 did not hear 'before'")
        swarm.kill(2)
        swarm.start(2)
        swarm.wait_ready(2)
        with swarm.client(2) as c2:
            status = c2.key_status()
        assert (status["current"], status["next"]) == (old, staged)
        with swarm.client(1) as c1:
            c1.publish("after", 2.0, ttl=60.0)
        swarm.wait_for(lambda: _has(swarm, 2, "after"), 10.0, "restarted node 2 missed 'after'")
        assert drops(swarm, 2) == 0
        assert "held as next" in swarm.log(2)
    finally:
        swarm.close()
