"""Softphone provisioning by QR code: a one-time link a softphone fetches its account
from (Linphone's "remote provisioning": its assistant scans a QR code holding the URL
of an XML configuration).

Which softphones read it: Linphone (Android, iOS, desktop) - the assistant's "Fetch
remote configuration" / QR code scan takes the URL and applies the XML. Other
softphones (Zoiper, Groundwire/Acrobits, MicroSIP, Bria) use their vendors' own hosted
provisioning formats and do not read this URL; their users type the username,
password and server shown next to the QR code (docs/console.md).

The XML carries the MD5 HA1 and realm (Linphone's auth_info `ha1`), never the password
itself: sipprov keeps no plaintext. The link works once, for LINK_LIFETIME_S, and a
newer link (a new rotation) replaces older ones.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from xml.sax.saxutils import escape

import asyncpg

from sipprov.config import Config
from sipprov.db.sql import web_sessions as sql

LINK_LIFETIME_S = 15 * 60
PATH_PREFIX = "/provisioning/"


@dataclass(frozen=True)
class Account:
    username: str
    ha1_md5: str
    realm: str
    display_name: str


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


async def issue_link(pool: asyncpg.Pool, user_id: int) -> str:
    """A new one-time token for this user's SIP account (the path is PATH_PREFIX + token)."""
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn:
        await sql.provisioning_issue(conn, _hash(token), user_id, LINK_LIFETIME_S)
    return token


async def take_link(pool: asyncpg.Pool, token: str) -> Account | None:
    """The account behind a live token, using the token up; None if unknown/used/expired."""
    if not token or len(token) > 100:
        return None
    row = await sql.provisioning_take(pool, _hash(token))
    if row is None:
        return None
    return Account(username=str(row["extension"]), ha1_md5=row["sip_ha1_md5"],
                   realm=row["sip_realm"], display_name=row["caller_id_name"])


def linphone_xml(cfg: Config, account: Account) -> str:
    """Linphone's remote provisioning XML for one account (every value escaped)."""
    server = cfg.asterisk.sip_server
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server

    def entry(name: str, value: str) -> str:
        return f'    <entry name="{name}" overwrite="true">{escape(value)}</entry>\n'

    identity = f'"{account.display_name}" <sip:{account.username}@{host}>'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<config xmlns="http://www.linphone.org/xsds/lpconfig.xsd">\n'
        '  <section name="proxy_0">\n'
        + entry("reg_proxy", f"<sip:{server};transport=udp>")
        + entry("reg_identity", identity)
        + entry("realm", account.realm)
        + entry("reg_expires", "3600")
        + entry("reg_sendregister", "1")
        + '  </section>\n'
        '  <section name="auth_info_0">\n'
        + entry("username", account.username)
        + entry("ha1", account.ha1_md5)
        + entry("realm", account.realm)
        + entry("domain", host)
        + entry("algorithm", "MD5")
        + '  </section>\n'
        '</config>\n'
    )
