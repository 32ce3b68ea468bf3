"""Control-socket access, on real daemons (:mod:`tests.swarmproc`).

Access: a CLI run as user ``nobody`` (the privileges dropped with
``os.setresuid`` after Python has started, since the interpreter may live
where ``nobody`` cannot read) is refused with exit status 5 and a one-line
message, or let in as a member of the control group (``nogroup`` here, so
that no user or group has to be created), per ``control.readers``.

Needs root (network namespaces, changing user); skipped otherwise.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmproc import ROOT, LocalSwarm

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

        # readers = "any": the outsider reads, but may not publish.
        assert cli_as(NOBODY, OUTSIDER_GID, "--socket", s2, "status").returncode == 0
        assert cli_as(NOBODY, OUTSIDER_GID, "--socket", s2, "topics").returncode == 0
        result = cli_as(NOBODY, OUTSIDER_GID, "--socket", s2, "publish", "t", "1")
        assert result.returncode == 5 and "mutating op publish" in one_line(result)

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
