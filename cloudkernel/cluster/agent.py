"""The soak workload on one node, through cloudkernel's control socket.

Run as ``python -m cloudkernel.cluster.agent --plan PLAN.json --node I --out
RECORDS.csv --socket PATH``.  The plan (see :mod:`cloudkernel.cluster.plan`)
says which topics this node publishes, in which QoS class, at what rate and
whether it lies.  The agent

* publishes each of its topics on an absolute schedule from ``t0`` plus the
  publisher's phase (a slot
  missed by more than a period is skipped and counted, never made up in a
  burst), a value ``truth(t) + noise`` (a liar adds ``LIE_OFFSET``);
* watches every soak topic raw and records each signal of another node as it
  arrives;
* once a second reads each topic's estimate and the honest sources' latest
  values (their hull);
* rides out its daemon being killed and restarted: failed publishes are
  recorded, and the watch is opened again as soon as the daemon answers.

Records (one line each, ``t_ns`` from ``time.monotonic_ns()``, the same
clock in every namespace of the host):

``P,t_ns,topic,src,seq``  published (t: just before the request)
``R,t_ns,topic,src,seq,recovered``  a signal of another node received;
recovered is 1 when the daemon rebuilt it from repair frames, else 0
``F,t_ns,topic,reason``  a publish that failed
``W,t_ns,up|down``  the raw watch (re)connected / lost
``E,t_ns,topic,value,lo,hi,state``  an estimate, with the honest hull
``S,t_ns,topic,missed``  slots skipped, at the end
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from ..client import Client
from ..errors import CloudkernelError
from .plan import Plan, PlanError, Publisher, next_slot, truth

__all__ = ["main"]

LIE_OFFSET = 5.0
NOISE = 0.1


class Records:
    """Lines for the record file, written under a lock, flushed every second."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def write(self, *fields: object) -> None:
        line = ",".join(str(f) for f in fields) + "\n"
        with self._lock:
            self._out.write(line)
            now = time.monotonic()
            if now - self._flushed >= 1.0:
                self._out.flush()
                self._flushed = now

    def flush(self) -> None:
        with self._lock:
            self._out.flush()


def _publish_loop(
    plan: Plan, node: int, socket: str, records: Records, stop: threading.Event
) -> None:
    mine = [p for p in plan.publishers if p.node == node]
    if not mine:
        return
    rng = random.Random(plan.seed * 1000 + node)
    slots = {p.topic: 0 for p in mine}
    missed = dict.fromkeys(slots, 0)
    client = Client(socket, timeout=1.0)
    try:
        while not stop.is_set():
            due: list[tuple[float, Publisher]] = []
            for p in mine:
                start = p.start(plan.t0)
                slot, skipped = next_slot(start, p.rate, slots[p.topic], time.monotonic())
                missed[p.topic] += skipped
                slots[p.topic] = slot
                # Slot i exists while i / rate < duration, counted from the
                # publisher's own start, as in every other system's agent.
                if slot / p.rate < plan.duration:
                    due.append((start + slot / p.rate, p))
            if not due:
                break
            at, publisher = min(due, key=lambda d: d[0])
            if stop.wait(max(0.0, at - time.monotonic())):
                break
            _publish_one(client, publisher, rng, records)
            slots[publisher.topic] += 1
    finally:
        client.close()
        for topic, count in missed.items():
            records.write("S", time.monotonic_ns(), topic, count)


def _publish_one(client: Client, p: Publisher, rng: random.Random, records: Records) -> None:
    now = time.monotonic()
    value = truth(now) + rng.gauss(0.0, NOISE) + (LIE_OFFSET if p.liar else 0.0)
    t_ns = time.monotonic_ns()
    try:
        reply = client.publish(p.topic, value, confidence=0.9, ttl=p.ttl, qos=p.qos)
    except CloudkernelError as exc:
        records.write("F", t_ns, p.topic, type(exc).__name__)
        return
    records.write("P", t_ns, p.topic, reply["source"], reply["seq"])


def _watch_loop(
    plan: Plan, node: int, socket: str, records: Records, stop: threading.Event
) -> None:
    end = plan.t0 + plan.duration + plan.drain
    while not stop.is_set() and time.monotonic() < end:
        try:
            with Client(socket, timeout=1.0) as client:
                watch = client.watch(plan.pattern, raw=True, duration=end - time.monotonic())
                records.write("W", time.monotonic_ns(), "up")
                with watch:
                    for event in watch:
                        if stop.is_set():
                            break
                        if event.get("type") != "signal" or event.get("local"):
                            continue
                        s = event["signal"]
                        records.write(
                            "R",
                            time.monotonic_ns(),
                            s["topic"],
                            s["source"],
                            s["seq"],
                            int(bool(s.get("recovered"))),
                        )
            records.write("W", time.monotonic_ns(), "down")
        except CloudkernelError:
            pass
        stop.wait(0.1)


def _estimate_loop(
    plan: Plan, node: int, socket: str, records: Records, stop: threading.Event
) -> None:
    honest = {p.node for p in plan.publishers if not p.liar}
    topics = sorted({p.topic for p in plan.publishers if p.kind == "float"})
    end = plan.t0 + plan.duration
    client = Client(socket, timeout=1.0)
    try:
        while not stop.wait(1.0) and time.monotonic() < end:
            if time.monotonic() < plan.t0:
                continue
            for topic in topics:
                try:
                    view = client.get(topic)
                except CloudkernelError:
                    continue
                values = [
                    s["value"]
                    for s in view.get("sources", [])
                    if s.get("source") in honest and isinstance(s.get("value"), float)
                ]
                value = view.get("value")
                if not isinstance(value, float) or not math.isfinite(value):
                    continue
                lo, hi = (min(values), max(values)) if values else ("", "")
                records.write("E", time.monotonic_ns(), topic, value, lo, hi, view.get("state"))
    finally:
        client.close()


def run(plan: Plan, node: int, socket: str, out: IO[str]) -> None:
    records = Records(out)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [
        threading.Thread(target=loop, args=(plan, node, socket, records, stop), daemon=True)
        for loop in (_watch_loop, _publish_loop, _estimate_loop)
    ]
    for thread in threads:
        thread.start()
    deadline = plan.t0 + plan.duration + plan.drain + 5.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    records.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cloudkernel.cluster.agent", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--plan", required=True, help="the plan (JSON)")
    parser.add_argument("--node", type=int, required=True, help="this node's id")
    parser.add_argument("--out", required=True, help="the record file to write")
    parser.add_argument("--socket", required=True, help="the node's control socket")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with open(args.plan) as f:
            data: Any = json.load(f)
        if not isinstance(data, dict):
            raise PlanError("not a JSON object")
        plan = Plan.from_dict(data)
    except (OSError, ValueError) as exc:  # PlanError and JSON errors are ValueErrors
        print(f"cloudkernel agent: bad plan {args.plan}: {exc}", file=sys.stderr)
        return 2
    with open(args.out, "w", buffering=1 << 16) as out:
        run(plan, args.node, args.socket, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
