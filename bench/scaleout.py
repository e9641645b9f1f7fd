"""Scale-out figures (issue 15): one Asterisk node against two behind Kamailio, same run.

`python -m bench.scaleout [--agents 2000]` sets up its own world (embedded PostgreSQL,
two instances of the development PBX root on free loopback ports, the service
in-process on node 1, Kamailio in front of both: sipprov/pbx/front.py), measures,
prints the figures and merges them into bench/results.json under "scaleout" (the
other keys stay).

Measured, all N agents inserted in bulk (bench/backends.py's SQL), realtime backend:

- REGISTER storm capacity: all N agents REGISTER once (one SIPp process, digest MD5)
  at rising rates until the first failures, in three set-ups: one node with contacts
  in astdb; one node with shared contacts (asterisk.ps_contacts: the price of a
  PostgreSQL write per REGISTER); two nodes with shared contacts behind Kamailio.
- create -> registrable as seen from every node: the service's create, then REGISTERs
  (in-process SIP client) to node 1, to node 2 and through the front until 200.
- a node killed during a storm: two nodes behind the front, a storm at a rate both
  sustain, node 2 SIGKILLed a third of the way in: registrations lost, how long the
  dispatcher took to mark the node down, and how long phones saw failures (a prober
  registering through the front every 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import json
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sipprov import pbx as pbx_mod
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiClient
from sipprov.config import Config
from sipprov.db.transaction import run as in_tx
from sipprov.pbx import front as front_mod
from sipprov.pbx import sipp
from sipprov.pbx.sipclient import SipClient

from . import backends, env, machine, report, sections
from .stats import summary

RATES = (250.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0)
# The storm a node dies in: long enough (N / rate seconds) to see the failover.
KILL_RATE = 200.0
HOST = "127.0.0.1"


def node_config(base: Config, name: str, shared: bool) -> Config:
    cfg = copy.deepcopy(base)
    cfg.pbx = dataclasses.replace(base.pbx, instance=f"{base.pbx.instance}-{name}",
                                  sip_port=env.free_port(socket.SOCK_DGRAM))
    cfg.asterisk = dataclasses.replace(
        base.asterisk, ami_port=env.free_port(socket.SOCK_STREAM),
        backend="realtime", shared_contacts=shared, support_path=True,
        rewrite_contact=False, config_dir=None)
    cfg.asterisk = dataclasses.replace(
        cfg.asterisk, sip_server=f"{HOST}:{cfg.pbx.sip_port}")
    return cfg


def _accounts(cfg: Config, n: int) -> list[tuple[str, str]]:
    first = cfg.extensions.first
    return [(str(first + i), backends.PASSWORD.format(ext=first + i)) for i in range(n)]


async def _storm(port: int, accounts: list[tuple[str, str]], rate: float) -> dict[str, Any]:
    result = await sipp.register_many(HOST, port, accounts, rate=rate, concurrency=2000,
                                      expires=300)
    n = len(accounts)
    statuses: dict[str, int] = {}
    for code in (result.failures or {}).values():
        statuses[str(code)] = statuses.get(str(code), 0) + 1
    return {"rate_per_s": rate, "ok": result.ok, "failed": result.failed,
            "failure_statuses": statuses,
            "success_pct": round(100 * result.ok / n, 2), "elapsed_s": round(result.elapsed, 2),
            "achieved_per_s": round(result.ok / result.elapsed, 1) if result.elapsed else None}


async def _ladder(label: str, port: int, accounts: list[tuple[str, str]],
                  rates: tuple[float, ...]) -> dict[str, Any]:
    """Storms at rising rates until one loses a registration (the first storm adds
    every contact, the later ones refresh them, in every set-up)."""
    steps = []
    capacity = None
    for rate in rates:
        env.stage(f"scaleout {label}: storm {rate:g}/s")
        step = await _storm(port, accounts, rate)
        steps.append(step)
        if step["failed"]:
            break
        capacity = rate
    return {"steps": steps, "capacity_per_s": capacity,
            "first_failures_at_per_s": steps[-1]["rate_per_s"] if steps[-1]["failed"] else None}


async def _copy_generated(src: Config, dst: Config) -> None:
    """Node 2 gets node 1's generated files (the realtime render) and reloads them."""
    for name in render_mod.FILES:
        text = (Path(src.generated_dir) / name).read_text()
        pbx_mod.write_atomic(Path(dst.generated_dir) / name, text, dst.security.file_mode)
    async with AmiClient(dst.asterisk) as ami:
        for module in render_mod.MODULE_FOR_FILE.values():
            await ami.reload(module)


async def _register_until(client: SipClient, user: str, password: str,
                          timeout: float = 15.0) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        answer = await client.register(user, password, expires=60, timeout=2.0)
        if answer.ok:
            return time.monotonic() - t0
    return None


async def _create_to_registrable(svc: env.Service, clients: dict[str, SipClient],
                                 samples: int) -> dict[str, Any]:
    """Create an agent, then REGISTER through each target until 200 (one after the
    other: each figure is from the create's commit)."""
    times: dict[str, list[float]] = {k: [] for k in clients}
    for i in range(samples):
        t = time.monotonic()
        created = await in_tx(svc.pool, agents.create_agent, svc.cfg, AgentCreate(
            first_name="Scale", last_name=f"Out{chr(97 + i % 26)}{chr(97 + i // 26)}",
            email=f"scaleout{i}@example.com", role="extension"), "bench")
        assert created.sip is not None
        for name, client in clients.items():
            took = await _register_until(client, created.sip.username, created.sip.password)
            assert took is not None, f"never registrable through {name}"
            times[name].append(time.monotonic() - t)
            t = time.monotonic()
    return {name: summary([v * 1000 for v in vals], 2) for name, vals in times.items()}


async def _kill_during_storm(nodes: list[Config], front: front_mod.Front,
                             accounts: list[tuple[str, str]], rate: float
                             ) -> dict[str, Any]:
    """SIGKILL node 2 a third of the way into a storm through the front."""
    victim = nodes[1]
    uri = f"sip:{HOST}:{victim.pbx.sip_port}"
    prober = await SipClient.open(HOST, front.port)
    probes: list[tuple[float, float, bool]] = []  # (started, took, ok)
    stop = asyncio.Event()
    probe_n = min(50, max(1, len(accounts) // 10))
    probe_accounts = accounts[-probe_n:]
    storm_accounts = accounts[:-probe_n]

    async def probe() -> None:
        """A phone's view: REGISTERs through the front every 50 ms (each may take up
        to 2 s of failover plus its own time: 5 s allowed)."""
        i = 0
        while not stop.is_set():
            user, password = probe_accounts[i % len(probe_accounts)]
            t = time.monotonic()
            answer = await prober.register(user, password, expires=300, timeout=5.0)
            probes.append((t, time.monotonic() - t, answer.ok))
            i += 1
            await asyncio.sleep(0.05)

    duration = len(storm_accounts) / rate
    storm = asyncio.create_task(_storm(front.port, storm_accounts, rate))
    probing = asyncio.create_task(probe())
    await asyncio.sleep(duration / 3)
    killed_at = time.monotonic()
    await asyncio.to_thread(pbx_mod.kill, victim)
    marked_down_s = None
    while time.monotonic() - killed_at < 30:
        flags = (await asyncio.to_thread(front_mod.destinations, front)).get(uri, "")
        if flags.startswith("I"):
            marked_down_s = time.monotonic() - killed_at
            break
        await asyncio.sleep(0.05)
    result = await storm
    # phones keep registering for a few seconds more: did the failures stop?
    await asyncio.sleep(3.0)
    stop.set()
    await probing
    prober.close()
    after = [(t - killed_at, took, ok) for t, took, ok in probes if t + took >= killed_at]
    failed = [t for t, _, ok in after if not ok]
    slow = [t for t, took, ok in after if ok and took > 1.0]
    return {"rate_per_s": rate, "storm": result, "lost": result["failed"],
            "dispatcher_marked_down_s": round(marked_down_s, 2) if marked_down_s else None,
            "probes_after_kill": len(after), "probes_failed": len(failed),
            "probes_slow_over_1s": len(slow),
            "probe_max_ms_after_kill": round(max((took for _, took, _ in after), default=0)
                                             * 1000, 1),
            # the last REGISTER (sent after the kill) that failed or waited for the
            # failover: phones are back to normal after this
            "recovered_after_s": round(max(failed + slow, default=0.0), 2)}


async def run(base: Config, pg: env.Postgres, n: int, samples: int,
              rates: tuple[float, ...] = RATES) -> dict[str, Any]:
    out: dict[str, Any] = {"agents": n, "samples": samples}
    nodes = [node_config(base, "n1", False), node_config(base, "n2", True)]
    dsn = await pg.create_database("scaleout")
    for cfg in nodes:
        cfg.database = dataclasses.replace(cfg.database, dsn=dsn)
    front = None
    svc = None
    pool = await backends._bootstrap(nodes[0])
    try:
        await backends._populate(pool, nodes[0], n)
        accounts = _accounts(nodes[0], n)

        env.stage(f"scaleout N={n}: node 1 alone, contacts in astdb")
        await asyncio.to_thread(env.start_pbx, nodes[0])
        svc = await env.start_service(nodes[0], dsn)
        await env.wait_until_applied(svc, 300)
        out["one_node_astdb"] = await _ladder("one node, astdb", nodes[0].pbx.sip_port,
                                              accounts, rates)

        env.stage(f"scaleout N={n}: node 1 alone, shared contacts")
        # the same node restarted with contact = realtime,ps_contacts (the service stays
        # up and reconnects; the generated files stay)
        nodes[0].asterisk = dataclasses.replace(nodes[0].asterisk, shared_contacts=True)
        await asyncio.to_thread(pbx_mod.stop, nodes[0])
        await asyncio.to_thread(pbx_mod.start, nodes[0])
        out["one_node_shared"] = await _ladder("one node, shared contacts",
                                               nodes[0].pbx.sip_port, accounts, rates)

        env.stage(f"scaleout N={n}: two nodes behind Kamailio")
        await asyncio.to_thread(env.start_pbx, nodes[1])
        await _copy_generated(nodes[0], nodes[1])
        front = await asyncio.to_thread(
            front_mod.start, pg.data_dir.parent / "front", env.free_port(socket.SOCK_DGRAM),
            [front_mod.Node(HOST, c.pbx.sip_port) for c in nodes])
        out["two_nodes_front"] = await _ladder("two nodes behind Kamailio", front.port,
                                               accounts, rates)

        env.stage(f"scaleout N={n}: create -> registrable from every node")
        clients = {"node1": await SipClient.open(HOST, nodes[0].pbx.sip_port),
                   "node2": await SipClient.open(HOST, nodes[1].pbx.sip_port),
                   "front": await SipClient.open(HOST, front.port)}
        try:
            out["create_to_registrable_ms"] = await _create_to_registrable(svc, clients,
                                                                           samples)
        finally:
            for client in clients.values():
                client.close()

        rate = KILL_RATE
        env.stage(f"scaleout N={n}: node 2 killed during a storm at {rate:g}/s")
        out["node_killed_during_storm"] = await _kill_during_storm(nodes, front, accounts,
                                                                   rate)
    finally:
        if svc is not None:
            await svc.close()
        await pool.close()
        if front is not None:
            front_mod.stop(front)
        for cfg in nodes:
            with contextlib.suppress(Exception):
                env.stop_pbx(cfg)
    return out


def _print(r: dict[str, Any]) -> None:
    print(f"scale-out, N={r.get('agents')} agents ({r.get('date')})")
    for key, label in (("one_node_astdb", "one node, contacts in astdb"),
                       ("one_node_shared", "one node, shared contacts"),
                       ("two_nodes_front", "two nodes behind Kamailio")):
        lad = r.get(key) or {}
        steps = ", ".join(f"{s['rate_per_s']:g}/s {s['success_pct']}%"
                          for s in lad.get("steps", []))
        print(f"  storm, {label}: sustained {lad.get('capacity_per_s')}/s ({steps})")
    for name, s in (r.get("create_to_registrable_ms") or {}).items():
        print(f"  create -> registrable via {name}: p50 {s.get('p50')} ms, p95 {s.get('p95')} ms")
    k = r.get("node_killed_during_storm")
    if k:
        print(f"  node killed during a {k['rate_per_s']:g}/s storm: {k['lost']} of "
              f"{k['storm']['ok'] + k['storm']['failed']} registrations lost, marked down "
              f"after {k['dispatcher_marked_down_s']} s; prober: {k['probes_failed']} failed "
              f"and {k['probes_slow_over_1s']} slow of {k['probes_after_kill']}, back to "
              f"normal {k['recovered_after_s']} s after the kill")


def write_markdown(r: dict[str, Any], path: Path) -> None:
    """Put (replace) this run's section (bench/sections.py) into docs/benchmarks.md."""
    lines = sections.scaleout(r)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if sections.SCALEOUT in text:
        head, _, rest = text.partition(sections.SCALEOUT)
        nxt = rest.find("\n## ")
        text = head + "\n".join(lines) + (rest[nxt:] if nxt >= 0 else "\n")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES),
                        help="storm rates per second, rising (default: %(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    parser.add_argument("--markdown", default="",
                        help="also put the figures into this file (docs/benchmarks.md)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="measure nothing: write --markdown from --out's figures")
    args = parser.parse_args(argv)
    if args.markdown_only:
        if not args.markdown:
            parser.error("--markdown-only needs --markdown FILE")
        write_markdown(json.loads(Path(args.out).read_text())["scaleout"], Path(args.markdown))
        return 0
    tmp = env.TempDir()
    base = env.make_config()
    pg = env.Postgres(tmp.path)
    t0 = time.monotonic()
    result: dict[str, Any] = {}
    ok = False
    try:
        pg.start()
        env.reap_stale_instances(base)
        rates = tuple(float(r) for r in args.rates.split(","))
        result = asyncio.run(run(base, pg, args.agents, args.samples, rates))
        ok = True
    except Exception as exc:  # report, clean up, exit non-zero
        env.stage(f"FAILED: {type(exc).__name__}: {exc}")
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            pg.stop()
        tmp.cleanup()
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["duration_s"] = round(time.monotonic() - t0, 1)
    result["complete"] = ok
    result["machine"] = machine.machine()
    result["load"] = {"loadavg_end": machine.loadavg()}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["scaleout"] = result
    report.write_json(results, out if ok else out.with_suffix(".failed.json"))
    _print(result)
    if ok and args.markdown:
        write_markdown(result, Path(args.markdown))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
