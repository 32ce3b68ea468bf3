"""Events the sans-I/O pipeline hands to its adapter: facts, named in the past tense.

The receiver returns them from ``feed`` and ``poll``; nothing here does
anything.  ``PacketDropped.reason`` takes its values from the closed set
:class:`~cloudkernel.core.wire.DropReason`, which the metrics reuse as labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from .signals import QoS, Signal
from .wire import DropReason

__all__ = ["Event", "PacketDropped", "SenderRestarted", "SignalsReceived"]


@dataclass(slots=True)
class SignalsReceived:
    """The signals of one source frame, delivered exactly once."""

    #: node id of the node that sent the frame (a signal's ``source`` may differ)
    sender: int
    #: the sender's epoch
    epoch: int
    #: the frame's QoS class, which is every one of its signals' class
    qos: QoS
    #: the signals, in the order the sender batched them
    signals: list[Signal]
    #: the receiver's ``now`` when the frame arrived or was rebuilt
    received_at: float
    #: True when the frame was lost and rebuilt from its FEC block
    recovered: bool


@dataclass(slots=True)
class PacketDropped:
    """One or more frames that were not delivered, and why."""

    #: one of the closed set of docs/PROTOCOL.md section 6
    reason: DropReason
    #: the claimed sender, when the header was readable
    sender: int | None = None
    #: how many frames (block-timeout and evicted count the lost source frames)
    count: int = 1
    #: a human-readable detail for logs; never parsed
    detail: str = ""


@dataclass(slots=True)
class SenderRestarted:
    """An authenticated frame arrived from a sender's newer epoch."""

    sender: int
    #: the epoch held until now, or None for a sender never heard before
    old_epoch: int | None
    new_epoch: int


Event = SignalsReceived | PacketDropped | SenderRestarted
