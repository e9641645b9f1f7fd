"""`sipprov serve` as a real subprocess: its own TOML config file, its output captured
to files (for the log-hygiene checks), started, killed and stopped by the tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from sipprov.access import tokens
from sipprov.config import Config
from tests.api_helpers import Reply, call

SIPPROV = str(Path(sys.executable).with_name("sipprov"))


async def admin_token(dsn: str, name: str) -> str:
    """A new admin API token on the database at `dsn`."""
    conn = await asyncpg.connect(dsn)
    try:
        return (await tokens.create_token(conn, name, "admin"))[1]
    finally:
        await conn.close()


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(path: Path, cfg: Config, http_port: int, **overrides: dict[str, Any]) -> Path:
    """The few keys that differ from the defaults: database, PBX instance and ports,
    generated folder, a fast applier."""
    sections: dict[str, dict[str, Any]] = {
        "http": {"host": "127.0.0.1", "port": http_port, "wait_timeout_s": 30.0},
        "database": {"dsn": cfg.database.dsn, "pool_min": 1, "pool_max": 5,
                     "acquire_timeout_s": 3.0},
        "asterisk": {"config_dir": str(cfg.generated_dir), "ami_port": cfg.asterisk.ami_port,
                     "ami_user": cfg.asterisk.ami_user, "ami_secret": cfg.asterisk.ami_secret,
                     "sip_server": cfg.asterisk.sip_server, "ami_timeout_s": 5.0,
                     "backend": cfg.asterisk.backend,
                     "realtime_db_password": cfg.asterisk.realtime_db_password},
        "pbx": {"root": str(cfg.pbx.root), "instance": cfg.pbx.instance,
                "sip_port": cfg.pbx.sip_port},
        "applier": {"debounce_ms": 100, "backoff_min_s": 0.2, "backoff_max_s": 1.0},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Serve:
    """One `sipprov [-v] -c FILE serve` process."""

    def __init__(self, config_path: Path, http_port: int, workdir: Path, name: str,
                 verbose: bool = True, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.url = f"http://127.0.0.1:{http_port}"
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.verbose = verbose
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, healthy_within: float = 30.0) -> Serve:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPPROV_")}
        env.update(self.env)
        argv = [SIPPROV, *(["-v"] if self.verbose else []), "-c", str(self.config_path),
                "serve"]
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=err, stdin=asyncio.subprocess.DEVNULL, env=env)
        try:
            await self.wait_healthy(healthy_within)
        except BaseException:
            if self.running():
                await self.kill()
            raise
        return self

    async def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(f"sipprov serve exited with {self.proc.returncode}:\n"
                                         f"{self.output()[-3000:]}")
                try:
                    async with http.get(self.url + "/api/v1/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"sipprov serve not healthy within {timeout} s:\n"
                                         f"{self.output()[-3000:]}")
                await asyncio.sleep(0.1)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return await self.wait_exit(10)

    async def stop(self) -> int:
        """SIGTERM and wait (the graceful path)."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return await self.wait_exit(40)

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def output(self) -> str:
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text += path.read_text("utf-8", "replace")
        return text

    def session(self, token: str | None) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return aiohttp.ClientSession(base_url=self.url, headers=headers)


async def status_when(http: aiohttp.ClientSession, check: Any, timeout: float) -> Reply:
    """Poll GET /api/v1/status until check(body) is true."""
    deadline = time.monotonic() + timeout
    while True:
        r = await call(http, "GET", "/api/v1/status")
        if r.status == 200 and check(r.body):
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"status never satisfied the check within {timeout} s: "
                                 f"{r.status} {r.body}")
        await asyncio.sleep(0.2)
