"""Tests of :mod:`cloudkernel.core.auth`: sealing and opening frames, key ids, the key ring.

Known answers are computed independently here from ``hashlib`` and the RFC 8439
primitive of ``cryptography``, and are also pinned as hex, so that a change of
the wire format cannot pass unnoticed.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import random
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.core.auth import (
    HEADER_BYTES,
    KEY_BYTES,
    MIN_FRAME_BYTES,
    NONCE_SLICE,
    TAG_BYTES,
    KeyRing,
    SwarmKey,
    derive_frame_key,
    derive_key_id,
)
from cloudkernel.errors import ConfigError, KeyRingError

FIXED_SECRET = bytes(range(32))
FIXED_KEY_ID = 0xBE
FIXED_FRAME_KEY = "8392a3a6d8d435f42e7b7490fcf998a9c9837951132413d1cb8c6063fdaf24a3"
FIXED_BODY = b"hello swarm"
# Header of FIXED_BODY: sender 0x01020304, epoch 5, sequence 6, flags 0 or 1.
PINNED = {
    False: (
        "434b0100be00000b0102030400000005000000060000000000000000",
        "68656c6c6f20737761726d" + "4af0c7ffa8f5891d5b2f15ac217c26d7",
    ),
    True: (
        "434b0101be00000b0102030400000005000000060000000000000000",
        "d57e8842892a3aa242296a9ede0417f7f32c20bc997268d214675a",
    ),
}


def make_header(
    key_id: int,
    body_len: int,
    *,
    encrypted: bool = False,
    sender: int = 0x01020304,
    epoch: int = 5,
    seq: int = 6,
) -> bytes:
    """A section 1 header for a source frame."""
    return struct.pack(
        ">2sBBBBHIIIIBBBB",
        b"CK",
        1,
        int(encrypted),
        key_id,
        0,
        body_len,
        sender,
        epoch,
        seq,
        0,
        0,
        0,
        0,
        0,
    )


def make_frame(key: SwarmKey, body: bytes, encrypted: bool, **fields: int) -> bytes:
    header = make_header(key.key_id, len(body), encrypted=encrypted, **fields)
    return header + key.seal(header, body, encrypted)


def secret_for(seed: int) -> bytes:
    return hashlib.sha256(b"test key %d" % seed).digest()


def flip(frame: bytes, bit: int) -> bytes:
    out = bytearray(frame)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def key() -> SwarmKey:
    return SwarmKey(secret_for(1))


# ---------------------------------------------------------------------------
# Derivation and known answers
# ---------------------------------------------------------------------------


def test_constants() -> None:
    assert (KEY_BYTES, TAG_BYTES, HEADER_BYTES, MIN_FRAME_BYTES) == (32, 16, 28, 44)
    assert NONCE_SLICE == slice(8, 20)


def test_key_id_and_frame_key_pinned() -> None:
    assert derive_key_id(FIXED_SECRET) == FIXED_KEY_ID
    assert SwarmKey(FIXED_SECRET).key_id == FIXED_KEY_ID
    assert derive_frame_key(FIXED_SECRET).hex() == FIXED_FRAME_KEY


def test_derivations_match_protocol() -> None:
    for seed in range(20):
        secret = secret_for(seed)
        id_digest = hashlib.blake2b(b"cloudkernel key id v1", key=secret, digest_size=32)
        assert derive_key_id(secret) == id_digest.digest()[0]
        key_digest = hashlib.blake2b(b"cloudkernel frame key v1", key=secret, digest_size=32)
        assert derive_frame_key(secret) == key_digest.digest()


@pytest.mark.parametrize("encrypted", [False, True])
def test_known_answer(encrypted: bool) -> None:
    key = SwarmKey(FIXED_SECRET)
    header = make_header(key.key_id, len(FIXED_BODY), encrypted=encrypted)
    frame_key = hashlib.blake2b(b"cloudkernel frame key v1", key=FIXED_SECRET, digest_size=32)
    aead = ChaCha20Poly1305(frame_key.digest())
    nonce = header[8:20]
    assert nonce == bytes.fromhex("010203040000000500000006")
    if encrypted:
        expected = aead.encrypt(nonce, FIXED_BODY, header)
    else:
        expected = FIXED_BODY + aead.encrypt(nonce, b"", header + FIXED_BODY)
    sealed = key.seal(header, FIXED_BODY, encrypted)
    assert sealed == expected
    assert (header.hex(), sealed.hex()) == PINNED[encrypted]
    assert key.open(header + sealed, encrypted) == FIXED_BODY


# ---------------------------------------------------------------------------
# seal / open
# ---------------------------------------------------------------------------


@given(body=st.binary(max_size=1300), encrypted=st.booleans(), seq=st.integers(0, 2**32 - 1))
def test_round_trip(key: SwarmKey, body: bytes, encrypted: bool, seq: int) -> None:
    frame = make_frame(key, body, encrypted, seq=seq)
    assert len(frame) == HEADER_BYTES + len(body) + TAG_BYTES
    assert key.open(frame, encrypted) == body
    assert key.open(memoryview(frame), encrypted) == body
    assert key.open(memoryview(bytearray(frame)), encrypted) == body


def test_open_returns_bytes_for_every_input_type(key: SwarmKey) -> None:
    for encrypted in (False, True):
        frame = make_frame(key, b"payload", encrypted)
        for given_frame in (frame, memoryview(frame), memoryview(bytearray(frame))):
            assert type(key.open(given_frame, encrypted)) is bytes


def test_auth_only_body_travels_in_clear(key: SwarmKey) -> None:
    body = b"plain text body"
    frame = make_frame(key, body, encrypted=False)
    assert frame[HEADER_BYTES:-TAG_BYTES] == body


@given(body=st.binary(min_size=16, max_size=200))
def test_encrypted_body_differs_from_plaintext(key: SwarmKey, body: bytes) -> None:
    frame = make_frame(key, body, encrypted=True)
    ciphertext = frame[HEADER_BYTES:-TAG_BYTES]
    assert len(ciphertext) == len(body)
    assert ciphertext != body
    assert body not in frame


@pytest.mark.parametrize("encrypted", [False, True])
def test_every_bit_flip_of_a_small_frame_fails(key: SwarmKey, encrypted: bool) -> None:
    frame = make_frame(key, b"tiny body", encrypted)
    assert key.open(frame, encrypted) == b"tiny body"
    for bit in range(len(frame) * 8):
        assert key.open(flip(frame, bit), encrypted) is None, f"bit {bit} flipped unnoticed"


@pytest.mark.parametrize("encrypted", [False, True])
def test_sampled_bit_flips_of_a_large_frame_fail(key: SwarmKey, encrypted: bool) -> None:
    rng = random.Random(1200 + encrypted)
    body = rng.randbytes(1200 - MIN_FRAME_BYTES)
    frame = make_frame(key, body, encrypted)
    assert len(frame) == 1200
    bits = len(frame) * 8
    # Every bit of the header and the tag, and a sample of the body.
    positions = [*range(HEADER_BYTES * 8), *range(bits - TAG_BYTES * 8, bits)]
    positions += rng.sample(range(HEADER_BYTES * 8, bits - TAG_BYTES * 8), 1500)
    for bit in positions:
        assert key.open(flip(frame, bit), encrypted) is None, f"bit {bit} flipped unnoticed"


@pytest.mark.parametrize("encrypted", [False, True])
def test_wrong_mode_fails(key: SwarmKey, encrypted: bool) -> None:
    frame = make_frame(key, b"some body", encrypted)
    assert key.open(frame, not encrypted) is None


@pytest.mark.parametrize("encrypted", [False, True])
def test_wrong_key_fails(key: SwarmKey, encrypted: bool) -> None:
    frame = make_frame(key, b"some body", encrypted)
    other = SwarmKey(secret_for(2))
    assert other.open(frame, encrypted) is None


def test_other_nonce_fails(key: SwarmKey) -> None:
    # A tag moved onto another header (other sequence number) does not verify.
    for encrypted in (False, True):
        frame = make_frame(key, b"body", encrypted, seq=7)
        moved = make_header(key.key_id, 4, encrypted=encrypted, seq=8) + frame[HEADER_BYTES:]
        assert key.open(moved, encrypted) is None


@pytest.mark.parametrize("encrypted", [False, True])
def test_truncated_and_short_frames(key: SwarmKey, encrypted: bool) -> None:
    frame = make_frame(key, b"x" * 40, encrypted)
    for cut in range(1, len(frame) + 1):
        assert key.open(frame[:-cut], encrypted) is None
        assert key.open(frame[cut:], encrypted) is None
    assert key.open(b"", encrypted) is None
    assert key.open(memoryview(b"short"), encrypted) is None


def test_empty_body_is_the_shortest_frame(key: SwarmKey) -> None:
    for encrypted in (False, True):
        frame = make_frame(key, b"", encrypted)
        assert len(frame) == MIN_FRAME_BYTES
        assert key.open(frame, encrypted) == b""


@given(data=st.binary(max_size=1300), encrypted=st.booleans())
def test_open_never_raises_on_garbage(key: SwarmKey, data: bytes, encrypted: bool) -> None:
    assert key.open(data, encrypted) is None
    assert key.open(memoryview(data), encrypted) is None


def test_seal_refuses_a_bad_header(key: SwarmKey) -> None:
    with pytest.raises(ValueError, match="28 bytes, got 27"):
        key.seal(bytes(27), b"body", False)


# ---------------------------------------------------------------------------
# SwarmKey as a value
# ---------------------------------------------------------------------------


def test_repr_hides_the_secret() -> None:
    key = SwarmKey(FIXED_SECRET)
    text = repr(key)
    assert text == "SwarmKey(key_id=0xbe)"
    for form in (FIXED_SECRET.hex(), str(FIXED_SECRET), str(list(FIXED_SECRET))):
        assert form not in text
    ring = KeyRing(key)
    assert FIXED_SECRET.hex() not in repr(ring)
    assert "0xbe" in repr(ring)


def test_key_is_immutable_and_unpicklable() -> None:
    key = SwarmKey(FIXED_SECRET)
    with pytest.raises(AttributeError):
        key.key_id = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del key.key_id
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert copy.copy(key) is key
    assert copy.deepcopy(key) is key


def test_equality_by_secret() -> None:
    a = SwarmKey(FIXED_SECRET)
    b = SwarmKey(bytearray(FIXED_SECRET))
    c = SwarmKey(memoryview(FIXED_SECRET))
    assert a == b == c
    assert hash(a) == hash(b)
    assert a != SwarmKey(secret_for(3))
    assert a != FIXED_SECRET
    assert len({a, b, c}) == 1


def test_key_copies_its_secret() -> None:
    secret = bytearray(FIXED_SECRET)
    key = SwarmKey(secret)
    secret[0] ^= 0xFF
    assert key == SwarmKey(FIXED_SECRET)


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33), bytes(64)])
def test_key_length_enforced(secret: bytes) -> None:
    with pytest.raises(KeyRingError, match=f"32 bytes, got {len(secret)}"):
        SwarmKey(secret)
    with pytest.raises(KeyRingError):
        derive_key_id(secret)
    with pytest.raises(KeyRingError):
        derive_frame_key(secret)


def test_key_must_be_bytes_like() -> None:
    with pytest.raises(KeyRingError, match="not str"):
        SwarmKey("k" * 32)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# KeyRing
# ---------------------------------------------------------------------------


def distinct_keys(count: int) -> list[SwarmKey]:
    """``count`` keys with pairwise different key ids, from seeds 100, 101, ..."""
    keys: dict[int, SwarmKey] = {}
    seed = 100
    while len(keys) < count:
        key = SwarmKey(secret_for(seed))
        keys.setdefault(key.key_id, key)
        seed += 1
    return list(keys.values())


def clashing_pair() -> tuple[SwarmKey, SwarmKey]:
    """Two different keys with one key id (found within 257 seeds by pigeonhole)."""
    seen: dict[int, SwarmKey] = {}
    for seed in range(257):
        key = SwarmKey(secret_for(seed))
        if key.key_id in seen:
            return seen[key.key_id], key
        seen[key.key_id] = key
    raise AssertionError("unreachable: 257 keys, 256 ids")


def other_id_than(key: SwarmKey) -> SwarmKey:
    return next(k for k in distinct_keys(2) if k.key_id != key.key_id)


def test_ring_holds_current_only_at_first() -> None:
    a, b = distinct_keys(2)
    ring = KeyRing(a)
    assert ring.current is a
    assert ring.lookup(a.key_id, 0.0) is a
    assert ring.lookup(b.key_id, 0.0) is None
    assert ring.deadline() is None
    assert ring.keys(0.0) == [("current", a.key_id)]
    assert ring.rotation_window == 60.0


def test_rotation_across_the_window() -> None:
    a, b, c = distinct_keys(3)
    ring = KeyRing(a, rotation_window=60.0)

    ring.install_next(b)
    assert ring.current is a  # next is accepted, not used to send
    assert ring.lookup(b.key_id, 10.0) is b
    assert ring.lookup(a.key_id, 10.0) is a
    assert ring.keys(10.0) == [("current", a.key_id), ("next", b.key_id)]

    ring.promote(100.0)
    assert ring.current is b
    assert ring.deadline() == 160.0
    assert ring.keys(100.0) == [("current", b.key_id), ("previous", a.key_id)]
    assert ring.lookup(a.key_id, 100.0) is a
    assert ring.lookup(a.key_id, 159.999) is a
    assert ring.lookup(b.key_id, 159.999) is b

    # The next rotation may start while the previous key is still held.
    ring.install_next(c)
    assert ring.keys(120.0) == [
        ("current", b.key_id),
        ("next", c.key_id),
        ("previous", a.key_id),
    ]
    for key in (a, b, c):
        assert ring.lookup(key.key_id, 120.0) is key

    # At the deadline the previous key is gone, and stays gone.
    assert ring.lookup(a.key_id, 160.0) is None
    assert ring.deadline() is None
    assert ring.lookup(a.key_id, 100.0) is None
    assert ring.keys(160.0) == [("current", b.key_id), ("next", c.key_id)]
    assert ring.lookup(b.key_id, 1e9) is b
    assert ring.lookup(c.key_id, 1e9) is c


def test_expire_and_keys_drop_the_previous_key() -> None:
    a, b = distinct_keys(2)
    ring = KeyRing(a, rotation_window=5.0)
    ring.install_next(b)
    ring.promote(0.0)
    assert ring.expire(4.9) is None
    assert ring.deadline() == 5.0
    assert ring.expire(5.0) == a.key_id
    assert ring.deadline() is None
    assert ring.expire(6.0) is None

    ring.install_next(a)
    ring.promote(10.0)
    assert ring.keys(14.0) == [("current", a.key_id), ("previous", b.key_id)]
    assert ring.keys(15.0) == [("current", a.key_id)]
    assert ring.lookup(b.key_id, 12.0) is None


def test_zero_rotation_window_drops_at_once() -> None:
    a, b = distinct_keys(2)
    ring = KeyRing(a, rotation_window=0.0)
    ring.install_next(b)
    ring.promote(7.0)
    assert ring.deadline() == 7.0
    assert ring.lookup(a.key_id, 7.0) is None


def test_second_promote_replaces_the_previous_key() -> None:
    a, b, c = distinct_keys(3)
    ring = KeyRing(a)
    ring.install_next(b)
    ring.promote(0.0)
    ring.install_next(c)
    ring.promote(1.0)
    assert ring.current is c
    assert ring.lookup(a.key_id, 1.0) is None
    assert ring.lookup(b.key_id, 1.0) is b
    assert ring.deadline() == 61.0


def test_install_next_replaces_next() -> None:
    a, b, c = distinct_keys(3)
    ring = KeyRing(a)
    ring.install_next(b)
    ring.install_next(c)
    assert ring.lookup(b.key_id, 0.0) is None
    assert ring.lookup(c.key_id, 0.0) is c


def test_next_may_be_replaced_by_a_key_with_its_id() -> None:
    x, y = clashing_pair()
    current = other_id_than(x)
    ring = KeyRing(current)
    ring.install_next(x)
    ring.install_next(y)
    assert ring.lookup(y.key_id, 0.0) is y


def test_promote_without_next() -> None:
    (a,) = distinct_keys(1)
    ring = KeyRing(a)
    with pytest.raises(KeyRingError, match="no next key"):
        ring.promote(0.0)
    assert ring.current is a


def test_clash_with_current() -> None:
    x, y = clashing_pair()
    assert x != y and x.key_id == y.key_id
    ring = KeyRing(x)
    hex_id = f"0x{x.key_id:02x}"
    with pytest.raises(KeyRingError, match=rf"{hex_id}.*current.*generate another key"):
        ring.install_next(y)
    assert ring.lookup(x.key_id, 0.0) is x
    with pytest.raises(KeyRingError, match="same key"):
        ring.install_next(x)


def test_clash_with_previous_until_dropped() -> None:
    x, y = clashing_pair()
    ring = KeyRing(x, rotation_window=30.0)
    ring.install_next(other_id_than(x))
    ring.promote(0.0)
    with pytest.raises(KeyRingError, match=r"previous.*generate another key"):
        ring.install_next(y)
    ring.expire(30.0)
    ring.install_next(y)
    assert ring.lookup(y.key_id, 31.0) is y


@pytest.mark.parametrize("window", [-1.0, float("inf"), float("nan")])
def test_rotation_window_must_be_finite_and_non_negative(window: float) -> None:
    (a,) = distinct_keys(1)
    with pytest.raises(ConfigError, match="rotation_window"):
        KeyRing(a, rotation_window=window)


# -- promote with a window, retire ---------------------------------------------


def test_promote_with_its_own_window_and_retire() -> None:
    old, new = SwarmKey(bytes(32)), SwarmKey(bytes([1]) * 32)
    ring = KeyRing(old, rotation_window=5.0)
    ring.install_next(new)
    ring.promote(100.0, window=1000.0)
    assert ring.current is new
    assert ring.lookup(old.key_id, 1099.0) is old  # past the ring's own 5 s window
    assert ring.deadline() == 1100.0
    assert ring.retire() == old.key_id
    assert ring.lookup(old.key_id, 100.0) is None
    assert ring.deadline() is None
    assert ring.retire() is None
    assert ring.keys(100.0) == [("current", new.key_id)]


@pytest.mark.parametrize("window", [-1.0, float("inf"), float("nan")])
def test_promote_refuses_a_bad_window(window: float) -> None:
    ring = KeyRing(SwarmKey(bytes(32)))
    ring.install_next(SwarmKey(bytes([1]) * 32))
    with pytest.raises(ConfigError, match="window must be a finite number"):
        ring.promote(0.0, window=window)
    assert ring.keys(0.0)[1][0] == "next"  # nothing changed
