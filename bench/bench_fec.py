"""Benchmark cloudkernel.fec against zfec, reedsolo and creedsolo in one run.

Every row is timed on the same seeded random data for every implementation:

* erasure rows (packet blocks of 1200-byte packets): ``ErasureCode`` encode and
  decode, against ``zfec``; the decode rows lose as many *source* packets as
  there are repairs, so the matrix solve and every repair are exercised;
* RS rows (``RSCodec(32)``, 223-byte messages in 255-byte codewords): decode
  with 16 byte errors, decode and check of clean codewords, and encode,
  against ``reedsolo`` (pure Python) and ``creedsolo`` (its Cython build).

Each of our kernels (``available_kernels()``, switched with ``use_kernel``) gets
its own rows; when the compiled extension is in use the pure-Python reference
(``cloudkernel.core._fec_ref``) gets rows too.  Outputs are checked against the
originals before anything is timed.  A row's figure is the median over repeats
of a timed batch of calls (``time.perf_counter_ns``), with the garbage collector
off; MB/s counts source (message) bytes, 10^6 bytes per second.

Run ``python bench/bench_fec.py --help`` for the options, and see
bench/README.md for what the rows and ratios mean.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from types import ModuleType
from typing import Any

# Make `python bench/bench_fec.py` work from a source checkout without install.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import cloudkernel  # noqa: E402
from cloudkernel import fec  # noqa: E402

SEED = 20240601
PACKET_SIZE = 1200
RS_NSYM = 32
RS_MSG = 223
RS_ERRORS = 16
ERASURE_POOL = 4  # distinct blocks (data and loss pattern) cycled through per row
RS_POOL = 64  # distinct codewords cycled through per row
MAX_CALLS = 1 << 20  # bound on calls in one timed batch
ERASURE_SHAPES = ((32, 8), (10, 4), (200, 50))

Call = Callable[..., object]
Args = tuple[Any, ...]


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Budget:
    """How long to time a row: ``repeats`` batches filling about ``row_ns``."""

    repeats: int
    row_ns: int
    calibrate_ns: int
    fixed_calls: int = 0  # > 0: exactly this many calls, one batch (for callgrind)


@dataclass
class Timing:
    ns_per_call: float  # median over batches
    calls: int  # calls per batch
    repeats: int
    spread: float  # (max - min) / median over batches


@dataclass
class RowKey:
    """What a row is: shared by the job that times it and the row that reports it."""

    group: str  # "erasure" or "rs"
    case: str  # e.g. "decode k=32 m=8 lost=8"
    impl: str  # "ck/avx2", "ck-ref", "zfec", "reedsolo", "creedsolo"
    api: str  # method measured
    ours: bool
    compiled: bool
    bytes_per_call: int  # source bytes handled by one call (0: not a throughput row)


@dataclass
class Job(RowKey):
    """One row to time: ``fn(*args)`` for args cycled from ``pool``, after ``activate()``."""

    fn: Call
    pool: list[Args]
    activate: Callable[[], None] = lambda: None


def _run(fn: Call, args: Sequence[Args]) -> int:
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for a in args:
            fn(*a)
        return time.perf_counter_ns() - t0
    finally:
        gc.enable()


def _cycle(pool: Sequence[Args], n: int) -> list[Args]:
    return [pool[i % len(pool)] for i in range(n)]


def _plan(job: Job, budget: Budget) -> tuple[list[Args], int]:
    """Calls per batch (as the args of each call) and the number of batches."""
    if budget.fixed_calls > 0:
        return _cycle(job.pool, budget.fixed_calls), 1
    job.fn(*job.pool[0])  # warm up
    n = 1
    while True:  # grow the batch until it takes calibrate_ns
        ns = max(_run(job.fn, _cycle(job.pool, n)), 1)
        if ns >= budget.calibrate_ns or n >= MAX_CALLS:
            break
        n = min(MAX_CALLS, n * 4)
    per_call = ns / n
    calls = max(1, min(MAX_CALLS, round(budget.row_ns / budget.repeats / per_call)))
    repeats = budget.repeats
    if calls == 1:  # slow calls: fewer batches rather than a longer row
        repeats = max(1, min(repeats, int(budget.row_ns // per_call)))
    return _cycle(job.pool, calls), repeats


def time_jobs(jobs: Sequence[Job], budget: Budget) -> list[Row]:
    """Time the jobs of one case, taking their batches in turn.

    Interleaving the batches (a, b, c, a, b, c, ...) spreads a burst of load
    from other processes over every implementation instead of one, so the
    ratios within a case hold up better than the absolute figures.
    """
    plans = []
    for job in jobs:
        job.activate()
        plans.append(_plan(job, budget))
    samples: list[list[float]] = [[] for _ in jobs]
    for rep in range(max((r for _, r in plans), default=0)):
        for job, (args, repeats), out in zip(jobs, plans, samples, strict=True):
            if rep < repeats:
                job.activate()
                out.append(_run(job.fn, args) / len(args))
    rows = []
    for job, (args, repeats), got in zip(jobs, plans, samples, strict=True):
        med = statistics.median(got)
        timing = Timing(med, len(args), repeats, (max(got) - min(got)) / med if med else 0.0)
        rows.append(Row(**{f.name: getattr(job, f.name) for f in fields(RowKey)}, timing=timing))
    return rows


def time_by_case(jobs: Sequence[Job], budget: Budget) -> list[Row]:
    cases: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        cases.setdefault((job.group, job.case), []).append(job)
    rows = []
    for same_case in cases.values():
        rows += time_jobs(same_case, budget)
    return rows


def harness_floor(budget: Budget) -> float:
    """ns per call of the timing loop around a trivial builtin (``len``)."""
    job = Job("", "", "", "", False, False, 0, len, [(b"x",)])
    return time_jobs([job], budget)[0].timing.ns_per_call


# --------------------------------------------------------------------------- results


@dataclass
class Row(RowKey):
    timing: Timing
    ratios: dict[str, float] = field(default_factory=dict)
    status: str = ""  # PASS / MISS / N/A for our compiled rows that have a target

    @property
    def mbps(self) -> float:
        return self.bytes_per_call * 1e3 / self.timing.ns_per_call


@dataclass(frozen=True)
class Target:
    group: str
    case: str
    min_mbps: float
    min_ratio: float = 0.0
    ratio_peer: str = ""

    def text(self) -> str:
        s = f">={self.min_mbps:g} MB/s"
        if self.min_ratio:
            s += f", >={self.min_ratio:g}x {self.ratio_peer}"
        return s

    def judge(self, row: Row) -> str:
        if row.mbps < self.min_mbps:
            return "MISS"
        if self.min_ratio:
            ratio = row.ratios.get(self.ratio_peer)
            if ratio is None:
                return "N/A"
            if ratio < self.min_ratio:
                return "MISS"
        return "PASS"


TARGETS = (
    Target("erasure", "decode k=32 m=8 lost=8", 5000, 15, "zfec"),
    Target("erasure", "encode k=32 m=8", 5000),
    Target("erasure", "decode k=10 m=4 lost=4", 4000),
    Target("erasure", "decode k=200 m=50 lost=50", 1500),
    Target("rs", f"decode {RS_ERRORS} errors", 20, 50, "creedsolo"),
    Target("rs", "check clean", 500),
    Target("rs", "encode", 300),
)


def _target_for(row: Row) -> Target | None:
    for t in TARGETS:
        if t.group == row.group and t.case == row.case:
            return t
    return None


class VerifyError(AssertionError):
    pass


def _verify(ok: bool, what: str) -> None:
    if not ok:
        raise VerifyError(f"wrong output: {what}")


# --------------------------------------------------------------------------- selection

GROUP_WORDS = frozenset({"erasure", "rs", "overhead"})
SHAPE_WORDS = frozenset(f"k={k}" for k, _ in ERASURE_SHAPES)
WHO_WORDS = frozenset({"ours", "ref", "peers"})
API_WORDS = frozenset({"decode", "decode_into", "encode", "encode_into", "check"})
CASE_WORDS = frozenset({"errors", "clean"})
ONLY_WORDS = GROUP_WORDS | SHAPE_WORDS | WHO_WORDS | API_WORDS | CASE_WORDS


@dataclass(frozen=True)
class Only:
    """``--only`` words: within each kind of word, any; across kinds, all."""

    words: frozenset[str] = frozenset()

    def _any(self, kind: frozenset[str], *values: str) -> bool:
        chosen = self.words & kind
        return not chosen or any(v in chosen for v in values)

    def group(self, group: str) -> bool:
        return self._any(GROUP_WORDS, group)

    def shape(self, k: int) -> bool:
        return self._any(SHAPE_WORDS, f"k={k}")

    def who(self, who: str) -> bool:
        return self._any(WHO_WORDS, who)

    def row(self, case: str, api: str) -> bool:
        return self._any(API_WORDS, api) and self._any(CASE_WORDS, *case.split())


# --------------------------------------------------------------------------- contenders


@dataclass
class Ours:
    """One of our implementations: the public module with one kernel, or the reference."""

    label: str
    module: ModuleType | Any
    kernel: str | None  # switched in with use_kernel before each row; None: leave as is
    compiled: bool

    def activate(self) -> None:
        if self.kernel is not None:
            self.module.use_kernel(self.kernel)


def load_reference() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("cloudkernel.core._fec_ref"), ""
    except ImportError as exc:
        return None, str(exc)


def load_peer(name: str) -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module(name), ""
    except ImportError as exc:
        return None, f"{exc}; run bash bench/peers.sh"


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- erasure jobs


@dataclass
class Block:
    sources: tuple[bytes, ...]
    lost: tuple[int, ...]  # source indices missing
    repairs_used: tuple[int, ...]  # packet indices (k..k+m-1) standing in for them


def make_blocks(rng: random.Random, k: int, m: int, lost: int, size: int) -> list[Block]:
    blocks = []
    for _ in range(ERASURE_POOL):
        sources = tuple(rng.randbytes(size) for _ in range(k))
        gone = tuple(sorted(rng.sample(range(k), lost)))
        used = tuple(sorted(rng.sample(range(k, k + m), lost)))
        blocks.append(Block(sources, gone, used))
    return blocks


def _received(block: Block, repairs: Sequence[bytes], k: int) -> dict[int, bytes]:
    rec = {i: s for i, s in enumerate(block.sources) if i not in block.lost}
    for p in block.repairs_used:
        rec[p] = repairs[p - k]
    return rec


def ours_erasure(
    who: Ours, k: int, m: int, blocks: list[Block], size: int, known: dict[int, list[bytes]]
) -> list[Job]:
    """Check, then return the jobs of one of ours for one block shape.

    ``known`` maps a block's index in ``blocks`` to its repairs from the first
    of ours checked: every kernel and the reference must give the same bytes.
    """
    who.activate()
    code = who.module.ErasureCode(k, m)
    pools: dict[str, list[Args]] = {"enc": [], "enc_into": [], "dec": [], "dec_into": []}
    for n, b in enumerate(blocks):
        repairs = list(code.encode(b.sources))
        _verify(len(repairs) == m and all(len(r) == size for r in repairs), "encode shape")
        _verify(
            known.setdefault(n, repairs) == repairs,
            f"{who.label} encode differs from the first of ours",
        )
        bufs = [bytearray(size) for _ in range(m)]
        code.encode_into(b.sources, bufs)
        _verify([bytes(x) for x in bufs] == repairs, f"{who.label} encode_into")
        rec = _received(b, repairs, k)
        got = code.decode(rec)
        _verify(list(got) == list(b.sources), f"{who.label} decode k={k} m={m}")
        out = {i: bytearray(size) for i in b.lost}
        rebuilt = code.decode_into(rec, out)
        _verify(sorted(rebuilt) == list(b.lost), f"{who.label} decode_into indices")
        _verify(all(out[i] == b.sources[i] for i in b.lost), f"{who.label} decode_into")
        pools["enc"].append((b.sources,))
        pools["enc_into"].append((b.sources, bufs))
        pools["dec"].append((rec,))
        pools["dec_into"].append((rec, out))
    dec_case = f"decode k={k} m={m} lost={len(blocks[0].lost)}"
    enc_case = f"encode k={k} m={m}"
    return [
        Job(
            "erasure",
            case,
            who.label,
            api,
            True,
            who.compiled,
            k * size,
            fn,
            pools[pool],
            who.activate,
        )
        for case, api, fn, pool in (
            (dec_case, "decode", code.decode, "dec"),
            (dec_case, "decode_into", code.decode_into, "dec_into"),
            (enc_case, "encode", code.encode, "enc"),
            (enc_case, "encode_into", code.encode_into, "enc_into"),
        )
    ]


def zfec_erasure(zfec: ModuleType, k: int, m: int, blocks: list[Block], size: int) -> list[Job]:
    enc = zfec.Encoder(k, k + m)
    dec = zfec.Decoder(k, k + m)
    want = tuple(range(k, k + m))
    enc_pool: list[Args] = []
    dec_pool: list[Args] = []
    copy_needed = False
    for b in blocks:
        repairs = enc.encode(b.sources, want)
        _verify(len(repairs) == m, "zfec encode shape")
        # zfec's decode reorders the caller's list of blocks in place so that
        # primary block i sits at index i (and then decodes wrongly with the
        # same blocknums next time).  Hand it the blocks already in that order
        # (sources at their index, repairs in the holes): then the list is the
        # same after a call.  If it still changes, copy the list on every call.
        repl = dict(zip(b.lost, b.repairs_used, strict=True))
        nums = tuple(repl.get(i, i) for i in range(k))
        pkts = [b.sources[i] if i < k else repairs[i - k] for i in nums]
        before = list(pkts)
        for _ in range(2):
            got = dec.decode(list(pkts) if copy_needed else pkts, nums)
            _verify(list(got) == list(b.sources), f"zfec decode k={k} m={m}")
            if pkts != before:
                copy_needed = True
                pkts = before
        enc_pool.append((b.sources, want))
        dec_pool.append((pkts, nums))

    def dec_copy(pkts: list[bytes], nums: tuple[int, ...]) -> object:
        return dec.decode(list(pkts), nums)

    return [
        Job(
            "erasure",
            f"decode k={k} m={m} lost={len(blocks[0].lost)}",
            "zfec",
            "decode (copies list)" if copy_needed else "decode",
            False,
            True,
            k * size,
            dec_copy if copy_needed else dec.decode,
            dec_pool,
        ),
        Job(
            "erasure",
            f"encode k={k} m={m}",
            "zfec",
            "encode",
            False,
            True,
            k * size,
            enc.encode,
            enc_pool,
        ),
    ]


OVERHEAD_CASE = "overhead k=10 m=4 lost=0"


def overhead_jobs(ours: list[Ours], zfec: ModuleType | None, size: int) -> list[Job]:
    """decode_into of a k=10, m=4 block with no source lost: the fixed cost of a call."""
    k, m = 10, 4
    rng = random.Random(SEED + 1)
    sources = tuple(rng.randbytes(size) for _ in range(k))
    rec = dict(enumerate(sources))
    jobs = []
    for who in ours:
        who.activate()
        code = who.module.ErasureCode(k, m)
        _verify(list(code.decode_into(rec, {})) == [], f"{who.label} decode_into lost=0")
        jobs.append(
            Job(
                "erasure",
                OVERHEAD_CASE,
                who.label,
                "decode_into",
                True,
                who.compiled,
                0,
                code.decode_into,
                [(rec, {})],
                who.activate,
            )
        )
    if zfec is not None:
        dec = zfec.Decoder(k, k + m)
        pkts, nums = list(sources), tuple(range(k))
        _verify(list(dec.decode(pkts, nums)) == list(sources), "zfec decode lost=0")
        jobs.append(
            Job(
                "erasure",
                OVERHEAD_CASE,
                "zfec",
                "decode",
                False,
                True,
                0,
                dec.decode,
                [(pkts, nums)],
            )
        )
    return jobs


# --------------------------------------------------------------------------- RS jobs


@dataclass
class RSData:
    messages: list[bytes]
    codewords: list[bytes]
    corrupted: list[bytes]


def make_rs_data(rng: random.Random, codec: Any) -> RSData:
    messages = [rng.randbytes(RS_MSG) for _ in range(RS_POOL)]
    codewords = [bytes(codec.encode(msg)) for msg in messages]
    corrupted = []
    for cw in codewords:
        bad = bytearray(cw)
        for pos in rng.sample(range(len(cw)), RS_ERRORS):
            bad[pos] ^= rng.randrange(1, 256)
        corrupted.append(bytes(bad))
    return RSData(messages, codewords, corrupted)


def rs_jobs(
    label: str,
    codec: Any,
    data: RSData,
    *,
    ours: bool,
    compiled: bool,
    returns_tuple: bool,
    activate: Callable[[], None] = lambda: None,
) -> list[Job]:
    """Check, then return the RS jobs of one codec (reedsolo's decode returns a tuple)."""

    def msg_of(result: Any) -> bytes:
        return bytes(result[0] if returns_tuple else result)

    activate()
    for i, msg in enumerate(data.messages):
        _verify(bytes(codec.encode(msg)) == data.codewords[i], f"{label} RS encode")
        _verify(msg_of(codec.decode(data.corrupted[i])) == msg, f"{label} RS decode errors")
        _verify(msg_of(codec.decode(data.codewords[i])) == msg, f"{label} RS decode clean")
        _verify(list(codec.check(data.codewords[i])) == [True], f"{label} RS check")
    return [
        Job("rs", case, label, api, ours, compiled, RS_MSG, fn, [(x,) for x in inputs], activate)
        for case, api, fn, inputs in (
            (f"decode {RS_ERRORS} errors", "decode", codec.decode, data.corrupted),
            ("decode clean", "decode", codec.decode, data.codewords),
            ("check clean", "check", codec.check, data.codewords),
            ("encode", "encode", codec.encode, data.messages),
        )
    ]


# --------------------------------------------------------------------------- ratios, report


def fill_ratios(rows: list[Row], creedsolo_ok: bool) -> None:
    def op(r: Row) -> str:
        return r.case.split()[0]

    peers = {(r.case, op(r), r.impl): r for r in rows if not r.ours}
    for r in rows:
        names = ("zfec",) if r.group == "erasure" else ("creedsolo", "reedsolo")
        for name in names:
            p = peers.get((r.case, op(r), name))
            if p is not None and p is not r and r.bytes_per_call:
                r.ratios[name] = p.timing.ns_per_call / r.timing.ns_per_call
        t = _target_for(r)
        if t is not None and r.ours and r.compiled:
            r.status = t.judge(r)
            if r.status == "N/A" and not creedsolo_ok:
                r.status = "N/A (no creedsolo)"


def _fmt_mbps(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.3g}"


def _fmt_ratio(x: float) -> str:
    if x >= 1000:
        return f"{x:,.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"


def _primary_ratio(r: Row) -> str:
    for name in ("zfec", "creedsolo", "reedsolo"):
        if name in r.ratios:
            return f"{_fmt_ratio(r.ratios[name])} {name}"
    return ""


def by_case(rows: list[Row]) -> list[Row]:
    """Rows grouped by case (in order of first appearance), stable within a case."""
    first: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rows):
        first.setdefault((r.group, r.case), i)
    return sorted(rows, key=lambda r: first[(r.group, r.case)])


def print_table(rows: list[Row]) -> None:
    rows = [r for r in by_case(rows) if r.bytes_per_call]
    if not rows:
        return
    head = ("case", "impl", "api", "ns/call", "+-", "MB/s", "ratio", "target", "status")
    lines: list[tuple[str, ...]] = []
    last_case = None
    for r in rows:
        t = _target_for(r) if r.ours and r.compiled else None
        lines.append(
            (
                r.case if r.case != last_case else "",
                r.impl,
                r.api,
                f"{r.timing.ns_per_call:,.0f}",
                f"{r.timing.spread / 2:.0%}" if r.timing.repeats > 1 else "",
                _fmt_mbps(r.mbps),
                _primary_ratio(r),
                t.text() if t else "",
                r.status,
            )
        )
        last_case = r.case
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    right = {3, 4, 5, 6}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(fmt(head))
    print(fmt(["-" * w for w in widths]))
    group = None
    for r, line in zip(rows, lines, strict=True):
        if group is not None and r.group != group:
            print()
        group = r.group
        print(fmt(line))


def target_summary(rows: list[Row]) -> list[dict[str, Any]]:
    """For each target, the best of our compiled rows (any kernel, any API) in its case."""
    out: list[dict[str, Any]] = []
    for t in TARGETS:
        cand = [r for r in rows if r.ours and r.compiled and _target_for(r) is t]
        if not cand:
            out.append({"target": f"{t.group} {t.case}: {t.text()}", "status": "-"})
            continue
        best = max(cand, key=lambda r: r.mbps)
        out.append(
            {
                "target": f"{t.group} {t.case}: {t.text()}",
                "best": f"{best.impl} {best.api}",
                "mbps": round(best.mbps, 1),
                "ratio": _primary_ratio(best),
                "status": best.status,
            }
        )
    return out


def machine_facts(reference: str, peers: Mapping[str, str]) -> dict[str, Any]:
    model, flags = "?", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name" and model == "?":
                    model = val.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    simd = [x for x in ("ssse3", "avx2", "avx512f", "avx512bw", "gfni") if x in flags]
    return {
        "cpu": model,
        "cpu_simd": simd,
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cloudkernel": cloudkernel.__version__,
        "implementation": fec.IMPLEMENTATION,
        "kernels": list(fec.available_kernels()),
        "default_kernel": fec.kernel(),
        "reference": reference,
        "peers": dict(peers),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats (CI smoke run)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--kernel", metavar="NAME", help="measure only this kernel of ours")
    p.add_argument(
        "--only",
        metavar="WORDS",
        default="",
        help="comma-separated selection; any word of a kind, all kinds: "
        "group erasure|rs|overhead; shape k=32|k=10|k=200; who ours|ref|peers; "
        "api decode|decode_into|encode|encode_into|check; RS case errors|clean. "
        "E.g. --only erasure,k=32,ours,decode (default: everything)",
    )
    p.add_argument(
        "--calls",
        type=int,
        default=0,
        metavar="N",
        help="exactly N calls per row, one batch, no warm-up or calibration: the "
        "work is then the same on every run (for callgrind instruction counts)",
    )
    p.add_argument(
        "--packet-size",
        type=int,
        default=PACKET_SIZE,
        metavar="BYTES",
        help=f"erasure packet size (default {PACKET_SIZE}; smaller for smoke tests)",
    )
    p.add_argument("--no-reference", action="store_true", help="skip the pure-Python reference")
    args = p.parse_args(argv)
    words = frozenset(w.strip() for w in args.only.split(",") if w.strip())
    if words - ONLY_WORDS:
        p.error(f"unknown --only words {sorted(words - ONLY_WORDS)}; known: {sorted(ONLY_WORDS)}")
    args.only = Only(words)
    if args.calls < 0 or args.packet_size < 1:
        p.error("--calls and --packet-size must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only: Only = args.only
    if args.quick:
        budget = Budget(repeats=3, row_ns=60_000_000, calibrate_ns=5_000_000)
    else:
        budget = Budget(repeats=7, row_ns=300_000_000, calibrate_ns=20_000_000)
    if args.calls:
        budget = Budget(1, 0, 0, fixed_calls=args.calls)
    size = args.packet_size

    kernels = list(fec.available_kernels())
    if args.kernel is not None:
        if args.kernel not in kernels:
            print(f"unknown kernel {args.kernel!r}; available: {kernels}", file=sys.stderr)
            return 2
        kernels = [args.kernel]
    compiled = fec.IMPLEMENTATION == "compiled"
    default_kernel = fec.kernel()
    ours: list[Ours] = []
    if compiled:
        if only.who("ours"):
            ours += [Ours(f"ck/{kn}", fec, kn, True) for kn in kernels]
        if args.no_reference:
            reference = "skipped (--no-reference)"
        elif not only.who("ref"):
            reference = "skipped (--only)"
        else:
            ref, ref_err = load_reference()
            reference = "rows ck-ref" if ref else f"not available ({ref_err})"
            if ref is not None:
                ours.append(Ours("ck-ref", ref, None, False))
    else:
        reference = "in use as the implementation (the compiled extension is not)"
        if only.who("ours") or only.who("ref"):
            ours += [Ours(f"ck-ref/{kn}", fec, kn, False) for kn in kernels]

    not_asked: tuple[None, str] = (None, "not selected by --only")
    want_peers = only.who("peers")
    zfec, zfec_err = load_peer("zfec") if want_peers else not_asked
    reedsolo, rs_err = load_peer("reedsolo") if want_peers else not_asked
    creedsolo, crs_err = load_peer("creedsolo") if want_peers else not_asked
    peers = {
        "zfec": dist_version("zfec") if zfec else f"not available ({zfec_err})",
        "reedsolo": dist_version("reedsolo") if reedsolo else f"not available ({rs_err})",
        "creedsolo": (
            f"{dist_version('reedsolo')} (Cython build)"
            if creedsolo
            else f"not available ({crs_err})"
        ),
    }
    facts = machine_facts(reference, peers)
    # A fixed number of calls under --calls, so that it does not scale with N.
    floor_budget = Budget(1, 0, 0, fixed_calls=1000) if args.calls else budget
    facts["harness_floor_ns"] = round(harness_floor(floor_budget), 1)
    mode = f"calls={args.calls}" if args.calls else ("quick" if args.quick else "full")
    print(f"cloudkernel.fec benchmark ({mode}, seed {SEED}, packet {size} B)")
    for key, val in facts.items():
        if key == "peers":
            for name, v in val.items():
                print(f"  {name + ':':<16} {v}")
        else:
            shown = ", ".join(val) if isinstance(val, list) and key != "loadavg" else val
            print(f"  {key + ':':<16} {shown}")
    if not compiled:
        print("  NOTE: the compiled extension is not in use; the targets apply to it only.")
    print("  MB/s = 10^6 source bytes/s; ratio = peer time / our time, same case, same run")
    print(flush=True)

    rows: list[Row] = []
    overhead: list[Row] = []
    t_start = time.monotonic()

    def selected(jobs: list[Job]) -> list[Job]:
        return [j for j in jobs if only.row(j.case, j.api.split()[0])]

    try:
        if only.group("erasure"):
            for k, m in ERASURE_SHAPES:
                if not only.shape(k):
                    continue
                blocks = make_blocks(random.Random(SEED * 1000 + k), k, m, m, size)
                known: dict[int, list[bytes]] = {}
                jobs = []
                for who in ours:
                    jobs += ours_erasure(who, k, m, blocks, size, known)
                if zfec is not None:
                    jobs += zfec_erasure(zfec, k, m, blocks, size)
                rows += time_by_case(selected(jobs), budget)
        rs_maker = ours[0].module if ours else reedsolo
        if only.group("rs") and rs_maker is not None:
            if ours:
                ours[0].activate()
            data = make_rs_data(random.Random(SEED + 2), rs_maker.RSCodec(RS_NSYM))
            jobs = []
            for who in ours:
                codec = who.module.RSCodec(RS_NSYM)
                jobs += rs_jobs(
                    who.label,
                    codec,
                    data,
                    ours=True,
                    compiled=who.compiled,
                    returns_tuple=False,
                    activate=who.activate,
                )
            for name, mod in (("creedsolo", creedsolo), ("reedsolo", reedsolo)):
                if mod is not None:
                    jobs += rs_jobs(
                        name,
                        mod.RSCodec(RS_NSYM),
                        data,
                        ours=False,
                        compiled=name == "creedsolo",
                        returns_tuple=True,
                    )
            rows += time_by_case(selected(jobs), budget)
        if only.group("overhead"):
            overhead = time_by_case(overhead_jobs(ours, zfec, size), budget)
    finally:
        fec.use_kernel(default_kernel)
    elapsed = time.monotonic() - t_start

    fill_ratios(rows, creedsolo is not None)
    print_table(rows)
    if not creedsolo and want_peers and only.group("rs"):
        print(f"\ncreedsolo: not available ({crs_err})")
    if overhead:
        print("\nPer-call overhead: decode_into of a k=10 m=4 block with no source lost")
        print(f"  (timing loop alone: {facts['harness_floor_ns']} ns/call, included below)")
        for r in overhead:
            print(f"  {r.impl:<12} {r.api:<12} {r.timing.ns_per_call:>10,.0f} ns/call")
    summary = target_summary(rows)
    if any("best" in s for s in summary):
        print("\nTargets (one core; best of our compiled kernels and APIs):")
        width = max(len(s["target"]) for s in summary)
        for s in summary:
            if "best" in s:
                print(
                    f"  {s['status']:<5} {s['target']:<{width}} {s['mbps']:>10,.1f} MB/s  "
                    f"{s['ratio']:<18} ({s['best']})"
                )
            else:
                print(f"  {s['status']:<5} {s['target']:<{width}} (not measured)")
    print(f"\n{len(rows) + len(overhead)} rows in {elapsed:.1f} s")

    if args.json:
        doc = {
            "machine": facts,
            "mode": mode,
            "seed": SEED,
            "packet_size": size,
            "rows": [
                {
                    **{k: v for k, v in asdict(r).items() if k != "timing"},
                    **asdict(r.timing),
                    "mbps": round(r.mbps, 3),
                }
                for r in rows + overhead
            ],
            "targets": summary,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
