"""Fuzz ``Receiver.feed`` with mutated valid frames; the invariant holds or the run stops.

Two kinds of input, from one seeded PRNG:

* raw mutations of valid frames (bit flips, truncation, extension, splices,
  overwritten bytes), which must die at the header or tag checks;
* *authentic* mutations: header fields and plaintext bodies changed, then
  sealed again with the swarm key.  These pass the tag and reach what lies
  behind it: epochs, the replay window, FEC block placement with inconsistent
  k, m and lengths, rebuilds, and the signal payload decoder.  This is what an
  attacker holding the key, or a buggy peer, can send.

The invariant: ``feed`` and ``poll`` return events and raise nothing; the
receiver's pending bytes, pending blocks and senders stay within their
configured bounds; every delivered signal passes ``make_signal``'s checks.

``tests/test_receiver_fuzz.py`` runs 100,000 inputs in CI; for long runs::

    python tests/fuzz/fuzz_receiver.py --runs 10000000
"""

from __future__ import annotations

import argparse
import random
import resource
import struct
import sys
import time
from collections import Counter

from cloudkernel.core.auth import KeyRing, SwarmKey
from cloudkernel.core.events import Event, SignalsReceived
from cloudkernel.core.receiver import Receiver, ReceiverConfig
from cloudkernel.core.redundancy import RedundancyPolicy
from cloudkernel.core.sender import ClassConfig, Sender, SenderConfig, default_classes
from cloudkernel.core.signals import QoS, check_signal, make_signal
from cloudkernel.core.wire import HEADER

SECRET = bytes(range(1, 33))
CONFIG = ReceiverConfig(
    node_id=99,
    max_pending_blocks=16,
    max_pending_bytes=64 * 1024,
    max_block_sources=32,
    max_senders=32,
    block_timeout=0.05,
)


class Corpus:
    """Valid frames of a few senders, kept with their plaintext bodies."""

    def __init__(self, rng: random.Random) -> None:
        self.key = SwarmKey(SECRET)
        self.frames: list[bytes] = []
        self.plain: list[tuple[tuple[int | bytes, ...], bytes]] = []
        classes = default_classes()
        classes[QoS.NORMAL] = ClassConfig(0.01, 4, RedundancyPolicy(fixed_m=2, m_max=2))
        for node, encrypt in ((7, False), (8, True), (9, False)):
            sender = Sender(
                node, 1, KeyRing(self.key), SenderConfig(encrypt=encrypt, classes=classes)
            )
            for i in range(24):
                value: object = float(i) if i % 3 == 0 else i if i % 3 == 1 else (0.5, 1.5)
                for _ in range(rng.randint(1, 6)):
                    sender.publish(make_signal(f"n{node}/t{i % 5}", value, ttl=1.0), 0.0)
                self.frames.extend(sender.poll(0.0))
            self.frames.extend(sender.flush(1.0))
        for frame in self.frames:
            fields = HEADER.unpack_from(frame)
            encrypted = bool(fields[2] & 1)
            body = self.key.open(frame, encrypted)
            assert body is not None
            self.plain.append((fields, body))

    def authentic(self, rng: random.Random) -> bytes:
        fields_t, body = rng.choice(self.plain)
        fields = list(fields_t)
        for _ in range(rng.randint(0, 3)):
            position = rng.choice((2, 6, 7, 8, 9, 10, 11, 12))
            if position == 2:  # flags
                fields[2] = rng.choice((0, 1, 2, 4, 5, 6, 8, 9, 10, 3, 0x10))
            elif position == 6:  # sender: many, so that senders are evicted
                fields[6] = rng.choice((7, 8, 9, 99, 0, rng.randrange(100), rng.randrange(1 << 32)))
            elif position == 7:  # epoch: mostly near the corpus's, so state is reused
                fields[7] = rng.choice((1, 1, 1, 1, 0, 2, rng.randrange(1 << 32)))
            elif position == 8:  # sequence
                fields[8] = max(0, int(fields[8]) + rng.randint(-2000, 2000))
            else:  # block, k, m, index
                fields[position] = rng.choice((0, 1, 2, 3, 4, 5, 6, 127, 128, 254, 255))
        if rng.random() < 0.5:
            body = mutate(rng, body)
        body = body[:2000]
        fields[5] = len(body)
        try:
            header = HEADER.pack(*fields)
        except struct.error:
            return b""
        return header + self.key.seal(header, body, bool(int(fields[2]) & 1))


def mutate(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and raw:
            bit = rng.randrange(len(raw) * 8)
            raw[bit // 8] ^= 1 << (bit % 8)
        elif op == 1 and raw:
            del raw[rng.randrange(len(raw)) :]
        elif op == 2:
            raw[rng.randrange(len(raw) + 1) : 0] = rng.randbytes(rng.randint(1, 40))
        elif op == 3 and raw:
            raw[rng.randrange(len(raw))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == 4 and raw:
            start = rng.randrange(len(raw))
            del raw[start : start + rng.randint(1, 30)]
        else:
            raw += rng.randbytes(rng.randint(0, 8))
    return bytes(raw)


def check_event(event: Event) -> None:
    if isinstance(event, SignalsReceived):
        for s in event.signals:
            check_signal(s)


def run(runs: int, seed: int, report_every: int = 0) -> dict[str, int]:
    """Feed ``runs`` inputs; raise AssertionError if an invariant breaks."""
    rng = random.Random(seed)
    corpus = Corpus(rng)
    receiver = Receiver(KeyRing(corpus.key), CONFIG)
    totals: Counter[str] = Counter()
    now = 0.0
    bound_blocks = CONFIG.max_pending_blocks * CONFIG.max_senders
    started = time.monotonic()
    for i in range(runs):
        if i % 1000 == 999:
            # A fresh receiver now and then: epochs raised by the mutations
            # would otherwise make most of the corpus stale for good.
            totals.update(receiver.statistics().drops)
            receiver = Receiver(KeyRing(corpus.key), CONFIG)
        now += rng.choice((0.0, 0.0, 0.0001, 0.001, 0.01))
        pick = rng.random()
        if pick < 0.45:
            datagram = corpus.authentic(rng)
        elif pick < 0.9:
            datagram = mutate(rng, rng.choice(corpus.frames))
        else:
            datagram = rng.choice(corpus.frames)
        for event in receiver.feed(datagram, now):
            check_event(event)
        if rng.random() < 0.01:
            for event in receiver.poll(now):
                check_event(event)
        if i % 64 == 0:
            stats = receiver.statistics()
            assert stats.pending_bytes <= CONFIG.max_pending_bytes, stats.pending_bytes
            assert stats.pending_blocks <= bound_blocks, stats.pending_blocks
            assert len(stats.senders) <= CONFIG.max_senders
        if report_every and i and i % report_every == 0:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            rate = i / (time.monotonic() - started)
            print(f"{i:>11,} inputs  {rate:,.0f}/s  max RSS {rss} MiB", flush=True)
    totals.update(receiver.statistics().drops)
    return dict(totals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    drops = run(args.runs, args.seed, report_every=max(1, args.runs // 20))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"ok: {args.runs:,} inputs, max RSS {rss} MiB; drops: {drops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
