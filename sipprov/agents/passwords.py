"""Web and SIP passwords: generation, policy, hashing, digests.

Web passwords are stored only as passlib hashes. argon2id is the default with OWASP's
minimum parameters (19 MiB, 2 passes, 1 lane: about 30 ms here), chosen so that bulk
creation of thousands of users stays feasible; pbkdf2_sha256 (600,000 rounds, OWASP) is
the alternative. Both schemes are always verifiable, so `security.web_hash_scheme` can
change without locking anybody out. Hashing runs in a worker thread so the event loop
keeps serving while a hash is computed.

SIP passwords are never stored: only md5/sha256 of `username:realm:password`, which is
what Asterisk 22 accepts as `password_digest` (DESIGN.md). The SIP username is the
agent's extension, so the digests must be recomputed (and the password rotated) when
the extension changes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import secrets
from dataclasses import dataclass

from passlib.context import CryptContext

from sipprov.agents.validation import Refused, is_control
from sipprov.errors import N_

HASH_SCHEMES = ("argon2", "pbkdf2_sha256")
ARGON2_MEMORY_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
PBKDF2_ROUNDS = 600_000

WEB_PASSWORD_MAX = 256
# Lower-case and digits minus 0/o and 1/l: easy to read out and type on a phone.
WEB_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"
WEB_GROUPS = 4
WEB_GROUP_LEN = 5
WEB_PASSWORD_ENTROPY_BITS = WEB_GROUPS * WEB_GROUP_LEN * math.log2(len(WEB_ALPHABET))  # 100

# Letters and digits every desk phone's keypad/UI accepts, minus 0/O/o and 1/l/I.
SIP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
SIP_PASSWORD_LENGTH = 24
SIP_PASSWORD_ENTROPY_BITS = SIP_PASSWORD_LENGTH * math.log2(len(SIP_ALPHABET))  # ~139.3
SIP_PASSWORD_MAX = 128
# Refused in given SIP passwords: break phone UIs, provisioning files or config quoting.
SIP_FORBIDDEN = frozenset(" \"'\\;#[]")

assert SIP_PASSWORD_ENTROPY_BITS >= 128
assert WEB_PASSWORD_ENTROPY_BITS >= 96


def random_text(alphabet: str, length: int) -> str:
    """`length` characters, each drawn uniformly and independently from `alphabet`
    (at most 256 distinct characters), so the result has length * log2(len(alphabet))
    bits of entropy.

    The bytes come from the OS CSPRNG in one call (`secrets.token_bytes`), not one call
    per character. Rejection sampling keeps every character equally likely: a byte is
    used only below the largest multiple of len(alphabet) that fits in a byte (all of
    them for 32 letters; 224 of 256 for 56), and `byte % len(alphabet)` is then
    uniform. Twice the bytes needed are drawn when some are rejected, so a second
    draw is practically never needed (but handled).
    """
    size = len(alphabet)
    if not 2 <= size <= 256 or len(set(alphabet)) != size:
        raise ValueError("alphabet: 2 to 256 distinct characters")
    limit = 256 - 256 % size
    out = ""
    while len(out) < length:
        missing = length - len(out)
        draw = secrets.token_bytes(missing if limit == 256 else 2 * missing)
        out += "".join(alphabet[b % size] for b in draw if b < limit)
    return out[:length]


@functools.cache
def crypt_context(scheme: str = "argon2") -> CryptContext:
    """A context hashing with `scheme` and verifying both schemes."""
    if scheme not in HASH_SCHEMES:
        raise ValueError(f"unknown hash scheme {scheme!r}")
    return CryptContext(
        schemes=list(HASH_SCHEMES),
        default=scheme,
        argon2__type="ID",
        argon2__memory_cost=ARGON2_MEMORY_KIB,
        argon2__time_cost=ARGON2_TIME_COST,
        argon2__parallelism=ARGON2_PARALLELISM,
        pbkdf2_sha256__rounds=PBKDF2_ROUNDS,
    )


# --- web passwords -------------------------------------------------------------------


def generate_web_password() -> str:
    """`k7mq2-x9rtp-4hzna-c3wve`: 100 bits, readable, mixes letters, digits and hyphens."""
    text = random_text(WEB_ALPHABET, WEB_GROUPS * WEB_GROUP_LEN)
    return "-".join(text[i : i + WEB_GROUP_LEN] for i in range(0, len(text), WEB_GROUP_LEN))


def _char_classes(password: str) -> int:
    classes = set()
    for ch in password:
        if ch.islower():
            classes.add("lower")
        elif ch.isupper():
            classes.add("upper")
        elif ch.isdigit():
            classes.add("digit")
        else:
            classes.add("other")
    return len(classes)


def check_web_password(
    password: object,
    *,
    min_length: int,
    login: str | None = None,
    email: str | None = None,
    field: str = "password",
) -> str:
    """Minimum policy for a given web password; messages never contain the password."""
    if not isinstance(password, str):
        raise Refused(field, N_("must be a string"))
    if any(is_control(ch) for ch in password):
        raise Refused(field, N_("must not contain control characters"))
    if len(password) < min_length:
        raise Refused(field, N_("must be at least %(min)s characters"), min=min_length)
    if len(password) > WEB_PASSWORD_MAX:
        raise Refused(field, N_("must be at most %(max)s characters"), max=WEB_PASSWORD_MAX)
    lowered = password.lower()
    for other in (login, email, email.split("@")[0] if email else None):
        if other and lowered == other.lower():
            raise Refused(field, N_("must not be the login or the e-mail address"))
    if _char_classes(password) < 2:
        raise Refused(
            field, N_("must mix at least two kinds of characters (lower-case, upper-case, digits, symbols)")
        )
    return password


def hash_web_password_sync(password: str, scheme: str = "argon2") -> str:
    return crypt_context(scheme).hash(password)


async def hash_web_password(password: str, scheme: str = "argon2") -> str:
    """Hash in a worker thread: argon2 takes ~30 ms of CPU and must not block the loop."""
    return await asyncio.to_thread(hash_web_password_sync, password, scheme)


def verify_web_password_sync(password: str, password_hash: str | None) -> bool:
    """Verify against the stored hash; None (no such user, no web password) verifies
    against a dummy hash and fails, so unknown logins take as long as known ones."""
    if password_hash is None:
        crypt_context().verify(password, dummy_hash())
        return False
    try:
        return crypt_context().verify(password, password_hash)
    except (ValueError, TypeError):
        # Unknown or damaged hash: a failed login, not a crash.
        return False


async def verify_web_password(password: str, password_hash: str | None) -> bool:
    return await asyncio.to_thread(verify_web_password_sync, password, password_hash)


@functools.lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash no password matches in practice (its password is thrown away)."""
    return hash_web_password_sync(secrets.token_urlsafe(16), "argon2")


# --- SIP passwords -------------------------------------------------------------------


def generate_sip_password() -> str:
    """24 characters of a 56-letter alphabet: ~139 bits, accepted by every desk phone."""
    return random_text(SIP_ALPHABET, SIP_PASSWORD_LENGTH)


def check_sip_password(
    password: object,
    *,
    min_length: int,
    username: str | None = None,
    login: str | None = None,
    field: str = "sip_password",
) -> str:
    """Policy for a given SIP password; messages never contain the password."""
    if not isinstance(password, str):
        raise Refused(field, N_("must be a string"))
    for ch in password:
        if not ("!" <= ch <= "~") or ch in SIP_FORBIDDEN:
            raise Refused(
                field,
                N_("may only contain printable ASCII without spaces, quotes, backslash,"
                   " ';', '#', '[' or ']'"),
            )
    if len(password) < min_length:
        raise Refused(field, N_("must be at least %(min)s characters"), min=min_length)
    if len(password) > SIP_PASSWORD_MAX:
        raise Refused(field, N_("must be at most %(max)s characters"), max=SIP_PASSWORD_MAX)
    lowered = password.lower()
    for other in (username, login):
        if other and lowered == other.lower():
            raise Refused(field, N_("must not be the SIP username, extension or login"))
    return password


@dataclass(frozen=True)
class SipDigests:
    """What is stored instead of a SIP password (Asterisk `password_digest`)."""

    realm: str
    md5: str
    sha256: str


def sip_digests(username: str, realm: str, password: str) -> SipDigests:
    material = f"{username}:{realm}:{password}".encode()
    return SipDigests(
        realm=realm,
        md5=hashlib.md5(material).hexdigest(),
        sha256=hashlib.sha256(material).hexdigest(),
    )
