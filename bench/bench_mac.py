"""Why frames are tagged with ChaCha20-Poly1305: the candidates timed on this machine.

Each candidate tags (or verifies) a 1200-byte frame the way the receiver
would, through the Python API it would be called by; the figure is the
median of repeated batches, in microseconds per frame and MB/s.  Verifying
is what every received frame costs, so it is the column that matters.

    python bench/bench_mac.py [--quick]

The choice also weighs the Raspberry Pi 4 (Cortex-A72 without the ARMv8
crypto extension), which cannot be measured here: without AES and PMULL
instructions AES-GCM falls back to constant-time software several times
slower than ChaCha20-Poly1305's NEON code, and HMAC-SHA256 has no SHA
instructions to use.  docs/PROTOCOL.md section 4 gives the reasoning.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import os
import statistics
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

FRAME = 1200


def timed(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median seconds per call over ``repeats`` batches of ``calls``."""
    results = []
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            results.append((time.perf_counter() - start) / calls)
    finally:
        gc.enable()
    return statistics.median(results)


def candidates() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    key = os.urandom(32)
    nonce = os.urandom(12)
    frame = os.urandom(FRAME)
    header, body = frame[:28], frame[28:-16]
    out: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}

    for name, aead in (
        ("ChaCha20-Poly1305 (chosen)", ChaCha20Poly1305(key)),
        ("AES-256-GCM", AESGCM(key)),
    ):
        tag = aead.encrypt(nonce, b"", header + body)

        def seal(aead: ChaCha20Poly1305 | AESGCM = aead) -> object:
            return aead.encrypt(nonce, b"", header + body)

        def verify(aead: ChaCha20Poly1305 | AESGCM = aead, tag: bytes = tag) -> object:
            try:
                return aead.decrypt(nonce, tag, header + body)
            except InvalidTag:  # pragma: no cover - the tag is right
                raise AssertionError("tag did not verify") from None

        out[name] = (seal, verify)

    def blake2b_tag() -> bytes:
        return hashlib.blake2b(header + body, key=key, digest_size=16).digest()

    expected_b2 = blake2b_tag()
    out["keyed BLAKE2b-128"] = (
        blake2b_tag,
        lambda: hmac.compare_digest(blake2b_tag(), expected_b2),
    )

    def hmac_tag() -> bytes:
        return hmac.digest(key, header + body, "sha256")[:16]

    expected_h = hmac_tag()
    out["HMAC-SHA256-128"] = (hmac_tag, lambda: hmac.compare_digest(hmac_tag(), expected_h))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args(argv)
    calls, repeats = (2_000, 3) if args.quick else (50_000, 7)
    print(f"{FRAME}-byte frames, {calls} calls x {repeats} batches, median")
    print(f"{'MAC':<28} {'tag us':>8} {'verify us':>10} {'verify MB/s':>12}")
    for name, (seal, verify) in candidates().items():
        t_seal = timed(seal, calls, repeats)
        t_verify = timed(verify, calls, repeats)
        print(
            f"{name:<28} {t_seal * 1e6:>8.2f} {t_verify * 1e6:>10.2f} "
            f"{FRAME / t_verify / 1e6:>12.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
