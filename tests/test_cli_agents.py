"""`sipprov agents ...` end to end: in-process through sipprov.cli.main (a TOML config in
tmp_path pointing at the test's database) and as a subprocess for the exit codes that
scripts rely on (0 ok, 2 bad input with the field named, 3 database unavailable, 1 other).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from sipprov import config as config_mod
from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import QueueCreate
from sipprov.apply.applier import Applier
from sipprov.apply.errors import Unavailable
from sipprov.cli.main import main
from sipprov.db.sql import config_state
from sipprov.db.transaction import run
from sipprov.directory import queues

from .cli_helpers import run_db, toml_config

ACTIONS = ["create", "list", "show", "set", "delete", "deactivate", "reactivate", "password",
           "sip-password", "import", "export"]


def setup_queues(conf: Path) -> None:
    async def go(pool: asyncpg.Pool, cfg: config_mod.Config) -> None:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)
        for name in ("support", "sales"):
            await run(pool, queues.create_queue, cfg, QueueCreate(name=name), "test")

    run_db(conf, go)


def cli(conf: Path, *argv: str) -> int:
    return main(["-c", str(conf), "agents", *argv])


def sub(conf: Path | None, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sipprov.cli.main"]
    if conf is not None:
        cmd += ["-c", str(conf)]
    return subprocess.run(cmd + ["agents", *argv], input=stdin, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "SIPPROV_CONFIG": ""})


# --- help --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [None, *ACTIONS])
def test_help_on_every_command(action: str | None, capsys) -> None:
    argv = ["agents"] + ([action] if action else []) + ["--help"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: sipprov agents" in out
    if action in ("create", "set"):
        for option in ("--first-name", "--caller-id", "--queue", "--outbound-mode", "--json", "--wait"):
            assert option in out


# --- single changes ------------------------------------------------------------------------


def test_create_show_list_set_passwords_delete(conf: Path, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    setup_queues(conf)

    assert cli(conf, "create", "--first-name", "Łukasz", "--last-name", "Żółć",
               "--email", "lz@example.com", "--queue", "support:2", "--queue", "sales",
               "--priority", "3", "--phone", "+48 600 100 200", "--json") == 0
    created = json.loads(capsys.readouterr().out)
    assert created["login"] == "lukasz.zolc" and created["caller_id"] == "l.zolc"
    assert created["extension"] == 1000
    web = created["credentials"]["web_password"]
    sip = created["credentials"]["sip"]
    assert sip["username"] == "1000" and len(sip["password"]) >= 24
    assert [(q["name"], q["penalty"]) for q in created["queues"]] == [("sales", 2), ("support", 2)]

    # Human output: the passwords once, on stdout; never in the log.
    assert cli(conf, "create", "--first-name", "Nguyễn", "--last-name", "Văn Đức",
               "--email", "nvd@example.com") == 0
    out = capsys.readouterr().out
    assert "created agent nguyen.van-duc" in out and out.count("web password:") == 1
    second_web = out.split("web password:")[1].split()[0]
    second_sip = out.split("SIP password:")[1].split()[0]
    for secret in (web, sip["password"], second_web, second_sip):
        assert secret not in caplog.text

    assert cli(conf, "show", "lukasz.zolc") == 0
    shown = capsys.readouterr().out
    assert "extension" in shown and "1000" in shown and "sales;support:2" in shown
    assert cli(conf, "show", "lz@example.com", "--json") == 0
    agent = json.loads(capsys.readouterr().out)
    assert agent["phone"] == "+48600100200"
    assert "web_password" not in json.dumps(agent) and "ha1" not in json.dumps(agent)

    assert cli(conf, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(a["login"] for a in listed["items"]) == ["lukasz.zolc", "nguyen.van-duc"]
    assert cli(conf, "list", "-q", "zolc") == 0
    table = capsys.readouterr().out
    assert "lukasz.zolc" in table and "nguyen" not in table

    assert cli(conf, "set", "lukasz.zolc", "--priority", "5", "--queue", "sales:7",
               "--clear", "phone", "--json") == 0
    updated = json.loads(capsys.readouterr().out)
    assert updated["priority"] == 5 and updated["phone"] is None
    assert [(q["name"], q["penalty_override"]) for q in updated["queues"]] == [("sales", 7)]
    assert "credentials" not in updated

    assert cli(conf, "password", "lukasz.zolc", "--force-change", "--json") == 0
    new_web = json.loads(capsys.readouterr().out)["web_password"]
    assert new_web != web

    async def login_ok(pool: asyncpg.Pool, cfg: config_mod.Config) -> tuple[bool, bool, bool]:
        old = await agents.verify_login(pool, "lukasz.zolc", web)
        new = await agents.verify_login(pool, "lukasz.zolc", new_web)
        return old.ok, new.ok, new.must_change_password

    assert run_db(conf, login_ok) == (False, True, True)

    assert cli(conf, "sip-password", "lukasz.zolc") == 0
    out = capsys.readouterr().out
    rotated = out.split("SIP password:")[1].split()[0]
    assert rotated != sip["password"]

    async def digest(pool: asyncpg.Pool, cfg: config_mod.Config) -> str:
        return await pool.fetchval("SELECT sip_ha1_md5 FROM users WHERE login = 'lukasz.zolc'")

    assert run_db(conf, digest) == hashlib.md5(f"1000:sipprov:{rotated}".encode()).hexdigest()

    # A given SIP password comes from stdin, never the command line; it is not echoed.
    r = sub(conf, "sip-password", "lukasz.zolc", "--password-stdin", "--json",
            stdin="Given-Sip-Pass-0123\n")
    assert r.returncode == 0, r.stderr
    assert "Given-Sip-Pass-0123" not in r.stdout + r.stderr
    assert run_db(conf, digest) == hashlib.md5(b"1000:sipprov:Given-Sip-Pass-0123").hexdigest()

    assert cli(conf, "delete", "lukasz.zolc") == 0
    assert "deleted agent lukasz.zolc" in capsys.readouterr().out
    assert cli(conf, "show", "lukasz.zolc") == 2
    assert "not found" in capsys.readouterr().err


def test_wait_reports_pending_but_keeps_the_secrets(conf: Path, capsys) -> None:
    """No Asterisk reachable: --wait times out with exit 1, after printing the passwords."""
    setup_queues(conf)
    rc = cli(conf, "create", "--first-name", "Jan", "--last-name", "Kowalski",
             "--email", "jk@example.com", "--wait", "--timeout", "1.5")
    out, err = capsys.readouterr()
    assert rc == 1
    assert "web password:" in out and "SIP password:" in out
    assert "not applied within 1.5 s" in err and "pending" in err


# --- exit codes (subprocess) ------------------------------------------------------------------


def test_exit_codes(conf: Path, tmp_path: Path) -> None:
    setup_queues(conf)
    r = sub(conf, "create", "--first-name", "Jan", "--last-name", "Kowalski", "--email", "nope")
    assert r.returncode == 2 and "--email:" in r.stderr

    r = sub(conf, "create", "--first-name", "Jan\n[x]", "--last-name", "Kowalski",
            "--email", "jk@example.com")
    assert r.returncode == 2 and "--first-name:" in r.stderr

    r = sub(conf, "create", "--last-name", "Kowalski", "--email", "jk@example.com")
    assert r.returncode == 2 and "--first-name" in r.stderr

    r = sub(conf, "create", "--first-name", "Jan", "--last-name", "Kowalski",
            "--email", "jk@example.com", "--queue", "nosuch")
    assert r.returncode == 2 and "--queue: unknown queue nosuch" in r.stderr

    r = sub(conf, "create", "--first-name", "Jan", "--last-name", "Kowalski",
            "--email", "jk@example.com", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["login"] == "jan.kowalski"

    r = sub(conf, "create", "--first-name", "Jan", "--last-name", "Kowalski",
            "--email", "jk@example.com")
    assert r.returncode == 2 and "--email:" in r.stderr

    r = sub(conf, "show", "nobody")
    assert r.returncode == 2 and "not found" in r.stderr

    r = sub(conf, "set", "jan.kowalski", "--extension", "50")
    assert r.returncode == 2 and "--extension" in r.stderr

    down = tmp_path / "down.toml"
    down.write_text(toml_config("postgresql://nobody@127.0.0.1:1/none", tmp_path))
    r = sub(down, "list")
    assert r.returncode == 3 and "database unavailable" in r.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text("first_name,last_name,email\nAnna,Nowak,an@example.com\nPiotr,Wiśniewski,broken\n",
                   encoding="utf-8")
    r = sub(conf, "import", str(bad), "--no-progress")
    assert r.returncode == 2
    assert "line 3: email" in r.stderr
    assert "nothing imported" in r.stdout

    r = sub(conf, "import", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "no such file" in r.stderr

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("first_name,last_name,email,shoe_size\n", encoding="utf-8")
    r = sub(conf, "import", str(unknown))
    assert r.returncode == 2 and "shoe_size" in r.stderr


# --- import / export -------------------------------------------------------------------------


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _rows(n: int) -> list[dict[str, str]]:
    names = [("Łukasz", "Żółć"), ("Trần", "Thị Hương"), ("Małgorzata", "Wójcik"), ("Đặng", "Văn Lâm")]
    return [{"first_name": names[i % 4][0], "last_name": names[i % 4][1],
             "email": f"u{i}@example.com", "queues": "support:1;sales"} for i in range(n)]


def test_import_dry_run_then_import_then_export(conf: Path, tmp_path: Path, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    setup_queues(conf)
    src = _write(tmp_path / "team.csv", _rows(12))

    assert cli(conf, "import", str(src), "--dry-run", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "line 2: create lukasz.zolc (extension 1000)" in out
    assert "line 6: create lukasz.zolc2 (extension 1004)" in out
    assert "would be 12 created" in out and "nothing was written" in out
    assert not (tmp_path / "team.credentials.csv").exists()
    count = run_db(conf, lambda pool, cfg: pool.fetchval("SELECT count(*) FROM users"))
    assert count == 0

    assert cli(conf, "import", str(src), "--no-wait", "--json") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["created"] == 12 and report["committed"] and report["web_passwords_stored"] == 12
    creds_path = tmp_path / "team.credentials.csv"
    assert report["credentials_file"] == str(creds_path)
    assert stat.S_IMODE(os.stat(creds_path).st_mode) == 0o600
    with open(creds_path, encoding="utf-8") as fh:
        creds = list(csv.DictReader(fh))
    assert len(creds) == 12
    everything = captured.out + captured.err + caplog.text
    for c in creds:
        assert c["web_password"] and c["web_password"] not in everything
        assert c["sip_password"] and c["sip_password"] not in everything

    # The same file again: all unchanged (matched by e-mail), and no credentials file.
    assert cli(conf, "import", str(src), "--no-wait", "--credentials",
               str(tmp_path / "again.csv"), "--no-progress") == 0
    assert "12 unchanged" in capsys.readouterr().out
    assert not (tmp_path / "again.csv").exists()

    out_csv = tmp_path / "out.csv"
    assert cli(conf, "export", str(out_csv), "--definitions", str(tmp_path / "defs.json"),
               "--no-progress") == 0
    assert "exported 12 agents" in capsys.readouterr().out
    with open(out_csv, encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert [r["login"] for r in exported][:2] == ["lukasz.zolc", "tran.thi-huong"]
    assert exported[0]["queues"] == "sales;support:1"
    defs = json.loads((tmp_path / "defs.json").read_text())
    assert sorted(q["name"] for q in defs["queues"]) == ["sales", "support"]

    assert cli(conf, "export", "-", "--no-progress") == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("login,first_name,last_name,email")


def test_import_continue_on_error_cli(conf: Path, tmp_path: Path, capsys) -> None:
    setup_queues(conf)
    rows = _rows(6)
    rows[3]["email"] = "broken"
    src = _write(tmp_path / "some.csv", rows)
    rc = cli(conf, "import", str(src), "--no-wait", "--continue-on-error", "--no-progress",
             "--rejects", str(tmp_path / "bad-rows.csv"))
    out, err = capsys.readouterr()
    assert rc == 2, "a refused row is bad input even when the others were imported"
    assert "5 created" in out and "bad rows written to" in out
    assert "line 5: email" in err
    with open(tmp_path / "bad-rows.csv", encoding="utf-8") as fh:
        rejected = list(csv.DictReader(fh))
    assert [r["email"] for r in rejected] == ["broken"] and rejected[0]["error"].startswith("line 5")


def test_show_says_why_an_agent_is_kept_out_of_asterisk(conf: Path, capsys) -> None:
    setup_queues(conf)
    assert cli(conf, "create", "--first-name", "Ewa", "--last-name", "Zła",
               "--email", "ewa@example.com", "--json") == 0
    agent_id = json.loads(capsys.readouterr().out)["id"]

    async def poison_and_apply(pool: asyncpg.Pool, cfg: config_mod.Config) -> None:
        # a value written past validation; then an apply (Asterisk is unreachable here:
        # the render, and so the quarantine, happens before AMI is needed)
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("UPDATE users SET caller_id_name = $1 WHERE id = $2",
                                   "x;y", agent_id)
                await config_state.bump(conn)
        applier = Applier(pool, cfg)
        try:
            with pytest.raises(Unavailable):
                await applier.apply_once()
        finally:
            await applier.stop()

    run_db(conf, poison_and_apply)
    assert cli(conf, "show", "ewa.zla") == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("quarantine"))
    assert f"agent {agent_id}" in line and "(since " in line and "x;y" not in line
    assert cli(conf, "show", "ewa.zla", "--json") == 0
    assert json.loads(capsys.readouterr().out)["quarantine"]["reason"].startswith(f"agent {agent_id}")
