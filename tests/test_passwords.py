"""Web and SIP passwords: generation, policy, hashing and digests."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time

import pytest

from sipprov.agents import passwords
from sipprov.errors import ValidationError

AMBIGUOUS = set("0Oo1lI")


# --- web passwords -------------------------------------------------------------------


def test_generated_web_passwords_are_strong_and_readable() -> None:
    seen = set()
    for _ in range(2000):
        pw = passwords.generate_web_password()
        groups = pw.split("-")
        assert len(groups) == 4 and all(len(g) == 5 for g in groups)
        assert set(pw.replace("-", "")) <= set(passwords.WEB_ALPHABET)
        assert not set(pw) & AMBIGUOUS
        passwords.check_web_password(pw, min_length=16, login="jan.kowalski", email="jan@example.com")
        seen.add(pw)
    assert len(seen) == 2000
    assert passwords.WEB_PASSWORD_ENTROPY_BITS == pytest.approx(20 * math.log2(32))
    assert passwords.WEB_PASSWORD_ENTROPY_BITS >= 96


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Short1!", "at least 10"),
        ("jan.kowalski", "login or the e-mail"),
        ("JAN.KOWALSKI", "login or the e-mail"),
        ("jan@example.com", "login or the e-mail"),
        ("abcdefghijkl", "two kinds"),
        ("ABCDEFGHIJKL", "two kinds"),
        ("123456789012", "two kinds"),
        ("correct horse\nbattery", "control characters"),
        ("x" * 300 + "1", "at most 256"),
    ],
)
def test_given_web_password_policy(password: str, reason: str) -> None:
    with pytest.raises(ValidationError) as exc:
        passwords.check_web_password(
            password, min_length=10, login="jan.kowalski", email="jan@example.com", field="new_password"
        )
    assert exc.value.field == "new_password"
    assert reason in exc.value.message
    assert password not in exc.value.message


def test_given_web_password_accepted() -> None:
    assert passwords.check_web_password("horse battery 42", min_length=10, login="jan", email="j@example.com")


async def test_argon2_hash_parameters_and_verify() -> None:
    t0 = time.perf_counter()
    h = await passwords.hash_web_password("Correct-Horse-42", "argon2")
    elapsed = time.perf_counter() - t0
    print(f"argon2id hash: {elapsed * 1000:.1f} ms")
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await passwords.verify_web_password("Correct-Horse-42", h)
    assert not await passwords.verify_web_password("correct-horse-42", h)
    assert elapsed < 2.0


async def test_pbkdf2_alternative_and_both_verifiable() -> None:
    p = await passwords.hash_web_password("Correct-Horse-42", "pbkdf2_sha256")
    assert p.startswith("$pbkdf2-sha256$600000$")
    a = await passwords.hash_web_password("Correct-Horse-42", "argon2")
    # Whichever scheme is configured now, hashes of the other one still verify.
    for scheme in passwords.HASH_SCHEMES:
        ctx = passwords.crypt_context(scheme)
        assert ctx.verify("Correct-Horse-42", p) and ctx.verify("Correct-Horse-42", a)
    assert await passwords.verify_web_password("Correct-Horse-42", p)


async def test_verify_never_crashes() -> None:
    assert not await passwords.verify_web_password("x", "not-a-hash")
    assert not await passwords.verify_web_password("x", "")
    # No stored hash: a dummy is verified (same cost), and it fails.
    t0 = time.perf_counter()
    assert not await passwords.verify_web_password("x", None)
    assert time.perf_counter() - t0 > 0.005


async def test_hashing_does_not_block_the_event_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        for _ in range(3):
            await passwords.hash_web_password("Correct-Horse-42", "argon2")
    finally:
        task.cancel()
    assert ticks >= 10  # the loop kept running during ~90 ms of hashing


def test_unknown_scheme_refused() -> None:
    with pytest.raises(ValueError):
        passwords.crypt_context("md5_crypt")


# --- SIP passwords -------------------------------------------------------------------


def test_generated_sip_passwords() -> None:
    assert len(passwords.SIP_ALPHABET) == 56
    assert not set(passwords.SIP_ALPHABET) & AMBIGUOUS
    assert passwords.SIP_ALPHABET.isalnum() and passwords.SIP_ALPHABET.isascii()
    bits = passwords.SIP_PASSWORD_LENGTH * math.log2(len(passwords.SIP_ALPHABET))
    assert bits == pytest.approx(passwords.SIP_PASSWORD_ENTROPY_BITS)
    assert bits >= 128  # 24 * log2(56) = 139.3
    seen = set()
    for _ in range(2000):
        pw = passwords.generate_sip_password()
        assert len(pw) == 24 and set(pw) <= set(passwords.SIP_ALPHABET)
        passwords.check_sip_password(pw, min_length=12, username="101", login="jan.kowalski")
        seen.add(pw)
    assert len(seen) == 2000


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1A", "at least 12"),
        ("100000000001", None),  # fine: only equal to the username is refused
        ("jan.kowalski", "username, extension or login"),
        ("JAN.KOWALSKI", "username, extension or login"),
        ("with space 1234", "printable ASCII"),
        ('quote"quote"12', "printable ASCII"),
        ("quote'quote'12", "printable ASCII"),
        ("semi;colon1234", "printable ASCII"),
        ("hash#hash12345", "printable ASCII"),
        ("brack[et]12345", "printable ASCII"),
        ("back\\slash1234", "printable ASCII"),
        ("zażółćgęśląjaźń", "printable ASCII"),
        ("line\nbreak12345", "printable ASCII"),
        ("x" * 129, "at most 128"),
    ],
)
def test_given_sip_password_policy(password: str, reason: str | None) -> None:
    if reason is None:
        assert passwords.check_sip_password(password, min_length=12, username="101", login="jan.kowalski")
        return
    with pytest.raises(ValidationError) as exc:
        passwords.check_sip_password(password, min_length=12, username="101", login="jan.kowalski")
    assert exc.value.field == "sip_password"
    assert reason in exc.value.message
    assert password not in exc.value.message


def test_sip_password_equal_to_the_extension_refused() -> None:
    with pytest.raises(ValidationError):
        passwords.check_sip_password("100000000001", min_length=12, username="100000000001")


def test_sip_digests() -> None:
    d = passwords.sip_digests("101", "sipprov", "Secret-Pass-123")
    assert d.md5 == hashlib.md5(b"101:sipprov:Secret-Pass-123").hexdigest()
    assert d.sha256 == hashlib.sha256(b"101:sipprov:Secret-Pass-123").hexdigest()
    assert d.realm == "sipprov"
    # RFC 2617, section 3.5: HA1 of Mufasa / testrealm@host.com / Circle Of Life.
    rfc = passwords.sip_digests("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert rfc.md5 == "939e7578ed9e3c518a452acee763bce9"
