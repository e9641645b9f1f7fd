"""The realtime backend's figures (issue 11), timed with the in-process SIP client
(sipprov/pbx/sipclient.py: a SIPp process per sample costs ~117 ms by itself).

Per N (agents already in the database, inserted in bulk with SQL; the service runs
in-process with asterisk.backend = "realtime", Asterisk reads the views):

- floor: INSERT+COMMIT of one row plus one REGISTER round trip of an existing agent;
- create -> registrable: the service's create, then REGISTERs until 200;
- rotation effective (old refused and new accepted), delete effective (refused);
- REGISTER latency of existing phones while creates stream in (p99), and the same
  with the files backend (its reload stall) on the same Asterisk, for comparison;
- REGISTER storm of all N agents at 500/s and 1,000/s (successes, latency);
- CPU and memory of Asterisk and PostgreSQL; Asterisk start-up time with N agents;
- then the same storms with the sorcery memory cache (Asterisk restarted with it).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Any

import asyncpg

from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.apply import realtime as realtime_mod
from sipprov.db import database
from sipprov.db.transaction import run as in_tx
from sipprov.pbx import sipp
from sipprov.pbx.sipclient import SipClient

from . import env, machine
from .stats import percentile, ratio, summary

PASSWORD = "bench-rt-{ext}-secret"

# Bulk insert of N agents of the role "extension" (no web login): extension pool rows
# owned, MD5 digests computed by PostgreSQL, one statement.
_BULK = """
WITH ins AS (
  INSERT INTO users (first_name, last_name, login, email, role_id, account_type_id,
                     is_agent, extension, caller_id_name, chat_name, sip_ha1_md5, sip_realm)
  SELECT 'Bench', 'Agent' || g, 'rt' || g, 'rt' || g || '@example.com',
         (SELECT id FROM roles WHERE name = 'extension'),
         (SELECT id FROM account_types WHERE name = 'standard'),
         true, g, 'b.agent' || g, 'Bench ' || g,
         md5(g || ':' || $3 || ':' || replace($4, '{ext}', g::text)), $3
    FROM generate_series($1::int, $2::int) g
  RETURNING id, extension)
UPDATE extension_pool p SET owner = 'user:' || ins.id FROM ins WHERE p.number = ins.extension
"""


def _ms(values: list[float]) -> dict[str, Any]:
    return summary([v * 1000 for v in values], 2)


async def _register_until(client: SipClient, user: str, password: str, want_ok: bool,
                          timeout: float = 10.0) -> float | None:
    """Seconds until a REGISTER gets the wanted answer (None: never in time)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        answer = await client.register(user, password, expires=60, timeout=2.0)
        if answer.ok == want_ok and answer.status != 0:
            return time.monotonic() - t0
    return None


async def _populate(pool: asyncpg.Pool, cfg: Any, n: int) -> None:
    first = cfg.extensions.first
    async with pool.acquire() as conn:
        await conn.execute(_BULK, first, first + n - 1, cfg.asterisk.sip_realm, PASSWORD)
        await conn.execute("UPDATE config_state SET version = version + 1")


async def _bootstrap(cfg: Any) -> asyncpg.Pool:
    """Migrated database, extension pool in sync, the views' settings and the role's
    login (what the service does at start), before Asterisk starts on it."""
    _, pool = await database.connect_and_upgrade(cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
        await realtime_mod.prepare(conn, cfg)
        if cfg.asterisk.backend != "realtime":
            await realtime_mod.disable_views(conn, cfg)
    return pool


def _pg_pids(data_dir: Path) -> list[int]:
    """The bench's PostgreSQL: its postmaster (postmaster.pid) and its children."""
    try:
        master = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                pids.append(int(entry.name))
    return pids


def _resources(asterisk_pid: int | None, pg_data: Path) -> dict[str, Any]:
    pg = _pg_pids(pg_data)
    rss = [machine.memory(p)["rss_bytes"] or 0 for p in pg]
    cpu = [machine.cpu_seconds(p) or 0.0 for p in pg]
    ast = machine.memory(asterisk_pid) if asterisk_pid else {}
    return {"asterisk_rss_bytes": ast.get("rss_bytes"),
            "asterisk_cpu_s": machine.cpu_seconds(asterisk_pid),
            "postgres_rss_bytes_sum": sum(rss), "postgres_cpu_s": round(sum(cpu), 2),
            "postgres_processes": len(pg)}


async def _storm(cfg: Any, n: int, rate: float) -> dict[str, Any]:
    """All N agents REGISTER once at `rate` per second: ONE SIPp process (an in-process
    Python client cannot itself send and answer 1,000 digest REGISTERs a second on this
    2-core machine next to Asterisk and PostgreSQL)."""
    first = cfg.extensions.first
    accounts = [(str(first + i), PASSWORD.format(ext=first + i)) for i in range(n)]
    result = await sipp.register_many("127.0.0.1", cfg.pbx.sip_port, accounts, rate=rate,
                                      concurrency=2000, expires=300)
    return {"rate_per_s": rate, "agents": n, "ok": result.ok, "failed": result.failed,
            "success_pct": round(100 * result.ok / n, 2),
            "elapsed_s": round(result.elapsed, 2),
            "achieved_per_s": round(result.ok / result.elapsed, 1) if result.elapsed else None}


async def _under_changes(svc: env.Service, client: SipClient, cfg: Any, n: int,
                         creates: int, tag: str) -> dict[str, Any]:
    """REGISTER latency of existing agents while `creates` agents are created (and
    applied by the service's backend) one after another."""
    stop = asyncio.Event()
    lat: list[float] = []

    async def phones() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            ext = cfg.extensions.first + rng.randrange(n)
            answer = await client.register(str(ext), PASSWORD.format(ext=ext), expires=60)
            if answer.ok:
                lat.append(answer.elapsed_s)

    task = asyncio.create_task(phones())
    t0 = time.monotonic()
    letters = "".join(chr(97 + int(d)) for d in tag if d.isdigit())
    try:
        for i in range(creates):
            created = await in_tx(svc.pool, agents.create_agent, svc.cfg, AgentCreate(
                first_name="Stream",
                last_name=f"Agent{letters}{chr(97 + i % 26)}{chr(97 + i // 26)}",
                email=f"stream{tag}{i}@example.com", role="extension"), "bench")
            await svc.applier.wait_applied(created.config_version or 0, 120)
    finally:
        stop.set()
        await task
    return {"creates": creates, "registers": len(lat), "p50_ms": round((percentile(lat, 50) or 0) * 1000, 2),
            "p99_ms": round((percentile(lat, 99) or 0) * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2) if lat else None,
            "duration_s": round(time.monotonic() - t0, 2)}


async def phase(cfg0: Any, pg: env.Postgres, n: int, samples: int,
                cache: bool = False) -> dict[str, Any]:
    """One N: a fresh database of N agents, Asterisk pointed at it, the service."""
    cfg = copy.deepcopy(cfg0)
    cfg.asterisk = dataclasses.replace(cfg.asterisk, backend="realtime", realtime_cache=cache)
    name = f"rt_{n}_{int(cache)}"
    dsn = await pg.create_database(name)
    cfg.database = dataclasses.replace(cfg.database, dsn=dsn)
    # Asterisk restarted on this database (its start-up time with N agents is measured)
    await asyncio.to_thread(env.stop_pbx_keep, cfg)
    pool = await _bootstrap(cfg)
    await _populate(pool, cfg, n)
    t = time.monotonic()
    await asyncio.to_thread(env.start_pbx, cfg)
    startup_s = time.monotonic() - t
    svc = await env.start_service(cfg, dsn)
    client = await SipClient.open("127.0.0.1", cfg.pbx.sip_port)
    out: dict[str, Any] = {"agents": n, "cache": cache, "asterisk_startup_s": round(startup_s, 2)}
    try:
        first = cfg.extensions.first
        # Asterisk is ready for REGISTERs once its start-up work on N agents is done
        ready = await _register_until(client, str(first), PASSWORD.format(ext=first), True,
                                      timeout=180)
        out["first_register_after_start_s"] = round(startup_s + (ready or 0), 2)
        env.stage(f"realtime N={n}{' cache' if cache else ''}: floor")
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id serial, at timestamptz)")
            floor = []
            for i in range(samples):
                ext = first + (i * 7919) % n
                t = time.monotonic()
                await conn.execute("INSERT INTO bench_floor (at) VALUES (now())")
                answer = await client.register(str(ext), PASSWORD.format(ext=ext), expires=60)
                if answer.ok:
                    floor.append(time.monotonic() - t)
        out["floor_ms"] = _ms(floor)
        out["floor_failed"] = samples - len(floor)
        if not cache:
            env.stage(f"realtime N={n}: create -> registrable")
            made: list[tuple[int, int, str]] = []
            c2r = []
            for i in range(samples):
                t = time.monotonic()
                created = await in_tx(svc.pool, agents.create_agent, svc.cfg, AgentCreate(
                    first_name="Rt", last_name=f"New{chr(97 + i % 26)}{chr(97 + i // 26)}"
                f"{''.join(chr(97 + int(d)) for d in str(n))}",
                    email=f"rtnew{n}_{i}@example.com", role="extension"), "bench")
                assert created.sip is not None and created.agent.extension is not None
                took = await _register_until(client, created.sip.username, created.sip.password, True)
                assert took is not None, "a created agent never became registrable"
                c2r.append(time.monotonic() - t)
                made.append((created.agent.id, created.agent.extension, created.sip.password))
            out["create_to_registrable_ms"] = _ms(c2r)
            env.stage(f"realtime N={n}: rotation and delete")
            rot, dele = [], []
            for agent_id, ext, old in made[: max(1, samples // 2)]:
                t = time.monotonic()
                new, _ = await in_tx(svc.pool, agents.rotate_sip_password, svc.cfg, agent_id, None, "bench")
                assert await _register_until(client, str(ext), old, False) is not None
                assert await _register_until(client, str(ext), new.password, True) is not None
                rot.append(time.monotonic() - t)
            for agent_id, ext, _ in made[max(1, samples // 2):]:
                t = time.monotonic()
                await in_tx(svc.pool, agents.delete_agent, svc.cfg, agent_id, "bench")
                assert await _register_until(client, str(ext), "x" * 16, False) is not None
                dele.append(time.monotonic() - t)
            out["rotation_effective_ms"] = _ms(rot)
            out["delete_effective_ms"] = _ms(dele)
            env.stage(f"realtime N={n}: REGISTERs of existing phones while creates stream in")
            out["register_under_changes"] = await _under_changes(svc, client, cfg, n, 20, f"r{n}")
        for rate in (500.0, 1000.0):
            env.stage(f"realtime N={n}{' cache' if cache else ''}: storm {rate:g}/s")
            out[f"storm_{int(rate)}"] = await _storm(cfg, min(n, 10000), rate)
        out["resources"] = _resources(env.asterisk_pid(cfg), pg.data_dir)
    finally:
        client.close()
        await svc.close()
        await pool.close()
    return out


async def files_stall(cfg0: Any, pg: env.Postgres, n: int) -> dict[str, Any]:
    """The same REGISTER-while-creating measure with the files backend (each create
    rewrites pjsip.conf and reloads res_pjsip) on the same kind of database."""
    cfg = copy.deepcopy(cfg0)
    cfg.asterisk = dataclasses.replace(cfg.asterisk, backend="files")
    dsn = await pg.create_database(f"files_{n}")
    cfg.database = dataclasses.replace(cfg.database, dsn=dsn)
    await asyncio.to_thread(env.stop_pbx_keep, cfg)
    pool = await _bootstrap(cfg)
    await _populate(pool, cfg, n)
    await pool.close()
    await asyncio.to_thread(env.start_pbx, cfg)
    svc = await env.start_service(cfg, dsn)
    client = await SipClient.open("127.0.0.1", cfg.pbx.sip_port)
    try:
        await env.wait_until_applied(svc, 600)
        env.stage(f"files N={n}: REGISTERs of existing phones while creates stream in")
        return await _under_changes(svc, client, cfg, n, 5, f"f{n}")
    finally:
        client.close()
        await svc.close()


async def run(cfg: Any, pg: env.Postgres, ns: list[int], samples: int) -> dict[str, Any]:
    results: dict[str, Any] = {"agents": ns, "samples": samples, "by_n": {}}
    for n in ns:
        try:
            r = await phase(cfg, pg, n, samples)
            r["cache_storms"] = await phase(cfg, pg, n, max(5, samples // 4), cache=True)
            r["files_register_under_changes"] = await files_stall(cfg, pg, n)
        except Exception as exc:  # keep the other N's figures
            env.stage(f"realtime N={n} FAILED: {type(exc).__name__}: {exc}")
            results["by_n"][str(n)] = {"agents": n, "error": f"{type(exc).__name__}: {exc}"}
            continue
        r["ratio_c2r_p50_to_floor"] = ratio(r["create_to_registrable_ms"]["p50"],
                                            r["floor_ms"]["p50"])
        r["c2r_p50_minus_floor_ms"] = round(
            (r["create_to_registrable_ms"]["p50"] or 0) - (r["floor_ms"]["p50"] or 0), 2)
        results["by_n"][str(n)] = r
    firsts = [r["create_to_registrable_ms"]["p50"] for r in results["by_n"].values()
              if "error" not in r]
    results["flatness_p50_largest_over_smallest"] = (
        ratio(firsts[-1], firsts[0]) if len(firsts) > 1 else None)
    return results


def write_markdown(rt: dict[str, Any], path: Path) -> None:
    """Append (replace) the realtime section of docs/benchmarks.md."""
    lines = ["## Realtime backend (issue 11)", "",
             f"Measured {rt.get('date', '')} on this 2-core machine (shared with other work), "
             "in-process SIP client (digest MD5), Asterisk 22 reading the asterisk.* views. "
             "Floor: INSERT+COMMIT of one row + one REGISTER round trip of an existing agent.",
             "",
             "| N | floor p50 | create->registrable p50 / p95 | minus floor | rotation effective p50 "
             "| delete effective p50 | REGISTER p99 while creating: realtime / files | "
             "storm 500/s ok | storm 1000/s ok (no cache / cache) | Asterisk start | Asterisk RSS |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, r in rt["by_n"].items():
        if "error" in r:
            lines.append(f"| {int(n):,} | not measured: {r['error'][:120]} |" + " |" * 9)
            continue
        c2r = r["create_to_registrable_ms"]
        cache = r.get("cache_storms", {})
        files = r.get("files_register_under_changes", {})
        lines.append(
            f"| {int(n):,} | {r['floor_ms']['p50']} ms | {c2r['p50']} / {c2r['p95']} ms | "
            f"{r['c2r_p50_minus_floor_ms']} ms | {r['rotation_effective_ms']['p50']} ms | "
            f"{r['delete_effective_ms']['p50']} ms | "
            f"{r['register_under_changes']['p99_ms']} / {files.get('p99_ms')} ms | "
            f"{r['storm_500']['success_pct']}% | {r['storm_1000']['success_pct']}% / "
            f"{cache.get('storm_1000', {}).get('success_pct')}% | {r['asterisk_startup_s']} s | "
            f"{(r['resources']['asterisk_rss_bytes'] or 0) // 2**20} MB |")
    lines += ["", f"Flatness (create->registrable p50 at the largest N / smallest N): "
              f"{rt.get('flatness_p50_largest_over_smallest')}.", ""]
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    marker = "## Realtime backend (issue 11)"
    if marker in text:
        head, _, rest = text.partition(marker)
        nxt = rest.find("\n## ")
        text = head + "\n".join(lines) + (rest[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    path.write_text(text)
