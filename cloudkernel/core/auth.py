"""Frame authentication and encryption, and the swarm key ring (``docs/PROTOCOL.md`` section 4).

:func:`derive_key_id`, :func:`derive_frame_key`
    The two BLAKE2b-256 derivations from a 32-byte swarm key: the one-byte key
    id carried in every header, and the ChaCha20-Poly1305 frame key.
:class:`SwarmKey`
    One swarm key: seals outgoing frames and opens incoming ones.
:class:`KeyRing`
    The keys a node accepts (previous, current, next) and the one it sends with.

Rules of this module:

* Pure: no I/O and no clock reads.  Whoever needs the time passes ``now`` (any
  monotonic clock, in seconds); key files are read by :mod:`cloudkernel.keyfile`.
* Secrets never leave a :class:`SwarmKey`: no public attribute, ``repr``,
  message or pickle shows them, only the key id.
* :meth:`SwarmKey.open` never raises for a frame of untrusted bytes: a frame
  that does not verify is ``None``.
* The nonce is header bytes 8..19 (sender, epoch, sequence).  It must never
  repeat under one key; that is the sender's duty (unique node ids, epochs that
  only grow, sequences that never wrap within an epoch), not this module's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Final, Literal, NoReturn, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import ConfigError, KeyRingError

__all__ = [
    "HEADER_BYTES",
    "KEY_BYTES",
    "MIN_FRAME_BYTES",
    "NONCE_SLICE",
    "TAG_BYTES",
    "KeyRing",
    "KeyRole",
    "SwarmKey",
    "derive_frame_key",
    "derive_key_id",
]

KEY_BYTES: Final = 32
"""Length of a swarm key, and of the frame key derived from it."""
TAG_BYTES: Final = 16
"""Length of the Poly1305 tag that ends every frame."""
HEADER_BYTES: Final = 28
"""Length of the frame header (section 1)."""
MIN_FRAME_BYTES: Final = HEADER_BYTES + TAG_BYTES
"""The shortest frame: a header, an empty body and a tag."""
NONCE_SLICE: Final = slice(8, 20)
"""Header bytes 8..19 (sender, epoch, sequence): the 96-bit nonce."""

_FRAME_KEY_LABEL: Final = b"cloudkernel frame key v1"
_KEY_ID_LABEL: Final = b"cloudkernel key id v1"

KeyRole: TypeAlias = Literal["current", "next", "previous"]
"""The role of a key in a :class:`KeyRing`."""

_Bytes: TypeAlias = bytes | bytearray | memoryview
# The bound encrypt/decrypt of ChaCha20Poly1305: (nonce, data, associated_data) -> bytes.
_AeadCall: TypeAlias = Callable[[_Bytes, _Bytes, _Bytes], bytes]


def _secret_bytes(secret: _Bytes) -> bytes:
    """Copy a bytes-like swarm key into ``bytes``; :class:`KeyRingError` unless 32 bytes."""
    try:
        view = memoryview(secret)
    except TypeError:
        raise KeyRingError(
            f"a swarm key must be {KEY_BYTES} bytes (bytes-like), not {type(secret).__name__}"
        ) from None
    with view:
        if view.nbytes != KEY_BYTES:
            raise KeyRingError(f"a swarm key must be {KEY_BYTES} bytes, got {view.nbytes}")
        return view.tobytes()


def derive_key_id(secret: bytes) -> int:
    """The key id of a swarm key: byte 0 of ``BLAKE2b-256(key=secret, "cloudkernel key id v1")``.

    :param secret: the 32-byte swarm key.
    :returns: the key id, 0..255.
    :raises KeyRingError: if ``secret`` is not 32 bytes.
    """
    key = _secret_bytes(secret)
    return hashlib.blake2b(_KEY_ID_LABEL, key=key, digest_size=32).digest()[0]


def derive_frame_key(secret: bytes) -> bytes:
    """The ChaCha20-Poly1305 key: ``BLAKE2b-256(key=secret, "cloudkernel frame key v1")``.

    :param secret: the 32-byte swarm key.
    :returns: the 32-byte frame key.
    :raises KeyRingError: if ``secret`` is not 32 bytes.
    """
    key = _secret_bytes(secret)
    return hashlib.blake2b(_FRAME_KEY_LABEL, key=key, digest_size=32).digest()


class SwarmKey:
    """One swarm key, ready to seal and open frames.

    Immutable.  Two keys are equal when their secrets are (compared in constant
    time); ``repr`` shows the key id only.

    :param secret: the 32 secret bytes (any bytes-like object; it is copied).
    :raises KeyRingError: if ``secret`` is not exactly 32 bytes.
    """

    __slots__ = ("_decrypt", "_encrypt", "_key_id", "_secret")

    _key_id: int
    _secret: bytes
    _encrypt: _AeadCall
    _decrypt: _AeadCall

    def __init__(self, secret: bytes | bytearray | memoryview) -> None:
        key = _secret_bytes(secret)
        aead = ChaCha20Poly1305(derive_frame_key(key))
        set_ = object.__setattr__
        set_(self, "_secret", key)
        set_(self, "_key_id", derive_key_id(key))
        # Bound methods of the one cached AEAD object: open() runs per packet,
        # and each saved attribute lookup is measurable there.
        set_(self, "_encrypt", aead.encrypt)
        set_(self, "_decrypt", aead.decrypt)

    @property
    def key_id(self) -> int:
        """The key id (0..255) that frames sealed with this key carry in header byte 4."""
        return self._key_id

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SwarmKey is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"SwarmKey is immutable (cannot delete {name!r})")

    def __copy__(self) -> SwarmKey:
        return self

    def __deepcopy__(self, memo: object) -> SwarmKey:
        return self

    def __reduce__(self) -> NoReturn:
        # Pickling would put the secret into whatever stores the pickle.
        raise TypeError("a SwarmKey cannot be pickled")

    def __repr__(self) -> str:
        return f"SwarmKey(key_id=0x{self.key_id:02x})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SwarmKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        # Equal secrets have equal key ids, and the key id is public anyway.
        return hash(self.key_id)

    def seal(self, header: bytes, body: bytes, encrypt: bool) -> bytes:
        """What follows ``header`` on the wire: the body (or its ciphertext) and the tag.

        Without ``encrypt`` the result is ``body || tag`` with
        ``tag = AEAD(nonce, plaintext="", aad=header || body)``; with it,
        ``ciphertext || tag = AEAD(nonce, plaintext=body, aad=header)``.  The
        header must already hold this key's id, the ``ENCRYPTED`` flag and the
        body length: all of it is authenticated.

        :param header: the 28-byte frame header; bytes 8..19 are the nonce.
        :param body: the frame body (the signal payload or a parity symbol).
        :param encrypt: encrypt the body as well as authenticating it.
        :returns: ``len(body) + 16`` bytes.
        :raises ValueError: if ``header`` is not 28 bytes (a bug of the caller's encoder).
        """
        if len(header) != HEADER_BYTES:
            raise ValueError(f"a frame header is {HEADER_BYTES} bytes, got {len(header)}")
        nonce = header[NONCE_SLICE]
        if encrypt:
            return self._encrypt(nonce, body, header)
        return body + self._encrypt(nonce, b"", header + body)

    def open(self, frame: bytes | memoryview, encrypted: bool) -> bytes | None:
        """Verify a whole received datagram and return its plaintext body.

        Runs once per received packet, so it does nothing the tag check does
        not need; the header's other fields are the parser's business.

        :param frame: the whole datagram: 28-byte header, body, 16-byte tag; a
            memoryview must be a flat view of bytes (as over a ``recv_into`` buffer).
        :param encrypted: the frame's ``ENCRYPTED`` flag (header byte 3, bit 0).
            The flags byte is authenticated, so a wrong answer here only makes
            the tag fail.
        :returns: the plaintext body; ``None`` if the tag does not verify or the
            frame is shorter than 44 bytes.  Never raises for any bytes.
        """
        if len(frame) < MIN_FRAME_BYTES:
            return None
        # Slices of bytes are copies, yet measured cheapest: cryptography takes
        # bytes faster than any other buffer.  A memoryview is sliced as a view
        # rather than copied whole first, which measured as fast or faster.
        if type(frame) is bytes:
            try:
                if encrypted:
                    return self._decrypt(frame[8:20], frame[28:], frame[:28])
                self._decrypt(frame[8:20], frame[-16:], frame[:-16])
            except InvalidTag:
                return None
            return frame[28:-16]
        view = memoryview(frame)
        try:
            if encrypted:
                return self._decrypt(view[8:20], view[28:], view[:28])
            self._decrypt(view[8:20], view[-16:], view[:-16])
        except InvalidTag:
            return None
        return view[28:-16].tobytes()


class KeyRing:
    """The swarm keys a node holds: current, next and previous (section 4).

    * *current* seals what this node sends, and is accepted on receive.
    * *next* (:meth:`install_next`) is accepted on receive but not yet used to
      send, so that every node can learn it before any node sends with it.
    * *previous* is the current key before the last :meth:`promote`; it is
      accepted until ``rotation_window`` seconds after the promotion, then
      dropped.

    No two held keys share a key id.  Times are seconds on the caller's
    monotonic clock.  :meth:`lookup` is one dict look-up plus, for the previous
    key only, one comparison with its expiry.

    :param current: the key to send with.
    :param rotation_window: seconds a promoted-away key stays accepted (>= 0).
    :raises ConfigError: if ``rotation_window`` is negative or not finite.
    """

    __slots__ = ("_by_id", "_current", "_next", "_previous", "_previous_until", "_window")

    def __init__(self, current: SwarmKey, *, rotation_window: float = 60.0) -> None:
        if not 0.0 <= rotation_window < float("inf"):
            raise ConfigError(
                f"rotation_window must be a finite number of seconds >= 0, got {rotation_window!r}"
            )
        self._window = float(rotation_window)
        self._current = current
        self._next: SwarmKey | None = None
        self._previous: SwarmKey | None = None
        self._previous_until = 0.0
        self._by_id: dict[int, SwarmKey] = {}
        self._rebuild()

    def __repr__(self) -> str:
        held = ", ".join(f"{role}=0x{key.key_id:02x}" for role, key in self._held())
        return f"KeyRing({held})"

    @property
    def current(self) -> SwarmKey:
        """The key this node sends with."""
        return self._current

    @property
    def rotation_window(self) -> float:
        """Seconds a promoted-away key stays accepted."""
        return self._window

    def install_next(self, key: SwarmKey) -> None:
        """Hold ``key`` as *next*: accepted on receive, not yet used to send.

        Replaces a *next* key installed before.  A *previous* key counts as held
        until it is dropped (:meth:`expire` or :meth:`lookup` after its expiry).

        :param key: the new key.
        :raises KeyRingError: if its key id is the current's or the previous key's.
        """
        for role, held in self._held():
            if role != "next" and held.key_id == key.key_id:
                same = " (it is the same key)" if held == key else ""
                raise KeyRingError(
                    f"the new key's id 0x{key.key_id:02x} clashes with the {role} key's id "
                    f"0x{held.key_id:02x}{same}; key ids are one byte, so two keys share one "
                    "by chance 1 time in 256: generate another key"
                )
        self._next = key
        self._rebuild()

    def promote(self, now: float, window: float | None = None) -> None:
        """Make *next* current; keep the old current accepted until ``now + window``.

        A previous key still held from an earlier promotion is dropped.

        :param now: the current time.
        :param window: seconds the old current key stays accepted (>= 0,
            finite); None for ``rotation_window``.
        :raises KeyRingError: if no *next* key is installed.
        :raises ConfigError: if ``window`` is negative or not finite.
        """
        if self._next is None:
            raise KeyRingError("no next key to promote: install one first (install_next)")
        if window is None:
            window = self._window
        elif not 0.0 <= window < float("inf"):
            raise ConfigError(f"window must be a finite number of seconds >= 0, got {window!r}")
        self._previous = self._current
        self._previous_until = now + window
        self._current = self._next
        self._next = None
        self._rebuild()

    def lookup(self, key_id: int, now: float) -> SwarmKey | None:
        """The held key with id ``key_id``, or ``None`` (section 6: ``unknown-key``).

        The previous key is found only while ``now`` is before its expiry;
        looking it up after drops it.

        :param key_id: header byte 4 of a received frame.
        :param now: the current time.
        """
        key = self._by_id.get(key_id)
        if key is not None and key is self._previous and now >= self._previous_until:
            self._drop_previous()
            return None
        return key

    def deadline(self) -> float | None:
        """When the previous key expires, or ``None`` when none is held.

        A caller schedules :meth:`expire` for then.
        """
        return self._previous_until if self._previous is not None else None

    def expire(self, now: float) -> int | None:
        """Drop the previous key if it has expired by ``now``.

        :param now: the current time.
        :returns: the key id of the key dropped (for a log line), or ``None``.
        """
        previous = self._previous
        if previous is not None and now >= self._previous_until:
            self._drop_previous()
            return previous.key_id
        return None

    def retire(self) -> int | None:
        """Drop the previous key now, before its window ends.

        :returns: the key id of the key dropped, or ``None`` when none was held.
        """
        previous = self._previous
        if previous is None:
            return None
        self._drop_previous()
        return previous.key_id

    def keys(self, now: float) -> list[tuple[KeyRole, int]]:
        """The keys held, for status displays: ``(role, key_id)``, current first.

        Drops the previous key first if it has expired by ``now``.

        :param now: the current time.
        """
        self.expire(now)
        return [(role, key.key_id) for role, key in self._held()]

    def _held(self) -> list[tuple[KeyRole, SwarmKey]]:
        held: list[tuple[KeyRole, SwarmKey]] = [("current", self._current)]
        if self._next is not None:
            held.append(("next", self._next))
        if self._previous is not None:
            held.append(("previous", self._previous))
        return held

    def _drop_previous(self) -> None:
        self._previous = None
        self._previous_until = 0.0
        self._rebuild()

    def _rebuild(self) -> None:
        # Oldest first, so that if ids ever clashed the newer key would win;
        # install_next() keeps them from clashing at all.
        by_id: dict[int, SwarmKey] = {}
        for key in (self._previous, self._current, self._next):
            if key is not None:
                by_id[key.key_id] = key
        self._by_id = by_id
