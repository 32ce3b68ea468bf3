"""The cluster switch's parsers under arbitrary input: frames (random, truncated,
mutated) and configs (random JSON values) never make them raise anything but
their own errors.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_cluster_switch import checksum_is_valid, ipv4_udp_frame, ipv6_udp_frame

from cloudkernel.cluster.impair import Impairment, ImpairmentError
from cloudkernel.cluster.switch import (
    SwitchConfigError,
    corrupt_udp_payload,
    locate_udp,
    parse_switch_config,
)


def check_frame(frame: bytes) -> None:
    found = locate_udp(frame)
    if found is not None:
        start, end, pseudo = found
        assert 14 <= start and start + 8 <= end <= len(frame)
        assert len(pseudo) in (12, 40)
    changed = corrupt_udp_payload(frame, 3, random.Random(0))
    if changed is None:
        return
    assert found is not None and len(changed) == len(frame)
    start, end, pseudo = found
    assert changed[:start] == frame[:start] and changed[end:] == frame[end:]  # headers intact
    assert changed[start : start + 6] == frame[start : start + 6]
    assert checksum_is_valid(pseudo, changed[start:end])


@given(st.binary(max_size=200))
def test_random_bytes(frame: bytes) -> None:
    check_frame(frame)


VALID = [
    ipv4_udp_frame(b"payload of a signal"),
    ipv6_udp_frame(b"payload of a signal"),
    ipv6_udp_frame(b"x" * 40, hop_by_hop=True),
    ipv4_udp_frame(b"", vlan=True),
]


@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=6),
    st.integers(0, 130),
)
def test_mutated_and_truncated_frames(
    frame: bytes, flips: list[tuple[int, int]], keep: int
) -> None:
    mutated = bytearray(frame)
    for position, value in flips:
        if position < len(mutated):
            mutated[position] = value
    check_frame(bytes(mutated[:keep]))
    check_frame(bytes(mutated))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
impairment_keys = st.sampled_from(
    [
        *("loss", "burst_loss", "burst_length", "corrupt", "corrupt_bytes", "duplicate"),
        *("reorder", "reorder_ms", "delay_ms", "jitter_ms", "other"),
    ]
)
impairments = st.dictionaries(impairment_keys, st.floats() | st.integers() | json_values)
link_keys = st.sampled_from(["n1>n2", "*>n1", "n2>*", "*>*", "n1>n1", "n9>n1", "x", "n1>"])


@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "default": impairments,
                "links": st.dictionaries(link_keys, impairments) | json_values,
                "blocked": st.lists(link_keys) | json_values,
            },
        ),
    )
)
def test_configs_parse_or_raise_config_error(obj: Any) -> None:
    try:
        config = parse_switch_config(obj, ["n1", "n2", "n3"])
    except SwitchConfigError:
        return
    assert parse_switch_config(config.to_dict(), ["n1", "n2", "n3"]) == config


@given(impairments)
def test_impairments_parse_or_raise_impairment_error(settings: dict[str, Any]) -> None:
    try:
        impairment = Impairment.from_dict(settings)
    except ImpairmentError:
        return
    assert Impairment.from_dict(impairment.to_dict()) == impairment
