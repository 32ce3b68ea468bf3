"""Soak and chaos: a workload on an N-node cluster under impairment, judged end to end.

Builds an N-node cluster on this host (root): one network namespace per node
joined through a userspace impairment switch (:mod:`cloudkernel.cluster.network`),
one real daemon per node (:mod:`cloudkernel.cluster.nodes`), optionally each
held to a share of a core by a cgroup.  A plan (:mod:`cloudkernel.cluster.plan`)
gives several publishers per topic, several topics per QoS class and some
lying nodes; one agent per node publishes it and records every signal it
receives (:mod:`cloudkernel.cluster.agent`).  A seeded chaos schedule
(:mod:`cloudkernel.cluster.chaos`) kills and restarts nodes and partitions
sets of them.  Then it reports, as JSON and as text:

* delivery ratio per class to every node that was up and reachable, and
  end-to-end latency p50/p99/max (agent -> daemon -> switch -> daemon ->
  agent), per class;
* FEC: signals recovered by repair, frames lost in blocks that could not be
  rebuilt;
* membership: false suspicions per node-hour (suspicions withdrawn that no
  kill or partition explains), crash-detection time (kill -> every other
  node sees the victim as not alive) and rejoin time (restart -> every node
  sees its new epoch alive);
* consensus: absolute error against the truth and the share of estimates
  inside the honest sources' hull;
* RSS start/end/peak and drift after warm-up, CPU per node; daemon crashes;
* a PNG of delivery ratio and latency over time (matplotlib, when installed).

``--systems lcm,zenoh`` runs the same plan, on the same kind of cluster and
impairment, with the peer systems' agents (bench/soak_agents/) instead, and
prints one table for all.

Run ``sudo python bench/soak.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudkernel.client import Client  # noqa: E402
from cloudkernel.cluster import cgroup, network  # noqa: E402
from cloudkernel.cluster.chaos import KINDS, ChaosError, ChaosEvent, schedule  # noqa: E402
from cloudkernel.cluster.network import ClusterNetwork  # noqa: E402
from cloudkernel.cluster.nodes import ClusterNodes, sample_process  # noqa: E402
from cloudkernel.cluster.plan import Plan, make_plan  # noqa: E402
from cloudkernel.cluster.records import (  # noqa: E402
    Availability,
    Interval,
    NodeRecords,
    SoakFigures,
    analyse,
    parse_records,
)
from cloudkernel.cluster.spawn import signals_deferred, spawn  # noqa: E402
from cloudkernel.cluster.switch import SwitchConfigError, parse_switch_config  # noqa: E402
from cloudkernel.errors import CloudkernelError  # noqa: E402

#: the QoS budgets of the default config, ms: p99 latency target = budget + 1 ms
BUDGET_MS = {"critical": 2.0, "normal": 10.0, "bulk": 50.0}
#: seconds after a publish within which a receiver must stay reachable
WINDOW = {"critical": 1.0, "normal": 1.0, "bulk": 1.0}
PEER_AGENTS = {
    "lcm": ROOT / "bench" / "soak_agents" / "lcm_agent.py",
    "zenoh": ROOT / "bench" / "soak_agents" / "zenoh_agent.py",
}


# -- the run -------------------------------------------------------------------


@dataclass
class Observations:
    """What the runner sampled while the workload ran."""

    #: node -> [(t, pid, rss bytes, cpu seconds)]
    proc: dict[int, list[tuple[float, int, int, float]]] = field(default_factory=dict)
    #: node -> [(t, membership counters)]
    membership: dict[int, list[tuple[float, dict[str, int]]]] = field(default_factory=dict)
    #: node -> [(t, pid, signals.recovered, drops incl. shed datagrams and watch events)]
    fec: dict[int, list[tuple[float, int, int, dict[str, int]]]] = field(default_factory=dict)
    #: node -> [(t, pid, cpu seconds)] of the node's agent
    agents: dict[int, list[tuple[float, int, float]]] = field(default_factory=dict)
    #: (t, observer) -> {peer: (state, epoch)}
    peers: list[tuple[float, int, dict[int, tuple[str, int]]]] = field(default_factory=list)
    chaos_done: list[dict[str, Any]] = field(default_factory=list)
    heals: list[float] = field(default_factory=list)


@dataclass
class RunResult:
    system: str
    plan: Plan
    figures: SoakFigures
    observations: Observations
    crashes: list[dict[str, Any]]
    tracebacks: dict[int, int]
    started: float
    extra: dict[str, Any] = field(default_factory=dict)


def impairment_config(args: argparse.Namespace) -> dict[str, Any]:
    link: dict[str, Any] = {}
    if args.loss:
        link["loss"] = args.loss
    if args.burst_loss:
        link["burst_loss"] = args.burst_loss
        link["burst_length"] = args.burst_length
    if args.corrupt:
        link["corrupt"] = args.corrupt
    if args.duplicate:
        link["duplicate"] = args.duplicate
    if args.delay_ms:
        link["delay_ms"] = args.delay_ms
        link["jitter_ms"] = args.jitter_ms
    return {"default": link, "links": {}}


def kernel_loss(net: ClusterNetwork, ids: Sequence[int], args: argparse.Namespace) -> None:
    """``--nft-loss``: random drop in each node's own kernel (nftables), on
    top of the switch; every UDP datagram a node receives, whatever its port."""
    if args.nft_loss:
        for node in ids:
            net.nft_drop(node, args.nft_loss * 100)


def wait_converged(nodes: ClusterNodes, timeout: float) -> float:
    """Seconds until every node sees every other one alive."""
    start = time.monotonic()
    want = len(nodes.ids) - 1
    while time.monotonic() - start < timeout:
        ok = 0
        for node in nodes.ids:
            with contextlib.suppress(CloudkernelError), Client(nodes.socket(node), timeout=2) as c:
                ok += c.status()["peers"].get("alive", 0) >= want
        if ok == len(nodes.ids):
            return time.monotonic() - start
        time.sleep(0.2)
    raise SystemExit(f"soak: the nodes did not all see each other within {timeout} s")


def sample(nodes: ClusterNodes, obs: Observations, now: float, with_peers: bool) -> None:
    for node in nodes.ids:
        pid = nodes.pid(node)
        if pid is None:
            continue
        proc = sample_process(pid)
        if proc is not None:
            obs.proc.setdefault(node, []).append((now, pid, proc.rss_bytes, proc.cpu_seconds))
        try:
            with Client(nodes.socket(node), timeout=1.0) as client:
                status = client.status()
                peers = client.peers() if with_peers else []
        except CloudkernelError:
            continue
        obs.membership.setdefault(node, []).append((now, dict(status.get("membership", {}))))
        drops = dict(status.get("drops", {}))
        # what the daemon shed under overload, and the watch events it could
        # not hand to a client that read too slowly: losses of the node, not the network
        for cls, count in status["datagrams"].get("shed_received", {}).items():
            if count:
                drops[f"shed-received-{cls}"] = count
        if status["control"].get("events_dropped"):
            drops["watch-events-dropped"] = status["control"]["events_dropped"]
        obs.fec.setdefault(node, []).append((now, pid, status["signals"]["recovered"], drops))
        if with_peers:
            obs.peers.append((now, node, {p["node"]: (p["state"], p["epoch"]) for p in peers}))


def sample_agents(
    agents: dict[int, subprocess.Popen[bytes]], obs: Observations, now: float
) -> None:
    for node, agent in agents.items():
        proc = sample_process(agent.pid)
        if proc is not None:
            obs.agents.setdefault(node, []).append((now, agent.pid, proc.cpu_seconds))


class ChaosDriver:
    """Carries out the schedule; records what was done and when."""

    def __init__(
        self,
        events: list[ChaosEvent],
        net: ClusterNetwork,
        nodes: ClusterNodes,
        t0: float,
        availability: Availability,
        obs: Observations,
        settle: float,
    ) -> None:
        self.pending = sorted(events, key=lambda e: e.at)
        self.net = net
        self.nodes = nodes
        self.t0 = t0
        self.availability = availability
        self.obs = obs
        self.settle = settle
        #: (due, event, started)
        self.ends: list[tuple[float, ChaosEvent, float]] = []
        self.restarting: list[tuple[int, float, float, dict[str, Any]]] = []

    def step(self, now: float) -> None:
        while self.pending and now >= self.t0 + self.pending[0].at:
            event = self.pending.pop(0)
            if event.kind == "kill":
                for victim in event.nodes:
                    self.nodes.kill(victim)
            else:
                self.net.partition(list(event.nodes))
            self.ends.append((self.t0 + event.ends, event, now))
        for ending in list(self.ends):
            due, event, started = ending
            if now < due:
                continue
            self.ends.remove(ending)
            record: dict[str, Any] = {
                "kind": event.kind,
                "nodes": list(event.nodes),
                "at": started - self.t0,
            }
            if event.kind == "kill":
                for victim in event.nodes:
                    self.nodes.start(victim)
                    self.restarting.append((victim, started, now, record))
            else:
                self.net.heal(list(event.nodes))
                self.obs.heals.append(now)
                side = frozenset(event.nodes)
                self.availability.partitions.append((Interval(started, now + self.settle), side))
                record["healed"] = now - self.t0
            self.obs.chaos_done.append(record)
        for item in list(self.restarting):
            victim, killed, restarted, record = item
            try:
                with Client(self.nodes.socket(victim), timeout=0.5) as client:
                    client.status()
            except CloudkernelError:
                if now - restarted > 30:
                    self.restarting.remove(item)
                    self.availability.mark_down(victim, killed, math.inf)
                    record["ready_after"] = None
                continue
            self.restarting.remove(item)
            self.availability.mark_down(victim, killed, now + self.settle)
            record["restarted"] = restarted - self.t0
            record["ready_after"] = now - restarted

    def finish(self, now: float) -> None:
        for victim, killed, _restarted, _record in self.restarting:
            self.availability.mark_down(victim, killed, math.inf)
        for _due, event, started in self.ends:
            if event.kind == "kill":
                for victim in event.nodes:
                    self.availability.mark_down(victim, started, math.inf)
            else:
                self.availability.partitions.append(
                    (Interval(started, math.inf), frozenset(event.nodes))
                )


def run_cloudkernel(args: argparse.Namespace, base: Path) -> RunResult:
    ids = list(range(1, args.nodes + 1))
    extra = ""
    with ClusterNetwork(
        args.nodes,
        name="soak",
        impairment=impairment_config(args),
        seed=args.seed,
        rate_limit=args.rate_limit,
        realtime_switch=args.switch_priority or None,
    ) as net:
        kernel_loss(net, ids, args)
        nodes = ClusterNodes(
            net,
            base / "cloudkernel",
            ids,
            extra_config=extra,
            cpu_share=args.cpu_quota,
            priority=args.priority,
            log_level="warning",
        )
        try:
            nodes.start_all()
            converge = wait_converged(nodes, 60.0)
            print(f"soak: {args.nodes} daemons up, converged in {converge:.1f} s", flush=True)
            t0 = time.monotonic() + args.warmup
            plan = workload(args, ids, t0)
            plan_path = base / "cloudkernel" / "plan.json"
            plan_path.write_text(json.dumps(plan.to_dict()))
            events = (
                schedule(
                    seed=args.seed,
                    nodes=ids,
                    duration=args.duration,
                    every=args.chaos_every,
                    down_for=args.chaos_down,
                    kinds=args.chaos_kinds,
                )
                if args.chaos_every
                else []
            )
            agents = {}
            for node in ids:
                out = base / "cloudkernel" / f"records-{node}.csv"
                argv = [sys.executable, "-m", "cloudkernel.cluster.agent", "--plan"]
                argv += [str(plan_path), "--node", str(node), "--out", str(out)]
                argv += ["--socket", nodes.socket(node)]
                with signals_deferred():
                    agents[node] = spawn(argv, env={**os.environ, "PYTHONPATH": str(ROOT)})
            print(f"soak: workload running on {len(agents)} agents", flush=True)
            availability = Availability()
            obs = Observations()
            chaos = ChaosDriver(events, net, nodes, t0, availability, obs, args.settle)
            end = plan.end + plan.drain
            next_sample = time.monotonic()
            deadline = end + 30
            while time.monotonic() < deadline:
                now = time.monotonic()
                for crash in nodes.check():
                    print(f"soak: node {crash.node} CRASHED ({crash.returncode})", flush=True)
                    availability.mark_down(crash.node, now, math.inf)
                chaos.step(now)
                if now >= next_sample:
                    sample(nodes, obs, now, with_peers=bool(events))
                    sample_agents(agents, obs, now)
                    next_sample = now + (0.5 if events else 1.0)
                if now >= end and all(a.poll() is not None for a in agents.values()):
                    break
                time.sleep(0.05)
            chaos.finish(time.monotonic())
            for agent in agents.values():
                if agent.poll() is None:
                    agent.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        agent.wait(10)
            records = _read_records(base / "cloudkernel", ids)
            figures = analyse(
                plan, records, availability, window=WINDOW.__getitem__, settle=args.settle
            )
            extra_stats: dict[str, Any] = {"converge_s": converge}
            extra_stats["switch"] = _switch_totals(net)
            return RunResult(
                "cloudkernel",
                plan,
                figures,
                obs,
                [
                    {"node": c.node, "at": c.at, "returncode": c.returncode, "log": c.log_tail}
                    for c in nodes.crashes
                ],
                nodes.tracebacks(),
                t0,
                extra_stats,
            )
        finally:
            nodes.close()


def run_peer(system: str, args: argparse.Namespace, base: Path) -> RunResult:
    ids = list(range(1, args.nodes + 1))
    home = base / system
    home.mkdir(parents=True, exist_ok=True)
    with ClusterNetwork(
        args.nodes,
        name=f"soak{system[:2]}",
        impairment=impairment_config(args),
        seed=args.seed,
        rate_limit=args.rate_limit,
        realtime_switch=args.switch_priority or None,
    ) as net:
        kernel_loss(net, ids, args)
        t0 = time.monotonic() + args.warmup
        plan = workload(args, ids, t0)
        plan_path = home / "plan.json"
        plan_path.write_text(json.dumps(plan.to_dict()))
        agents = {}
        for node in ids:
            argv = [
                sys.executable,
                str(PEER_AGENTS[system]),
                "--plan",
                str(plan_path),
                "--node",
                str(node),
                "--out",
                str(home / f"records-{node}.csv"),
                "--iface-addr",
                f"10.77.0.{node}",
            ]
            with signals_deferred():
                agents[node] = spawn(
                    net.command(node, argv), env={**os.environ, "PYTHONPATH": str(ROOT)}
                )
        obs = Observations()
        deadline = plan.end + plan.drain + 30
        while time.monotonic() < deadline and any(a.poll() is None for a in agents.values()):
            now = time.monotonic()
            for node, agent in agents.items():
                proc = sample_process(agent.pid)
                if proc is not None:
                    obs.proc.setdefault(node, []).append(
                        (now, agent.pid, proc.rss_bytes, proc.cpu_seconds)
                    )
            time.sleep(1.0)
        for agent in agents.values():
            if agent.poll() is None:
                agent.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    agent.wait(10)
        records = _read_records(home, ids)
        # The peers' agents record every receipt; their watch is always "up".
        for rec in records.values():
            rec.watch.append((plan.t0 - 10, True))
        figures = analyse(
            plan, records, Availability(), window=WINDOW.__getitem__, settle=args.settle
        )
        return RunResult(
            system,
            plan,
            figures,
            obs,
            [
                {"node": n, "returncode": a.returncode}
                for n, a in agents.items()
                if a.returncode not in (0, None)
            ],
            {},
            t0,
            {"switch": _switch_totals(net)},
        )


def workload(args: argparse.Namespace, ids: list[int], t0: float) -> Plan:
    """The same plan for every system: the options' topics, publishers, rates, liars."""
    return make_plan(
        nodes=ids,
        t0=t0,
        duration=args.duration,
        topics_per_class=args.topics,
        publishers_per_topic=min(args.publishers, args.nodes),
        rates={"critical": args.rate, "normal": args.rate, "bulk": args.rate / 2},
        liars=ids[-args.liars :] if args.liars else (),
        seed=args.seed,
        aligned=args.aligned,
    )


def _read_records(home: Path, ids: Sequence[int]) -> dict[int, NodeRecords]:
    records = {}
    for node in ids:
        path = home / f"records-{node}.csv"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        records[node] = parse_records(node, lines)
    return records


def _switch_totals(net: ClusterNetwork) -> dict[str, Any]:
    try:
        stats = net.stats()
    except Exception as exc:  # the figures stand without the switch's own counts
        return {"error": str(exc)}
    totals: dict[str, Any] = stats.get("totals", stats)
    return totals


# -- judging -------------------------------------------------------------------


def membership_figures(result: RunResult, args: argparse.Namespace) -> dict[str, Any]:
    obs = result.observations
    heal_window = 10.0
    false_count = 0
    explained = 0
    for series in obs.membership.values():
        for (_t_prev, prev), (t, cur) in itertools.pairwise(series):
            delta = (cur.get("false_suspicions", 0) + cur.get("false_deaths", 0)) - (
                prev.get("false_suspicions", 0) + prev.get("false_deaths", 0)
            )
            if delta <= 0:
                continue  # no new ones, or the daemon restarted (counters from 0)
            if any(h - 1.0 <= t <= h + heal_window for h in obs.heals):
                explained += delta
            else:
                false_count += delta
    node_hours = args.nodes * (args.duration + args.warmup) / 3600
    detections = []
    rejoins = []
    undetected = 0
    for record in obs.chaos_done:
        if record["kind"] != "kill":
            continue
        victim = record["nodes"][0]
        killed = result.started + record["at"]
        restart_at = (
            result.started + record["restarted"] if record.get("restarted") is not None else None
        )
        seen: dict[int, float] = {}
        rejoined: dict[int, float] = {}
        before: dict[int, tuple[str, int]] = {}
        for t, observer, peers in obs.peers:
            if observer == victim or victim not in peers:
                continue
            state, epoch = peers[victim]
            if t < killed:
                before[observer] = (state, epoch)
                continue
            if before.get(observer, ("", 0))[0] != "alive":
                continue  # it did not see the victim alive when it was killed
            if restart_at is None or t < restart_at:
                # detection: the victim seen as not alive before it came back
                if observer not in seen and state != "alive":
                    seen[observer] = t - killed
            elif observer not in rejoined and state == "alive" and epoch != before[observer][1]:
                rejoined[observer] = t - restart_at
        observers = [o for o, (state, _) in before.items() if state == "alive"]
        missed = [o for o in observers if o not in seen]
        undetected += len(missed)
        if seen and not missed:
            detections.append(max(seen.values()))
        if rejoined:
            rejoins.append(max(rejoined.values()))
        record["detected_s"] = max(seen.values()) if seen and not missed else None
        record["observers_not_detecting"] = missed
        record["rejoined_s"] = max(rejoined.values()) if rejoined else None
    return {
        "false_suspicions": false_count,
        "suspicions_withdrawn_after_heal": explained,
        "node_hours": node_hours,
        "false_suspicions_per_node_hour": false_count / node_hours if node_hours else math.nan,
        "crash_detection_s": _dist(detections),
        # (observer, kill) pairs where the victim was back before the observer
        # suspected it: chaos_down shorter than the detection time
        "crashes_undetected_before_restart": undetected,
        "rejoin_s": _dist(rejoins),
        "chaos": obs.chaos_done,
    }


def _dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def resource_figures(result: RunResult, warmup_end: float, warmup: float) -> dict[str, Any]:
    """RSS and CPU per node.  Drift is judged per daemon process, from its
    first sample after the warm-up (``warmup_end``, and at least ``warmup``
    seconds into the life of a restarted one) to its last."""
    per_node = {}
    drifts = []
    for node, series in sorted(result.observations.proc.items()):
        by_pid: dict[int, list[tuple[float, int, float]]] = {}
        for t, pid, rss, cpu in series:
            by_pid.setdefault(pid, []).append((t, rss, cpu))
        rss_all = [rss for _t, _pid, rss, _cpu in series]
        cpu_total = 0.0
        wall = 0.0
        node_drift = None
        for samples in by_pid.values():
            cpu_total += samples[-1][2] - samples[0][2]
            wall += samples[-1][0] - samples[0][0]
            settled = max(warmup_end, samples[0][0] + warmup)
            warm = [s for s in samples if s[0] >= settled]
            if len(warm) >= 2 and warm[-1][0] - warm[0][0] >= warmup:
                drift = (warm[-1][1] - warm[0][1]) / warm[0][1]
                node_drift = drift if node_drift is None else max(node_drift, drift)
        if node_drift is not None:
            drifts.append(node_drift)
        per_node[node] = {
            "rss_start_mb": rss_all[0] / 1e6,
            "rss_end_mb": rss_all[-1] / 1e6,
            "rss_peak_mb": max(rss_all) / 1e6,
            "rss_drift_after_warmup": node_drift,
            "cpu_pct": 100 * cpu_total / wall if wall else math.nan,
            "processes": len(by_pid),
        }
    agents: dict[int, float] = {}
    for node, samples in sorted(result.observations.agents.items()):
        wall = samples[-1][0] - samples[0][0]
        if wall > 0:
            agents[node] = 100 * (samples[-1][2] - samples[0][2]) / wall
    return {
        "per_node": per_node,
        "rss_drift_max": max(drifts) if drifts else None,
        # the load generators' own CPU, % of a core (they share the host's cores)
        "agent_cpu_pct": agents,
    }


def fec_figures(result: RunResult) -> dict[str, Any]:
    recovered = 0
    drops: dict[str, int] = {}
    for series in result.observations.fec.values():
        by_pid: dict[int, list[tuple[int, dict[str, int]]]] = {}
        for _t, pid, rec, d in series:
            by_pid.setdefault(pid, []).append((rec, d))
        for samples in by_pid.values():
            recovered += samples[-1][0]
            for reason, count in samples[-1][1].items():
                drops[reason] = drops.get(reason, 0) + count
    return {"signals_recovered": recovered, "drops": drops}


def judge(report: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    """(what, passed, figure) for each target that applies to this run."""
    checks: list[tuple[str, bool, str]] = []
    ck = report["systems"].get("cloudkernel")
    if ck is None:
        return checks
    classes = ck["delivery"]["classes"]
    need = args.target_delivery
    for name, c in classes.items():
        if c["expected"] == 0:
            continue
        checks.append(
            (
                f"{name}: delivered >= {need:.4%}",
                c["ratio"] >= need,
                f"{c['ratio']:.5%} ({c['delivered']}/{c['expected']})",
            )
        )
        if args.check_latency:
            budget = BUDGET_MS[name] + 1.0
            p99 = c["latency_ms"]["p99"]
            checks.append((f"{name}: p99 <= {budget:g} ms", p99 <= budget, f"{p99:.2f} ms"))
    checks.append(("daemon crashes == 0", len(ck["crashes"]) == 0, str(len(ck["crashes"]))))
    tb = sum(ck["tracebacks"].values())
    checks.append(("tracebacks in daemon logs == 0", tb == 0, str(tb)))
    dup = ck["delivery"]["all"]["duplicates"]
    checks.append(("signals delivered twice == 0", dup == 0, str(dup)))
    m = ck["membership"]
    if args.chaos_every:
        rate = m["false_suspicions_per_node_hour"]
        checks.append(
            (
                "false suspicions <= 1 per node-hour",
                rate <= 1.0,
                f"{m['false_suspicions']} ({rate:.2f}/node-h)",
            )
        )
        kills = [c for c in m["chaos"] if c["kind"] == "kill"]
        rejoined = all(c.get("rejoined_s") is not None for c in kills)
        checks.append(("every killed node rejoined", rejoined, f"{len(kills)} kills"))
    drift = ck["resources"]["rss_drift_max"]
    if args.check_rss and drift is not None:
        checks.append(("RSS drift after warm-up < 5 %", drift < 0.05, f"{drift:+.2%}"))
    return checks


# -- output --------------------------------------------------------------------


def build_report(results: list[RunResult], args: argparse.Namespace) -> dict[str, Any]:
    systems = {}
    for r in results:
        entry: dict[str, Any] = {
            "delivery": r.figures.summary(),
            "crashes": r.crashes,
            "tracebacks": r.tracebacks,
            "resources": resource_figures(r, r.started + args.rss_warmup, args.rss_warmup),
            **r.extra,
        }
        if r.system == "cloudkernel":
            entry["membership"] = membership_figures(r, args)
            entry["fec"] = fec_figures(r)
        entry["timeline"] = r.figures.timeline
        systems[r.system] = entry
    first = results[0].plan
    return {
        "settings": {
            k: v
            for k, v in vars(args).items()
            if isinstance(v, (int, float, str, bool, type(None)))
        },
        "impairment": impairment_config(args),
        "workload": {
            "topics": sorted({p.topic for p in first.publishers}),
            "publishers": len(first.publishers),
            "signals_per_second": first.rate(),
            "liars": sorted({p.node for p in first.publishers if p.liar}),
        },
        "systems": systems,
    }


def print_report(report: dict[str, Any], checks: list[tuple[str, bool, str]]) -> None:
    w = report["workload"]
    s = report["settings"]
    print()
    print(
        f"soak: {s['nodes']} nodes, {s['duration']:g} s, {w['signals_per_second']:g} signals/s "
        f"published by the swarm ({w['publishers']} publishers on {len(w['topics'])} topics, "
        f"liars {w['liars']}), impairment {json.dumps(report['impairment']['default'])}"
        + (f", chaos every {s['chaos_every']:g} s" if s["chaos_every"] else "")
        + (f", CPU quota {s['cpu_quota']:.0%} of a core" if s["cpu_quota"] else "")
    )
    print()
    print(
        f"{'system':<12} {'class':<9} {'expected':>9} {'delivered':>10} {'ratio':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'dups':>5}"
    )
    for name, entry in report["systems"].items():
        for cls, c in entry["delivery"]["classes"].items():
            if not c["expected"]:
                continue
            lat = c["latency_ms"]
            print(
                f"{name:<12} {cls:<9} {c['expected']:>9} {c['delivered']:>10} "
                f"{c['ratio']:>10.5%} {lat['p50']:>8.2f} {lat['p99']:>8.2f} {lat['max']:>8.1f} "
                f"{c['duplicates']:>5}"
            )
    ck = report["systems"].get("cloudkernel")
    if ck is not None:
        m = ck["membership"]
        print()
        # A rebuilt signal waits for its block's repair frames, which leave when
        # the block closes: up to the class's time budget after its first frame.
        rebuilt = [
            f"{cls} {c['recovered']} (p50 {c['recovered_latency_ms']['p50']:.2f}, "
            f"p99 {c['recovered_latency_ms']['p99']:.2f} ms)"
            for cls, c in ck["delivery"]["classes"].items()
            if c.get("recovered")
        ]
        if rebuilt:
            print("cloudkernel signals rebuilt by FEC, by class: " + "; ".join(rebuilt))
        print(
            f"FEC: {ck['fec']['signals_recovered']} signals recovered by repair; drops "
            f"{ck['fec']['drops']}"
        )
        print(
            f"membership: {m['false_suspicions']} false suspicions "
            f"({m['false_suspicions_per_node_hour']:.2f} per node-hour over "
            f"{m['node_hours']:.2f} node-hours; {m['suspicions_withdrawn_after_heal']} "
            f"withdrawn after a partition healed); crash detection {m['crash_detection_s']}, "
            f"rejoin {m['rejoin_s']}"
        )
        c = ck["delivery"]["consensus"]
        print(
            f"consensus: {c['estimates']} estimates, |error| p50 {c['abs_error']['p50']:.3f} "
            f"p99 {c['abs_error']['p99']:.3f} max {c['abs_error']['max']:.3f}; inside the "
            f"honest hull {c['inside_honest_hull']:.2%}"
        )
    for name, entry in report["systems"].items():
        res = entry["resources"]
        rows = [
            f"n{n}: rss {v['rss_start_mb']:.1f}->{v['rss_end_mb']:.1f} MB "
            f"(peak {v['rss_peak_mb']:.1f}) cpu {v['cpu_pct']:.1f}%"
            for n, v in res["per_node"].items()
        ]
        drift = res["rss_drift_max"]
        print(f"{name} resources: " + "; ".join(rows))
        if drift is not None:
            print(f"{name} RSS drift after warm-up, worst node: {drift:+.2%}")
        if res["agent_cpu_pct"]:
            shown = ", ".join(f"n{n} {v:.1f}%" for n, v in res["agent_cpu_pct"].items())
            print(f"{name} agents' CPU: {shown}")
        print(f"{name} crashes: {len(entry['crashes'])}")
    if checks:
        print()
        for what, ok, figure in checks:
            print(f"  {'PASS' if ok else 'MISS'}  {what}: {figure}")


def plot(report: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no plot"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for name, entry in report["systems"].items():
        timeline = entry["timeline"]
        xs = list(range(len(timeline)))
        ratio = [d / e if e else math.nan for e, d, _ in timeline]
        p99 = [lat * 1e3 if not math.isnan(lat) else math.nan for _, _, lat in timeline]
        top.plot(xs, ratio, label=name)
        bottom.plot(xs, p99, label=name)
    ck = report["systems"].get("cloudkernel")
    if ck is not None:
        for event in ck["membership"]["chaos"]:
            end = event.get("healed", event.get("restarted", event["at"]))
            top.axvspan(
                event["at"], end, color="red" if event["kind"] == "kill" else "orange", alpha=0.2
            )
    top.set_ylabel("delivered / expected")
    bottom.set_ylabel("latency p99 (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("seconds since the workload started")
    top.legend()
    top.set_title(
        "cloudkernel soak: delivery and latency per second (red: kill, orange: partition)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def _no_nan(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/soak.py", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    p.add_argument("--nodes", type=int, default=8, help="nodes in the cluster (default 8)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the workload starts")
    p.add_argument(
        "--rss-warmup",
        type=float,
        default=None,
        help="seconds of the workload before RSS drift is measured (default: a quarter)",
    )
    p.add_argument("--loss", type=float, default=0.0, help="iid loss per link, 0..1")
    p.add_argument("--burst-loss", type=float, default=0.0, help="Gilbert-Elliott mean loss, 0..1")
    p.add_argument("--burst-length", type=float, default=4.0, help="mean burst length, frames")
    p.add_argument(
        "--nft-loss",
        type=float,
        default=0.0,
        help="iid loss in each node's kernel (nftables random drop), 0..1",
    )
    p.add_argument("--rate-limit", default=None, help="each node's egress rate (tbf), e.g. 10mbit")
    p.add_argument("--corrupt", type=float, default=0.0, help="share of frames with a byte flipped")
    p.add_argument("--duplicate", type=float, default=0.0, help="share of frames duplicated")
    p.add_argument("--delay-ms", type=float, default=0.0, help="added one-way delay per link")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="jitter on top of the delay")
    p.add_argument(
        "--chaos-every", type=float, default=0.0, help="seconds between chaos events (0: none)"
    )
    p.add_argument(
        "--chaos-down",
        type=float,
        default=15.0,
        help="seconds a killed node stays down / a partition lasts",
    )
    p.add_argument(
        "--chaos-kinds",
        default="kill,partition",
        help="chaos events taken in turn: kill, partition (default both)",
    )
    p.add_argument(
        "--cpu-quota", type=float, default=None, help="share of one core per daemon, e.g. 0.25"
    )
    p.add_argument(
        "--priority", type=int, default=0, help="the daemons' SCHED_FIFO priority (0: none)"
    )
    p.add_argument(
        "--switch-priority", type=int, default=60, help="the switch's SCHED_FIFO priority (0: none)"
    )
    p.add_argument("--rate", type=float, default=10.0, help="signals/s per publisher (bulk: half)")
    p.add_argument("--topics", type=int, default=2, help="topics per QoS class")
    p.add_argument("--publishers", type=int, default=4, help="publishers per topic")
    p.add_argument("--liars", type=int, default=1, help="lying nodes (the highest ids)")
    p.add_argument(
        "--aligned",
        action="store_true",
        help="every publisher on the same instants (one swarm-wide burst per period) "
        "instead of seeded random phases",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds a node must be reachable before a publish to be expected to receive it",
    )
    p.add_argument(
        "--systems", default="cloudkernel", help="comma-separated: cloudkernel, lcm, zenoh"
    )
    p.add_argument(
        "--target-delivery", type=float, default=0.9999, help="delivery ratio to judge against"
    )
    p.add_argument(
        "--check-latency",
        action="store_true",
        help="judge p99 latency against the class budget + 1 ms",
    )
    p.add_argument(
        "--check-rss", action="store_true", help="judge RSS drift after warm-up (< 5 %%)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--plot", type=Path, help="write a PNG of delivery and latency over time")
    p.add_argument("--keep", type=Path, help="keep configs, logs and records in this directory")
    args = p.parse_args(argv)
    args.chaos_kinds = tuple(k.strip() for k in args.chaos_kinds.split(",") if k.strip())
    for kind in args.chaos_kinds:
        if kind not in KINDS:
            p.error(f"--chaos-kinds: unknown kind {kind!r}; use {', '.join(KINDS)}")
    # Checked here, before anything is built: a bad value is a usage error,
    # never a traceback half-way through setting up the cluster.
    try:
        parse_switch_config(impairment_config(args))
        if args.chaos_every:
            schedule(
                seed=args.seed,
                nodes=list(range(1, args.nodes + 1)),
                duration=args.duration,
                every=args.chaos_every,
                down_for=args.chaos_down,
                kinds=args.chaos_kinds,
            )
    except (SwitchConfigError, ChaosError) as exc:
        p.error(str(exc))
    if args.rss_warmup is None:
        args.rss_warmup = args.duration / 4
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: daemons stopped, namespaces and cgroups removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    problem = network.problem()
    if os.geteuid() != 0:
        problem = "the soak cluster needs root (network namespaces, the switch, cgroups)"
    if problem:
        print(f"soak: cannot run: {problem}", file=sys.stderr)
        return 2
    if args.cpu_quota is not None and (why := cgroup.cgroup_problem()):
        print(f"soak: --cpu-quota: {why}", file=sys.stderr)
        return 2
    network.remove_leftovers()
    cgroup.remove_leftovers()
    base = args.keep or Path(tempfile.mkdtemp(prefix="cloudkernel-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
            print(f"soak: running {system} ...", flush=True)
            if system == "cloudkernel":
                results.append(run_cloudkernel(args, base))
            elif system in PEER_AGENTS:
                results.append(run_peer(system, args, base))
            else:
                print(f"soak: unknown system {system!r}", file=sys.stderr)
                return 2
        report = build_report(results, args)
        checks = judge(report, args)
        report["checks"] = [{"what": w, "passed": ok, "figure": f} for w, ok, f in checks]
        print_report(report, checks)
        if args.json:
            args.json.write_text(json.dumps(_no_nan(report), indent=1, default=str))
            print(f"soak: report written to {args.json}")
        if args.plot:
            why = plot(report, args.plot)
            print(f"soak: {why}" if why else f"soak: plot written to {args.plot}")
        return 0 if all(ok for _, ok, _ in checks) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
