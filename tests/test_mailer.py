"""The credentials e-mail against a real local SMTP server (aiosmtpd on 127.0.0.1):
received with the login and SIP details; a failed send is reported and the agent
kept; never sent for the Extension role; passwords never logged."""

from __future__ import annotations

import email
import logging
import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
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
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        self.raw.append(envelope.content)
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


def body_of(msg: EmailMessage, kind: str = "plain") -> str:
    """The decoded text/plain (or text/html) part."""
    part = msg.get_body((kind,))
    assert part is not None, f"no text/{kind} part"
    return part.get_content()


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


# What each language's mail must say (the catalogs' translations, checked by a reader).
IN_LANGUAGE = {
    "pl": {
        "name": ("Łukasz", "Żółć-Wąsowicz"),
        "display": "Łukasz Żółć-Wąsowicz",
        "subject": "Twoje konto w centrum kontaktowym",
        "lines": ["Dzień dobry, Łukasz!", "Utworzyliśmy dla Ciebie konto.", "Hasło: ",
                  "Przy pierwszym logowaniu system poprosi Cię o ustawienie nowego hasła.",
                  "Konto SIP (telefon IP / softphone):", "Nazwa użytkownika: ", "Serwer: "],
    },
    "vi": {
        "name": ("Bích Ngọc", "Trần Thị"),  # given name, family name
        "display": "Trần Thị Bích Ngọc",  # written family name first
        "subject": "Tài khoản trung tâm liên lạc của bạn",
        "lines": ["Xin chào Bích Ngọc,", "Tài khoản của bạn đã được tạo.", "Tên đăng nhập: ",
                  "Mật khẩu: ", "Bạn sẽ được yêu cầu đặt mật khẩu mới khi đăng nhập lần đầu.",
                  "Tài khoản SIP (điện thoại IP / softphone):", "Máy chủ: "],
    },
    "en": {
        "name": ("Mary", "O'Brien"),
        "display": "Mary O'Brien",
        "subject": "Your contact-centre account",
        "lines": ["Hello Mary,", "An account has been created for you.", "Login: ",
                  "Password: ", "You will be asked to choose a new password when you first log in.",
                  "IP phone / softphone (SIP) account:", "Username: "],
    },
}


@pytest.mark.parametrize("language", ["pl", "vi", "en"])
async def test_mail_speaks_the_recipients_language(language: str, inbox: Inbox, cfg: Config,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    want = IN_LANGUAGE[language]
    first, last = want["name"]
    creds = mailer.Credentials(
        email="someone@example.com", first_name=first, last_name=last, login="some.one",
        role="agent", web_password="Web-pass-1234567", force_password_change=True,
        sip=mailer.SipDetails("204", "Sip-pass-abcdefgh", "sipprov", "pbx.example.com:5060"),
        language=language)
    with caplog.at_level(logging.DEBUG):
        result = await mailer.send_credentials(cfg.smtp, creds)
    assert result.sent is True, result.error
    _, rcpts, msg = inbox.messages[0]
    assert rcpts == ["someone@example.com"]
    assert msg["Subject"] == want["subject"]
    assert msg["Content-Language"] == language
    to = msg["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == (want["display"], "someone@example.com")
    # On the wire every header is ASCII: RFC 2047 encoded words, not raw UTF-8.
    head = inbox.raw[0].split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    if language != "en":
        assert b"=?utf-8?" in head
    text, html = body_of(msg), body_of(msg, "html")
    for line in want["lines"]:
        assert line in text, line
    assert "Web-pass-1234567" in text and "Sip-pass-abcdefgh" in text and "some.one" in text
    assert f'<html lang="{language}">' in html and want["lines"][0] in html
    assert "Sip-pass-abcdefgh" in html
    logged = ours(caplog)
    assert "credentials e-mail sent" in logged
    assert "Web-pass-1234567" not in logged and "Sip-pass-abcdefgh" not in logged


async def test_html_alternative_escapes_user_data(inbox: Inbox, cfg: Config) -> None:
    creds = mailer.Credentials(email="x@example.com", first_name="<script>", last_name="X",
                               login="x.x", role="agent", web_password="a&b<c>d-123")
    assert (await mailer.send_credentials(cfg.smtp, creds)).sent
    msg = inbox.messages[0][2]
    html = body_of(msg, "html")
    assert "<script>" not in html and "&lt;script&gt;" in html and "a&amp;b&lt;c&gt;d-123" in html
    assert "Hello <script>," in body_of(msg)  # plain text is not HTML


async def test_unknown_language_is_not_sent(inbox: Inbox, cfg: Config) -> None:
    creds = mailer.Credentials(email="x@example.com", first_name="A", last_name="B",
                               login="a.b", role="agent", web_password="pw-123456789",
                               language="de")
    result = await mailer.send_credentials(cfg.smtp, creds)
    assert result.sent is False and result.error and "pw-123456789" not in result.error
    assert inbox.messages == []


@pytest.mark.parametrize("language", ["pl", "vi", "en"])
async def test_created_user_is_mailed_in_their_language(
        admin: aiohttp.ClientSession, inbox: Inbox, language: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Through the API: the user's `language` picks the mail's language."""
    want = IN_LANGUAGE[language]
    first, last = want["name"]
    with caplog.at_level(logging.DEBUG):
        r = await call(admin, "POST", "/api/v1/agents", json=agent_body(
            first_name=first, last_name=last, language=language, send_credentials=True,
            force_password_change=True))
    assert r.status == 201, r.body
    assert r.body["language"] == language and r.body["credentials_email"]["sent"] is True
    msg = inbox.messages[0][2]
    assert msg["Subject"] == want["subject"]
    assert msg["To"].addresses[0].display_name == want["display"]
    text = body_of(msg)
    for line in want["lines"]:
        assert line in text, line
    creds = r.body["credentials"]
    assert creds["web_password"] in text and creds["sip"]["password"] in text
    logged = ours(caplog)
    assert creds["web_password"] not in logged and creds["sip"]["password"] not in logged


@pytest.mark.parametrize("language, changed_line", [
    ("vi", "Thông tin đăng nhập của bạn đã được thay đổi. Thông tin mới ở bên dưới."),
    ("pl", "Twoje dane logowania zostały zmienione. Nowe znajdziesz poniżej."),
])
async def test_resent_mail_is_in_the_users_language(admin: aiohttp.ClientSession, inbox: Inbox,
                                                    language: str, changed_line: str) -> None:
    """A SIP rotation's re-sent mail: the user's language, and it says what happened."""
    want = IN_LANGUAGE[language]
    first, last = want["name"]
    a = (await call(admin, "POST", "/api/v1/agents", json=agent_body(
        first_name=first, last_name=last, language=language))).body
    r = await call(admin, "POST", f"/api/v1/agents/{a['id']}/sip-password",
                   json={"send_credentials": True})
    assert r.status == 200 and r.body["credentials_email"]["sent"] is True, r.body
    msg = inbox.messages[0][2]
    assert msg["Subject"] == want["subject"]
    assert msg["To"].addresses[0].display_name == want["display"]
    text = body_of(msg)
    assert changed_line in text and want["lines"][1] not in text  # not "account created"
    assert r.body["sip"]["password"] in text and changed_line in body_of(msg, "html")
