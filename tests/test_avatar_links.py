"""Avatars from a browser form (multipart/form-data) and an avatar URL a web page can
show without a bearer token: a signed, expiring link (issue 13 item 10)."""

from __future__ import annotations

import aiohttp
import pytest

from sipprov.access.urlsign import UrlSigner
from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]

AGENTS = "/api/v1/agents"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64


def form(data: bytes, ctype: str, name: str = "avatar") -> aiohttp.FormData:
    f = aiohttp.FormData()
    f.add_field("note", "a text field before the file")
    f.add_field(name, data, filename="me.png", content_type=ctype)
    return f


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_browser_form_upload(admin: aiohttp.ClientSession, method: str) -> None:
    a = (await call(admin, "POST", AGENTS, json=agent_body(1))).body
    url = f"{AGENTS}/{a['id']}/avatar"
    r = await call(admin, method, url, data=form(PNG, "image/png"))
    assert r.status == 204, r.body
    got = await call(admin, "GET", url)
    assert got.status == 200 and got.raw == PNG and got.headers["Content-Type"] == "image/png"
    # The bytes still decide.
    r = await call(admin, method, url, data=form(b"<svg onload=alert(1)>", "image/png"))
    assert r.status == 415
    r = await call(admin, method, url, data=form(JPEG, "image/png"))
    assert r.status == 415
    # A form without a file part.
    f = aiohttp.FormData()
    f.add_field("note", "no file")
    r = await call(admin, method, url, data=f)
    assert r.status == 415 and "avatar" in r.body["error"]["message"]
    # Over 8 MB in a form.
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (8 * 1024 * 1024)
    r = await call(admin, method, url, data=form(big, "image/png"))
    assert r.status == 413
    assert (await call(admin, "GET", url)).raw == PNG  # refused uploads changed nothing


async def test_signed_avatar_url_works_without_a_token(admin: aiohttp.ClientSession,
                                                       anon: aiohttp.ClientSession) -> None:
    a = (await call(admin, "POST", AGENTS, json=agent_body(1))).body
    assert (await call(admin, "POST", f"{AGENTS}/{a['id']}/avatar",
                       data=form(PNG, "image/png"))).status == 204
    link = (await call(admin, "GET", f"{AGENTS}/{a['id']}")).body["avatar_url"]
    assert link.startswith(f"/api/v1/avatars/{a['id']}?expires=")
    got = await call(anon, "GET", link)
    assert got.status == 200 and got.raw == PNG
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    # The same link in the list.
    listed = (await call(admin, "GET", AGENTS)).body["items"][0]["avatar_url"]
    assert listed == link

    path, _, query = link.partition("?")
    tampered = link[:-1] + ("0" if link[-1] != "0" else "1")
    for bad in (tampered, path, f"/api/v1/avatars/{a['id'] + 1}?{query}",
                link.replace("expires=", "expires=1")):
        r = await call(anon, "GET", bad)
        assert r.status == 404, bad
    # Without the signature the bearer route still needs a token.
    assert (await call(anon, "GET", f"{AGENTS}/{a['id']}/avatar")).status == 401


def test_links_expire() -> None:
    now = [1_000_000.0]
    signer = UrlSigner(b"k" * 32, ttl_s=3600, clock=lambda: now[0])
    link = signer.sign("/api/v1/avatars/7")
    path, _, query = link.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    assert signer.valid(path, params["expires"], params["sig"])
    assert not signer.valid("/api/v1/avatars/8", params["expires"], params["sig"])
    now[0] += 2 * 3600 + 1
    assert not signer.valid(path, params["expires"], params["sig"])
    other = UrlSigner(b"x" * 32, ttl_s=3600, clock=lambda: 1_000_000.0)
    assert not other.valid(path, params["expires"], params["sig"])
