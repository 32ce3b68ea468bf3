"""The receiving half of the signal pipeline: check, deduplicate, rebuild, deliver.

Order of work for each datagram (docs/PROTOCOL.md), cheapest checks first and
nothing that costs before the tag:

1. size limit, byte-RS decode when configured, header rules;
2. key lookup by key id, then the tag (ChaCha20-Poly1305);
3. epoch and replay window of the sender: stale, duplicate, replay;
4. a source frame's signals are delivered at once; the frame is kept in its
   FEC block for as long as the block may need it;
5. once any k frames of a block are held, the lost source frames are rebuilt
   and received as in 1-4 (their own tags are checked again), marked
   ``recovered``.

Each source frame is delivered at most once, whatever the order, duplication
or loss of frames: the replay window admits each sequence number once, and a
rebuilt frame is the original frame with the original sequence number.

Memory is bounded: at most ``max_senders`` senders (least recently heard
evicted), ``max_pending_blocks`` blocks per sender, and ``max_pending_bytes``
of frames held in pending blocks over all senders (oldest block evicted).  A
block is pending for ``block_timeout`` seconds at most.

The receiver is pure: fed datagrams and ``now``, it returns events.
"""

from __future__ import annotations

import itertools
import struct
from collections import OrderedDict
from dataclasses import dataclass

from ..errors import ConfigError, FECError, FrameError, PayloadError
from ..fec import ErasureCode
from .auth import KeyRing
from .events import Event, PacketDropped, SenderRestarted, SignalsReceived
from .framing import MAX_FRAME_RS_NSYM, FrameCodec
from .losstrack import LinkStatistics, LossTracker
from .replay import ReplayWindow, Verdict
from .signals import QoS, decode_payload
from .wire import (
    DEFAULT_MAX_DATAGRAM,
    FLAG_ENCRYPTED,
    FLAG_REPAIR,
    FRAME_OVERHEAD,
    DropReason,
    check_header,
)

__all__ = ["Receiver", "ReceiverConfig", "ReceiverStatistics", "SenderStatistics"]

_U16 = struct.Struct(">H")
_QOS = (QoS.CRITICAL, QoS.NORMAL, QoS.BULK, QoS.BULK)  # 3 never passes check_header
_DONE_BLOCKS = 256
_MAX_CODES = 64


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Settings of a :class:`Receiver`; every bound has a default."""

    #: largest datagram accepted (the swarm's ``max_datagram``)
    max_datagram: int = DEFAULT_MAX_DATAGRAM
    #: byte-level RS parity bytes per chunk; must match the senders' (0: off)
    frame_rs_nsym: int = 0
    #: this node's id: its own frames looped back are dropped (0: none)
    node_id: int = 0
    #: largest k a block may have
    max_block_sources: int = 128
    #: seconds a block may wait for the frames that rebuild it
    block_timeout: float = 0.5
    #: pending blocks per sender at most
    max_pending_blocks: int = 64
    #: bytes of frames held in pending blocks, over all senders
    max_pending_bytes: int = 16 * 1024 * 1024
    #: senders tracked at most (replay and loss state)
    max_senders: int = 1024
    #: sequence numbers in the replay window
    replay_window: int = 1024

    def __post_init__(self) -> None:
        checks = [
            (FRAME_OVERHEAD <= self.max_datagram <= 65507, "max_datagram", "44..65507"),
            (0 <= self.frame_rs_nsym <= MAX_FRAME_RS_NSYM, "frame_rs_nsym", "0..128"),
            (1 <= self.max_block_sources <= 254, "max_block_sources", "1..254"),
            (0.0 < self.block_timeout <= 60.0, "block_timeout", "(0, 60] seconds"),
            (1 <= self.max_pending_blocks <= 65536, "max_pending_blocks", "1..65536"),
            (65536 <= self.max_pending_bytes <= 1 << 34, "max_pending_bytes", "64 KiB..16 GiB"),
            (1 <= self.max_senders <= 1 << 20, "max_senders", "1..1048576"),
            # At least the 1024 that every block of a sender fits in (section 2).
            (1024 <= self.replay_window <= 1 << 16, "replay_window", "1024..65536"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise ConfigError(f"{name} must be {allowed}, got {getattr(self, name)!r}")
        if self.max_pending_bytes < self.max_block_sources * self.max_datagram:
            # Less could not hold one full block: it would be evicted before
            # its repair frames arrive.
            raise ConfigError(
                f"max_pending_bytes {self.max_pending_bytes} cannot hold one block of "
                f"max_block_sources {self.max_block_sources} x max_datagram "
                f"{self.max_datagram} bytes"
            )


@dataclass(frozen=True, slots=True)
class SenderStatistics:
    """What a receiver knows of one sender."""

    epoch: int
    #: authenticated new frames that arrived (source and repair)
    frames: int
    #: source frames rebuilt from repair frames
    recovered: int
    #: signals delivered (arrived and recovered)
    signals: int
    #: seconds (receiver clock) of the last authenticated frame
    last_heard: float
    #: loss of frames on the link, before FEC
    link: LinkStatistics


@dataclass(frozen=True, slots=True)
class ReceiverStatistics:
    """A snapshot of a :class:`Receiver`'s counters."""

    datagrams: int
    #: frames dropped, by :class:`DropReason` value (every reason present)
    drops: dict[str, int]
    senders: dict[int, SenderStatistics]
    pending_blocks: int
    pending_bytes: int


class _Block:
    """A FEC block of one sender epoch that may still need rebuilding."""

    __slots__ = ("deadline", "delivered", "first_at", "frames", "k", "length", "m", "nbytes")

    def __init__(self, first_at: float, deadline: float) -> None:
        self.first_at = first_at
        self.deadline = deadline
        self.k = 0  # unknown until a repair frame arrives
        self.m = 0
        self.length = 0  # repair body length L
        #: index -> symbol source: a source frame, or a repair body
        self.frames: dict[int, bytes] = {}
        #: source indices delivered (arrived or rebuilt)
        self.delivered: set[int] = set()
        self.nbytes = 0


class _SenderState:
    __slots__ = (
        "blocks",
        "done",
        "epoch",
        "frames",
        "last_heard",
        "loss",
        "recovered",
        "signals",
        "window",
    )

    def __init__(self, epoch: int, config: ReceiverConfig) -> None:
        self.epoch = epoch
        self.window = ReplayWindow(config.replay_window)
        self.loss = LossTracker()
        self.blocks: dict[int, _Block] = {}
        #: recently finished blocks, oldest first: what became of them, so that
        #: late frames are judged and counted right
        self.done: dict[int, _Done] = {}
        self.frames = 0
        self.recovered = 0
        self.signals = 0
        self.last_heard = 0.0

    def finish(self, block_id: int, record: _Done) -> None:
        done = self.done
        done[block_id] = record
        if len(done) > 2 * _DONE_BLOCKS:
            for old in list(itertools.islice(done, _DONE_BLOCKS)):
                del done[old]


class _Done:
    """A finished block: k if known, source frames delivered and counted lost."""

    __slots__ = ("delivered", "k", "lost", "reason", "whole")

    def __init__(self, k: int, delivered: int, lost: int, reason: DropReason | None) -> None:
        self.k = k
        self.delivered = delivered
        self.lost = lost
        self.reason = reason
        self.whole = bool(k) and delivered >= k


class Receiver:
    """Turn datagrams from the swarm into delivered signals and counted drops.

    :param keyring: the keys frames may be sealed with.
    :param config: bounds and settings; defaults when omitted.
    """

    def __init__(self, keyring: KeyRing, config: ReceiverConfig | None = None) -> None:
        self.config = config or ReceiverConfig()
        self._keyring = keyring
        self._framing = FrameCodec(self.config.frame_rs_nsym)
        self._max_wire = self.config.max_datagram
        self._max_frame = self._framing.max_frame(self.config.max_datagram)
        self._senders: OrderedDict[int, _SenderState] = OrderedDict()
        #: every pending block, oldest first: (sender, epoch, block id) -> block
        self._pending: OrderedDict[tuple[int, int, int], _Block] = OrderedDict()
        self._pending_bytes = 0
        self._codes: dict[tuple[int, int], ErasureCode] = {}
        # -1 matches no sender: with node_id 0 no frame is taken for our own.
        self._node_id = self.config.node_id or -1
        self._max_sources = self.config.max_block_sources
        self._drops = dict.fromkeys((reason.value for reason in DropReason), 0)
        self._datagrams = 0

    # -- entry points -------------------------------------------------------

    def feed(self, datagram: bytes, now: float) -> list[Event]:
        """Take one datagram as it came off the network; return what it caused."""
        self._datagrams += 1
        events: list[Event] = []
        if len(datagram) > self._max_wire:
            self._drop(events, DropReason.TOO_LARGE, None, f"{len(datagram)} bytes")
            return events
        if self._framing.nsym:
            try:
                datagram = self._framing.decode(datagram)
            except FECError as exc:
                self._drop(events, DropReason.UNCORRECTABLE, None, str(exc))
                return events
        if type(datagram) is not bytes:
            datagram = bytes(datagram)
        self._receive(datagram, now, events, None)
        if self._pending and next(iter(self._pending.values())).deadline <= now:
            self._expire(now, events)
        return events

    def deadline(self) -> float | None:
        """When :meth:`poll` must run next to time out pending blocks."""
        if not self._pending:
            return None
        return next(iter(self._pending.values())).deadline

    def poll(self, now: float) -> list[Event]:
        """Time out the blocks that are due; return the resulting drops."""
        events: list[Event] = []
        self._expire(now, events)
        return events

    def link_statistics(self, sender: int) -> LinkStatistics | None:
        """Loss measured on the link from ``sender``, for heartbeat loss reports."""
        state = self._senders.get(sender)
        return state.loss.statistics() if state is not None else None

    def statistics(self) -> ReceiverStatistics:
        senders = {
            sid: SenderStatistics(
                s.epoch, s.frames, s.recovered, s.signals, s.last_heard, s.loss.statistics()
            )
            for sid, s in self._senders.items()
        }
        return ReceiverStatistics(
            self._datagrams, dict(self._drops), senders, len(self._pending), self._pending_bytes
        )

    # -- the work -----------------------------------------------------------

    def _drop(
        self,
        events: list[Event],
        reason: DropReason,
        sender: int | None,
        detail: str = "",
        count: int = 1,
    ) -> None:
        self._drops[reason.value] += count
        events.append(PacketDropped(reason, sender, count, detail))

    def _receive(
        self,
        frame: bytes,
        now: float,
        events: list[Event],
        rebuilt: tuple[int, int, int, int, float] | None,
    ) -> None:
        """Check and take one frame.

        ``rebuilt`` is None for a frame off the network; for a rebuilt one it is
        what the frame must be (sender, epoch, block id, index) and the time its
        block's first frame arrived.
        """
        try:
            fields = check_header(frame, self._max_sources)
        except FrameError as exc:
            self._drop(events, DropReason(exc.reason), None, str(exc))
            return
        (_, _, flags, key_id, _, _, sender, epoch, seq, block_id, k, m, index, _) = fields
        if sender == self._node_id:
            self._drop(events, DropReason.OWN_FRAME, sender)
            return
        key = self._keyring.lookup(key_id, now)
        if key is None:
            self._drop(events, DropReason.UNKNOWN_KEY, sender, f"key id {key_id}")
            return
        body = key.open(frame, bool(flags & FLAG_ENCRYPTED))
        if body is None:
            self._drop(events, DropReason.BAD_TAG, sender)
            return
        if rebuilt is not None and rebuilt[:4] != (sender, epoch, block_id, index):
            self._drop(events, DropReason.MALFORMED, sender, "rebuilt frame is another frame")
            return

        state = self._senders.get(sender)
        if state is None or epoch > state.epoch:
            state = self._new_epoch(sender, epoch, state, events)
        elif epoch < state.epoch:
            self._drop(events, DropReason.STALE_EPOCH, sender, f"epoch {epoch}")
            return
        else:
            self._senders.move_to_end(sender)
        window = state.window
        verdict = window.check(seq)
        if verdict is not Verdict.NEW:
            # Rebuilt frames too: a sender keeps each block within 256
            # sequence numbers of the window's 1024 (PROTOCOL.md section 2).
            reason = DropReason.DUPLICATE if verdict is Verdict.DUPLICATE else DropReason.REPLAY
            self._drop(events, reason, sender)
            return
        window.accept(seq)
        state.last_heard = now
        if rebuilt is None:
            state.loss.arrived(seq)
            state.frames += 1

        if flags & FLAG_REPAIR:
            self._take_repair(state, sender, block_id, k, m, index, body, now, events)
            return
        block = None
        if rebuilt is None:
            # Frames a sender never makes: a second frame for a position of the
            # block, or a position beyond its k.  Checked before delivery.
            block = state.blocks.get(block_id)
            if block is not None:
                known_k = block.k
                if index in block.delivered:
                    self._drop(events, DropReason.DUPLICATE, sender, "block position taken")
                    return
            else:
                done = state.done.get(block_id)
                known_k = done.k if done is not None else 0
            if known_k and index >= known_k:
                self._drop(events, DropReason.MALFORMED, sender, "source index beyond k")
                return
        qos = _QOS[(flags >> 2) & 3]
        try:
            if rebuilt is None:
                signals = decode_payload(body, qos)
            else:
                # The frame never arrived: date it by its block's first
                # arrival, off by at most the class's time budget (PROTOCOL.md 3).
                signals = decode_payload(body, qos, now - rebuilt[4])
        except PayloadError as exc:
            self._drop(events, DropReason.BAD_PAYLOAD, sender, str(exc))
        else:
            state.signals += len(signals)
            events.append(SignalsReceived(sender, epoch, qos, signals, now, rebuilt is not None))
        if rebuilt is not None:
            return
        # Keep the frame in its block: it may be needed to rebuild a lost one.
        if block is None:
            block = self._block(state, sender, block_id, now, events)
            if block is None:
                return  # the block is finished: nothing left to rebuild
        block.delivered.add(index)
        if self._hold(state, block_id, block, index, frame, events) and block.k:
            self._progress(state, sender, block_id, block, now, events)

    def _new_epoch(
        self, sender: int, epoch: int, old: _SenderState | None, events: list[Event]
    ) -> _SenderState:
        if old is not None:
            self._forget_blocks(sender, old, events, DropReason.BLOCK_TIMEOUT)
        elif len(self._senders) >= self.config.max_senders:
            gone_id, gone = self._senders.popitem(last=False)
            self._forget_blocks(gone_id, gone, events, DropReason.EVICTED)
        state = _SenderState(epoch, self.config)
        self._senders[sender] = state
        self._senders.move_to_end(sender)
        events.append(SenderRestarted(sender, old.epoch if old else None, epoch))
        return state

    def _forget_blocks(
        self, sender: int, state: _SenderState, events: list[Event], reason: DropReason
    ) -> None:
        for block_id in list(state.blocks):
            self._retire(sender, state, block_id, events, reason)

    def _block(
        self, state: _SenderState, sender: int, block_id: int, now: float, events: list[Event]
    ) -> _Block | None:
        """The pending block ``block_id``, made if new; None if already finished."""
        block = state.blocks.get(block_id)
        if block is not None:
            return block
        if block_id in state.done:
            return None
        if len(state.blocks) >= self.config.max_pending_blocks:
            self._retire(sender, state, next(iter(state.blocks)), events, DropReason.EVICTED)
        block = _Block(now, now + self.config.block_timeout)
        state.blocks[block_id] = block
        self._pending[(sender, state.epoch, block_id)] = block
        return block

    def _hold(
        self,
        state: _SenderState,
        block_id: int,
        block: _Block,
        index: int,
        data: bytes,
        events: list[Event],
    ) -> bool:
        """Keep a frame in its block; False if the block had to go to stay in bounds."""
        block.frames[index] = data
        block.nbytes += len(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > self.config.max_pending_bytes:
            self._make_room(block, events)
        return state.blocks.get(block_id) is block

    def _make_room(self, keep: _Block, events: list[Event]) -> None:
        """Evict the oldest pending blocks, ``keep`` last, until within max_pending_bytes."""
        limit = self.config.max_pending_bytes
        while self._pending_bytes > limit and self._pending:
            oldest = list(itertools.islice(self._pending.items(), 2))
            (sender, _epoch, block_id), block = oldest[0]
            if block is keep and len(oldest) > 1:
                (sender, _epoch, block_id), block = oldest[1]
            self._retire(sender, self._senders[sender], block_id, events, DropReason.EVICTED)

    def _take_repair(
        self,
        state: _SenderState,
        sender: int,
        block_id: int,
        k: int,
        m: int,
        index: int,
        body: bytes,
        now: float,
        events: list[Event],
    ) -> None:
        block = self._block(state, sender, block_id, now, events)
        if block is None:
            self._late_repair(state, sender, block_id, k, events)
            return
        if index in block.frames:
            self._drop(events, DropReason.DUPLICATE, sender, "block position taken")
            return
        if block.k == 0:
            if any(i >= k for i in block.delivered) or len(body) < 2 + FRAME_OVERHEAD:
                self._drop(events, DropReason.MALFORMED, sender, "repair disagrees")
                return
            block.k, block.m, block.length = k, m, len(body)
        elif (k, m, len(body)) != (block.k, block.m, block.length):
            self._drop(events, DropReason.MALFORMED, sender, "repair disagrees with block")
            return
        if len(block.delivered) >= block.k:
            self._drop(events, DropReason.REPAIR_UNNEEDED, sender)
            self._retire(sender, state, block_id, events, None)
            return
        if self._hold(state, block_id, block, index, body, events):
            self._progress(state, sender, block_id, block, now, events)

    def _late_repair(
        self, state: _SenderState, sender: int, block_id: int, k: int, events: list[Event]
    ) -> None:
        """A repair frame for a finished block: unneeded, or too late to help."""
        done = state.done[block_id]
        if done.whole:
            self._drop(events, DropReason.REPAIR_UNNEEDED, sender)
            return
        reason = done.reason or DropReason.BLOCK_TIMEOUT
        self._drop(events, reason, sender, f"block {block_id}: repair after the block ended")
        if not done.k:
            # Now k is known: the source frames lost after the last one seen
            # can be counted too.
            done.k = k
            extra = k - done.delivered - done.lost
            if extra > 0:
                done.lost += extra
                self._drop(events, reason, sender, f"block {block_id}", extra)

    def _progress(
        self,
        state: _SenderState,
        sender: int,
        block_id: int,
        block: _Block,
        now: float,
        events: list[Event],
    ) -> None:
        """Rebuild what is missing once k frames are held; retire a whole block."""
        k = block.k
        if not k:
            return
        if len(block.delivered) >= k:
            self._retire(sender, state, block_id, events, None)
            return
        if len(block.frames) < k:
            return
        length = block.length
        received: dict[int, bytes] = {}
        for index, data in block.frames.items():
            if index < k:
                if len(data) + 2 > length:
                    # A source longer than the repair symbols: the block
                    # cannot be rebuilt; its lost frames count as malformed.
                    self._retire(sender, state, block_id, events, DropReason.MALFORMED)
                    return
                received[index] = _U16.pack(len(data)) + data + bytes(length - 2 - len(data))
            else:
                received[index] = data
        code = self._codes.get((k, block.m))
        if code is None:
            if len(self._codes) >= _MAX_CODES:
                self._codes.clear()  # a peer cycling through shapes; honest ones use few
            code = self._codes[(k, block.m)] = ErasureCode(k, block.m)
        try:
            sources = code.decode(received)
        except FECError as exc:  # pragma: no cover - the checks above rule it out
            self._drop(events, DropReason.MALFORMED, sender, f"block {block_id}: {exc}")
            self._retire(sender, state, block_id, events, None)
            return
        first_at = block.first_at
        lost = [index for index in range(k) if index not in block.delivered]
        block.delivered.update(lost)  # the block is whole from here on
        self._retire(sender, state, block_id, events, None)
        for index in lost:
            symbol = sources[index]
            (size,) = _U16.unpack_from(symbol)
            if not FRAME_OVERHEAD <= size <= length - 2:
                self._drop(events, DropReason.MALFORMED, sender, "rebuilt frame length")
                continue
            state.recovered += 1
            self._receive(
                symbol[2 : 2 + size], now, events, (sender, state.epoch, block_id, index, first_at)
            )

    def _retire(
        self,
        sender: int,
        state: _SenderState,
        block_id: int,
        events: list[Event],
        reason: DropReason | None,
    ) -> None:
        """Forget a pending block; with a reason, report the source frames it lost."""
        block = state.blocks.pop(block_id, None)
        if block is None:
            return
        del self._pending[(sender, state.epoch, block_id)]
        self._pending_bytes -= block.nbytes
        delivered = len(block.delivered)
        missing = 0
        if reason is not None:
            if block.k:
                missing = block.k - delivered
            else:
                # k unknown: only gaps below the highest source index are known
                # lost; a late repair frame can tell the rest (_late_repair).
                missing = max(block.delivered, default=-1) + 1 - delivered
            if missing > 0:
                self._drop(events, reason, sender, f"block {block_id}", missing)
        state.finish(block_id, _Done(block.k, delivered, max(missing, 0), reason))

    def _expire(self, now: float, events: list[Event]) -> None:
        while self._pending:
            (sender, _epoch, block_id), block = next(iter(self._pending.items()))
            if block.deadline > now:
                return
            self._retire(sender, self._senders[sender], block_id, events, DropReason.BLOCK_TIMEOUT)
