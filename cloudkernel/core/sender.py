"""The sending half of the signal pipeline: batching, FEC blocks, sealing.

Rules it keeps (docs/PROTOCOL.md sections 1-4):

* Signals are batched per QoS class into source frames no larger than the
  payload budget.  A frame is sealed when the next signal would not fit, and
  at every :meth:`Sender.poll`; the adapter polls after each turn of its
  event loop, so batching adds no waiting.
* Source frames leave at once.  Each class has one open FEC block; it closes
  when it holds the class's ``k_max`` frames or its time budget has run out,
  and then its m repair frames leave.  m comes from the redundancy policy and
  the worst loss that receivers report (:class:`LossReports`).
* Every frame gets the next sequence number of the (sender, epoch); the
  nonce (sender, epoch, sequence) is never reused.  When the 32-bit sequence
  space runs out the sender moves to the next epoch by itself; the adapter
  must persist :attr:`Sender.epoch` so that a restart goes above it.

The sender is pure: it is fed ``now`` and returns datagrams and deadlines.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..errors import CloudkernelError, ConfigError, SignalError
from ..fec import ErasureCode
from .auth import KeyRing
from .framing import MAX_FRAME_RS_NSYM, FrameCodec
from .redundancy import LossReports, RedundancyPolicy, choose_m
from .signals import (
    MAX_ENCODED_SIGNAL,
    MAX_U32,
    PayloadBuilder,
    QoS,
    Signal,
    check_signal,
    encode_signal,
)
from .wire import (
    DEFAULT_MAX_DATAGRAM,
    FRAME_OVERHEAD,
    REPAIR_OVERHEAD,
    make_flags,
    pack_header,
)

__all__ = ["ClassConfig", "Sender", "SenderConfig", "SenderStatistics", "default_classes"]

_U16 = struct.Struct(">H")
_MAX_BLOCK_SOURCES = 128
#: A new block is opened only with this many sequence numbers to spare, more
#: than the open blocks of the other classes can still use: no block spans
#: two epochs.
_SEQ_HEADROOM = 4096
#: Sequence numbers a block may span before it must close (PROTOCOL.md section 2).
MAX_BLOCK_SPAN = 128


@dataclass(frozen=True, slots=True)
class ClassConfig:
    """How one QoS class is batched and protected."""

    #: seconds from a block's first source frame until it closes anyway
    budget: float
    #: source frames per block at most (a block closes at once when full)
    k_max: int
    #: how many repair frames a block gets
    policy: RedundancyPolicy

    def __post_init__(self) -> None:
        if not (0.0 < self.budget <= 10.0):
            raise ConfigError(f"class budget must be in (0, 10] seconds, got {self.budget!r}")
        if not (1 <= self.k_max <= _MAX_BLOCK_SOURCES):
            raise ConfigError(f"k_max must be 1..{_MAX_BLOCK_SOURCES}, got {self.k_max!r}")
        if self.k_max + self.policy.m_max > 255:
            raise ConfigError(
                f"k_max + m_max must be at most 255, got {self.k_max} + {self.policy.m_max}"
            )


def default_classes() -> dict[QoS, ClassConfig]:
    """Critical: small blocks, 2 ms, 1e-9; normal: 10 ms, 1e-6; bulk: 50 ms, 1e-6."""
    return {
        QoS.CRITICAL: ClassConfig(0.002, 8, RedundancyPolicy(target=1e-9, m_min=2, m_max=16)),
        QoS.NORMAL: ClassConfig(0.010, 32, RedundancyPolicy(target=1e-6, m_min=1, m_max=32)),
        QoS.BULK: ClassConfig(0.050, 64, RedundancyPolicy(target=1e-6, m_min=1, m_max=32)),
    }


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """Settings of a :class:`Sender`; the defaults fit the IPv6 minimum MTU."""

    #: largest UDP payload on the wire, repair frames and byte-RS included
    max_datagram: int = DEFAULT_MAX_DATAGRAM
    #: encrypt payloads (ChaCha20-Poly1305); repair frames are parity of the
    #: encrypted frames and are only authenticated
    encrypt: bool = False
    #: byte-level RS parity bytes per 255-byte chunk (0: off), PROTOCOL.md section 7
    frame_rs_nsym: int = 0
    classes: Mapping[QoS, ClassConfig] = field(default_factory=default_classes)

    def __post_init__(self) -> None:
        if not 0 <= self.frame_rs_nsym <= MAX_FRAME_RS_NSYM:
            raise ConfigError(f"frame_rs_nsym must be 0..{MAX_FRAME_RS_NSYM}")
        if set(self.classes) != set(QoS):
            raise ConfigError("classes must configure critical, normal and bulk")
        budget = self.payload_budget
        if budget < MAX_ENCODED_SIGNAL + 5:
            raise ConfigError(
                f"max_datagram {self.max_datagram} leaves a {budget}-byte payload; the largest "
                f"signal needs {MAX_ENCODED_SIGNAL + 5}"
            )
        if self.max_datagram > 65507:
            raise ConfigError(f"max_datagram {self.max_datagram} exceeds the UDP maximum 65507")

    @property
    def payload_budget(self) -> int:
        """Bytes of signal payload per source frame."""
        frame = FrameCodec(self.frame_rs_nsym).max_frame(self.max_datagram)
        return frame - REPAIR_OVERHEAD - FRAME_OVERHEAD


@dataclass(frozen=True, slots=True)
class SenderStatistics:
    """Counters of a :class:`Sender` since it was made."""

    signals: int
    source_frames: int
    repair_frames: int
    blocks: int
    bytes_sent: int
    epoch: int
    next_seq: int


class _Block:
    __slots__ = ("block_id", "closes_at", "first_seq", "frames", "qos")

    def __init__(self, block_id: int, qos: QoS, closes_at: float, first_seq: int) -> None:
        self.block_id = block_id
        self.first_seq = first_seq
        self.qos = qos
        self.closes_at = closes_at
        self.frames: list[bytes] = []


class Sender:
    """Batch, protect and seal signals of one node.

    :param node_id: this node's id, 1..2^32-1, unique in the swarm.
    :param epoch: this run's epoch, larger than any earlier run's.
    :param keyring: supplies the key frames are sealed with (its current key).
    :param reports: loss reports of receivers; a fresh one when omitted.
    """

    def __init__(
        self,
        node_id: int,
        epoch: int,
        keyring: KeyRing,
        config: SenderConfig | None = None,
        reports: LossReports | None = None,
    ) -> None:
        if not 1 <= node_id <= MAX_U32:
            raise ConfigError(f"node id must be 1..{MAX_U32}, got {node_id!r}")
        if not 0 <= epoch <= MAX_U32:
            raise ConfigError(f"epoch must be 0..{MAX_U32}, got {epoch!r}")
        self.node_id = node_id
        self.epoch = epoch
        self.config = config or SenderConfig()
        self.reports = reports or LossReports()
        self._keyring = keyring
        self._framing = FrameCodec(self.config.frame_rs_nsym)
        self._budget = self.config.payload_budget
        self._builders = {qos: PayloadBuilder(self._budget) for qos in QoS}
        self._blocks: dict[QoS, _Block] = {}
        self._codes: dict[tuple[int, int], ErasureCode] = {}
        self._outbox: list[bytes] = []
        self._seq = 0
        self._next_block = 0
        self._signal_seq = 0
        self._stats = {"signals": 0, "source": 0, "repair": 0, "blocks": 0, "bytes": 0}

    # -- publishing ---------------------------------------------------------

    def next_signal_seq(self) -> int:
        """The sequence number for this node's next own signal."""
        seq = self._signal_seq
        self._signal_seq = (seq + 1) & MAX_U32
        return seq

    def publish(self, signal: Signal, now: float, *, checked: bool = False) -> None:
        """Queue a signal for its class's next frame.

        A signal with ``source == 0`` is this node's own: it is stamped with
        the node id and the next signal sequence number.  Others are relayed
        as they are.  The signal's ``age`` is its age now.

        :param checked: the caller has checked every limit already
            (:func:`check_signal`, or a signal from :func:`make_signal` or a
            peer's payload); it is not checked again.
        :raises SignalError: if the signal breaks a limit (see ``make_signal``).
        """
        if not isinstance(signal, Signal):
            raise SignalError(f"publish takes a Signal, got {type(signal).__name__}")
        if not checked:
            # Signal's constructor checks nothing: check every limit here, so
            # that a bad signal is our caller's clear error and never a peer's drop.
            signal = check_signal(signal)
        if signal.source == 0:
            source, seq = self.node_id, self.next_signal_seq()
        else:
            source, seq = signal.source, signal.seq
        # min: an age past 2^32 ms (even one that overflows to inf) is sent as the maximum.
        age_ms = round(min(signal.age * 1000.0, MAX_U32))
        encoded = encode_signal(signal, age_ms, source=source, seq=seq)
        builder = self._builders[signal.qos]
        if not builder.fits(encoded):
            self._seal_source(signal.qos, builder.build(), now)
        builder.add(encoded)
        self._stats["signals"] += 1

    # -- timing -------------------------------------------------------------

    def deadline(self) -> float | None:
        """When :meth:`poll` must be called next (None: nothing pending in time).

        Queued signals make the deadline "now" in effect; the adapter polls
        after every loop turn anyway.
        """
        if not self._blocks:
            return None
        return min(block.closes_at for block in self._blocks.values())

    def poll(self, now: float) -> list[bytes]:
        """Seal queued signals, close blocks that are due; return the datagrams to send."""
        # Close what is due first: a block takes no frames after its budget.
        for qos in [q for q, b in self._blocks.items() if b.closes_at <= now]:
            self._close(qos, now)
        for qos, builder in self._builders.items():
            if len(builder):
                self._seal_source(qos, builder.build(), now)
        out, self._outbox = self._outbox, []
        return out

    def flush(self, now: float) -> list[bytes]:
        """Seal everything and close every block now (before shutdown)."""
        out = self.poll(now)
        for qos in list(self._blocks):
            self._close(qos, now)
        out.extend(self._outbox)
        self._outbox = []
        return out

    def reconfigure(self, classes: Mapping[QoS, ClassConfig], now: float) -> None:
        """Take new per-class settings (a config reload).

        Queued signals are sealed and open blocks closed under the settings
        they were started with; their datagrams wait for the next
        :meth:`poll`.  Frame-level settings (datagram size, encryption) are
        not reloadable and stay.

        :raises ConfigError: if ``classes`` does not configure every class
        """
        config = replace(self.config, classes=classes)
        self._outbox = self.flush(now)
        self.config = config

    def statistics(self) -> SenderStatistics:
        s = self._stats
        return SenderStatistics(
            s["signals"], s["source"], s["repair"], s["blocks"], s["bytes"], self.epoch, self._seq
        )

    # -- frames -------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _advance_epoch(self, now: float) -> None:
        """Move to the next epoch; the open blocks close first, in the old one."""
        for qos in list(self._blocks):
            self._close(qos, now)
        if self.epoch == MAX_U32:
            # Wrapping to 0 would reuse nonces and be stale to every receiver.
            raise CloudkernelError(
                "the sender's epoch and sequence numbers are exhausted; a new swarm key is needed"
            )
        self.epoch += 1
        self._seq = 0
        self._next_block = 0

    def _frame(self, qos: QoS, body: bytes, *, block: int, k: int, m: int, index: int) -> bytes:
        key = self._keyring.current
        repair = k > 0
        encrypted = self.config.encrypt and not repair
        header = pack_header(
            flags=make_flags(qos, encrypted=encrypted, repair=repair),
            key_id=key.key_id,
            length=len(body),
            sender=self.node_id,
            epoch=self.epoch,
            seq=self._next_seq(),
            block=block,
            k=k,
            m=m,
            index=index,
        )
        frame = header + key.seal(header, body, encrypted)
        datagram = self._framing.encode(frame)
        self._outbox.append(datagram)
        self._stats["bytes"] += len(datagram)
        return frame

    def _seal_source(self, qos: QoS, payload: bytes, now: float) -> None:
        block = self._blocks.get(qos)
        if block is not None and block.closes_at <= now:
            self._close(qos, now)  # its budget ran out while signals queued
            block = None
        if block is None:
            if self._seq > MAX_U32 - _SEQ_HEADROOM:
                self._advance_epoch(now)
            block = _Block(self._next_block, qos, now + self.config.classes[qos].budget, self._seq)
            self._next_block = (self._next_block + 1) & MAX_U32
            self._blocks[qos] = block
        frame = self._frame(qos, payload, block=block.block_id, k=0, m=0, index=len(block.frames))
        block.frames.append(frame)
        self._stats["source"] += 1
        if len(block.frames) >= self.config.classes[qos].k_max:
            self._close(qos, now)
        # Every block closes within MAX_BLOCK_SPAN sequence numbers of its
        # first frame, whatever the other classes send meanwhile, so that its
        # last repair frame lies within 1024 of its first source frame: a
        # receiver's replay window still holds every frame it may rebuild.
        for other in [
            q for q, b in self._blocks.items() if self._seq - b.first_seq > MAX_BLOCK_SPAN
        ]:
            if other in self._blocks:
                self._close(other, now)

    def _close(self, qos: QoS, now: float) -> None:
        block = self._blocks.pop(qos)
        self._stats["blocks"] += 1
        k = len(block.frames)
        loss, burst = self.reports.worst(now)
        m = choose_m(k, loss, burst, self.config.classes[qos].policy)
        if m == 0:
            return
        code = self._codes.get((k, m))
        if code is None:
            code = self._codes[(k, m)] = ErasureCode(k, m)
        length = 2 + max(len(frame) for frame in block.frames)
        symbols = [
            _U16.pack(len(frame)) + frame + bytes(length - 2 - len(frame)) for frame in block.frames
        ]
        for j, parity in enumerate(code.encode(symbols)):
            self._frame(qos, parity, block=block.block_id, k=k, m=m, index=k + j)
            self._stats["repair"] += 1
