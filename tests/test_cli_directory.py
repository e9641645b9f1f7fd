"""The CLI covers the whole model (issue 13 item 9): queues and members, departments,
roles, account types, avatars, tokens - each with --json; quiet by default (no log
lines or warnings on stderr without -v); errors name the CLI's options; the next-page
cursor printed with the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sipprov.cli.main import main

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def run_json(conf: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(["-c", str(conf), *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_queues_and_members(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(conf)]
    q = run_json(conf, capsys, "queues", "create", "ho-tro-pl", "--number", "1500", "--strategy", "rrmemory")
    assert (q["name"], q["number"], q["strategy"]) == ("ho-tro-pl", 1500, "rrmemory")  # type: ignore[index]
    assert main(c + ["queues", "create", "bad", "--number", "0123"]) == 2
    assert "--number: must not start with 0" in capsys.readouterr().err
    assert main(c + ["agents", "create", "--first-name", "Ewa", "--last-name", "Żak",
                     "--email", "ewa@example.com"]) == 0
    capsys.readouterr()
    m = run_json(conf, capsys, "queues", "add-member", "ho-tro-pl", "ewa.zak", "--penalty", "3")
    assert (m["login"], m["penalty"]) == ("ewa.zak", 3)  # type: ignore[index]
    shown = run_json(conf, capsys, "queues", "show", "ho-tro-pl")
    assert [x["login"] for x in shown["members"]] == ["ewa.zak"]  # type: ignore[index]
    listed = run_json(conf, capsys, "queues", "list")
    assert [x["member_count"] for x in listed["items"]] == [1]  # type: ignore[index]
    renamed = run_json(conf, capsys, "queues", "set", "ho-tro-pl", "--name", "ho-tro", "--no-number")
    assert (renamed["name"], renamed["number"]) == ("ho-tro", None)  # type: ignore[index]

    assert main(c + ["queues", "delete", "ho-tro"]) == 2
    err = capsys.readouterr().err
    assert "1 members (ewa.zak)" in err and "--force" in err
    assert main(c + ["queues", "remove-member", "ho-tro", "ewa.zak"]) == 0
    assert main(c + ["queues", "delete", "ho-tro"]) == 0
    assert "deleted queue ho-tro" in capsys.readouterr().out


def test_departments_roles_account_types(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(conf)]
    assert run_json(conf, capsys, "departments", "create", "Obsługa")["name"] == "Obsługa"  # type: ignore[index]
    assert main(c + ["agents", "create", "--first-name", "Jan", "--last-name", "Nowak",
                     "--email", "jn@example.com", "--department", "Obsługa"]) == 0
    capsys.readouterr()
    assert run_json(conf, capsys, "departments", "rename", "Obsługa", "Sprzedaż")["user_count"] == 1  # type: ignore[index]
    assert main(c + ["departments", "delete", "Sprzedaż"]) == 2
    assert "jan.nowak" in capsys.readouterr().err
    assert main(c + ["departments", "delete", "Sprzedaż", "--force"]) == 0
    assert "deleted department Sprzedaż" in capsys.readouterr().out
    assert run_json(conf, capsys, "departments", "list") == {"items": []}

    role = run_json(conf, capsys, "roles", "create", "night-shift", "--sip-allowed", "--label", "Nights")
    assert (role["name"], role["sip_allowed"], role["label"]) == ("night-shift", True, "Nights")  # type: ignore[index]
    role = run_json(conf, capsys, "roles", "set", "night-shift", "--no-web-login")
    assert role["web_login"] is False  # type: ignore[index]
    assert "night-shift" in [r["name"] for r in run_json(conf, capsys, "roles", "list")["items"]]  # type: ignore[index]
    assert main(c + ["roles", "delete", "agent"]) == 2
    capsys.readouterr()
    assert main(c + ["roles", "delete", "night-shift"]) == 0
    capsys.readouterr()

    t = run_json(conf, capsys, "account-types", "create", "premium", "--max-users", "5")
    assert (t["name"], t["max_users"]) == ("premium", 5)  # type: ignore[index]
    t = run_json(conf, capsys, "account-types", "set", "premium", "--no-limit")
    assert t["max_users"] is None  # type: ignore[index]
    assert main(c + ["account-types", "create", "bad", "--max-users", "-1"]) == 2
    assert "--max-users" in capsys.readouterr().err


def test_avatars_and_tokens(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(conf)]
    assert main(c + ["agents", "create", "--first-name", "Ewa", "--last-name", "Żak",
                     "--email", "ewa@example.com"]) == 0
    capsys.readouterr()
    (tmp_path / "me.png").write_bytes(PNG)
    assert run_json(conf, capsys, "agents", "avatar", "ewa.zak", "--set",
                    str(tmp_path / "me.png"))["bytes"] == len(PNG)  # type: ignore[index]
    run_json(conf, capsys, "agents", "avatar", "ewa.zak", "--save", str(tmp_path / "out.png"))
    assert (tmp_path / "out.png").read_bytes() == PNG
    (tmp_path / "bad.png").write_bytes(b"<svg/>")
    assert main(c + ["agents", "avatar", "ewa.zak", "--set", str(tmp_path / "bad.png")]) == 2
    capsys.readouterr()
    run_json(conf, capsys, "agents", "avatar", "ewa.zak", "--remove")
    assert main(c + ["agents", "avatar", "ewa.zak", "--save", str(tmp_path / "x.png")]) == 2
    capsys.readouterr()

    made = run_json(conf, capsys, "token", "create", "--name", "ops", "--role", "readonly")
    assert made["token"].startswith("spv_") and made["role"] == "readonly"  # type: ignore[index]
    listed = run_json(conf, capsys, "token", "list")
    assert [t["name"] for t in listed["items"]] == ["ops"]  # type: ignore[index]
    assert made["token"] not in json.dumps(listed)  # type: ignore[index]


def test_list_prints_the_next_page_cursor(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(conf), "agents"]
    for n in range(3):
        assert main(c + ["create", "--first-name", "Jan", "--last-name", f"Nowak{'abc'[n]}",
                         "--email", f"j{n}@example.com", "--role", "end-user"]) == 0
    capsys.readouterr()
    assert main(c + ["list", "--limit", "2"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("next page: --cursor ")
    assert main(c + ["list", "--limit", "2", "--cursor", last.split()[-1]]) == 0
    out = capsys.readouterr().out
    assert "Nowakc" in out and "next page" not in out


def test_quiet_by_default(conf: Path) -> None:
    def sub(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sipprov.cli.main", "-c", str(conf), *argv],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "SIPPROV_CONFIG": ""})

    r = sub("agents", "create", "--first-name", "Ewa", "--last-name", "Żak", "--email", "e@example.com")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = sub("queues", "list")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = sub("-v", "agents", "show", "ewa.zak")
    assert r.returncode == 0 and "DEBUG" in r.stderr, r.stderr  # -v shows the logs
