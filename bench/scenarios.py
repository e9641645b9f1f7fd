"""The measured scenarios, each against the real service, database and Asterisk.

- provision():            N agents through the bulk import path (not measured as a goal)
- bulk_import():          a CSV of N agents until all are in Asterisk and 100 register
- creates():              HTTP create (?wait=applied) -> SIPp REGISTER 200 OK, sequential
- rotations():            HTTP SIP password change -> old refused and new accepted
- burst():                N concurrent HTTP creates: wall time, reloads, duplicates, lost
- sip_overhead():         what one SIPp REGISTER of a ready account costs (to read the
                          figures above: it is inside every create/rotation time)
- apply_breakdown():      the apply steps at N agents, timed one by one
- memory():               service and Asterisk resident memory

Every wait is bounded: a deadline per operation, a count per loop.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from sipprov.apply import files, render
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.ami import AmiClient
from sipprov.bulk import importer as bulk
from sipprov.config import Config
from sipprov.pbx import sipp

from . import machine
from .env import Service, stage
from .stats import median, summary

WAIT_TIMEOUT_S = 120
# A REGISTER that fails right after ?wait=applied is retried (and counted) until this.
REGISTER_DEADLINE_S = 20.0

# Varied names: diacritics, apostrophes, hyphens; many collide on purpose (logins get
# suffixes, as in a real contact centre).
FIRST_NAMES = (
    "Anna", "Jan", "Łukasz", "Zofia", "Małgorzata", "Piotr", "Agnieszka", "Krzysztof",
    "Ewa", "Paweł", "José", "María", "François", "Chloé", "Jürgen", "Søren", "Ingrid",
    "Björn", "Zoë", "Noël", "Siobhán", "Seán", "Ana-Maria", "Jean-Luc", "Renée", "Ömer",
    "Ayşe", "Mateusz", "Weronika", "Oliwia", "Dariusz", "Grzegorz", "Hanna", "Igor",
    "Liam", "Olivia", "Emma", "Noah", "Amélie", "Tomáš", "Dvořák", "Kateřina", "Ľubica",
)
LAST_NAMES = (
    "Kowalski", "Nowak", "Żółć", "Wiśniewska", "Wójcik", "Kamiński", "Lewandowska",
    "Zieliński", "Szymańska", "Woźniak", "Dąbrowski", "Kozłowska", "Jankowski", "Mazur",
    "García", "Fernández", "Müller", "Schäfer", "Gößling", "Øster", "Åberg", "O'Brien",
    "O'Neil", "Smith-Jones", "Van der Berg", "De la Cruz", "Núñez", "Łęcki", "Brzęczyszczykiewicz",
    "Nguyen", "Dubois", "Lefèvre", "Çelik", "Yılmaz", "Novák", "Horváth", "Kovač", "Popescu",
    "Ivanova", "Petrov", "Rossi", "Bianchi", "Esposito", "Andersson", "Johansson", "Virtanen",
    "Murphy", "Kelly", "Walsh", "Byrne",
)
CSV_COLUMNS = ("first_name", "last_name", "email", "role", "priority", "phone")


def person(i: int, tag: str) -> dict[str, Any]:
    """The i-th varied person of a stage (tag keeps e-mails unique across stages)."""
    first = FIRST_NAMES[i % len(FIRST_NAMES)]
    last = LAST_NAMES[(i // len(FIRST_NAMES) + 7 * i) % len(LAST_NAMES)]
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{tag}.{i}@example.com",
        "priority": 1 + i % 5,
    }


def write_csv(path: Path, n: int, tag: str, role: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, CSV_COLUMNS)
        w.writeheader()
        for i in range(n):
            p = person(i, tag)
            w.writerow({**p, "role": role, "phone": f"+48600{i:06d}" if i % 3 == 0 else ""})
    return path


def read_credentials(path: Path) -> dict[str, str]:
    """extension -> SIP password, from an import's credentials file."""
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("sip_username") and row.get("sip_password"):
                out[row["sip_username"]] = row["sip_password"]
    return out


def sip_target(cfg: Config) -> tuple[str, int]:
    host, port = cfg.asterisk.sip_server.rsplit(":", 1)
    return host, int(port)


async def register_until_ok(cfg: Config, user: str, password: str,
                            deadline_s: float = REGISTER_DEADLINE_S) -> tuple[bool, int, list[int]]:
    """REGISTER until 200 OK (bounded): (ok, attempts, statuses of the failed ones)."""
    host, port = sip_target(cfg)
    deadline = time.monotonic() + deadline_s
    statuses: list[int] = []
    for attempt in range(1, 200):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        res = await sipp.register(host, port, user, password, realm=cfg.asterisk.sip_realm,
                                  timeout=min(5.0, max(1.0, left)))
        if res.ok:
            return True, attempt, statuses
        statuses.append(res.status)
        await asyncio.sleep(0.02)
    return False, len(statuses), statuses


# ----------------------------------------------------------------------------- HTTP


async def post_json(svc: Service, path: str, body: dict[str, Any] | None,
                    wait: bool = True) -> tuple[int, dict[str, Any], dict[str, str]]:
    params = {"wait": "applied", "wait_timeout": str(WAIT_TIMEOUT_S)} if wait else {}
    async with svc.http.post(path, params=params, json=body if body is not None else {}) as resp:
        try:
            data = await resp.json()
        except (aiohttp.ContentTypeError, ValueError):
            data = {"text": (await resp.text())[:500]}
        return resp.status, data, dict(resp.headers)


# ----------------------------------------------------------------------------- provisioning


async def _import(svc: Service, tmp: Path, n: int, tag: str, role: str) -> tuple[Any, Path]:
    src = write_csv(tmp / f"{tag}.csv", n, tag, role)
    creds = tmp / f"{tag}.credentials.csv"
    opts = bulk.ImportOptions(actor="bench", credentials_path=creds, rejects_path=tmp / f"{tag}.rejects.csv",
                              wait=True, wait_timeout=600.0, apply_self=False, progress=False)
    report = await bulk.import_file(svc.pool, svc.cfg, src, opts)
    return report, creds


async def provision(svc: Service, tmp: Path, n: int, role: str = "extension") -> dict[str, Any]:
    """N agents through the bulk import path, applied. Role `extension` (SIP only, no
    web login) by default: no argon2 web hashes to wait for; Asterisk sees the same."""
    t0 = time.perf_counter()
    report, creds = await _import(svc, tmp, n, f"prov{n}", role)
    if not report.committed or report.errors:
        raise RuntimeError(f"provisioning import failed: {report.errors[:3]}")
    if report.wait is None or not report.wait.applied:
        raise RuntimeError(f"provisioning import not applied: {report.wait}")
    secrets = read_credentials(creds)
    took = time.perf_counter() - t0
    stage(f"provisioned {n} agents (role {role}) through the bulk import in {took:.1f} s")
    return {"n": n, "role": role, "seconds": round(took, 3), "accounts": secrets}


async def bulk_import(svc: Service, ami: AmiClient, tmp: Path, n: int, role: str,
                      sample: int, rng: random.Random, hash_wait_s: float = 60.0) -> dict[str, Any]:
    """CSV of N agents: until all are applied (the applier verifies them against
    PJSIPShowEndpoints) and until a random `sample` of them register."""
    applier = svc.applier
    v0 = int(await svc.pool.fetchval("SELECT version FROM config_state WHERE id = 1"))
    tag = f"imp{n}"
    src = write_csv(tmp / f"{tag}.csv", n, tag, role)
    creds = tmp / f"{tag}.credentials.csv"
    opts = bulk.ImportOptions(actor="bench", credentials_path=creds, rejects_path=tmp / f"{tag}.rejects.csv",
                              wait=True, wait_timeout=600.0, apply_self=False, progress=False)
    stage(f"bulk import: {n} rows (role {role}) from {src.name}")
    t0 = time.perf_counter()
    task = asyncio.create_task(bulk.import_file(svc.pool, svc.cfg, src, opts))
    # The commit bumps the version once; the applier hears it by NOTIFY.
    deadline = time.monotonic() + 600
    target = None
    t_commit = None
    while time.monotonic() < deadline:
        version = applier.status()["config_version"]
        if version > v0:
            target, t_commit = version, time.perf_counter() - t0
            break
        if task.done():
            break
        await asyncio.sleep(0.01)
    if target is None:
        report = await task  # raises what the import raised
        raise RuntimeError(f"bulk import committed nothing: {report.to_dict() if report else None}")
    applied = await applier.wait_applied(target, max(1.0, deadline - time.monotonic()))
    t_applied = time.perf_counter() - t0
    stage(f"bulk import: committed at {t_commit:.1f} s, all applied in Asterisk at {t_applied:.1f} s")
    # A random sample registers (the credentials file is written right after commit).
    creds_deadline = time.monotonic() + 120
    while not creds.exists() and not task.done() and time.monotonic() < creds_deadline:
        await asyncio.sleep(0.01)
    accounts = read_credentials(creds) if creds.exists() else {}
    picks = rng.sample(sorted(accounts), min(sample, len(accounts)))
    host, port = sip_target(svc.cfg)
    reg = await sipp.register_many(host, port, [(e, accounts[e]) for e in picks],
                                   rate=200, concurrency=100, timeout=60)
    t_registered = time.perf_counter() - t0
    # Independent check (not timed in the figures above): every imported extension is
    # in PJSIPShowEndpoints.
    t = time.perf_counter()
    loaded = await ami.pjsip_endpoints()
    list_s = time.perf_counter() - t
    missing = [e for e in accounts if e not in loaded]
    stage(f"bulk import: {reg.ok}/{len(picks)} random agents registered at {t_registered:.1f} s; "
          f"{len(missing)} of {len(accounts)} missing in PJSIPShowEndpoints")
    # Web password hashes (argon2, after the agents are live): wait at most hash_wait_s,
    # then stop them (import_file reports how many were stored; the rest keep no web
    # password, as after an interrupted import) and project the total from the rate.
    if hash_wait_s > 0 and not task.done():
        stage(f"bulk import: waiting up to {hash_wait_s:g} s for the web password hashes")
        await asyncio.wait({task}, timeout=hash_wait_s)
    bulk_log = logging.getLogger("sipprov.bulk.importer")
    level = bulk_log.level
    if not task.done():
        # import_file logs the interruption as an error; here it is the bench's choice
        bulk_log.setLevel(logging.CRITICAL)
        task.cancel()
    try:
        report = await asyncio.wait_for(task, 600)
    except asyncio.CancelledError:
        report = None
    finally:
        bulk_log.setLevel(level)
    if report is None:
        raise RuntimeError("the import was cancelled before it reported")
    t_done = time.perf_counter() - t0
    # the import starts hashing once it sees its version applied
    hashed_in = report.timings.get("hash", t_done - t_applied)
    to_hash = report.web_passwords_stored + report.web_passwords_pending
    rate = report.web_passwords_stored / hashed_in if hashed_in > 0 else None
    complete = report.web_passwords_pending == 0
    projected = (t_done if complete else
                 (t_done - hashed_in + to_hash / rate) if rate else None)
    stage(f"bulk import: {report.web_passwords_stored}/{to_hash} web hashes stored at {t_done:.1f} s"
          + ("" if complete else f" (stopped; at that rate all by ~{projected:.0f} s)" if projected else ""))
    return {
        "rows": n,
        "role": role,
        "created": report.count("create"),
        "rejected": report.count("error"),
        "commit_s": round(t_commit, 3),
        "all_in_asterisk_s": round(t_applied, 3),
        "applied": bool(applied),
        "pjsipshowendpoints_s": round(list_s, 3),
        "missing_in_asterisk": len(missing),
        "register_sample": len(picks),
        "register_ok": reg.ok,
        "register_failed": reg.failed,
        "register_failures": dict(list(reg.failures.items())[:10]),
        "registered_s": round(t_registered, 3),
        "register_many_s": round(reg.elapsed, 3),
        "web_hashes": to_hash,
        "web_hashes_stored": report.web_passwords_stored,
        "web_hashes_complete": complete,
        "web_hashes_per_s": round(rate, 1) if rate else None,
        "web_hashes_done_s": round(projected, 1) if projected else None,
        "web_hashes_projected": not complete,
        "done_s": round(t_done, 3),
        "import_timings_s": {k: round(v, 3) for k, v in report.timings.items()},
        "accounts": accounts,
    }


# ----------------------------------------------------------------------------- SIPp cost


async def sip_overhead(cfg: Config, accounts: dict[str, str], count: int = 5) -> dict[str, Any]:
    """REGISTER an account that is already registrable: SIPp's own cost (process start,
    digest round trip), which is inside every create and rotation figure."""
    if not accounts:
        return {"count": 0}
    user = sorted(accounts)[0]
    times = []
    ok = 0
    host, port = sip_target(cfg)
    for _ in range(count):
        t = time.perf_counter()
        res = await sipp.register(host, port, user, accounts[user], realm=cfg.asterisk.sip_realm,
                                  timeout=10)
        times.append(time.perf_counter() - t)
        ok += res.ok
    out = summary(times)
    out["ok"] = ok
    return out


# ----------------------------------------------------------------------------- warm-up


async def warm_up(svc: Service, ami: AmiClient, count: int,
                  asterisk_pid: int | None = None) -> dict[str, Any]:
    """Reload res_pjsip `count` times on sipprov's own pjsip.conf (touched, same bytes),
    so the creates run on an Asterisk in the same steady state as the floor's timed
    reloads. Nothing is pending meanwhile (the applier is idle)."""
    path = Path(svc.cfg.generated_dir) / render.PJSIP_CONF
    times, cpus = [], []
    for _ in range(count):
        os.utime(path)
        c0 = machine.cpu_seconds(asterisk_pid)
        t = time.perf_counter()
        await ami.reload("res_pjsip.so")
        times.append(round(time.perf_counter() - t, 4))
        c1 = machine.cpu_seconds(asterisk_pid)
        if c0 is not None and c1 is not None:
            cpus.append(round(c1 - c0, 3))
    return {"reloads_s": times, "reloads_cpu_s": cpus}


# ----------------------------------------------------------------------------- creates


async def creates(svc: Service, n: int, count: int, tag: str) -> dict[str, Any]:
    """`count` sequential creates: POST ?wait=applied, then REGISTER with the returned
    password until 200 OK. Times from just before the POST."""
    applier = svc.applier
    records: list[dict[str, Any]] = []
    created: list[dict[str, Any]] = []
    for i in range(count):
        body = person(i, tag)
        before = applier.status()["reloads"]
        t0 = time.perf_counter()
        status, data, _ = await post_json(svc, "/api/v1/agents", body)
        t_http = time.perf_counter() - t0
        st = applier.status()
        rec: dict[str, Any] = {"status": status, "http_s": t_http,
                               "apply_ms": st["last_apply_ms"],
                               "reloads": {m: st["reloads"][m] - before.get(m, 0)
                                           for m in st["reloads"] if st["reloads"][m] != before.get(m, 0)}}
        sip = (data.get("credentials") or {}).get("sip") if isinstance(data, dict) else None
        if status not in (201, 202) or not sip:
            rec.update(ok=False, error=str(data)[:300])
            records.append(rec)
            stage(f"create {i + 1}/{count}: HTTP {status}: {str(data)[:200]}")
            continue
        ok, attempts, failed = await register_until_ok(svc.cfg, sip["username"], sip["password"])
        total = time.perf_counter() - t0
        rec.update(ok=ok, total_s=total, sip_s=total - t_http, attempts=attempts,
                   failed_statuses=failed)
        records.append(rec)
        created.append({"id": data["id"], "extension": sip["username"], "password": sip["password"]})
        if (i + 1) % max(1, count // 5) == 0 or i + 1 == count:
            stage(f"creates at N={n}: {i + 1}/{count}, last {total:.3f} s "
                  f"(HTTP {t_http:.3f} s, apply {rec['apply_ms']} ms)")
    good = [r for r in records if r.get("ok")]
    reload_counts: dict[str, int] = {}
    for r in records:
        for m, c in r.get("reloads", {}).items():
            reload_counts[m] = reload_counts.get(m, 0) + c
    return {
        "n_before": n,
        "count": count,
        "ok": len(good),
        "failed": len(records) - len(good),
        "http_202": sum(1 for r in records if r["status"] == 202),
        "total_s": summary(r["total_s"] for r in good),
        "http_s": summary(r["http_s"] for r in good),
        "apply_ms": summary((r["apply_ms"] for r in good if r["apply_ms"] is not None), 1),
        "sip_s": summary(r["sip_s"] for r in good),
        "register_retries": sum(r["attempts"] - 1 for r in good),
        "first_register_failed": sum(1 for r in good if r["attempts"] > 1),
        "reloads_per_create": {m: round(c / max(1, len(records)), 2) for m, c in reload_counts.items()},
        "created": created,
    }


# ----------------------------------------------------------------------------- rotations


async def rotations(svc: Service, agents: list[dict[str, Any]], count: int, n: int) -> dict[str, Any]:
    """POST /sip-password?wait=applied, then until the old password is refused AND the
    new one accepted (both REGISTERs run at once; retried until both hold, bounded)."""
    if not agents:
        return {"count": 0, "ok": 0}
    host, port = sip_target(svc.cfg)
    realm = svc.cfg.asterisk.sip_realm
    records: list[dict[str, Any]] = []
    for i in range(count):
        agent = agents[i % len(agents)]
        old = agent["password"]
        t0 = time.perf_counter()
        status, data, _ = await post_json(svc, f"/api/v1/agents/{agent['id']}/sip-password", None)
        t_http = time.perf_counter() - t0
        apply_ms = svc.applier.status()["last_apply_ms"]
        sip = data.get("sip") if isinstance(data, dict) else None
        if status not in (200, 202) or not sip:
            records.append({"ok": False, "status": status, "error": str(data)[:300]})
            stage(f"rotation {i + 1}/{count}: HTTP {status}: {str(data)[:200]}")
            continue
        new = sip["password"]
        agent["password"] = new
        deadline = time.monotonic() + REGISTER_DEADLINE_S
        attempts = 0
        old_refused = new_ok = False
        old_status = 0
        while time.monotonic() < deadline and attempts < 100:
            attempts += 1
            jobs = []
            if not old_refused:
                jobs.append(sipp.register(host, port, agent["extension"], old, realm=realm, timeout=5))
            if not new_ok:
                jobs.append(sipp.register(host, port, agent["extension"], new, realm=realm, timeout=5))
            results = await asyncio.gather(*jobs)
            k = 0
            if not old_refused:
                res = results[k]
                k += 1
                old_status = res.status
                old_refused = (not res.ok) and res.status in (401, 403, 407)
            if not new_ok:
                new_ok = results[k].ok
            if old_refused and new_ok:
                break
            await asyncio.sleep(0.02)
        total = time.perf_counter() - t0
        records.append({"ok": old_refused and new_ok, "status": status, "http_s": t_http,
                        "apply_ms": apply_ms, "total_s": total, "attempts": attempts,
                        "old_status": old_status})
        if (i + 1) % max(1, count // 5) == 0 or i + 1 == count:
            stage(f"rotations at N={n}: {i + 1}/{count}, last {total:.3f} s (HTTP {t_http:.3f} s)")
    good = [r for r in records if r.get("ok")]
    return {
        "n": n,
        "count": count,
        "ok": len(good),
        "failed": len(records) - len(good),
        "total_s": summary(r["total_s"] for r in good),
        "http_s": summary(r["http_s"] for r in good),
        "apply_ms": summary((r["apply_ms"] for r in good if r["apply_ms"] is not None), 1),
        "retries": sum(r["attempts"] - 1 for r in good),
        "old_refused_with": sorted({r["old_status"] for r in good}),
    }


# ----------------------------------------------------------------------------- burst


async def burst(svc: Service, ami: AmiClient, n_before: int, count: int) -> dict[str, Any]:
    """`count` creates at once over HTTP (?wait=applied): wall time until the last
    answer, reloads counted by the applier, duplicates and lost agents checked in the
    database and in Asterisk's PJSIPShowEndpoints after the final apply."""
    applier = svc.applier
    st0 = applier.status()
    tag = f"burst{n_before}"
    results: list[tuple[int, dict[str, Any], float]] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        try:
            status, data, _ = await post_json(svc, "/api/v1/agents", person(i, tag))
        except (TimeoutError, aiohttp.ClientError) as exc:
            status, data = 0, {"error": f"{type(exc).__name__}: {exc}"}
        results.append((status, data, time.perf_counter() - t))

    stage(f"burst: {count} concurrent creates over HTTP (N={n_before} before)")
    db_t0 = await svc.pool.fetchval("SELECT clock_timestamp()")
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 1800)
    wall = time.perf_counter() - t0
    st1 = applier.status()
    statuses: dict[str, int] = {}
    for status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    acked = [d for s, d, _ in results if s in (201, 202) and isinstance(d, dict) and "id" in d]
    ids = [d["id"] for d in acked]
    exts = [str(d["extension"]) for d in acked if d.get("extension") is not None]
    logins = [d["login"] for d in acked]
    stage(f"burst: {len(acked)}/{count} acknowledged in {wall:.1f} s "
          f"({count / wall:.1f} creates/s); checking duplicates and lost")
    # Final apply: everything committed is applied (the 201s already waited for it).
    version = int(await svc.pool.fetchval("SELECT version FROM config_state WHERE id = 1"))
    applied = await applier.wait_applied(version, 300)
    async with svc.pool.acquire() as conn:
        in_db = await conn.fetchval("SELECT count(*) FROM users WHERE id = ANY($1::bigint[])", ids)
        # created_at is the transaction's start: when the last create was being committed
        last_created = await conn.fetchval(
            "SELECT max(created_at) FROM users WHERE id = ANY($1::bigint[])", ids)
        dup_ext_db = await conn.fetchval(
            "SELECT count(*) FROM (SELECT extension FROM users WHERE extension IS NOT NULL"
            " GROUP BY extension HAVING count(*) > 1) d")
        dup_login_db = await conn.fetchval(
            "SELECT count(*) FROM (SELECT lower(login) FROM users GROUP BY lower(login)"
            " HAVING count(*) > 1) d")
    loaded = await ami.pjsip_endpoints()
    st2 = applier.status()
    return {
        "n_before": n_before,
        "count": count,
        "wall_s": round(wall, 3),
        "creates_per_s": round(count / wall, 1),
        "latency_s": summary(t for _, _, t in results),
        "last_commit_s": round((last_created - db_t0).total_seconds(), 3) if last_created else None,
        "statuses": statuses,
        "acknowledged": len(acked),
        "errors": count - len(acked),
        "res_pjsip_reloads": st1["reloads"].get("res_pjsip.so", 0) - st0["reloads"].get("res_pjsip.so", 0),
        "res_pjsip_reloads_incl_final": st2["reloads"].get("res_pjsip.so",
                                                           0) - st0["reloads"].get("res_pjsip.so", 0),
        "reloads_by_module": {m: st2["reloads"][m] - st0["reloads"].get(m, 0) for m in st2["reloads"]},
        "reloads_source": "the applier's counters (Applier.status()['reloads'], also in GET /api/v1/status)",
        "applies": st2["applies"] - st0["applies"],
        "duplicate_extensions": (len(exts) - len(set(exts))) + int(dup_ext_db),
        "duplicate_logins": (len(logins) - len(set(logins))) + int(dup_login_db),
        "lost_db": len(ids) - int(in_db),
        "lost_asterisk": sum(1 for e in exts if e not in loaded),
        "final_applied": bool(applied),
        "errors_sample": [str(d)[:200] for s, d, _ in results if s not in (201, 202)][:5],
    }


# ----------------------------------------------------------------------------- apply steps


async def apply_breakdown(svc: Service, ami: AmiClient, profiles: Any = None,
                          reloads: int = 3, asterisk_pid: int | None = None) -> dict[str, Any]:
    """The apply steps at the current N, one by one, in this thread (so a profile sees
    them): snapshot load, a full render (cold cache), a render with one agent changed
    (warm cache, what a create costs), writing the files, the AMI checks the applier
    verifies with, and Asterisk's reload of sipprov's own files (touched, same bytes)."""
    out: dict[str, Any] = {}
    async with svc.pool.acquire() as conn:
        t = time.perf_counter()
        snap = await snapshot_mod.load(conn)
        out["snapshot_load_s"] = round(time.perf_counter() - t, 4)
    out["agents"] = len(snap.agents)
    cold = render.Renderer(render.Settings.from_config(svc.cfg.asterisk))
    ctx = profiles.profile("render_cold") if profiles is not None else _null()
    with ctx:
        t = time.perf_counter()
        cold.render(snap)
        out["render_cold_s"] = round(time.perf_counter() - t, 4)
    # one agent changed: the cache has all others
    if snap.agents:
        from dataclasses import replace

        changed = list(snap.agents)
        changed[0] = replace(changed[0], caller_id_name=changed[0].caller_id_name[:30] + "x")
        snap2 = snapshot_mod.Snapshot(snap.version + 1, changed, snap.queues)
        ctx = profiles.profile("render_warm") if profiles is not None else _null()
        with ctx:
            t = time.perf_counter()
            rendered = cold.render(snap2)
            out["render_warm_s"] = round(time.perf_counter() - t, 4)
        out["pjsip_conf_bytes"] = len(rendered[render.PJSIP_CONF])
        out["extensions_conf_bytes"] = len(rendered[render.EXTENSIONS_CONF])
    # writing: new files (fsync + rename), then the same bytes again (compare only)
    import tempfile

    current = render.render(snap, svc.cfg)
    with tempfile.TemporaryDirectory(prefix="sipprov-bench-files-") as tmp:
        t = time.perf_counter()
        files.write_changed(Path(tmp), current, svc.cfg.security.file_mode)
        out["write_new_s"] = round(time.perf_counter() - t, 4)
        t = time.perf_counter()
        files.write_changed(Path(tmp), current, svc.cfg.security.file_mode)
        out["write_unchanged_s"] = round(time.perf_counter() - t, 4)
    # the applier's verification calls
    if snap.agents:
        name = str(snap.agents[len(snap.agents) // 2].extension)
        t = time.perf_counter()
        await ami.pjsip_endpoint_exists(name)
        out["ami_pjsipshowendpoint_s"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    listed = await ami.pjsip_endpoints()
    out["ami_pjsipshowendpoints_s"] = round(time.perf_counter() - t, 4)
    out["ami_endpoints_listed"] = len(listed)
    # Asterisk reloading sipprov's files as they are (mtime touched: a real reload)
    gen = Path(svc.cfg.generated_dir)
    for fname, module, key in ((render.PJSIP_CONF, "res_pjsip.so", "reload_res_pjsip_s"),
                               (render.EXTENSIONS_CONF, "pbx_config.so", "reload_pbx_config_s"),
                               (render.QUEUES_CONF, "app_queue.so", "reload_app_queue_s")):
        times, cpus = [], []
        for _ in range(reloads):
            os.utime(gen / fname)
            c0 = machine.cpu_seconds(asterisk_pid)
            t = time.perf_counter()
            await ami.reload(module)
            times.append(time.perf_counter() - t)
            c1 = machine.cpu_seconds(asterisk_pid)
            if c0 is not None and c1 is not None:
                cpus.append(c1 - c0)
        out[key] = round(median(times) or 0.0, 4)
        out[key.replace("_s", "_cpu_s")] = round(median(cpus), 3) if cpus else None
    return out


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ----------------------------------------------------------------------------- memory


def memory(asterisk_pid: int | None, agents: int, note: str) -> dict[str, Any]:
    svc = machine.memory("self")
    ast = machine.memory(asterisk_pid) if asterisk_pid else {"rss_bytes": None, "peak_bytes": None}
    return {
        "agents": agents,
        "note": note,
        "service_rss_bytes": svc["rss_bytes"],
        "service_peak_bytes": svc["peak_bytes"],
        "asterisk_rss_bytes": ast["rss_bytes"],
        "asterisk_peak_bytes": ast["peak_bytes"],
    }


async def count_agents(svc: Service) -> int:
    return int(await svc.pool.fetchval(
        "SELECT count(*) FROM users WHERE extension IS NOT NULL AND sip_ha1_md5 IS NOT NULL"))


__all__ = [
    "provision", "bulk_import", "sip_overhead", "creates", "rotations", "burst",
    "apply_breakdown", "memory", "count_agents", "median",
]
