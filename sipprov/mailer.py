"""The credentials e-mail: a new user's login details, sent after the create committed.

The design lets credentials be e-mailed, so the mail carries the passwords; that is
why it is only sent when asked for, never for the Extension role (a device, not a
person), and why neither the body nor the passwords are ever logged. A failed send
never undoes the create: the caller reports it and the admin can rotate and resend.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import aiosmtplib

from .config import SmtpConfig

log = logging.getLogger(__name__)

NO_MAIL_ROLES = frozenset({"extension"})


@dataclass(frozen=True)
class SipDetails:
    username: str
    password: str
    realm: str
    server: str


@dataclass(frozen=True)
class Credentials:
    """What the mail tells one user; passwords are None when unknown to the server."""

    email: str
    first_name: str
    last_name: str
    login: str
    role: str
    web_password: str | None = None
    force_password_change: bool = False
    sip: SipDetails | None = None


@dataclass(frozen=True)
class MailResult:
    sent: bool
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"sent": self.sent, "error": self.error}


def may_mail(role: str) -> bool:
    return role.lower() not in NO_MAIL_ROLES


def build_message(smtp: SmtpConfig, creds: Credentials) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = formataddr((f"{creds.first_name} {creds.last_name}", creds.email))
    msg["Subject"] = "Your contact-centre account"
    msg["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2] or "localhost")
    lines = [
        f"Hello {creds.first_name},",
        "",
        "an account has been created for you.",
        "",
        f"Login: {creds.login}",
    ]
    if creds.web_password:
        lines.append(f"Password: {creds.web_password}")
        if creds.force_password_change:
            lines.append("You will be asked to choose a new password when you first log in.")
    if creds.sip is not None:
        lines += [
            "",
            "IP phone / softphone (SIP) account:",
            f"  Username: {creds.sip.username}",
            f"  Password: {creds.sip.password}",
            f"  Server:   {creds.sip.server}",
            f"  Realm:    {creds.sip.realm}",
        ]
    lines += ["", "Keep this message private, or delete it once you have logged in."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


async def send_credentials(smtp: SmtpConfig, creds: Credentials) -> MailResult:
    """Send the credentials mail; never raises for a delivery problem."""
    if not may_mail(creds.role):
        return MailResult(False, "credentials are never e-mailed for the Extension role")
    if not smtp.host:
        return MailResult(False, "e-mail is not configured (smtp.host is empty)")
    message = build_message(smtp, creds)
    try:
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username or None,
            password=smtp.password or None,
            start_tls=smtp.starttls,
            timeout=smtp.timeout_s,
        )
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
        # aiosmtplib's messages are the server's reply or the socket error: no body.
        error = f"{type(exc).__name__}: {str(exc)[:300]}".rstrip(": ")
        log.warning("credentials e-mail for login %s not sent: %s", creds.login, error)
        return MailResult(False, error)
    log.info("credentials e-mail sent for login %s", creds.login)
    return MailResult(True)
