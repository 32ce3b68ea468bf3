"""Shared test configuration.

* The pytest header names the FEC implementation under test (compiled or the
  pure-Python reference) and its GF(2^8) kernels.
* ``CLOUDKERNEL_EXPECT_IMPL=compiled`` (or ``python``) makes the session fail
  at once if ``cloudkernel.fec.IMPLEMENTATION``, the payload decoder or the
  consensus filter differs, so that CI cannot
  silently test the fallback twice when the extension failed to build.
* Hypothesis profiles: ``ci`` (derandomized, no deadline) when ``CI=true``,
  ``dev`` otherwise.  The pure-Python reference is ~100x slower, so both
  profiles run fewer examples when it is the implementation under test.
* ``gf_kernel``: a fixture running a test once under every kernel in
  ``cloudkernel.fec.available_kernels()``, restoring the original after.
* ``CLOUDKERNEL_EMULATED=arm64`` (set by tools/arm64.sh, which runs the suite
  under qemu-user): the tests in :data:`EMULATION_SKIPS`, which need what
  qemu-user cannot emulate, are skipped with the reason, and hypothesis
  runs a fifth of the examples (and test_consensus_hull.py a tenth of its
  trials).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from cloudkernel import consensus, fec
from cloudkernel.core import signals

PURE_PYTHON = fec.IMPLEMENTATION == "python"
# A test run started in the background of a non-interactive shell inherits
# SIGINT ignored, and every process the tests start would inherit it too: the
# Ctrl-C tests could not deliver one.  A handler (not SIG_IGN) here makes
# exec'd children start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

EMULATED = os.environ.get("CLOUDKERNEL_EMULATED", "")

_CI_EXAMPLES = 100 if PURE_PYTHON else 200
if EMULATED:
    # qemu-user runs Python several times slower than the host: fewer
    # examples keep the emulated run within CI's budget; the host's runs
    # cover the example counts above.
    _CI_EXAMPLES //= 5
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=_CI_EXAMPLES,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=_CI_EXAMPLES // 2,
    suppress_health_check=[HealthCheck.too_slow],
)
HYPOTHESIS_PROFILE = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_configure(config: pytest.Config) -> None:
    expected = os.environ.get("CLOUDKERNEL_EXPECT_IMPL", "")
    if expected and expected != fec.IMPLEMENTATION:
        raise pytest.UsageError(
            f"CLOUDKERNEL_EXPECT_IMPL={expected} but cloudkernel.fec.IMPLEMENTATION is "
            f"{fec.IMPLEMENTATION!r} (is the extension built? is CLOUDKERNEL_PUREPYTHON set?)"
        )
    if expected and expected != signals.PAYLOAD_IMPLEMENTATION:
        raise pytest.UsageError(
            f"CLOUDKERNEL_EXPECT_IMPL={expected} but the payload decoder is "
            f"{signals.PAYLOAD_IMPLEMENTATION!r} (is cloudkernel.core._payload built?)"
        )
    if expected and expected != consensus.IMPLEMENTATION:
        raise pytest.UsageError(
            f"CLOUDKERNEL_EXPECT_IMPL={expected} but the consensus filter is "
            f"{consensus.IMPLEMENTATION!r} (is cloudkernel.consensus._consensus built?)"
        )


# What qemu-user (Debian bookworm's 7.2) cannot emulate, found by running
# the suite under it.
_MULTICAST = (
    "joins a multicast group: qemu-user drops the interface index of "
    "IP_ADD_MEMBERSHIP's ip_mreqn (ENODEV) and lacks IP_MULTICAST_IF (ENOPROTOOPT)"
)
_DAEMONS = f"starts real daemons, each of which {_MULTICAST}"
_SWITCH = (
    "starts the cluster switch, whose AF_PACKET socket needs PACKET_ADD_MEMBERSHIP, "
    "which qemu-user lacks (ENOPROTOOPT)"
)
#: test file, test file::test function (all its parameters) or test
#: file::test[parameters] -> why it cannot pass under qemu-user emulation
EMULATION_SKIPS: dict[str, str] = {
    "test_bench_mesh_smoke.py": _DAEMONS,
    "test_bench_realtime_smoke.py": _DAEMONS,
    "test_cluster_agent.py": _DAEMONS,
    **{
        f"test_cluster_switch.py::{name}": _SWITCH
        for name in (
            "test_no_impairment_delivers_everything",
            "test_loss_on_one_link",
            "test_burst_loss",
            "test_corrupted_datagrams_reach_the_receiver",
            "test_duplicates",
            "test_delay",
            "test_reorder",
            "test_partition_and_heal",
            "test_unplug_and_plug",
            "test_nft_drop",
            "test_rate_limit_installs_a_token_bucket",
            "test_bad_configs",
            "test_close_leaves_nothing",
            "test_leftovers_of_a_killed_harness_are_removed",
            "test_ctrl_c_tears_everything_down",
        )
    },
    "test_cluster_switch.py::test_a_stray_switch_of_a_dead_run_is_killed": (
        "finds the switch by listing /proc, which reads as empty under qemu-user"
    ),
    "test_control_security.py": _DAEMONS,
    "test_daemon.py": _DAEMONS,
    "test_metrics.py": _DAEMONS,
    "test_netns_swarm.py": _DAEMONS,
    "test_publish_many.py": _DAEMONS,
    "test_reload.py": _DAEMONS,
    "test_sdnotify.py": _DAEMONS,
    "test_soak_agents.py::test_three_agents_on_loopback_deliver_every_message[zenoh]": (
        "Zenoh's peers find each other by multicast scouting, which finds none under qemu-user"
    ),
    "test_soak_cluster.py": f"{_SWITCH}, and {_DAEMONS}",
    "test_transport.py::test_multicast_between_transports_on_loopback": _MULTICAST,
    "test_views_daemon.py": _DAEMONS,
    "test_nspawn_service.py": "boots the host's own (x86-64) systemd root in systemd-nspawn",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not EMULATED:
        return
    for item in items:
        function = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        reason = (
            EMULATION_SKIPS.get(f"{item.path.name}::{item.name}")
            or EMULATION_SKIPS.get(function)
            or EMULATION_SKIPS.get(item.path.name)
        )
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"under {EMULATED} emulation: {reason}"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"cloudkernel.fec: {fec.IMPLEMENTATION} implementation, kernel {fec.kernel()!r} "
        f"(available: {', '.join(fec.available_kernels())})",
        f"cloudkernel payload decoder: {signals.PAYLOAD_IMPLEMENTATION}",
        f"cloudkernel consensus filter: {consensus.IMPLEMENTATION}",
        f"hypothesis profile: {HYPOTHESIS_PROFILE} (max_examples={settings().max_examples})",
        *([f"emulated: {EMULATED} (qemu-user)"] if EMULATED else []),
    ]


@pytest.fixture(scope="module", params=fec.available_kernels())
def gf_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Make each kernel in turn the active one; module-scoped so hypothesis accepts it."""
    original = fec.kernel()
    name: str = request.param
    fec.use_kernel(name)
    try:
        yield name
    finally:
        fec.use_kernel(original)
