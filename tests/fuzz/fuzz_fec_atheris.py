"""Coverage-guided fuzzing of cloudkernel's FEC decoders with atheris.

The invariant is that of ``tests/test_fec_fuzz.py``: every input is decoded
into a result of the right shape or rejected with FECError; any other
exception (or a crash, or a hang) is a bug, which atheris reports together with
the input that caused it.

The input's first bytes choose the parameters, the rest is the payload::

    byte 0       decoder: even -> ErasureCode.decode / decode_into, odd -> RSCodec.decode
    ErasureCode  byte 1 = k, byte 2 = m (raw: 0 and k + m > 256 must be rejected),
                 byte 3 = packet length, byte 4 = packet count, byte 5 bit 0 =
                 decode_into; then per packet one signed index byte and the
                 packet's bytes (the last packet gets what is left)
    RSCodec      byte 1 = nsym, byte 2 = nsize (raw), byte 3 = erasure count;
                 then one position byte per erasure (from the end of the
                 data when its top bit is set), then the data

Not run in CI.  Run it from the repository root, for as long as you like::

    pip install atheris
    mkdir -p /tmp/fec-corpus
    PYTHONPATH=. python tests/fuzz/fuzz_fec_atheris.py /tmp/fec-corpus -max_len=4096 -timeout=10

(add ``CLOUDKERNEL_PUREPYTHON=1`` to fuzz the pure-Python reference, and
``-atheris_runs=N`` to stop after N inputs).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from cloudkernel import fec
    from cloudkernel.errors import FECError


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def fuzz_erasure_code(data: bytes) -> None:
    if len(data) < 6:
        return
    k, m, length, count, flags = data[1], data[2], data[3], data[4], data[5]
    try:
        code = fec.ErasureCode(k, m)
    except FECError:
        return
    payload = data[6:]
    received: dict[int, bytes] = {}
    for j in range(count):
        if not payload:
            break
        index, payload = _signed(payload[0]), payload[1:]
        size = len(payload) if j == count - 1 else length
        received[index], payload = payload[:size], payload[size:]
    valid = [i for i in received if 0 <= i < k + m]
    if flags & 1:
        out = {i: bytearray(length) for i in range(k)}
        try:
            rebuilt = code.decode_into(received, out)
        except FECError:
            return
        assert rebuilt == [i for i in range(k) if i not in received]
        return
    try:
        decoded = code.decode(received)
    except FECError:
        return
    size = len(received[valid[0]])
    assert len(decoded) == k
    assert all(type(packet) is bytes and len(packet) == size for packet in decoded)
    assert all(decoded[i] == received[i] for i in valid if i < k)


def fuzz_rscodec(data: bytes) -> None:
    if len(data) < 4:
        return
    nsym, nsize, erasures = data[1], data[2], data[3]
    try:
        codec = fec.RSCodec(nsym, nsize)
    except FECError:
        return
    positions, payload = data[4 : 4 + erasures], data[4 + erasures :]
    erase_pos = [b if b < 128 else len(payload) - (b - 127) for b in positions]
    chunks = -(-len(payload) // nsize)
    flags = codec.check(payload)
    assert len(flags) == chunks and all(type(flag) is bool for flag in flags)
    try:
        decoded = codec.decode(payload, erase_pos)
    except FECError:
        return
    assert type(decoded) is bytes
    assert len(decoded) == len(payload) - nsym * chunks


def fuzz_one_input(data: bytes) -> None:
    """The atheris entry point: each helper asserts its invariants."""
    if not data:
        return
    if data[0] % 2 == 0:
        fuzz_erasure_code(data)
    else:
        fuzz_rscodec(data)


def main() -> None:
    atheris.Setup(sys.argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
