"""The two apply backends side by side in one run (issue 11), timed with the in-process
SIP client (sipprov/pbx/sipclient.py: a SIPp process per sample costs ~117 ms by
itself), on the same PostgreSQL, Asterisk instance and machine load.

Per N and per backend (agents already in the database, inserted in bulk with SQL; the
service runs in-process with asterisk.backend = "realtime" or "files"):

- floor: INSERT+COMMIT of one row plus one REGISTER round trip of an existing agent;
- create -> registrable: the service's create, then REGISTERs until 200;
- rotation effective (old refused and new accepted), delete effective (refused);
- REGISTER latency of existing phones while creates stream in (p99): the phones are a
  process of their own (bench/phones.py), as real phones are never inside sipprov;
- REGISTER storm of (up to 10,000 of) the N agents at 500/s and 1,000/s (successes):
  the files backend's storm is Asterisk's own ceiling (agents in memory), the floor
  the realtime storm is compared with;
- CPU and memory of Asterisk and PostgreSQL; Asterisk start-up time with N agents;
- then, up to 10,000 agents, the realtime storms with the sorcery memory cache
  (Asterisk restarted with it).

The files backend reloads every agent per change (seconds at 10,000), so it takes
fewer samples at large N (files_samples()).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from sipprov import pbx as pbx_mod
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
        # what autovacuum does soon after a bulk import anyway
        await conn.execute("ANALYZE")
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


async def _under_changes(svc: env.Service, cfg: Any, n: int, creates: int,
                         tag: str) -> dict[str, Any]:
    """REGISTER latency of existing agents (a phones process of their own:
    bench/phones.py) while `creates` agents are created (and applied by the service's
    backend) one after another."""
    spec = {"host": "127.0.0.1", "port": cfg.pbx.sip_port, "first": cfg.extensions.first,
            "n": n, "password_format": PASSWORD}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.phones", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(spec) + "\n").encode())
    await proc.stdin.drain()
    try:
        if (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the phones process did not start")
        t0 = time.monotonic()
        letters = "".join(chr(97 + int(d)) for d in tag if d.isdigit())
        for i in range(creates):
            created = await in_tx(svc.pool, agents.create_agent, svc.cfg, AgentCreate(
                first_name="Stream",
                last_name=f"Agent{letters}{chr(97 + i % 26)}{chr(97 + i // 26)}",
                email=f"stream{tag}{i}@example.com", role="extension"), "bench")
            await svc.applier.wait_applied(created.config_version or 0, 120)
        duration = time.monotonic() - t0
        proc.stdin.close()
        # to the end: one line of every latency (longer than a stream's line limit)
        out = json.loads(await asyncio.wait_for(proc.stdout.read(), 60))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
    lat = out["latencies_s"]
    return {"creates": creates, "registers": len(lat), "failed": out["failed"],
            "phones": "a process of their own",
            "p50_ms": round((percentile(lat, 50) or 0) * 1000, 2),
            "p99_ms": round((percentile(lat, 99) or 0) * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2) if lat else None,
            "duration_s": round(duration, 2)}


# Storms use at most this many agents (one SIPp process; the goal is stated at 10,000).
STORM_AGENTS = 10000
# The cache's storms run up to this N (the goal: 1,000/s with the cache at 10,000).
CACHE_MAX_N = 10000


def files_samples(samples: int, n: int) -> int:
    """Fewer samples where each one reloads N endpoints (about 0.5 ms per endpoint):
    4 at 10,000, 2 at 100,000 (a reload of 100,000 endpoints takes about a minute)."""
    return max(4 if n < 50000 else 2, min(samples, samples * 2000 // max(n, 1)))


def _extensions(cfg: Any, n: int) -> Any:
    """A range that holds N agents plus the ones the phase creates (6 digits past 80,000)."""
    first = 10000 if n < 80000 else 100000
    return dataclasses.replace(cfg.extensions, first=first, last=first + n + 2000)


async def _start_asterisk(cfg: Any, svc_needed_first: bool, dsn: str) -> tuple[float, Any]:
    """Start Asterisk on the phase's database and the service; the start-up time with N
    agents. Files: the service renders the N agents first, then Asterisk is restarted on
    those files and timed (a start on empty files would measure nothing)."""
    if not svc_needed_first:
        t = time.monotonic()
        await asyncio.to_thread(env.start_pbx, cfg)
        startup_s = time.monotonic() - t
        return startup_s, await env.start_service(cfg, dsn)
    await asyncio.to_thread(env.start_pbx, cfg)
    svc = await env.start_service(cfg, dsn)
    if not await env.wait_until_applied(svc, 1800):
        raise RuntimeError("the files backend never applied the N agents")
    await asyncio.to_thread(pbx_mod.stop, cfg)
    t = time.monotonic()
    await asyncio.to_thread(pbx_mod.start, cfg)
    return time.monotonic() - t, svc


async def phase(cfg0: Any, pg: env.Postgres, n: int, samples: int, backend: str,
                cache: bool = False) -> dict[str, Any]:
    """One N, one backend: a fresh database of N agents, Asterisk on it, the service."""
    cfg = copy.deepcopy(cfg0)
    cfg.asterisk = dataclasses.replace(cfg.asterisk, backend=backend, realtime_cache=cache)
    cfg.extensions = _extensions(cfg, n)
    # the files backend's Asterisk loads every endpoint at start (~1 min at 100,000); the
    # realtime one loads none (allow_unqualified_fetch=no: docs/apply.md, "Start-up with
    # many agents")
    cfg.pbx = dataclasses.replace(cfg.pbx, boot_timeout_s=max(cfg.pbx.boot_timeout_s, 60 + n / 200))
    name = f"{backend}_{n}_{int(cache)}"
    dsn = await pg.create_database(name)
    cfg.database = dataclasses.replace(cfg.database, dsn=dsn)
    files = backend == "files"
    if files:
        samples = files_samples(samples, n)
    # a change is live after one reload of N endpoints with the files backend
    wait_s = 10.0 if not files else 60.0 + n / 500
    await asyncio.to_thread(env.stop_pbx_keep, cfg)
    pool = await _bootstrap(cfg)
    await _populate(pool, cfg, n)
    startup_s, svc = await _start_asterisk(cfg, files, dsn)
    client = await SipClient.open("127.0.0.1", cfg.pbx.sip_port)
    tag = f"{backend[0]}{'c' if cache else ''}{n}"
    out: dict[str, Any] = {"agents": n, "backend": backend, "cache": cache,
                           "samples": samples, "asterisk_startup_s": round(startup_s, 2)}
    try:
        first = cfg.extensions.first
        # Asterisk is ready for REGISTERs once its start-up work on N agents is done
        ready = await _register_until(client, str(first), PASSWORD.format(ext=first), True,
                                      timeout=600)
        out["first_register_after_start_s"] = round(startup_s + (ready or 0), 2)
        # the service's first apply (the realtime backend's empties pjsip.conf and
        # reloads res_pjsip once: a full load of N endpoints) is not what is measured
        await env.wait_until_applied(svc, 1800)
        env.stage(f"{tag}: floor")
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
            env.stage(f"{tag}: create -> registrable ({samples})")
            made: list[tuple[int, int, str]] = []
            c2r, tx = [], []
            letters = "".join(chr(97 + int(d)) for d in tag if d.isdigit())
            for i in range(samples):
                t = time.monotonic()
                created = await in_tx(svc.pool, agents.create_agent, svc.cfg, AgentCreate(
                    first_name="Rt", last_name=f"New{backend}{chr(97 + i % 26)}{chr(97 + i // 26)}{letters}",
                    email=f"new{tag}_{i}@example.com", role="extension"), "bench")
                assert created.sip is not None and created.agent.extension is not None
                tx.append(time.monotonic() - t)
                took = await _register_until(client, created.sip.username, created.sip.password,
                                             True, timeout=wait_s)
                assert took is not None, "a created agent never became registrable"
                c2r.append(time.monotonic() - t)
                made.append((created.agent.id, created.agent.extension, created.sip.password))
            out["create_to_registrable_ms"] = _ms(c2r)
            # of which the service's create transaction (validation, extension, row, audit)
            out["create_transaction_ms"] = _ms(tx)
            env.stage(f"{tag}: rotation and delete")
            rot, dele = [], []
            for agent_id, ext, old in made[: max(1, samples // 2)]:
                t = time.monotonic()
                new, _ = await in_tx(svc.pool, agents.rotate_sip_password, svc.cfg, agent_id, None, "bench")
                assert await _register_until(client, str(ext), old, False, timeout=wait_s) is not None
                assert await _register_until(client, str(ext), new.password, True, timeout=wait_s) is not None
                rot.append(time.monotonic() - t)
            for agent_id, ext, password in made[max(1, samples // 2):]:
                t = time.monotonic()
                await in_tx(svc.pool, agents.delete_agent, svc.cfg, agent_id, "bench")
                # effective: its own (right) password is refused from now on
                assert await _register_until(client, str(ext), password, False,
                                             timeout=wait_s) is not None
                dele.append(time.monotonic() - t)
            out["rotation_effective_ms"] = _ms(rot)
            out["delete_effective_ms"] = _ms(dele)
            env.stage(f"{tag}: REGISTERs of existing phones while creates stream in")
            out["register_under_changes"] = await _under_changes(
                svc, cfg, n, (4 if n < 50000 else 2) if files else 20, tag)
        for rate in (500.0, 1000.0):
            env.stage(f"{tag}: storm {rate:g}/s of {min(n, STORM_AGENTS):,} agents")
            out[f"storm_{int(rate)}"] = await _storm(cfg, min(n, STORM_AGENTS), rate)
        out["resources"] = _resources(env.asterisk_pid(cfg), pg.data_dir)
    finally:
        client.close()
        await svc.close()
        await pool.close()
        await pg.drop_database(name)
    return out


async def run(cfg: Any, pg: env.Postgres, ns: list[int], samples: int,
              files_max: int = 10000,
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every N, every backend; `checkpoint` gets the figures so far after each phase
    (a long run that is stopped keeps what it measured)."""
    results: dict[str, Any] = {"agents": ns, "samples": samples, "storm_agents": STORM_AGENTS,
                               "files_max_agents": files_max, "by_n": {}}
    for n in ns:
        row: dict[str, Any] = {}
        results["by_n"][str(n)] = row
        for key, backend, cache in (("realtime", "realtime", False),
                                    ("realtime_cache", "realtime", True),
                                    ("files", "files", False)):
            if cache and n > CACHE_MAX_N:
                continue
            if backend == "files" and n > files_max:
                row[key] = {"agents": n, "error": f"not run above {files_max:,} agents "
                            "(--backend-files-max): every change reloads all N endpoints"}
                continue
            try:
                r = await phase(cfg, pg, n, max(5, samples // 4) if cache else samples,
                                backend, cache)
            except Exception as exc:  # keep the other figures
                env.stage(f"{key} N={n} FAILED: {type(exc).__name__}: {exc}")
                row[key] = {"agents": n, "error": f"{type(exc).__name__}: {exc}"}
                continue
            if "create_to_registrable_ms" in r:
                r["ratio_c2r_p50_to_floor"] = ratio(r["create_to_registrable_ms"]["p50"],
                                                    r["floor_ms"]["p50"])
                r["c2r_p50_minus_floor_ms"] = round(
                    (r["create_to_registrable_ms"]["p50"] or 0) - (r["floor_ms"]["p50"] or 0), 2)
            row[key] = r
            if checkpoint is not None:
                checkpoint(results)
    firsts = [row["realtime"]["create_to_registrable_ms"]["p50"]
              for row in results["by_n"].values()
              if "create_to_registrable_ms" in row.get("realtime", {})]
    results["flatness_p50_largest_over_smallest"] = (
        ratio(firsts[-1], firsts[0]) if len(firsts) > 1 else None)
    return results


MARKER = "## Apply backends side by side (issue 11)"


def _cell(r: dict[str, Any], *path: str, unit: str = " ms") -> str:
    value: Any = r
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return "-"
        value = value[key]
    return "-" if value is None else f"{value}{unit}"


def goals(bk: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """The issue's goals, each with whether this run met it and the figure."""
    out: list[tuple[str, bool | None, str]] = []
    for n, row in bk["by_n"].items():
        rt = row.get("realtime", {})
        if "c2r_p50_minus_floor_ms" in rt:
            d = rt["c2r_p50_minus_floor_ms"]
            out.append((f"realtime create->registrable p50 within 5 ms of the floor at {int(n):,}",
                        d <= 5, f"+{d} ms"))
        if "register_under_changes" in rt:
            p99 = rt["register_under_changes"]["p99_ms"]
            out.append((f"changes delay existing phones at most 50 ms p99 at {int(n):,}",
                        p99 <= 50, f"{p99} ms"))
    flat = bk.get("flatness_p50_largest_over_smallest")
    out.append(("create->registrable p50 flat (largest N within 1.5x of smallest)",
                None if flat is None else flat <= 1.5, f"{flat}x"))
    cached = bk["by_n"].get(str(CACHE_MAX_N), {}).get("realtime_cache", {})
    pct = cached.get("storm_1000", {}).get("success_pct")
    out.append((f"storm at 1,000/s with the cache registers 100% of {CACHE_MAX_N:,}",
                None if pct is None else pct >= 100, f"{pct}%"))
    return out


def section(bk: dict[str, Any]) -> list[str]:
    """The backends section of docs/benchmarks.md."""
    lines = [MARKER, "",
             f"Measured {bk.get('date', '')} by `{bk.get('command', 'python -m bench --backends')}` "
             f"in one run ({bk.get('duration_s')} s; load average at the end "
             f"{bk.get('load', {}).get('loadavg_end')}) on this 2-core machine, shared with other "
             "work: same PostgreSQL, same Asterisk instance, in-process SIP client (digest MD5); the "
             "existing phones of the column 'REGISTER p99 while creating' run in a process of "
             "their own (bench/phones.py), so the service's work does not delay the reading of "
             "their answers. Floor: INSERT+COMMIT of one row + one REGISTER round trip of an existing agent, "
             "measured in each phase. Storms: one SIPp process, "
             f"{bk.get('storm_agents', STORM_AGENTS):,} agents (or N if fewer), right after "
             "Asterisk started; the files backend's storm (agents in Asterisk's memory) is "
             "Asterisk's own ceiling. Realtime reads the tables of migration 016.", "",
             "| N | backend | samples | floor p50 | create->registrable p50 / p95 | minus floor "
             "| rotation effective p50 | delete effective p50 | REGISTER p99 while creating "
             "| storm 500/s ok | storm 1000/s ok | Asterisk start: booted / first REGISTER answered "
             "| Asterisk RSS | PostgreSQL CPU |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: |"]
    for n, row in bk["by_n"].items():
        for key in ("realtime", "realtime_cache", "files"):
            r = row.get(key)
            if r is None:
                continue
            label = {"realtime": "realtime", "realtime_cache": "realtime + cache",
                     "files": "files"}[key]
            if "error" in r:
                lines.append(f"| {int(n):,} | {label} | not measured: {r['error'][:120]} |"
                             + " |" * 11)
                continue
            c2r = r.get("create_to_registrable_ms")
            rss = (r.get("resources", {}).get("asterisk_rss_bytes") or 0) // 2**20
            lines.append(
                f"| {int(n):,} | {label} | {r['samples']} | {_cell(r, 'floor_ms', 'p50')} | "
                + (f"{c2r['p50']} / {c2r['p95']} ms" if c2r else "-") + " | "
                f"{_cell(r, 'c2r_p50_minus_floor_ms')} | {_cell(r, 'rotation_effective_ms', 'p50')} | "
                f"{_cell(r, 'delete_effective_ms', 'p50')} | "
                f"{_cell(r, 'register_under_changes', 'p99_ms')} | "
                f"{_cell(r, 'storm_500', 'success_pct', unit='%')} | "
                f"{_cell(r, 'storm_1000', 'success_pct', unit='%')} | "
                f"{r['asterisk_startup_s']} / {r.get('first_register_after_start_s')} s | {rss} MB | "
                f"{_cell(r, 'resources', 'postgres_cpu_s', unit=' s')} |")
    lines += ["", f"Flatness (realtime create->registrable p50 at the largest N / smallest N): "
              f"{bk.get('flatness_p50_largest_over_smallest')}.", "", "Goals (issue 11):", ""]
    for text, met, figure in goals(bk):
        mark = "not measured" if met is None else ("met" if met else "MISSED")
        lines.append(f"- {text}: {mark} ({figure})")
    lines.append("")
    return lines


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Replace the issue-11/15 sections of docs/benchmarks.md (the pipeline's stay)."""
    from . import sections

    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for marker in (MARKER, "## Realtime backend (issue 11)", sections.SCALEOUT, sections.FAILOVER):
        if marker in text:
            head, _, rest = text.partition(marker)
            nxt = rest.find("\n## ")
            text = head.rstrip("\n") + "\n\n" + (rest[nxt + 1:] if nxt >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(sections.markdown(results)))
