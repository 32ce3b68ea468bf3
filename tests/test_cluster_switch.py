"""The cluster switch (cloudkernel.cluster.switch), driven with fake sockets (no root)."""

from __future__ import annotations

import math
import os
import random
from typing import Any, cast

import pytest

from cloudkernel.cluster import switch as switch_module
from cloudkernel.cluster.impair import Impairment
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
