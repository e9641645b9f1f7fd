"""The credentials e-mail again after a password reset or a SIP rotation (issue 13
item 11), with the secret of that moment - the one generated or given in that call,
never anything read back from storage - against a real local SMTP server."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from sipprov.cli.main import main
from sipprov.config import Config
from tests.api_helpers import agent_body, call
from tests.cli_helpers import toml_config
from tests.test_mailer import Inbox, body_of, inbox  # noqa: F401 - the fixture

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"


async def test_resend_after_reset_and_rotation(admin: aiohttp.ClientSession, inbox: Inbox) -> None:  # noqa: F811
    a = (await call(admin, "POST", AGENTS, json=agent_body(1))).body
    url = f"{AGENTS}/{a['id']}"
    first_web = a["credentials"]["web_password"]

    r = await call(admin, "POST", url + "/password", json={"send_credentials": True})
    assert r.status == 200, r.body
    assert r.body["credentials_email"] == {"sent": True, "error": None}
    new_web = r.body["web_password"]
    [(_, rcpts, msg)] = inbox.messages
    text = body_of(msg)
    assert rcpts == [a["email"]] and new_web in text and first_web not in text
    assert "Username:" not in text  # only what changed: no SIP section

    r = await call(admin, "POST", url + "/sip-password", json={"send_credentials": True})
    assert r.status == 200, r.body
    assert r.body["credentials_email"]["sent"] is True
    text = body_of(inbox.messages[1][2])
    assert r.body["sip"]["password"] in text and a["credentials"]["sip"]["password"] not in text
    assert new_web not in text  # the web password is not known any more, so not sent

    # A given password is mailed as given.
    r = await call(admin, "POST", url + "/password",
                   json={"password": "Horse-Battery-Staple-9", "send_credentials": True})
    assert r.status == 200 and "web_password" not in r.body
    assert "Horse-Battery-Staple-9" in body_of(inbox.messages[2][2])


async def test_resend_refused_for_extension_role(admin: aiohttp.ClientSession, inbox: Inbox) -> None:  # noqa: F811
    a = (await call(admin, "POST", AGENTS, json=agent_body(1, role="extension"))).body
    url = f"{AGENTS}/{a['id']}/sip-password"
    r = await call(admin, "POST", url, json={"send_credentials": True})
    assert r.status == 422 and r.body["error"]["field"] == "send_credentials"
    assert inbox.messages == []
    # Nothing changed: the audit log has no rotation.
    log = (await call(admin, "GET", "/api/v1/audit", params={"agent": str(a["id"])})).body
    assert [e["action"] for e in log["items"]] == ["create"]


async def test_failed_send_keeps_the_change(admin: aiohttp.ClientSession, cfg: Config) -> None:
    cfg.smtp.port = 1  # nothing listens
    a = (await call(admin, "POST", AGENTS, json=agent_body(1))).body
    r = await call(admin, "POST", f"{AGENTS}/{a['id']}/password", json={"send_credentials": True})
    assert r.status == 200 and r.body["credentials_email"]["sent"] is False
    assert r.body["web_password"]  # still shown once: the reset happened


@pytest.fixture
def conf(db_dsn: str, tmp_path: Path, inbox: Inbox, cfg: Config) -> Path:  # noqa: F811
    path = tmp_path / "sipprov.toml"
    path.write_text(toml_config(db_dsn, tmp_path)
                    + f'[smtp]\nhost = "127.0.0.1"\nport = {cfg.smtp.port}\nsender = "pbx@example.com"\n')
    return path


def test_cli_resend(conf: Path, inbox: Inbox, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    base = ["-c", str(conf), "agents"]
    assert main(base + ["create", "--first-name", "Ewa", "--last-name", "Żak",
                        "--email", "ewa@example.com"]) == 0
    capsys.readouterr()
    assert main(base + ["sip-password", "ewa.zak", "--send-credentials"]) == 0
    out = capsys.readouterr().out
    assert "credentials e-mailed" in out
    sip_password = next(line.split()[-1] for line in out.splitlines() if line.startswith("SIP password:"))
    assert sip_password in body_of(inbox.messages[-1][2])
    assert main(base + ["password", "ewa.zak", "--send-credentials", "--json"]) == 0
    assert '"sent": true' in capsys.readouterr().out
