"""API tokens: `spv_<id>_<secret>`.

The id finds the row with one primary-key lookup; the secret is 32 random bytes, kept
only as sha256 (a slow hash buys nothing for 256 bits of entropy and would make every
request slow). Comparison is constant-time. The full token is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from sipprov import audit
from sipprov.db.sql import tokens as sql
from sipprov.errors import ConflictError, NotFoundError, ValidationError

PREFIX = "spv"
ROLES = ("admin", "readonly")
_TOKEN = re.compile(r"^spv_([1-9][0-9]{0,9})_([A-Za-z0-9_-]{20,128})$")
_MAX_ID = 2**31 - 1  # api_tokens.id is a serial
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# Compared against when the id is unknown, so a miss costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"sipprov-no-such-token").hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def actor(self) -> str:
        """How the audit log names changes made with this token."""
        return f"token:{self.name}"

    @property
    def read_only(self) -> bool:
        return self.role != "admin"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def validate_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValidationError(
            "token name: 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit", field="name")
    return name


async def create_token(conn: asyncpg.Connection | asyncpg.Pool, name: str,
                       role: str, actor: str = "cli") -> tuple[TokenInfo, str]:
    """Store a new token and return it with its full text (the only time it exists);
    audited (name and role, never the secret)."""
    validate_name(name)
    if role not in ROLES:
        raise ValidationError("role must be admin or readonly", field="role")
    secret = secrets.token_urlsafe(32)
    try:
        row = await sql.insert(conn, name, role, hash_secret(secret))
    except asyncpg.UniqueViolationError:
        raise ConflictError(f"a token named {name!r} already exists", field="name") from None
    info = TokenInfo(**dict(row))
    await audit.record(conn, actor, "create", "token", info.id, {"name": name, "role": role})
    return info, f"{PREFIX}_{info.id}_{secret}"


async def verify_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> TokenInfo | None:
    """The token's owner, or None when it is unknown, revoked or wrong."""
    m = _TOKEN.match(token)
    if not m:
        return None
    token_id, secret = int(m.group(1)), m.group(2)
    if token_id > _MAX_ID:
        return None
    row = await sql.by_id(conn, token_id)
    stored = row["token_hash"] if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(stored, hash_secret(secret))
    if row is None or not matches or row["revoked_at"] is not None:
        return None
    await sql.touch(conn, token_id)
    return TokenInfo(id=row["id"], name=row["name"], role=row["role"])


async def revoke_token(conn: asyncpg.Connection | asyncpg.Pool, name: str, actor: str = "cli") -> int:
    """Revoke the live token of that name (audited); NotFoundError if there is none."""
    ids = await sql.revoke(conn, name)
    if not ids:
        raise NotFoundError(f"no active token named {name!r}", field="name")
    for token_id in ids:
        await audit.record(conn, actor, "revoke", "token", token_id, {"name": name})
    return len(ids)


async def list_tokens(conn: asyncpg.Connection | asyncpg.Pool,
                      include_revoked: bool = False) -> list[TokenInfo]:
    return [TokenInfo(**dict(r)) for r in await sql.list_all(conn, include_revoked)]
