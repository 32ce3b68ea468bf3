"""The ``cloudkernel`` command line.

For now it carries ``demo``, a short demonstration of the forward error
correction every signal will travel under (blocks of packets crossing a lossy
link, bytes corrupted on a noisy one) and of the signal pipeline on a
simulated lossy link; and ``keygen``, which writes a swarm key file.
"""

from __future__ import annotations

import math
import random
import time

import click

from . import __version__, fec
from .demo import run_pipeline
from .errors import KeyFileError
from .keyfile import generate_key, write_key_file


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cloudkernel")
def main() -> None:
    """cloudkernel: fault-tolerant signals for swarms of small machines."""


@main.command()
@click.option("-k", "k", default=32, show_default=True, help="Source packets per block.")
@click.option("-m", "m", default=8, show_default=True, help="Repair packets per block.")
@click.option("--size", default=1200, show_default=True, help="Packet size in bytes.")
@click.option(
    "--loss",
    default=0.10,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Probability that the link drops a packet.",
)
@click.option("--blocks", default=2000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", default=1, show_default=True, help="Seed of the simulated link.")
@click.option(
    "--signals",
    default=20_000,
    show_default=True,
    type=click.IntRange(0, 10_000_000),
    help="Signals sent through the pipeline part (0 skips it).",
)
def demo(k: int, m: int, size: int, loss: float, blocks: int, seed: int, signals: int) -> None:
    """Send blocks and signals across a simulated lossy link and rebuild them."""
    try:
        code = fec.ErasureCode(k, m)
    except fec.FECError as exc:
        raise click.BadParameter(str(exc)) from None
    if not 1 <= size <= 65536:
        raise click.BadParameter(f"--size must be 1..65536, got {size}")
    if not math.isfinite(loss):
        raise click.BadParameter(f"--loss must be a number in 0..1, got {loss}")
    rng = random.Random(seed)
    click.echo(f"cloudkernel {__version__}: FEC {fec.IMPLEMENTATION}, kernel {fec.kernel()}")
    click.echo(
        f"erasure code k={k} m={m}, {size}-byte packets, {loss:.0%} iid loss, {blocks} blocks"
    )

    sources = [rng.randbytes(size) for _ in range(k)]
    packets = sources + code.encode(sources)
    delivered = rebuilt = failed = packets_lost = 0
    decode_ns = 0
    for _ in range(blocks):
        received = {i: p for i, p in enumerate(packets) if rng.random() >= loss}
        packets_lost += k + m - len(received)
        missing = [i for i in range(k) if i not in received]
        if len(received) < k:
            failed += 1
            delivered += k - len(missing)
            continue
        start = time.perf_counter_ns()
        block = code.decode(received)
        decode_ns += time.perf_counter_ns() - start
        if block != sources:
            raise click.ClickException("decode returned the wrong packets")
        delivered += k
        rebuilt += len(missing)
    total = blocks * k
    click.echo(
        f"  packets lost on the link: {packets_lost} of {blocks * (k + m)} "
        f"({packets_lost / (blocks * (k + m)):.1%})"
    )
    click.echo(f"  source packets rebuilt:   {rebuilt}")
    click.echo(f"  blocks beyond repair:     {failed} of {blocks}")
    click.echo(f"  source packets delivered: {delivered} of {total} ({delivered / total:.3%})")
    decoded = blocks - failed
    if decoded and decode_ns:
        click.echo(
            f"  decode: {decode_ns / decoded / 1000:.1f} us per block, "
            f"{decoded * k * size / decode_ns * 1000:.0f} MB/s"
        )

    codec = fec.RSCodec(32)
    message = b"pheromone: temperature=21.5C confidence=0.9 half-life=30s"
    codeword = bytearray(codec.encode(message))
    for position in rng.sample(range(len(codeword)), 16):
        codeword[position] ^= rng.randrange(1, 256)
    repaired = codec.decode(bytes(codeword))
    click.echo(f"byte-level RS(32): 16 of {len(codeword)} bytes corrupted, decoded: {repaired!r}")
    if repaired != message:
        raise click.ClickException("RSCodec returned the wrong message")

    if not signals:
        return
    if loss >= 1.0:
        click.echo("signal pipeline: skipped, nothing crosses a link that loses everything")
        return
    click.echo(
        f"signal pipeline: {signals} signals, {loss:.0%} iid frame loss, adaptive FEC, "
        "ChaCha20-Poly1305 tags"
    )
    result = run_pipeline(signals, loss, seed)
    click.echo(
        f"  frames sent: {result.frames_sent} ({result.repair_frames} repair), "
        f"lost on the link: {result.frames_lost} (receiver measured {result.measured_loss:.1%})"
    )
    click.echo(f"  signals rebuilt from repair frames: {result.recovered}")
    click.echo(
        f"  signals delivered: {result.delivered} of {result.signals} "
        f"({result.delivered / result.signals:.3%}), duplicates: {result.duplicates}"
    )
    drops = ", ".join(f"{k} {v}" for k, v in sorted(result.drops.items())) or "none"
    click.echo(f"  frames not delivered, by reason: {drops}")
    if result.duplicates:
        raise click.ClickException("a signal was delivered twice")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key file.")
def keygen(path: str, force: bool) -> None:
    """Write a new random swarm key to PATH (mode 0600).

    Copy the same file to every node of the swarm.
    """
    try:
        write_key_file(path, generate_key(), overwrite=force)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote a new swarm key to {path} (mode 0600)")
