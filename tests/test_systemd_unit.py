"""The files in systemd/: the unit, sysusers.d, tmpfiles.d and the example config.

``systemd-analyze verify`` only warns about a bad key, a bad value or a
misspelt capability and still exits 0, so any output at all fails the test.
Verify needs the unit's programs to exist: a temporary copy has the path of
``cloudkernel`` replaced by this checkout's; everything else is verified as
shipped.  The unit booted for real is tests/test_nspawn_service.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloudkernel.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "cloudkernel.service"
SHIPPED_BINARY = "/usr/local/bin/cloudkernel"


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment in a unit file, comments left out."""
    out, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(key: str) -> list[str]:
    return [v for _, k, v in directives(UNIT.read_text()) if k == key]


def one(key: str) -> str:
    found = values(key)
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


def our_binary() -> str:
    found = shutil.which("cloudkernel", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("no cloudkernel script next to this Python (run tools/setup.sh)")
    return found


def verify(text: str, tmp_path: Path) -> str:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    unit = tmp_path / "cloudkernel.service"
    unit.write_text(text.replace(SHIPPED_BINARY, our_binary()))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr + ("" if result.returncode == 0 else "(exit status)")


def test_unit_verifies_without_a_word(tmp_path: Path) -> None:
    assert SHIPPED_BINARY in UNIT.read_text()
    assert verify(UNIT.read_text(), tmp_path) == ""


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("Type=notify", "Type=notfy"),
        ("WatchdogSec=15s", "WatchdogSec=15x"),
        ("ProtectSystem=strict", "ProtectSytem=strict"),
    ],
)
def test_verify_reports_mistakes(tmp_path: Path, good: str, bad: str) -> None:
    """The check above can fail: a slip in the unit makes verify say something."""
    text = UNIT.read_text()
    assert good in text
    assert verify(text.replace(good, bad, 1), tmp_path) != ""


def test_unit_notifies_and_is_watched() -> None:
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    watchdog = one("WatchdogSec")
    assert watchdog.endswith("s") and 5 <= int(watchdog[:-1]) <= 60
    assert one("Restart") == "on-failure"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("ExecStart").startswith(f"{SHIPPED_BINARY} run --config /etc/cloudkernel/")
    pre = values("ExecStartPre")
    assert any(f"{SHIPPED_BINARY} config check /etc/cloudkernel/cloudkernel.toml" in p for p in pre)
    assert any(p.startswith("+") and "keygen" in p for p in pre)


def test_unit_runs_as_its_own_user_with_its_directories() -> None:
    assert one("User") == "cloudkernel" and one("Group") == "cloudkernel"
    assert one("RuntimeDirectory") == "cloudkernel"
    assert one("StateDirectory") == "cloudkernel"
    assert one("ConfigurationDirectory") == "cloudkernel"


def test_unit_allows_real_time() -> None:
    """SCHED_FIFO and mlockall stay possible under the hardening."""
    assert not [v for v in values("RestrictRealtime") if v.lower() in ("yes", "true", "1", "on")]
    for value in values("SystemCallFilter"):
        if value.startswith("~"):
            assert "@resources" not in value and "sched_setscheduler" not in value, value
            assert "@memlock" not in value and "mlockall" not in value, value
    assert values("PrivateUsers") == []  # capabilities in a user namespace do not count
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(one(key).split()) >= {"CAP_SYS_NICE", "CAP_IPC_LOCK"}


def test_capabilities_are_known() -> None:
    """verify lets a misspelt capability pass: ask systemd-analyze about each name."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    names = {n for key in ("AmbientCapabilities", "CapabilityBoundingSet") for n in values(key)}
    names = {word for value in names for word in value.split()}
    result = subprocess.run(
        ["systemd-analyze", "capability", *sorted(names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    bad = subprocess.run(
        ["systemd-analyze", "capability", "CAP_SYS_NIECE"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0  # the check above can fail


def test_unit_is_hardened(tmp_path: Path) -> None:
    assert one("ProtectSystem") == "strict"
    assert one("NoNewPrivileges") == "yes"
    assert "@system-service" in values("SystemCallFilter")
    assert set(one("RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    unit = tmp_path / "cloudkernel.service"
    unit.write_text(UNIT.read_text().replace(SHIPPED_BINARY, our_binary()))
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert "Overall exposure level" in last, result.stdout + result.stderr
    exposure = float(last.split(":")[1].split()[0])
    assert exposure <= 2.5, last


def test_example_config_matches_the_unit() -> None:
    config = load_config(str(SYSTEMD / "cloudkernel.toml"))
    assert config.control.socket == "/run/cloudkernel/control.sock"  # RuntimeDirectory
    assert config.node.state_dir == "/var/lib/cloudkernel"  # StateDirectory
    assert config.node.key_file == "/etc/cloudkernel/swarm.key"
    assert any(config.node.key_file in p for p in values("ExecStartPre"))
    assert config.realtime.priority > 0 and config.realtime.lock_memory
    # The socket's group is the one sysusers.d makes and the service runs as.
    assert config.control.group == one("Group") == "cloudkernel"
    assert (SYSTEMD / "cloudkernel.sysusers").read_text().count("\nu cloudkernel ") == 1


def test_example_config_passes_config_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cloudkernel", "config", "check", str(SYSTEMD / "cloudkernel.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("cloudkernel.toml: ok")


def test_sysusers_and_tmpfiles(tmp_path: Path) -> None:
    """Applied to an empty root: the user and group, then the key's owner and mode."""
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install systemd)")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles changes owners only as root")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    result = subprocess.run(
        ["systemd-sysusers", f"--root={root}", str(SYSTEMD / "cloudkernel.sysusers")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert all(line.startswith("Creating ") for line in result.stderr.splitlines()), result.stderr
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    user = passwd["cloudkernel"]
    assert user[5] == "/var/lib/cloudkernel" and user[6].endswith("nologin")
    assert (root / "etc/group").read_text().startswith(f"cloudkernel:x:{user[3]}:")

    tmpfiles = ["systemd-tmpfiles", f"--root={root}", "--create"]
    tmpfiles.append(str(SYSTEMD / "cloudkernel.tmpfiles"))
    first = subprocess.run(tmpfiles, capture_output=True, text=True, timeout=60, check=False)
    assert (first.returncode, first.stdout + first.stderr) == (0, "")
    assert (root / "etc/cloudkernel").is_dir()
    key = root / "etc/cloudkernel/swarm.key"
    key.write_text("x")
    key.chmod(0o644)
    again = subprocess.run(tmpfiles, capture_output=True, text=True, timeout=60, check=False)
    assert (again.returncode, again.stdout + again.stderr) == (0, "")
    st = key.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, int(user[2]), int(user[3]))
