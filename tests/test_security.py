"""Security: brute force on the web login, constant-time token checks, secrets kept
out of every log, file modes, and no plaintext password in the database.

- Failed `POST /api/v1/auth/login` for one login, or from one address, are slowed
  (Retry-After 1, 2, 4 ... s) and then refused for `login_lockout_s` (429 +
  Retry-After), the right password included; numbers from the configuration.
- API tokens: the secret is compared with hmac.compare_digest, also when the token id
  does not exist (against a dummy hash), so timing says nothing.
- Logs: every generated or given password, SIP password, API token, web hash and SIP
  digest is absent from everything logged - caplog at DEBUG (root and `sipprov`) for
  the in-process app and an import, and the stdout/stderr of a `sipprov -v serve`
  subprocess and a `sipprov agents import` subprocess - through creates, password
  changes, SIP rotations, logins and an import.
- Files: generated Asterisk files 0640 whatever the umask, an import's credentials
  (and rejects) file 0600; the database holds no plaintext password or token.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import re
import stat
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sipprov.access import tokens
from sipprov.apply import files
from sipprov.bulk import importer as bulk
from sipprov.config import Config
from sipprov.context import Services
from sipprov.http import create_app
from tests.api_helpers import FakeClock, Reply, agent_body, call
from tests.faults.pbxutil import clean_asterisk, config_for, ensure_running
from tests.faults.service import SIPPROV, Serve, free_tcp_port, status_when, write_config

pytest_plugins = ["tests.api_fixtures"]
pytestmark = pytest.mark.usefixtures("audit_guard")

LOGIN = "/api/v1/auth/login"


# ============================================================================ brute force


async def _agent(admin: aiohttp.ClientSession, password: str, n: int = 1) -> dict:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(n, password=password))
    assert r.status == 201, r.body
    return r.body


def _retry_after(r: Reply) -> int:
    assert r.status == 429, (r.status, r.body)
    assert r.body["error"]["code"] == "rate_limited"
    return int(r.headers["Retry-After"])


async def test_failed_logins_for_one_login_are_slowed_then_refused(
        admin: aiohttp.ClientSession, clock: FakeClock, cfg: Config) -> None:
    sec = cfg.security
    agent = await _agent(admin, "Correct-Horse-77")
    good = {"login": agent["login"], "password": "Correct-Horse-77"}
    bad = {"login": agent["login"], "password": "Wrong-Guess-00"}

    for _ in range(sec.login_free_attempts):  # free tries: answered at once
        assert (await call(admin, "POST", LOGIN, json=bad)).status == 401
    # slowed: each further try waits 1, 2, 4 ... s after the previous failure; a try
    # that comes early is refused without checking the password (even the right one),
    # and a forged X-Forwarded-For does not help (not trusted by default)
    failures = sec.login_free_attempts
    while failures < sec.login_lockout_attempts:
        expected = min(60, 2 ** (failures - sec.login_free_attempts))
        assert _retry_after(await call(admin, "POST", LOGIN, json=good)) == expected
        assert _retry_after(await call(admin, "POST", LOGIN, json=bad,
                                       headers={"X-Forwarded-For": "203.0.113.9"})) == expected
        clock.advance(expected - 0.5)
        assert _retry_after(await call(admin, "POST", LOGIN, json=good)) == 1
        clock.advance(0.5)
        assert (await call(admin, "POST", LOGIN, json=bad)).status == 401
        failures += 1
    # refused for login_lockout_s, whatever the password
    wait = _retry_after(await call(admin, "POST", LOGIN, json=good))
    assert sec.login_lockout_s - 1 <= wait <= sec.login_lockout_s
    clock.advance(sec.login_lockout_s - 10)
    assert 1 <= _retry_after(await call(admin, "POST", LOGIN, json=good)) <= 10
    clock.advance(10)
    r = await call(admin, "POST", LOGIN, json=good)
    assert r.status == 200 and r.body["user_id"] == agent["id"]
    # a success clears the login's count
    assert (await call(admin, "POST", LOGIN, json=bad)).status == 401
    assert (await call(admin, "POST", LOGIN, json=good)).status == 200


async def test_failed_logins_from_one_address_are_slowed_then_refused(
        admin: aiohttp.ClientSession, clock: FakeClock, cfg: Config) -> None:
    """Guessing across many logins from one address: the address has its own count
    (4x the per-login numbers), so rotating logins does not get around the brake."""
    sec = cfg.security
    free, lockout = sec.login_free_attempts * 4, sec.login_lockout_attempts * 4
    agent = await _agent(admin, "Correct-Horse-77")
    n = 0

    async def guess() -> Reply:
        nonlocal n
        n += 1
        return await call(admin, "POST", LOGIN, json={"login": f"nobody{n}", "password": "x" * 12})

    for _ in range(free):
        assert (await guess()).status == 401
    assert _retry_after(await guess()) == 1
    # the right password of a real user from this address waits too
    good = {"login": agent["login"], "password": "Correct-Horse-77"}
    assert _retry_after(await call(admin, "POST", LOGIN, json=good)) == 1
    for failures in range(free, lockout):
        clock.advance(min(60, 2 ** (failures - free)))
        assert (await guess()).status == 401
    wait = _retry_after(await guess())
    assert sec.login_lockout_s - 1 <= wait <= sec.login_lockout_s
    clock.advance(sec.login_lockout_s)
    assert (await call(admin, "POST", LOGIN, json=good)).status == 200


async def test_forwarded_addresses_are_counted_apart_only_behind_a_trusted_proxy(
        cfg: Config, pool: asyncpg.Pool, admin_token: str) -> None:
    cfg.http = dataclasses.replace(cfg.http, trust_forwarded_for=True)
    server = TestServer(create_app(Services(cfg=cfg, pool=pool), clock=FakeClock()),
                        host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("")), headers={
                "Authorization": f"Bearer {admin_token}"}) as http:
            async def guess(address: str, n: int) -> int:
                r = await call(http, "POST", LOGIN, headers={"X-Forwarded-For": address},
                               json={"login": f"ghost{address}{n}", "password": "x" * 12})
                assert r.status == 429 or r.body["error"]["code"] == "invalid_credentials"
                return r.status

            free = cfg.security.login_free_attempts * 4
            for n in range(free):
                assert await guess("198.51.100.1", n) == 401
            assert await guess("198.51.100.1", 99) == 429
            # another client behind the same proxy is not slowed by the first one
            assert await guess("198.51.100.2", 0) == 401
            # the proxy's own entry is the last one: a client cannot forge it
            assert await guess("10.0.0.1, 198.51.100.1", 100) == 429
    finally:
        await server.close()


# ================================================================== constant-time tokens


async def test_tokens_are_compared_in_constant_time(
        anon: aiohttp.ClientSession, pool: asyncpg.Pool, admin_token: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    prefix, token_id, secret = admin_token.split("_", 2)
    stored = await pool.fetchval("SELECT token_hash FROM api_tokens WHERE id = $1", int(token_id))
    assert stored == hashlib.sha256(secret.encode()).hexdigest()

    async def status(token: str) -> int:
        r = await call(anon, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        return r.status

    assert await status(admin_token) == 200
    assert calls[-1] == (stored, stored)
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert await status(f"{prefix}_{token_id}_{wrong}") == 401
    assert calls[-1] == (stored, hashlib.sha256(wrong.encode()).hexdigest())
    # an unknown id is compared too (against a dummy hash): a miss costs the same
    assert await status(f"{prefix}_987654_{secret}") == 401
    assert len(calls) == 3 and calls[-1][0] == tokens._DUMMY_HASH
    # nothing else decides: no token text is ever compared with ==
    source = Path(tokens.__file__).read_text()
    assert "compare_digest(stored, hash_secret(secret))" in source
    assert "token_hash ==" not in source and "== stored" not in source


# ======================================================================= secrets in logs


@dataclass
class Secrets:
    plain: set[str] = field(default_factory=set)  # passwords, SIP passwords, tokens

    def add(self, *values: Any) -> None:
        for value in values:
            if isinstance(value, str) and value:
                self.plain.add(value)


async def _must(r: Reply, status: int = 200) -> dict:
    assert r.status == status, (r.status, r.body)
    return r.body or {}


async def exercise(http: aiohttp.ClientSession, s: Secrets, wait: str = "") -> None:
    """Creates, password changes, SIP rotations and logins, over HTTP; every secret
    seen or given goes into `s`."""
    given = {"password": "Given-Web-Pass-1", "sip_password": "GivenSipPass22xyz"}
    s.add(*given.values())
    a = await _must(await call(http, "POST", "/api/v1/agents" + wait,
                               json=agent_body(11)), 201)
    b = await _must(await call(http, "POST", "/api/v1/agents" + wait,
                               json=agent_body(12, **given)), 201)
    c = await _must(await call(http, "POST", "/api/v1/agents" + wait,
                               json=agent_body(13, role="extension")), 201)
    for created in (a, b, c):
        creds = created.get("credentials", {})
        s.add(creds.get("web_password"), creds.get("sip", {}).get("password"))
    assert a["credentials"]["web_password"] and c["credentials"]["sip"]["password"]

    r = await _must(await call(http, "POST", f"/api/v1/agents/{a['id']}/password"))
    s.add(r["web_password"])
    web_a = r["web_password"]
    await _must(await call(http, "POST", f"/api/v1/agents/{b['id']}/password",
                           json={"password": "Second-Web-Pass-2"}))
    s.add("Second-Web-Pass-2")
    r = await _must(await call(http, "POST", f"/api/v1/agents/{a['id']}/sip-password" + wait))
    s.add(r["sip"]["password"])
    await _must(await call(http, "POST", f"/api/v1/agents/{b['id']}/sip-password" + wait,
                           json={"password": "SecondSipPass33xyz"}))
    s.add("SecondSipPass33xyz")

    await _must(await call(http, "POST", LOGIN, json={"login": a["login"], "password": web_a}))
    s.add("Mistyped-Pass-99")  # a wrong password is as secret as a right one
    assert (await call(http, "POST", LOGIN, json={"login": b["login"],
                                                  "password": "Mistyped-Pass-99"})).status == 401
    await _must(await call(http, "POST", "/api/v1/auth/change-password",
                           json={"login": b["login"], "old_password": "Second-Web-Pass-2",
                                 "new_password": "Third-Web-Pass-3"}), 204)
    s.add("Third-Web-Pass-3")
    # a refused password (too short) is not echoed or logged either
    s.add("Sh0rt!")
    r = await call(http, "POST", f"/api/v1/agents/{a['id']}/password", json={"password": "Sh0rt!"})
    assert r.status == 422 and "Sh0rt!" not in r.raw.decode()


def _import_csv(path: Path, s: Secrets) -> Path:
    s.add("Import-Web-Pass-4", "ImportSipPass44xyz")
    rows = [
        {"login": "imp.one", "first_name": "Imp", "last_name": "One",
         "email": "imp.one@example.com", "password": "Import-Web-Pass-4",
         "sip_password": "ImportSipPass44xyz"},
        {"login": "imp.two", "first_name": "Imp", "last_name": "Two",
         "email": "imp.two@example.com"},
        {"login": "imp.three", "first_name": "Imp", "last_name": "Three",
         "email": "imp.three@example.com", "role": "extension"},
    ]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["login", "first_name", "last_name", "email", "role",
                                           "password", "sip_password"])
        w.writeheader()
        w.writerows(rows)
    return path


def _read_credentials(path: Path, s: Secrets) -> list[dict[str, str]]:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    for row in rows:
        s.add(row.get("web_password"), row.get("sip_password"))
    return rows


async def _stored_secrets(dsn: str) -> set[str]:
    """Hashes and digests as stored: not plaintext, but no log may show them either."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT web_password_hash, sip_ha1_md5, sip_ha1_sha256 FROM users")
        hashes = {v for r in rows for v in r.values() if v}
        hashes |= {r["token_hash"] for r in await conn.fetch("SELECT token_hash FROM api_tokens")}
    finally:
        await conn.close()
    return hashes


async def assert_database_has_no_plaintext(dsn: str, s: Secrets) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        parts = []
        for table in tables:
            parts += [r["t"] for r in await conn.fetch(f'SELECT t::text AS t FROM "{table}" t')]
        dump = "\n".join(parts)
    finally:
        await conn.close()
    assert "users" in tables and "audit_log" in tables
    leaked = sorted(secret for secret in s.plain if secret in dump)
    assert not leaked, f"plaintext secrets in the database: {len(leaked)}"


def assert_absent(text: str, secrets: set[str], where: str) -> None:
    leaked = sorted(secret for secret in secrets if secret in text)
    assert not leaked, f"{len(leaked)} secret(s) in {where}, e.g. {leaked[0][:6]}..."


async def test_no_secret_in_the_logs_of_the_app_and_an_import(
        admin: aiohttp.ClientSession, admin_token: str, pool: asyncpg.Pool, cfg: Config,
        db_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sipprov")
    s = Secrets()
    s.add(admin_token)
    _, new_token = await tokens.create_token(pool, "second", "admin")
    s.add(new_token)
    await exercise(admin, s)
    report = await bulk.import_file(pool, cfg, _import_csv(tmp_path / "agents.csv", s),
                                    bulk.ImportOptions(wait=False, progress=False))
    assert report.count("create") == 3 and not report.errors
    # the credentials file holds what was generated (the rows without given passwords)
    rows = _read_credentials(Path(report.credentials_path), s)
    assert sorted(r["login"] for r in rows) == ["imp.three", "imp.two"]
    assert all(r["sip_password"] for r in rows)
    # a rejected import's reject file may hold password cells: 0600 too
    bad = tmp_path / "bad.csv"
    bad.write_text("login,first_name,last_name,email,password\n"
                   "bad.one,Bad,One,not-an-email,Reject-Pass-5x\n")
    s.add("Reject-Pass-5x")
    report = await bulk.import_file(pool, cfg, bad, bulk.ImportOptions(
        wait=False, progress=False, continue_on_error=True))
    assert report.errors and report.rejects_path
    assert stat.S_IMODE(Path(report.rejects_path).stat().st_mode) == 0o600

    everything = s.plain | await _stored_secrets(db_dsn)
    assert len(s.plain) >= 18
    logged = [caplog.text]
    for record in caplog.records:
        logged += [record.getMessage(), repr(record.args), record.exc_text or "",
                   json.dumps(record.__dict__, default=repr)]
    assert len(caplog.records) >= 5  # something was logged at all
    assert_absent("\n".join(logged), everything, "the captured logs")
    await assert_database_has_no_plaintext(db_dsn, s)


# ------------------------------------------ the real process: `sipprov serve` and import


@pytest.fixture
async def served(pbx, pbx_config: Config, db_dsn: str, tmp_path: Path
                 ) -> AsyncIterator[tuple[Config, Serve, str, Path]]:
    cfg = config_for(pbx_config, db_dsn)
    conn = await asyncpg.connect(db_dsn)
    try:
        token = (await tokens.create_token(conn, "security", "admin"))[1]
    finally:
        await conn.close()
    port = free_tcp_port()
    config_path = write_config(tmp_path / "sipprov.toml", cfg, port)
    serve = Serve(config_path, port, tmp_path, "serve", verbose=True)
    await serve.start()
    try:
        yield cfg, serve, token, config_path
    finally:
        if serve.running():
            await serve.stop()
        await ensure_running(pbx_config)
        await clean_asterisk(pbx_config)


@pytest.mark.pbx
async def test_no_secret_in_the_output_of_sipprov_serve_and_import(
        served: tuple[Config, Serve, str, Path], db_dsn: str, tmp_path: Path) -> None:
    cfg, serve, token, config_path = served
    s = Secrets()
    s.add(token)
    async with serve.session(token) as http:
        await exercise(http, s, wait="?wait=applied&wait_timeout=20")
        # the CLI import, against the running service (which applies it)
        csv_path = _import_csv(tmp_path / "import.csv", s)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPPROV_")}
        res = await asyncio.to_thread(
            subprocess.run, [SIPPROV, "-v", "-c", str(config_path), "agents", "import",
                             str(csv_path), "--no-progress", "--timeout", "60"],
            capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        _read_credentials(tmp_path / "import.credentials.csv", s)
        await status_when(http, lambda b: b["config"]["pending"] == 0, 30)
    assert await serve.stop() == 0

    everything = s.plain | await _stored_secrets(db_dsn)
    output = serve.output()
    assert "sipprov listening on" in output and "applied version" in output
    assert_absent(output, everything, "the output of sipprov serve")
    assert_absent(res.stdout + res.stderr, everything, "the output of sipprov agents import")
    await assert_database_has_no_plaintext(db_dsn, s)

    # Asterisk never sees a plaintext password: not in our files, not in its logs
    directory = Path(cfg.generated_dir)
    for name in ("pjsip.conf", "extensions.conf", "queues.conf"):
        path = directory / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, (name, oct(path.stat().st_mode))
        assert_absent(path.read_text(), s.plain, name)
    for log in (cfg.pbx.instance_dir / "log").rglob("*"):
        if log.is_file():
            assert_absent(log.read_text("utf-8", "replace"), s.plain, str(log))


def test_generated_files_are_0640_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        changed = files.write_changed(tmp_path, {"pjsip.conf": b"[a]\n", "queues.conf": b""},
                                      0o640)
        files.keep_good(tmp_path, ["pjsip.conf", "queues.conf"])
    finally:
        os.umask(old)
    assert changed == ["pjsip.conf", "queues.conf"]
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, (path.name, oct(path.stat().st_mode))
    # a file some other tool made world-readable is put back to 0640 on the next apply
    os.chmod(tmp_path / "pjsip.conf", 0o644)
    assert files.write_changed(tmp_path, {"pjsip.conf": b"[a]\n"}, 0o640) == []
    assert stat.S_IMODE((tmp_path / "pjsip.conf").stat().st_mode) == 0o640


# ============================================== the fail2ban filter of docs/security.md


def _documented_failregex() -> re.Pattern[str]:
    doc = (Path(__file__).resolve().parent.parent / "docs/security.md").read_text()
    m = re.search(r"^failregex = (.+)$", doc, re.M)
    assert m, "docs/security.md has no failregex"
    # fail2ban's <HOST> tag: an IPv4/IPv6 address
    return re.compile(m.group(1).replace("<HOST>", r"(?P<host>[0-9A-Fa-f.:]+)"))


@pytest.mark.pbx
async def test_fail2ban_filter_matches_asterisk_security_log(pbx, pbx_config: Config) -> None:
    """The filter documented for fail2ban bans what fails to authenticate against the
    real Asterisk 22 (wrong password, unknown account) - and not a good login."""
    from sipprov.agents import passwords
    from sipprov.apply import render
    from sipprov.apply.ami import AmiClient
    from sipprov.apply.snapshot import AgentConf, Snapshot
    from sipprov.pbx import sipp

    realm = pbx_config.asterisk.sip_realm
    d = passwords.sip_digests("199", realm, "GoodSipPassword123")
    snap = Snapshot(1, [AgentConf(1, 199, "f2b", d.md5, d.sha256, realm, False, None, False,
                                  False, 1)], [])
    log = pbx_config.pbx.instance_dir / "log/security.log"
    start = log.stat().st_size if log.exists() else 0
    files.write_changed(Path(pbx_config.generated_dir), render.render(snap, pbx_config), 0o640)
    ami = AmiClient(pbx_config.asterisk)
    await ami.connect()
    try:
        await ami.reload("res_pjsip.so")
        port = pbx_config.pbx.sip_port
        good = await sipp.register("127.0.0.1", port, "199", "GoodSipPassword123")
        assert good.ok, good
        bad = await sipp.register("127.0.0.1", port, "199", "WrongSipPassword99")
        assert not bad.ok, bad
        unknown = await sipp.register("127.0.0.1", port, "ghost777", "WhateverPass123")
        assert not unknown.ok, unknown
        failregex = _documented_failregex()
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            lines = log.read_bytes()[start:].decode("utf-8", "replace").splitlines()
            banned = [line for line in lines if failregex.search(line)]
            if len(banned) >= 2 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        events = {re.search(r'SecurityEvent="(\w+)"', line).group(1)  # type: ignore[union-attr]
                  for line in banned}
        assert "ChallengeResponseFailed" in events, lines
        assert {failregex.search(line).group("host") for line in banned} == {"127.0.0.1"}
        assert any("SuccessfulAuth" in line for line in lines), lines
        assert not any("SuccessfulAuth" in line or "ChallengeSent" in line for line in banned)
        # both failures are banned: the wrong password and the unknown account
        assert sum(1 for line in banned if 'AccountID="199"' in line) >= 1
        assert sum(1 for line in banned if "ghost777" in line) >= 1, lines
    finally:
        await ami.close()
        await clean_asterisk(pbx_config)
