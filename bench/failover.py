"""Leader failover time (issue 15, docs/scale-out.md): two real `sipprov serve`
processes on one private PostgreSQL and the bench's own Asterisk instance; the leader
is SIGKILLed N times.

Per kill: takeover = SIGKILL -> the follower's /health says it leads; applied = SIGKILL
-> an agent created through the follower right after the kill answers 201 to
?wait=applied (the new leader applied it). The killed instance is started again (the
next follower) before the next kill. Prints p50/max and writes them under `failover`
in bench/results.json, keeping every other key.

    python -m bench.failover [--kills 10] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from sipprov.access import tokens
from sipprov.config import Config
from sipprov.db import database

from . import env, machine, report
from .runner import check_prerequisites
from .stats import summary

REPO = Path(__file__).resolve().parent.parent
SIPPROV = str(Path(sys.executable).with_name("sipprov"))


def _toml(cfg: Config, name: str, port: int) -> str:
    ast = cfg.asterisk
    return "\n".join([
        "[http]", 'host = "127.0.0.1"', f"port = {port}", "",
        "[database]", f"dsn = {json.dumps(cfg.database.dsn)}", "pool_min = 1", "pool_max = 5", "",
        "[asterisk]", f"config_dir = {json.dumps(str(cfg.generated_dir))}",
        f"ami_port = {ast.ami_port}", f"ami_user = {json.dumps(ast.ami_user)}",
        f"ami_secret = {json.dumps(ast.ami_secret)}", f"sip_server = {json.dumps(ast.sip_server)}",
        f"backend = {json.dumps(ast.backend)}", "",
        "[pbx]", f"root = {json.dumps(str(cfg.pbx.root))}",
        f"instance = {json.dumps(cfg.pbx.instance)}", f"sip_port = {cfg.pbx.sip_port}", "",
        "[applier]", f"instance_name = {json.dumps(name)}", "",
    ])


class Instance:
    """One `sipprov serve` subprocess."""

    def __init__(self, cfg: Config, workdir: Path, name: str) -> None:
        self.name = name
        self.port = env.free_port(socket.SOCK_STREAM)
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = workdir / f"{name}.toml"
        self.conf.write_text(_toml(cfg, name, self.port))
        self.log = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession, timeout: float = 60) -> None:
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                SIPPROV, "-v", "-c", str(self.conf), "serve", stdout=log, stderr=log,
                stdin=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while await self.health(http) is None:
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start; see {self.log}")
            await asyncio.sleep(0.1)

    async def health(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(self.url + "/api/v1/health") as r:
                return await r.json() if r.status == 200 else None
        except aiohttp.ClientError:
            return None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 40)
            except TimeoutError:
                await self.kill()


async def _leader(http: aiohttp.ClientSession, a: Instance, b: Instance,
                  timeout: float = 30) -> tuple[Instance, Instance]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ha, hb = await a.health(http), await b.health(http)
        if ha and hb and ha["leader"] != hb["leader"]:
            return (a, b) if ha["leader"] else (b, a)
        await asyncio.sleep(0.05)
    raise RuntimeError("no single leader")


async def measure(kills: int, workdir: Path, cfg: Config) -> dict[str, Any]:
    conn = await asyncpg.connect(cfg.database.dsn)
    try:
        await database.upgrade(conn)
        _, token = await tokens.create_token(conn, "bench-failover", "admin")
    finally:
        await conn.close()
    a, b = Instance(cfg, workdir, "fo-a"), Instance(cfg, workdir, "fo-b")
    takeovers: list[float] = []
    applied: list[float] = []
    async with aiohttp.ClientSession() as http:
        await a.start(http)
        await b.start(http)
        try:
            for n in range(kills):
                leader, follower = await _leader(http, a, b)
                letters = "".join(chr(97 + int(d)) for d in str(n))  # names take no digits
                body = {"first_name": "Fail", "last_name": f"Over{letters}",
                        "email": f"failover{n}@example.com"}
                t0 = time.monotonic()
                await leader.kill()
                create = asyncio.ensure_future(http.post(
                    follower.url + "/api/v1/agents?wait=applied&wait_timeout=60", json=body,
                    headers={"Authorization": f"Bearer {token}"}))
                while not ((h := await follower.health(http)) and h["leader"]):
                    if time.monotonic() - t0 > 60:
                        raise RuntimeError("no takeover within 60 s")
                    await asyncio.sleep(0.01)
                takeovers.append(time.monotonic() - t0)
                async with await create as r:
                    if r.status != 201:
                        raise RuntimeError(f"create across the failover: {r.status} "
                                           f"{(await r.text())[:300]}")
                applied.append(time.monotonic() - t0)
                env.stage(f"kill {n + 1}/{kills}: takeover {takeovers[-1]:.3f} s, "
                          f"applied {applied[-1]:.3f} s")
                await leader.start(http)
        finally:
            await a.stop()
            await b.stop()
    poll = Config().applier.leader_poll_s
    return {
        "kills": kills,
        "takeover_s": summary(takeovers),
        "create_applied_across_failover_s": summary(applied),
        "settings": {"leader_poll_s": poll, "leader_check_s": Config().applier.leader_check_s,
                     "leader_lease_s": Config().applier.leader_lease_s,
                     "backend": cfg.asterisk.backend},
        "what": "SIGKILL of the leader -> the follower's /health says leader (takeover); "
                "-> an agent created through the follower with ?wait=applied answers 201",
    }


def merge_into(path: Path, key: str, value: dict[str, Any]) -> None:
    """Write `key` into the results file, keeping every other key."""
    results: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            results = json.loads(path.read_text())
    results[key] = value
    report.write_json(results, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs of the leader (default 10)")
    p.add_argument("--out", default=str(REPO / "bench/results.json"), help="results JSON path")
    args = p.parse_args(argv)
    problem = check_prerequisites()
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    tmp = env.TempDir()
    pg = env.Postgres(tmp.path)
    cfg = env.make_config()
    try:
        env.stage("starting PostgreSQL and Asterisk")
        pg.start()
        cfg.database = dataclasses.replace(
            cfg.database, dsn=asyncio.run(pg.create_database("failover")))
        env.start_pbx(cfg)
        started = datetime.now(UTC)
        figures = asyncio.run(measure(args.kills, tmp.path, cfg))
        figures.update(date=started.isoformat(timespec="seconds"),
                       command="python -m bench.failover " + " ".join(argv or sys.argv[1:]),
                       machine=machine.machine(), loadavg=machine.loadavg())
    finally:
        with contextlib.suppress(Exception):
            env.stop_pbx(cfg)
        pg.stop()
        tmp.cleanup()
    t, ap = figures["takeover_s"], figures["create_applied_across_failover_s"]
    print(f"leader failover over {args.kills} SIGKILLs: takeover p50 {t['p50']} s, "
          f"max {t['max']} s; create applied across it p50 {ap['p50']} s, max {ap['max']} s")
    merge_into(Path(args.out), "failover", figures)
    print(f"wrote failover into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
