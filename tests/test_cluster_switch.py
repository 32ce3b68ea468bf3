"""The cluster switch (cloudkernel.cluster.switch) and network (cloudkernel.cluster.network).

The first part drives :class:`Switch` with fake sockets (no root).  The
second builds real 3-node networks (root only; skipped with the reason
otherwise): UDP multicast from n1 to receivers in n2 and n3, each a small
script run inside its node's namespace with bounded waits.
"""

from __future__ import annotations

import glob
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from cloudkernel.cluster import network
from cloudkernel.cluster import switch as switch_module
from cloudkernel.cluster.impair import Impairment
from cloudkernel.cluster.network import ClusterNetwork
from cloudkernel.cluster.switch import (
    Port,
    Switch,
    SwitchConfig,
    SwitchConfigError,
    corrupt_udp_payload,
    internet_checksum,
    locate_udp,
    parse_arguments,
    parse_switch_config,
)

# -- frames ----------------------------------------------------------------------------

MAC_A = bytes.fromhex("02000a4d0001")
MAC_B = bytes.fromhex("02000a4d0002")
MAC_C = bytes.fromhex("02000a4d0003")
BROADCAST = b"\xff" * 6
MULTICAST_V4 = bytes.fromhex("01005e4d0001")


def reference_checksum(data: bytes) -> int:
    """Ones' complement sum, 16 bits at a time, the textbook way."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum_is_valid(pseudo: bytes, datagram: bytes) -> bool:
    """What a receiving kernel checks: the sum over pseudo-header and datagram is all ones."""
    return reference_checksum(pseudo + datagram) == 0


def udp_datagram(payload: bytes, pseudo_without_length: bytes, *, v6: bool) -> bytes:
    length = 8 + len(payload)
    header = (7700).to_bytes(2, "big") + (7701).to_bytes(2, "big") + length.to_bytes(2, "big")
    if v6:
        pseudo = pseudo_without_length + length.to_bytes(4, "big") + b"\x00\x00\x00\x11"
    else:
        pseudo = pseudo_without_length + b"\x00\x11" + length.to_bytes(2, "big")
    checksum = reference_checksum(pseudo + header + b"\x00\x00" + payload) or 0xFFFF
    return header + checksum.to_bytes(2, "big") + payload


def ipv4_udp_frame(
    payload: bytes, *, dst: bytes = MULTICAST_V4, src: bytes = MAC_A, vlan: bool = False
) -> bytes:
    addresses = bytes([10, 77, 0, 1, 239, 77, 0, 1])
    udp = udp_datagram(payload, addresses, v6=False)
    header = bytearray(b"\x45\x00" + (20 + len(udp)).to_bytes(2, "big") + b"\x00\x01\x40\x00")
    header += b"\x01\x11\x00\x00" + addresses
    header[10:12] = reference_checksum(bytes(header)).to_bytes(2, "big")
    tag = b"\x81\x00\x00\x05" if vlan else b""
    return dst + src + tag + b"\x08\x00" + bytes(header) + udp + b"\x00" * 6  # Ethernet padding


def ipv6_udp_frame(payload: bytes, *, hop_by_hop: bool = False) -> bytes:
    addresses = bytes.fromhex("fe80" + "00" * 13 + "01" + "ff02" + "00" * 13 + "07")
    udp = udp_datagram(payload, addresses, v6=True)
    options = b"\x11\x00" + b"\x01\x04\x00\x00\x00\x00" if hop_by_hop else b""
    next_header = b"\x00" if hop_by_hop else b"\x11"
    header = b"\x60\x00\x00\x00" + (len(options) + len(udp)).to_bytes(2, "big") + next_header
    return (
        bytes.fromhex("333300000007")
        + MAC_A
        + b"\x86\xdd"
        + header
        + b"\x01"
        + addresses
        + options
        + udp
    )


def arp_frame(src: bytes = MAC_A, dst: bytes = BROADCAST) -> bytes:
    return dst + src + b"\x08\x06" + bytes(28)


def test_checksum_matches_the_textbook_one() -> None:
    rng = random.Random(3)
    for size in [0, 1, 2, 3, 17, 64, 1500]:
        for _ in range(20):
            data = rng.randbytes(size)
            assert internet_checksum(data) == (reference_checksum(data) or 0xFFFF)
    assert internet_checksum(b"\xff\xff") == 0xFFFF  # never 0: UDP's "no checksum"


@pytest.mark.parametrize(
    "frame",
    [
        ipv4_udp_frame(b"0123456789" * 3),
        ipv4_udp_frame(b"0123456789", vlan=True),
        ipv6_udp_frame(b"0123456789" * 3),
        ipv6_udp_frame(b"abc", hop_by_hop=True),
    ],
    ids=["ipv4", "ipv4-vlan", "ipv6", "ipv6-hop-by-hop"],
)
def test_corruption_changes_only_the_payload_and_keeps_the_checksum_valid(frame: bytes) -> None:
    found = locate_udp(frame)
    assert found is not None
    start, end, pseudo = found
    assert checksum_is_valid(pseudo, frame[start:end])  # the builders are right
    rng = random.Random(5)
    for count in (1, 2, 50):
        changed = corrupt_udp_payload(frame, count, rng)
        assert changed is not None and len(changed) == len(frame)
        differing = [i for i in range(len(frame)) if changed[i] != frame[i]]
        payload = [i for i in differing if i >= start + 8]
        assert len(payload) == min(count, end - start - 8)
        assert all(i < end for i in payload)
        assert set(differing) - set(payload) <= {start + 6, start + 7}  # and the checksum
        assert checksum_is_valid(pseudo, changed[start:end])


def test_frames_that_cannot_be_corrupted() -> None:
    fragment = bytearray(ipv4_udp_frame(b"0123456789"))
    fragment[14 + 6] |= 0x20  # more fragments follow
    for frame in [arp_frame(), ipv4_udp_frame(b""), bytes(fragment), b"", MAC_A]:
        assert corrupt_udp_payload(frame, 1, random.Random(1)) is None


# -- the switch with fake sockets ------------------------------------------------------


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> int:
        self.sent.append(frame)
        return len(frame)


def make_switch(ports: int = 3, config: Any = None, **kwargs: Any) -> Switch:
    names = [f"n{i}" for i in range(1, ports + 1)]
    made = [Port(name, name, cast(Any, FakeSocket())) for name in names]
    parsed = parse_switch_config(config or {}, names)
    return Switch(made, parsed, random.Random(11), **kwargs)


def sent(switch: Switch) -> list[list[bytes]]:
    return [cast(FakeSocket, port.sock).sent for port in switch.ports]


def test_learning_switch_floods_then_forwards() -> None:
    switch = make_switch()
    switch.forward(0, arp_frame(MAC_A), now=1.0)  # broadcast: every other port
    assert [len(s) for s in sent(switch)] == [0, 1, 1]
    switch.forward(2, arp_frame(MAC_C, dst=MAC_B), now=1.0)  # B unknown yet: flooded
    assert [len(s) for s in sent(switch)] == [1, 2, 1]
    switch.forward(1, arp_frame(MAC_B, dst=MAC_A), now=1.0)  # A learnt behind port 0
    assert [len(s) for s in sent(switch)] == [2, 2, 1]
    switch.forward(0, arp_frame(MAC_A, dst=MAC_A), now=1.0)  # back where it came from
    assert [len(s) for s in sent(switch)] == [2, 2, 1]
    assert switch.counters["filtered"] == 1
    switch.forward(0, b"short", now=1.0)
    assert switch.counters["runts"] == 1
    assert switch.stats()["macs_learnt"] == 3


def test_each_egress_copy_is_judged_on_its_own() -> None:
    switch = make_switch(4, {"default": {"loss": 0.5}})
    frames = 4000
    for n in range(frames):
        switch.forward(0, ipv4_udp_frame(n.to_bytes(4, "big")), now=float(n))
    received = [{f[-10:] for f in s} for s in sent(switch)[1:]]
    for got in received:
        assert abs(len(got) - frames / 2) < 5 * math.sqrt(frames / 4)
    # independent losses: the ports share about a quarter, not a half, of the frames
    shared = len(received[0] & received[1])
    assert abs(shared - frames / 4) < 5 * math.sqrt(frames * 3 / 16)
    stats = switch.stats()
    assert stats["links"]["n1>n2"]["dropped_iid"] == frames - len(received[0])
    assert stats["totals"]["frames_in"] == 3 * frames


def test_most_specific_link_config_wins() -> None:
    config = parse_switch_config(
        {
            "default": {"loss": 0.1},
            "links": {"n1>n2": {"loss": 0.2}, "n1>*": {"loss": 0.3}, "*>n2": {"loss": 0.4}},
        },
        ["n1", "n2", "n3"],
    )
    assert config.impairment_for("n1", "n2").loss == 0.2
    assert config.impairment_for("n1", "n3").loss == 0.3
    assert config.impairment_for("n3", "n2").loss == 0.4
    assert config.impairment_for("n3", "n1").loss == 0.1
    assert config.impairment_for("n2", "n1") == Impairment(loss=0.1)


def test_blocked_links_carry_nothing() -> None:
    switch = make_switch(3, {"blocked": ["n1>n2"]})
    switch.forward(0, arp_frame(), now=0.0)
    switch.forward(1, arp_frame(MAC_B), now=0.0)
    assert [len(s) for s in sent(switch)] == [1, 0, 2]
    assert switch.stats()["links"]["n1>n2"]["dropped_blocked"] == 1


def test_delayed_frames_wait_in_order_and_the_heap_is_bounded() -> None:
    switch = make_switch(2, {"default": {"delay_ms": 20}}, max_held=3)
    for n in range(5):
        switch.forward(0, arp_frame() + bytes([n]), now=1.0 + n * 0.001)
    assert sent(switch)[1] == [] and len(switch.held) == 3
    assert switch.poll_timeout_ms(1.0) in (20, 21)  # rounded up: never wakes early
    switch.send_due(1.0205)
    assert [f[-1] for f in sent(switch)[1]] == [0]
    switch.send_due(2.0)
    assert [f[-1] for f in sent(switch)[1]] == [0, 1, 2]
    assert switch.poll_timeout_ms(2.0) == -1
    stats = switch.stats()
    assert stats["links"]["n1>n2"]["dropped_queue_full"] == 2 and stats["held_max"] == 3


def test_corruption_in_the_switch() -> None:
    switch = make_switch(2, {"default": {"corrupt": 1.0, "corrupt_bytes": 2}})
    udp, arp = ipv4_udp_frame(b"0123456789abcdef"), arp_frame()
    switch.forward(0, udp, now=0.0)
    switch.forward(0, arp, now=0.0)
    out = sent(switch)[1]
    assert out[0] != udp and len(out[0]) == len(udp) and out[1] == arp
    link = switch.stats()["links"]["n1>n2"]
    assert link["corrupted"] == 2 and link["corrupt_skipped"] == 1


def test_reconfigure_keeps_counters() -> None:
    switch = make_switch(2, {"default": {"loss": 1.0}})
    switch.forward(0, arp_frame(), now=0.0)
    switch.reconfigure(parse_switch_config({}, ["n1", "n2"]))
    switch.forward(0, arp_frame(), now=0.0)
    link = switch.stats()["links"]["n1>n2"]
    assert link["frames_in"] == 2 and link["dropped_iid"] == 1 and link["forwarded"] == 1


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ([], ["JSON object"]),
        ({"defaults": {}}, ["unknown config key", "'defaults'"]),
        ({"default": {"loss": 2}}, ["default:", "loss=2"]),
        ({"links": []}, ["links must be"]),
        ({"links": {"n1-n2": {}}}, ["'n1-n2'", "ingress>egress"]),
        ({"links": {"n1>n9": {}}}, ["'n1>n9'", "no port 'n9'"]),
        ({"links": {"n1>n1": {}}}, ["same"]),
        ({"links": {"*>*": {}}}, ["same"]),
        ({"links": {"n1>n2": {"delay": 5}}}, ["links['n1>n2']", "unknown", "'delay'"]),
        ({"blocked": "n1>n2"}, ["blocked must be"]),
        ({"blocked": ["n1>*"]}, ["no wildcard"]),
        ({"blocked": [3]}, ["3", "ingress>egress"]),
    ],
)
def test_config_errors(config: Any, words: list[str]) -> None:
    with pytest.raises(SwitchConfigError) as caught:
        parse_switch_config(config, ["n1", "n2", "n3"])
    for word in words:
        assert word in str(caught.value)


def test_command_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_arguments(["--port", "n1=veth1", "--stats", "s.json", "--seed", "4"])
    assert args.port == [("n1", "veth1")] and args.seed == 4 and args.config is None
    for bad in (["--port", "n1"], ["--port", "a=x", "--port", "a=y"], ["--realtime", "0"]):
        with pytest.raises(SystemExit):
            parse_arguments(["--port", "n1=x", "--stats", "s", *bad])
    config = tmp_path / "bad.json"
    config.write_text('{"default": {"loss": 7}}')
    argv = ["--port", "n1=x", "--stats", str(tmp_path / "s.json"), "--config", str(config)]
    assert switch_module.main(argv) == 2  # before any socket is opened
    assert "loss=7" in capsys.readouterr().err


def test_realtime_refusal_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    switch_module.set_realtime(50)
    assert "warning: SCHED_FIFO 50 refused" in capsys.readouterr().err


def test_switch_config_round_trip() -> None:
    config = SwitchConfig(Impairment(loss=0.5), {"n1>*": Impairment(delay_ms=3)}, frozenset())
    assert parse_switch_config(config.to_dict(), ["n1", "n2"]) == config


# -- real networks (root) --------------------------------------------------------------

PROBLEM = network.problem()
# CI runs as root after tools/setup.sh: a missing tool there is a failure, not a skip.
_MUST_RUN = os.geteuid() == 0 and os.environ.get("CI", "") not in ("", "0", "false")
needs_root = pytest.mark.skipif(PROBLEM is not None and not _MUST_RUN, reason=str(PROBLEM))
PORT = 7731

#: run in a node: joins the group on eth0, counts datagrams until SIGTERM, prints JSON
RECEIVER = r"""
import json, signal, socket, struct, sys, time, zlib
family, group, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
pattern = bytes(range(52))
if family == "6":
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::", port))
    index = struct.pack("@I", socket.if_nametoindex("eth0"))
    join = socket.inet_pton(socket.AF_INET6, group) + index
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, join)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", port))
    join = socket.inet_aton(group) + socket.inet_aton("0.0.0.0")
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, join)
s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE: past rmem_max
s.settimeout(0.05)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
seqs, changed, latencies = [], 0, []
print("ready", flush=True)
try:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        now = time.monotonic()
        if len(data) != 68 or zlib.crc32(data[:-4]).to_bytes(4, "big") != data[-4:]:
            changed += 1
            continue
        seq, sent = struct.unpack_from("!Id", data)
        seqs.append(seq)
        latencies.append(now - sent)
finally:
    print(json.dumps({"seqs": seqs, "changed": changed, "latencies": latencies}), flush=True)
"""

#: run in a node: sends COUNT datagrams (sequence number, send time, fixed pattern, CRC-32)
SENDER = r"""
import socket, struct, sys, time, zlib
family, group, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pattern = bytes(range(52))
if family == "6":
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    index = socket.if_nametoindex("eth0")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    address = (group, port, 0, index)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address = (group, port)
for seq in range(count):
    body = struct.pack("!Id", seq, time.monotonic()) + pattern
    s.sendto(body + zlib.crc32(body).to_bytes(4, "big"), address)
    time.sleep(0.0002)
"""


def multicast(
    net: ClusterNetwork,
    count: int,
    *,
    sender: int = 1,
    receivers: tuple[int, ...] = (2, 3),
    family: str = "4",
    linger: float = 0.25,
) -> dict[int, dict[str, Any]]:
    """``count`` datagrams from ``sender`` to a group; what each receiver got."""
    group = "ff02::77" if family == "6" else "239.77.0.1"
    listening = {
        i: net.popen(
            i,
            [sys.executable, "-c", RECEIVER, family, group, str(PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in receivers
    }
    for proc in listening.values():
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    sent = net.run(sender, [sys.executable, "-c", SENDER, family, group, str(PORT), str(count)])
    assert sent.returncode == 0
    time.sleep(linger)  # what is on the way, and delayed frames, arrive
    results = {}
    for i, proc in listening.items():
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        results[i] = json.loads(out.strip().splitlines()[-1])
    return results


def within_binomial(count: int, trials: int, p: float) -> bool:
    return abs(count - trials * p) <= 5 * math.sqrt(trials * p * (1 - p))


@pytest.fixture(scope="module")
def shared_net() -> Iterator[ClusterNetwork]:
    if PROBLEM is not None:
        (pytest.fail if _MUST_RUN else pytest.skip)(PROBLEM)
    with ClusterNetwork(3, name="test", seed=3) as net:
        yield net


@pytest.fixture
def net(shared_net: ClusterNetwork) -> Iterator[ClusterNetwork]:
    yield shared_net
    shared_net.heal()
    shared_net.set_impairment({})


@needs_root
def test_no_impairment_delivers_everything(net: ClusterNetwork) -> None:
    for i, got in multicast(net, 500).items():
        assert sorted(got["seqs"]) == list(range(500)) and got["changed"] == 0, i
    assert net.stats()["totals"]["dropped_iid"] == 0


@needs_root
def test_loss_on_one_link(net: ClusterNetwork) -> None:
    net.set_impairment({"links": {"n1>n2": {"loss": 0.1}}})
    got = multicast(net, 2000)
    assert within_binomial(2000 - len(got[2]["seqs"]), 2000, 0.1), len(got[2]["seqs"])
    assert len(got[3]["seqs"]) == 2000
    links = net.stats()["links"]
    assert links["n1>n2"]["dropped_iid"] >= 2000 - len(got[2]["seqs"])
    assert links["n1>n3"]["dropped_iid"] == 0


@needs_root
def test_burst_loss(net: ClusterNetwork) -> None:
    net.set_impairment({"links": {"n1>n3": {"burst_loss": 0.1, "burst_length": 5}}})
    got = multicast(net, 2000)
    lost = sorted(set(range(2000)) - set(got[3]["seqs"]))
    # bursts: far fewer runs of lost datagrams than lost datagrams (iid: about 0.9 x as many)
    runs = sum(1 for a, b in zip([-2, *lost], lost, strict=False) if b != a + 1)
    # the count's spread is a binomial's times (1 + r) / (1 - r), r = 1 - 0.1 / (5 x 0.9) - 1 / 5
    r = 1 - 0.1 / 4.5 - 0.2
    sigma = math.sqrt(2000 * 0.1 * 0.9 * (1 + r) / (1 - r))
    assert abs(len(lost) - 200) <= 5 * sigma and runs < 0.5 * len(lost), (len(lost), runs)
    assert len(got[2]["seqs"]) == 2000
    assert net.stats()["links"]["n1>n3"]["dropped_burst"] >= len(lost)


@needs_root
@pytest.mark.parametrize("family", ["4", "6"])
def test_corrupted_datagrams_reach_the_receiver(net: ClusterNetwork, family: str) -> None:
    net.set_impairment({"default": {"corrupt": 1.0}})
    for got in multicast(net, 200, family=family).values():
        assert got["changed"] == 200 and got["seqs"] == []  # the kernel accepted every one
    assert net.stats()["links"]["n1>n2"]["corrupted"] >= 200


@needs_root
def test_duplicates(net: ClusterNetwork) -> None:
    net.set_impairment({"default": {"duplicate": 1.0}})
    for got in multicast(net, 300).values():
        assert sorted(got["seqs"]) == sorted(list(range(300)) * 2)


@needs_root
def test_delay(net: ClusterNetwork) -> None:
    net.set_impairment({"links": {"n1>*": {"delay_ms": 20}}})
    for got in multicast(net, 100).values():
        assert len(got["seqs"]) == 100
        assert 0.020 <= min(got["latencies"]) and max(got["latencies"]) < 0.5


@needs_root
def test_reorder(net: ClusterNetwork) -> None:
    net.set_impairment({"links": {"n1>n2": {"reorder": 0.3, "reorder_ms": 3}}})
    got = multicast(net, 300, receivers=(2,))[2]
    assert sorted(got["seqs"]) == list(range(300))
    overtaken = sum(a > b for a, b in zip(got["seqs"], got["seqs"][1:], strict=False))
    assert overtaken > 30  # about 0.3 x 300 frames arrive after a later one
    assert net.stats()["links"]["n1>n2"]["reordered"] >= overtaken


@needs_root
def test_partition_and_heal(net: ClusterNetwork) -> None:
    net.partition([1])
    got = multicast(net, 100)
    assert got[2]["seqs"] == [] and got[3]["seqs"] == []
    got = multicast(net, 100, sender=2, receivers=(1, 3))
    assert got[1]["seqs"] == [] and len(got[3]["seqs"]) == 100  # the rest still talk
    assert net.stats()["links"]["n2>n1"]["dropped_blocked"] >= 100
    net.heal([1])
    got = multicast(net, 100)
    assert len(got[2]["seqs"]) == 100 and len(got[3]["seqs"]) == 100
    with pytest.raises(ValueError, match="no partition"):
        net.heal([2])


@needs_root
def test_unplug_and_plug(net: ClusterNetwork) -> None:
    net.unplug(2)
    got = multicast(net, 100)
    assert got[2]["seqs"] == [] and len(got[3]["seqs"]) == 100
    net.plug(2)
    time.sleep(0.1)  # the carrier comes back
    got = multicast(net, 100)
    assert len(got[2]["seqs"]) == 100


@needs_root
@pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed")
def test_nft_drop(net: ClusterNetwork) -> None:
    net.nft_drop(2, 20, port=PORT)
    try:
        got = multicast(net, 2000)
    finally:
        net.nft_drop(2, 0)
    assert within_binomial(2000 - len(got[2]["seqs"]), 2000, 0.2), len(got[2]["seqs"])
    assert len(got[3]["seqs"]) == 2000


@needs_root
def test_rate_limit_installs_a_token_bucket(net: ClusterNetwork) -> None:
    net.rate_limit(3, "10mbit")
    shown = net.run(3, ["tc", "qdisc", "show", "dev", "eth0"], capture_output=True, text=True)
    assert "tbf" in shown.stdout and "10Mbit" in shown.stdout
    net.rate_limit(3, None)
    with pytest.raises(ValueError, match="rate"):
        net.rate_limit(3, "fast")


@needs_root
def test_bad_configs(net: ClusterNetwork) -> None:
    with pytest.raises(ValueError, match="loss=3"):
        net.set_impairment({"default": {"loss": 3}})
    with pytest.raises(ValueError, match="no port 'n7'"):
        net.set_impairment({"links": {"n1>n7": {}}})
    # A bad file reaching the switch anyway: reported, counted, the old config kept.
    net.set_impairment({"default": {"loss": 0.25}})
    before = net.stats()
    with open(net.config_path, "w") as file:
        file.write("{not json")
    assert net.switch_process is not None
    net.switch_process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while net.stats()["config_errors"] == before["config_errors"]:
        assert time.monotonic() < deadline
    after = net.stats()
    assert after["config_reloads"] == before["config_reloads"]
    assert after["config"]["default"] == {"loss": 0.25}


def own_namespaces(prefix: str) -> list[str]:
    return [name for name in network.cluster_namespaces() if name.startswith(prefix)]


@needs_root
def test_arguments_are_checked_before_anything_is_built() -> None:
    for bad in (
        {"nodes": 0},
        {"nodes": 2, "name": "Bad-Name"},
        {"nodes": 2, "impairment": {"default": {"loss": 2}}},
        {"nodes": 2, "rate_limit": "lots"},
    ):
        with pytest.raises(ValueError):
            ClusterNetwork(**bad)
    assert own_namespaces(f"ckc{os.getpid()}-") == own_namespaces(f"ckc{os.getpid()}-test-")


@needs_root
def test_close_leaves_nothing() -> None:
    net = ClusterNetwork(2, name="close", realtime_switch=10, rate_limit="100mbit")
    assert len(own_namespaces(net.prefix)) == 3
    switch = net.switch_process
    net.close()
    assert own_namespaces(net.prefix) == [] and not os.path.exists(net.workdir)
    assert switch is not None and switch.returncode == 0  # SIGTERM: stats written, exit 0
    assert net.stats() == net.final_stats and net.final_stats is not None
    net.close()  # twice is fine


#: a harness in a child process: builds a network, says so, waits to be killed
HARNESS = r"""
import sys, time
from cloudkernel.cluster.network import ClusterNetwork
net = ClusterNetwork(2, name=sys.argv[1])
print(net.prefix, net.switch_process.pid, flush=True)
time.sleep(60)
"""


def start_harness(name: str) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HARNESS, name], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    prefix, switch_pid = proc.stdout.readline().split()
    assert len(own_namespaces(prefix)) == 3
    return proc, prefix, int(switch_pid)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of the killed harness's is gone too (only its parent could reap it)
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True  # reaped meanwhile


@needs_root
def test_leftovers_of_a_killed_harness_are_removed() -> None:
    proc, prefix, switch_pid = start_harness("killed")
    proc.kill()
    proc.wait(10)
    assert len(own_namespaces(prefix)) == 3  # SIGKILL: no cleanup ran
    removed = network.remove_leftovers()
    assert sorted(removed) == sorted(f"{prefix}-{role}" for role in ("sw", "n1", "n2"))
    assert own_namespaces(prefix) == []
    assert glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}-*")) == []  # its workdir
    deadline = time.monotonic() + 5
    while not gone(switch_pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)


@needs_root
def test_ctrl_c_tears_everything_down() -> None:
    proc, prefix, switch_pid = start_harness("ctrlc")
    proc.send_signal(signal.SIGINT)
    proc.wait(15)
    assert own_namespaces(prefix) == []
    assert gone(switch_pid)


@needs_root
def test_a_stray_switch_of_a_dead_run_is_killed() -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid: a harness that is gone
    workdir = tempfile.mkdtemp(prefix=f"ckc{finished.pid}-stray-")
    # looks like a switch to remove_leftovers(): the module's name and --stats in its argv
    looks_like_switch = ["-m", "cloudkernel.cluster.switch", "--stats", f"{workdir}/stats.json"]
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", *looks_like_switch]
    )
    try:
        network.remove_leftovers()
        assert stray.wait(5) == -signal.SIGKILL
        assert not os.path.exists(workdir)
    finally:
        stray.kill()
        stray.wait()
        shutil.rmtree(workdir, ignore_errors=True)
