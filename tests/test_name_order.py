"""Name order (issue 13 item 3): first_name is always the given name, last_name the family
name; name_order (given_first | family_first, default from the language: vi ->
family_first) decides how the full name is shown, and search finds either order."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest

from sipprov.cli.main import main
from sipprov.config import SmtpConfig
from sipprov.mailer import Credentials, build_message
from tests.api_helpers import call

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"


async def test_name_order_through_the_api(admin: aiohttp.ClientSession) -> None:
    body = {"first_name": "An", "last_name": "Nguyễn Văn", "email": "an@example.com",
            "language": "vi"}
    r = await call(admin, "POST", AGENTS, json=body)
    assert r.status == 201, r.body
    agent_id = r.body["id"]
    assert (r.body["name_order"], r.body["full_name"]) == ("family_first", "Nguyễn Văn An")
    assert r.body["login"] == "an.nguyen-van"  # derivations use given name first
    r = await call(admin, "POST", AGENTS, json={"first_name": "Ewa", "last_name": "Żak",
                                                "email": "ewa@example.com", "language": "pl"})
    assert (r.body["name_order"], r.body["full_name"]) == ("given_first", "Ewa Żak")

    for q in ("Nguyen Van An", "An Nguyen Van", "nguyễn an"):
        r = await call(admin, "GET", AGENTS, params={"q": q})
        assert [a["id"] for a in r.body["items"]] == [agent_id], q

    r = await call(admin, "PATCH", f"{AGENTS}/{agent_id}", json={"name_order": "given_first"})
    assert (r.status, r.body["full_name"]) == (200, "An Nguyễn Văn"), r.body
    r = await call(admin, "PATCH", f"{AGENTS}/{agent_id}", json={"name_order": "surname"})
    assert (r.status, r.body["error"]["field"]) == (422, "name_order")
    # null goes back to the language's order
    r = await call(admin, "PATCH", f"{AGENTS}/{agent_id}", json={"name_order": None})
    assert (r.status, r.body["name_order"], r.body["full_name"]) == (
        200, "family_first", "Nguyễn Văn An"), r.body


def test_name_order_through_the_cli(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(conf)]
    assert main(c + ["agents", "create", "--first-name", "Bích Ngọc", "--last-name", "Trần Thị",
                     "--email", "bn@example.com", "--name-order", "family_first", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    agent = out.get("agent", out)
    assert (agent["name_order"], agent["full_name"]) == ("family_first", "Trần Thị Bích Ngọc")
    with pytest.raises(SystemExit) as refused:
        main(c + ["agents", "create", "--first-name", "X", "--last-name", "Y",
                  "--email", "xy@example.com", "--name-order", "backwards"])
    assert refused.value.code == 2
    assert "--name-order" in capsys.readouterr().err


def test_credentials_mail_addresses_in_the_name_order() -> None:
    smtp = SmtpConfig(host="127.0.0.1", port=25, sender="pbx@example.com", timeout_s=5)
    base = Credentials(email="an@example.com", first_name="An", last_name="Nguyễn Văn",
                       login="an.nguyen-van", role="agent", language="vi")
    assert "Nguyễn Văn An" in str(build_message(smtp, base)["To"])
    given = dataclasses.replace(base, name_order="given_first")
    assert "An Nguyễn Văn" in str(build_message(smtp, given)["To"])
