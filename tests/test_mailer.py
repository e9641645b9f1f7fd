"""The credentials e-mail against a real local SMTP server (aiosmtpd on 127.0.0.1):
received with the login and SIP details; a failed send is reported and the agent
kept; never sent for the Extension role; passwords never logged."""

from __future__ import annotations

import email
import logging
import socket
from collections.abc import Iterator
from email.message import Message
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from sipprov import mailer
from sipprov.config import Config, SmtpConfig
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def inbox(cfg: Config) -> Iterator[Inbox]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    cfg.smtp = SmtpConfig(host="127.0.0.1", port=port, sender="pbx@example.com", timeout_s=5)
    yield handler
    controller.stop()


def ours(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged on the sending side (aiosmtpd, the test's server, logs DATA)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail."))


def body_of(msg: Message) -> str:
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(msg.get_content_charset() or "utf-8")


async def test_credentials_mail_is_received(admin: aiohttp.ClientSession, inbox: Inbox,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        r = await call(admin, "POST", "/api/v1/agents", json=agent_body(
            first_name="Zoë", send_credentials=True, force_password_change=True))
    assert r.status == 201, r.body
    assert r.body["credentials_email"] == {"sent": True, "error": None}
    assert len(inbox.messages) == 1
    sender, rcpts, msg = inbox.messages[0]
    assert sender == "pbx@example.com" and rcpts == [r.body["email"]]
    assert "Zoë" in msg["To"] or "Zo" in msg["To"]
    text = body_of(msg)
    creds = r.body["credentials"]
    assert r.body["login"] in text
    assert creds["web_password"] in text
    assert "choose a new password" in text
    assert creds["sip"]["username"] in text and creds["sip"]["password"] in text
    assert creds["sip"]["server"] in text
    # Our log says a mail went out, never what was in it.
    logged = ours(caplog)
    assert "credentials e-mail sent" in logged
    assert creds["web_password"] not in logged and creds["sip"]["password"] not in logged


async def test_given_password_is_mailed_too(admin: aiohttp.ClientSession, inbox: Inbox) -> None:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(
        password="the admin chose this", send_credentials=True, is_agent=False))
    assert r.body["credentials_email"]["sent"] is True
    text = body_of(inbox.messages[0][2])
    assert "the admin chose this" in text and "SIP" not in text


async def test_no_mail_unless_asked(admin: aiohttp.ClientSession, inbox: Inbox) -> None:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body())
    assert r.status == 201 and "credentials_email" not in r.body
    assert inbox.messages == []


async def test_never_for_the_extension_role(admin: aiohttp.ClientSession, inbox: Inbox) -> None:
    # Refused before anything is created: the admin learns at once, not after the fact.
    r = await call(admin, "POST", "/api/v1/agents",
                   json=agent_body(role="extension", send_credentials=True))
    assert r.status == 422 and r.body["error"]["field"] == "send_credentials"
    assert (await call(admin, "GET", "/api/v1/agents")).body["items"] == []
    assert inbox.messages == []
    # The mailer itself refuses too, whoever calls it.
    result = await mailer.send_credentials(SmtpConfig(host="127.0.0.1", port=1), mailer.Credentials(
        email="e@example.com", first_name="E", last_name="X", login="e.x", role="extension",
        sip=mailer.SipDetails("101", "secret-sip-pass", "sipprov", "127.0.0.1:5070")))
    assert result.sent is False and "Extension" in (result.error or "")
    assert inbox.messages == []


async def test_failed_send_is_reported_and_agent_kept(admin: aiohttp.ClientSession, cfg: Config,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    cfg.smtp = SmtpConfig(host="127.0.0.1", port=free_port(), timeout_s=2)  # nobody listens
    with caplog.at_level(logging.DEBUG):
        r = await call(admin, "POST", "/api/v1/agents", json=agent_body(send_credentials=True))
    assert r.status == 201, r.body
    mail = r.body["credentials_email"]
    assert mail["sent"] is False and mail["error"]
    assert r.body["credentials"]["sip"]["password"]  # still shown once
    assert (await call(admin, "GET", f"/api/v1/agents/{r.body['id']}")).status == 200
    logged = ours(caplog)
    assert "not sent" in logged
    assert r.body["credentials"]["web_password"] not in logged
    assert r.body["credentials"]["sip"]["password"] not in logged


async def test_smtp_not_configured_is_reported(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(send_credentials=True))
    assert r.status == 201
    assert r.body["credentials_email"] == {
        "sent": False, "error": "e-mail is not configured (smtp.host is empty)"}


async def test_smtp_rejection_is_reported(cfg: Config) -> None:
    class Refusing(Inbox):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                              options: list[str]) -> str:
            return "550 no such user here"

    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = await mailer.send_credentials(
            SmtpConfig(host="127.0.0.1", port=port, timeout_s=5),
            mailer.Credentials(email="a@example.com", first_name="A", last_name="B",
                               login="a.b", role="agent", web_password="pw-123456789"))
    finally:
        controller.stop()
    assert result.sent is False and "550" in (result.error or "")


async def test_unmailable_address_is_reported_not_a_500(admin: aiohttp.ClientSession,
                                                        inbox: Inbox) -> None:
    # An internationalized address is a valid e-mail, but the message cannot be built
    # for it: the agent is committed, so the reply must still carry the credentials.
    r = await call(admin, "POST", "/api/v1/agents", json=agent_body(
        email="jörg@example.com", send_credentials=True))
    assert r.status == 201, r.body
    assert r.body["credentials"]["sip"]["password"]
    mail = r.body["credentials_email"]
    assert mail["sent"] is False and mail["error"]
    assert r.body["credentials"]["web_password"] not in mail["error"]
    assert inbox.messages == []
