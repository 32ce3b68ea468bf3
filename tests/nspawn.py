"""A real systemd in a container: boot a Debian root with ``systemd-nspawn``.

:func:`os_root` returns a Debian bookworm root (``debootstrap --variant=minbase``
with systemd, systemd-sysv, dbus, procps for /bin/kill, and python3 for a
test run on Debian's own Python), built once and cached under
``/var/cache/cloudkernel-tests/`` keyed by :data:`ROOT_VERSION`.  It is built
into a temporary directory and renamed into place when complete, so a
half-built root is never used, under a lock so two runs never build at once.

:class:`Container` boots that root with systemd as PID 1 (``--volatile=overlay``:
the cached root stays read-only, every write lands in a tmpfs that goes with
the container), with files and directories of the test bound in, and runs
commands inside with ``nsenter``.  :meth:`Container.close` powers it off
(SIGKILL when that takes too long) and removes what ``systemd-nspawn`` leaves
behind on a host whose PID 1 is not systemd: its ``payload``/``supervisor``
cgroups and ``/run/systemd/nspawn``.  Every wait is bounded.

:func:`unavailable` says why a container cannot run here (not root, tools
missing), for a test's skip message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

#: the cached root's name: change it whenever the recipe below changes
ROOT_VERSION = "bookworm-minbase-systemd-2"
CACHE = Path("/var/cache/cloudkernel-tests")
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "procps", "python3")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT = 900.0
BOOT_TIMEOUT = 60.0

T = TypeVar("T")


class NspawnError(RuntimeError):
    """The container could not be built, booted or driven; the message says why."""


def unavailable() -> str | None:
    """Why a container cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    for tool, package in (
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install {package})"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system at /sys/fs/cgroup: systemd cannot boot in a container"
    return None


def debian_mirror() -> str:
    """The Debian archive apt on this host uses (deb822 ``.sources`` or one-line lists)."""
    sources = Path("/etc/apt")
    files = sorted(sources.glob("sources.list.d/*.sources"))
    for path in files:
        for stanza in path.read_text(errors="replace").split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    lists = [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            fields = [f for f in line.split() if not f.startswith("[")]
            if len(fields) >= 3 and fields[0] == "deb" and fields[2] == SUITE:
                return fields[1]
    return FALLBACK_MIRROR


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def os_root(cache: Path = CACHE) -> Path:
    """The cached Debian root, built first when missing (see the module docstring).

    :raises NspawnError: when debootstrap fails; its last lines say why.
    """
    root = cache / ROOT_VERSION
    done = cache / f"{ROOT_VERSION}.done"
    with _locked(cache / "build.lock"):
        if done.exists() and root.is_dir():
            return root
        for stale in cache.glob(f"{ROOT_VERSION}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if root.exists():  # a root without its marker: not to be trusted
            shutil.rmtree(root)
        tmp = cache / f"{ROOT_VERSION}.tmp-{os.getpid()}"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(tmp),
            debian_mirror(),
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
            )
            if result.returncode != 0:
                tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
                raise NspawnError(f"debootstrap failed ({result.returncode}): {tail}")
            (tmp / "etc" / "hostname").write_text("cloudkernel-test\n")
            tmp.rename(root)
        except subprocess.TimeoutExpired:
            raise NspawnError(f"debootstrap took more than {BUILD_TIMEOUT:.0f} s") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        done.touch()
        for old in cache.glob("*.done"):  # roots of earlier recipes
            if old != done:
                old.unlink()
                shutil.rmtree(cache / old.name.removesuffix(".done"), ignore_errors=True)
        return root


def _nspid(pid: int) -> list[str]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return []
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return line.split()[1:]
    return []


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _own_cgroups() -> list[Path]:
    """The cgroup directories this process lives in, in the hierarchies nspawn uses."""
    paths = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "name=systemd":
            paths.append(Path("/sys/fs/cgroup/systemd") / path.lstrip("/"))
        elif controllers == "":
            for mount in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
                if (mount / "cgroup.controllers").exists():
                    paths.append(mount / path.lstrip("/"))
                    break
    return paths


def _remove_cgroup(path: Path) -> None:
    """rmdir a cgroup tree bottom-up (a cgroup's files cannot be deleted, only the dirs)."""
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


class Container:
    """A booted container (see the module docstring).

    :param root: the OS root (read-only: ``--volatile=overlay``).
    :param binds: (host path, container path, read_only) bound into the container.
    :param log: where the container's console goes.
    """

    def __init__(self, root: Path, binds: Sequence[tuple[Path, str, bool]], log: Path) -> None:
        self.root = root
        self.log_path = log
        self.leader = 0
        # One container at a time: the cgroups nspawn leaves are cleaned up by name.
        CACHE.mkdir(parents=True, exist_ok=True)
        self._lock = open(CACHE / "run.lock", "w")  # held until close()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._cgroups_before = {
            p: {c.name for c in p.iterdir() if c.is_dir()} for p in _own_cgroups() if p.is_dir()
        }
        args = [
            "systemd-nspawn",
            "--quiet",
            "-D",
            str(root),
            "--volatile=overlay",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--capability=CAP_IPC_LOCK",
            "--console=pipe",
            f"--machine=ck-test-{os.getpid()}",
        ]
        for host, inside, read_only in binds:
            args.append(f"--bind{'-ro' if read_only else ''}={host}:{inside}")
        args.append("-b")
        try:
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
        except BaseException:
            self._lock.close()
            raise
        try:
            self.leader = self._find_leader()
            self._wait_booted()
        except BaseException:
            self.close()
            raise

    def console(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _find_leader(self) -> int:
        """The container's PID 1, seen from the host: a descendant of systemd-nspawn."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NspawnError(
                    f"systemd-nspawn exited {self.proc.returncode}:\n{self.console()}"
                )
            todo, seen = [self.proc.pid], set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                ns = _nspid(pid)
                if len(ns) > 1 and ns[-1] == "1":
                    return pid
                todo += _children(pid)
            time.sleep(0.05)
        raise NspawnError(f"no container init after {BOOT_TIMEOUT:.0f} s:\n{self.console()}")

    def _wait_booted(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            result = self.run(["systemctl", "is-system-running"], check=False, timeout=BOOT_TIMEOUT)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise NspawnError(f"the container did not boot (state {state!r}):\n{self.console()}")

    def run(
        self, command: Sequence[str], *, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the container's namespaces; output captured as text.

        :raises NspawnError: when ``check`` and it exits non-zero.
        """
        args = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "--", *command]
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        if check and result.returncode != 0:
            raise NspawnError(
                f"{' '.join(command)} exited {result.returncode}: "
                f"{(result.stdout + result.stderr).strip()}"
            )
        return result

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show`` properties of ``unit``."""
        out = self.run(["systemctl", "show", unit, "-p", ",".join(props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(
        self, what: Callable[[], T | None], timeout: float, message: str | Callable[[], str]
    ) -> T:
        """Poll ``what()`` until it returns something other than None, and return that.

        :raises AssertionError: after ``timeout`` seconds, with ``message``
            (called then, when it is a function).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value is not None:
                return value
            time.sleep(0.2)
        raise AssertionError(message if isinstance(message, str) else message())

    def close(self) -> None:
        """Power off, kill what is left, remove what nspawn leaves on this host."""
        try:
            if self.proc.poll() is None:
                # SIGTERM asks systemd-nspawn to shut the container down cleanly.
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            if self.leader:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, signal.SIGKILL)
        finally:
            for cgroup, before in self._cgroups_before.items():
                for name in ("payload", "supervisor"):
                    if name not in before:
                        _remove_cgroup(cgroup / name)
            shutil.rmtree("/run/systemd/nspawn", ignore_errors=True)
            self._lock.close()


def build_main() -> None:  # pragma: no cover - a convenience for warming the cache
    """``python tests/nspawn.py``: build (or find) the cached root and print its path."""
    reason = unavailable()
    if reason:
        raise SystemExit(f"cannot build: {reason}")
    print(os_root())


if __name__ == "__main__":  # pragma: no cover
    build_main()


__all__ = ["CACHE", "ROOT_VERSION", "Container", "NspawnError", "os_root", "unavailable"]
