"""The shipped unit under a real systemd 252, booted in ``systemd-nspawn``.

One container for the module (tests/nspawn.py: a cached Debian bookworm
root, booted with ``--volatile=overlay``).  Bound into it, read-only: the
shipped ``systemd/cloudkernel.service``, ``cloudkernel.sysusers`` and
``cloudkernel.tmpfiles``; this checkout, its virtualenv's site-packages and
the Python the virtualenv runs on, under /opt (the unit's ``ProtectHome=``
hides /root and /home from the service); and ``/usr/local/bin/cloudkernel``,
a script that runs this checkout's CLI with that Python.  ``/etc/cloudkernel``
is a directory of the test, holding the example config.  The one drop-in
shortens ``WatchdogSec=`` and ``RestartSec=`` so the watchdog test is quick.

Install as README.md says (``systemd-sysusers``, ``systemd-tmpfiles``), start
the service (``Type=notify``: active means the daemon sent READY=1), then
check the main process runs SCHED_FIFO at the configured priority as user
cloudkernel, ``systemctl reload`` applies a change, and a daemon frozen with
SIGSTOP is killed by the watchdog and restarted.

Skipped, with the reason, only where a container cannot run (not root, no
``systemd-nspawn``/``debootstrap``).  A cold cache adds the root's build
(about 1 to 2 minutes); warm, the module takes about half a minute.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nspawn import Container, NspawnError, os_root, unavailable

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
SERVICE = "cloudkernel.service"
WATCHDOG_SEC = 3
PRIORITY = 40  # systemd/cloudkernel.toml

_reason = unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_reason is not None, reason=f"cannot boot a container: {_reason}"),
]


def _python_binds() -> tuple[str, list[tuple[Path, str, bool]], list[str]]:
    """The interpreter to run inside, what to bind for it, and its sys.path additions."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    binds: list[tuple[Path, str, bool]] = [(ROOT, "/opt/ck-src", True)]
    paths = ["/opt/ck-src"]
    if sys.prefix != sys.base_prefix:  # a virtualenv: its packages, and the Python under it
        for i, packages in enumerate(site.getsitepackages()):
            if Path(packages).is_dir():
                binds.append((Path(packages), f"/opt/ck-site{i}", True))
                paths.append(f"/opt/ck-site{i}")
    if Path(sys.base_prefix).resolve() == Path("/usr"):
        return f"/usr/bin/{version}", binds, paths  # Debian's own Python, as in the root
    binds.append((Path(sys.base_prefix), "/opt/ck-python", True))
    return f"/opt/ck-python/bin/{version}", binds, paths


def _wrapper(python: str, paths: list[str]) -> str:
    return (
        f"#!{python}\n"
        "# cloudkernel from the test's checkout, as a pip install would run it.\n"
        "import sys\n"
        f"sys.path[1:1] = {paths!r}\n"
        "from cloudkernel.cli import main\n"
        "sys.exit(main())\n"
    )


class Service:
    """The booted container and what the tests ask of it."""

    def __init__(self, container: Container, etc: Path) -> None:
        self.c = container
        self.etc = etc

    def show(self, *props: str) -> dict[str, str]:
        return self.c.show(SERVICE, *props)

    def journal(self) -> str:
        return self.c.run(
            ["journalctl", "-u", SERVICE, "--no-pager", "-o", "cat"], check=False
        ).stdout

    def status(self) -> dict[str, Any]:
        out = self.c.run(["cloudkernel", "status", "--json"], timeout=30).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def proc(self, pid: int, name: str) -> str:
        return self.c.run(["cat", f"/proc/{pid}/{name}"]).stdout

    def diagnose(self) -> str:
        state = self.c.run(["systemctl", "status", "--no-pager", "-l", SERVICE], check=False)
        return f"{state.stdout}\n--- journal ---\n{self.journal()[-3000:]}"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    try:
        root = os_root()
    except NspawnError as exc:
        pytest.fail(f"cannot build the container's root: {exc}")
    base = tmp_path_factory.mktemp("nspawn")
    python, binds, paths = _python_binds()
    script = base / "cloudkernel"
    script.write_text(_wrapper(python, paths))
    script.chmod(0o755)
    ld_conf = base / "ck-python.conf"
    ld_conf.write_text("/opt/ck-python/lib\n")  # its RUNPATH names the host's path
    etc = base / "etc-cloudkernel"
    etc.mkdir()
    (etc / "cloudkernel.toml").write_text((SYSTEMD / "cloudkernel.toml").read_text())
    dropin = base / "dropin"
    dropin.mkdir()
    (dropin / "test.conf").write_text(
        f"[Service]\nWatchdogSec={WATCHDOG_SEC}s\nRestartSec=1s\n"
        "# a watchdog kill (SIGABRT) leaves no core file behind\nLimitCORE=0\n"
    )
    binds += [
        (script, "/usr/local/bin/cloudkernel", True),
        (ld_conf, "/etc/ld.so.conf.d/ck-python.conf", True),
        (SYSTEMD / "cloudkernel.service", f"/etc/systemd/system/{SERVICE}", True),
        (dropin, f"/etc/systemd/system/{SERVICE}.d", True),
        (SYSTEMD / "cloudkernel.sysusers", "/usr/lib/sysusers.d/cloudkernel.conf", True),
        (SYSTEMD / "cloudkernel.tmpfiles", "/usr/lib/tmpfiles.d/cloudkernel.conf", True),
        (etc, "/etc/cloudkernel", False),
    ]
    container = Container(root, binds, base / "console.log")
    try:
        container.run(["ldconfig"])
        # The container has only lo: multicast on it, with the host's ip(8).
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "lo", "multicast", "on"],
            ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
        ):
            subprocess.run(
                ["nsenter", "-t", str(container.leader), "-n", *command],
                check=True,
                timeout=10,
                capture_output=True,
            )
        # The install steps of README.md.
        container.run(["systemd-sysusers"])
        container.run(["systemd-tmpfiles", "--create", "cloudkernel.conf"])
        container.run(["systemctl", "daemon-reload"])
        svc = Service(container, etc)
        started = container.run(["systemctl", "start", SERVICE], check=False, timeout=90)
        assert started.returncode == 0, f"{started.stderr}\n{svc.diagnose()}"
        yield svc
    finally:
        container.close()


def test_service_reaches_active_through_ready(service: Service) -> None:
    props = service.show("Type", "ActiveState", "SubState", "StatusText", "NRestarts")
    assert props["Type"] == "notify"
    # Type=notify: systemctl start returned and the unit is active only after READY=1.
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), service.diagnose()
    assert props["NRestarts"] == "0"
    assert "peers alive" in props["StatusText"] and "SCHED_FIFO" in props["StatusText"], props
    # STATUS= follows what the daemon does, a few seconds late.
    published = service.status()["signals"]["published"]
    service.c.run(["cloudkernel", "publish", "status/x", "2"])

    def refreshed() -> str | None:
        text = service.show("StatusText")["StatusText"]
        return text if f"{published + 1} published" in text else None

    service.c.wait_for(
        refreshed, 15, lambda: f"STATUS= not refreshed: {service.show('StatusText')}"
    )


def test_main_process_is_fifo_as_its_own_user(service: Service) -> None:
    pid = int(service.show("MainPID")["MainPID"])
    assert pid > 0
    entry = service.c.run(["getent", "passwd", "cloudkernel"]).stdout.split(":")
    uid, gid = int(entry[2]), int(entry[3])
    status = dict(
        (line.split(":", 1)[0], line.split(":", 1)[1].split())
        for line in service.proc(pid, "status").splitlines()
    )
    assert [int(u) for u in status["Uid"]] == [uid] * 4, status["Uid"]
    assert [int(g) for g in status["Gid"]] == [gid] * 4, status["Gid"]
    # /proc/PID/stat fields 40 and 41 (after the command in parentheses):
    # rt_priority and policy, 1 being SCHED_FIFO.
    fields = service.proc(pid, "stat").rsplit(")", 1)[1].split()
    rt_priority, policy = int(fields[37]), int(fields[38])
    assert (policy, rt_priority) == (1, PRIORITY), service.journal()
    assert int(status["VmLck"][0]) > 0, "lock_memory = true left no memory locked"
    realtime = service.status()["realtime"]
    assert realtime["active"] and realtime["warnings"] == [], realtime
    # The key made on the first start belongs to the service's user, mode 0600.
    key = os.stat(service.etc / "swarm.key")
    assert (key.st_uid, key.st_gid, key.st_mode & 0o777) == (uid, gid, 0o600)


def test_reload_applies_a_change(service: Service) -> None:
    """One source is too few for a consensus by default; a reloaded [[topic]]
    entry lowers min_sources for the topic and the running daemon fuses it."""
    pid = service.show("MainPID")["MainPID"]
    before = service.status()
    service.c.run(["cloudkernel", "publish", "reload/x", "1.5", "--half-life", "600"])

    def estimate(state: str | None = None) -> dict[str, Any] | None:
        """The topic's estimate (in ``state`` when given), or None."""
        out = service.c.run(["cloudkernel", "get", "reload/x", "--json"], check=False).stdout
        view: dict[str, Any] = json.loads(out) if out.strip() else {}
        return view if view and state in (None, view.get("state")) else None

    first = service.c.wait_for(estimate, 10, "the published signal never arrived")
    assert (first["state"], first["reason"]) == ("no-consensus", "too-few-sources"), first
    config = service.etc / "cloudkernel.toml"
    text = config.read_text()
    config.write_text(text + '\n[[topic]]\npattern = "reload/*"\nmin_sources = 1\n')
    service.c.run(["systemctl", "reload", SERVICE])
    after = service.c.wait_for(
        lambda: estimate("ok"), 20, lambda: f"the reload was not applied:\n{service.diagnose()}"
    )
    assert after["value"] == 1.5 and after["sources_used"] == 1
    reload = service.status()["reload"]
    assert reload["succeeded"] == before["reload"]["succeeded"] + 1 and reload["last_ok"]
    assert service.show("MainPID")["MainPID"] == pid  # reloaded, not restarted

    # A broken file is refused: the daemon runs on, and STATUS= says so.
    config.write_text(text + "\n[membership]\nheartbeat_interval = -1\n")
    service.c.run(["systemctl", "reload", SERVICE])
    service.c.wait_for(
        lambda: True if service.status()["reload"]["failed"] > before["reload"]["failed"] else None,
        20,
        lambda: f"the bad reload was not counted:\n{service.diagnose()}",
    )

    def refused_status() -> str | None:
        text = service.show("StatusText")["StatusText"]
        return text if "last reload refused" in text else None

    status_text = service.c.wait_for(
        refused_status, 15, "STATUS= does not tell of the refused reload"
    )
    assert "heartbeat_interval" in status_text
    assert service.show("ActiveState", "MainPID") == {"ActiveState": "active", "MainPID": pid}
    config.write_text(text)
    service.c.run(["systemctl", "reload", SERVICE])


def test_frozen_daemon_is_killed_by_the_watchdog_and_restarted(service: Service) -> None:
    props = service.show("MainPID", "NRestarts", "WatchdogUSec")
    assert props["WatchdogUSec"] == f"{WATCHDOG_SEC}s"
    old_pid, restarts = int(props["MainPID"]), int(props["NRestarts"])
    frozen_at = time.monotonic()
    service.c.run(["kill", "-STOP", str(old_pid)])

    def restarted() -> dict[str, str] | None:
        now = service.show("ActiveState", "SubState", "MainPID", "NRestarts")
        if int(now["NRestarts"]) > restarts and now["ActiveState"] == "active":
            return now
        return None

    now = service.c.wait_for(
        restarted, 30, lambda: f"no restart by the watchdog:\n{service.diagnose()}"
    )
    # Not before the watchdog could have fired.
    assert time.monotonic() - frozen_at >= WATCHDOG_SEC - 0.5
    assert int(now["NRestarts"]) == restarts + 1
    assert int(now["MainPID"]) not in (0, old_pid)
    assert now["SubState"] == "running"
    assert "Watchdog timeout" in service.journal()
    # The new daemon serves again.
    assert service.status()["node_id"] > 0
