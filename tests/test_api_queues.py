"""Queue endpoints over real HTTP: CRUD, members with penalties, what reaches Asterisk
(voice: a config version) and what does not (chat, ticket)."""

from __future__ import annotations

import aiohttp

from tests.api_helpers import agent_body, call

pytest_plugins = ["tests.api_fixtures"]

QUEUES = "/api/v1/queues"


async def test_queue_lifecycle(admin: aiohttp.ClientSession,
                               readonly: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", QUEUES, json={"name": "sales", "strategy": "rrmemory",
                                               "number": 600})
    assert r.status == 201, r.body
    assert r.headers["Location"] == f"{QUEUES}/sales"
    assert r.body["kind"] == "voice" and r.body["number"] == 600 and r.body["members"] == []
    assert "X-Sipprov-Config-Version" in r.headers

    chat = await call(admin, "POST", QUEUES, json={"name": "chat-support", "kind": "chat"})
    assert chat.status == 201 and "X-Sipprov-Config-Version" not in chat.headers
    r = await call(admin, "POST", QUEUES, json={"name": "tickets", "kind": "ticket", "number": 601})
    assert r.status == 422 and r.body["error"]["field"] == "number"
    assert (await call(admin, "POST", QUEUES, json={"name": "SALES"})).status == 409
    r = await call(admin, "POST", QUEUES, json={"name": "general"})
    assert r.status == 422 and r.body["error"]["field"] == "name"
    r = await call(admin, "POST", QUEUES, json={"name": "bad]name\n[x"})
    assert r.status == 422 and r.body["error"]["field"] == "name"

    r = await call(readonly, "GET", QUEUES)
    assert [q["name"] for q in r.body["items"]] == ["chat-support", "sales"]
    assert "members" not in r.body["items"][0]
    r = await call(readonly, "GET", QUEUES, params={"kind": "chat"})
    assert [q["name"] for q in r.body["items"]] == ["chat-support"]
    assert (await call(readonly, "GET", QUEUES, params={"kind": "fax"})).status == 422

    r = await call(admin, "PATCH", f"{QUEUES}/sales", json={"strategy": "leastrecent"})
    assert r.status == 200 and r.body["strategy"] == "leastrecent"
    r = await call(admin, "PATCH", f"{QUEUES}/sales", json={"name": "sales-pl"})
    assert r.status == 200 and r.body["name"] == "sales-pl"
    assert (await call(admin, "GET", f"{QUEUES}/sales")).status == 404
    assert (await call(admin, "GET", f"{QUEUES}/sales-pl")).status == 200

    r = await call(admin, "DELETE", f"{QUEUES}/sales-pl")
    assert r.status == 204 and "X-Sipprov-Config-Version" in r.headers
    assert (await call(admin, "DELETE", f"{QUEUES}/sales-pl")).status == 404
    # The freed number rests for [extensions] cooldown_s like any released number (a
    # 409 naming the field); a queue without a number is created as usual.
    r = await call(admin, "POST", QUEUES, json={"name": "x", "number": 600})
    assert r.status == 409, r.body
    assert (r.body["error"]["code"], r.body["error"]["field"]) == ("extension_cooling_down", "number")
    assert (await call(admin, "POST", QUEUES, json={"name": "x"})).status == 201


async def test_members_and_penalties(admin: aiohttp.ClientSession) -> None:
    assert (await call(admin, "POST", QUEUES, json={"name": "support"})).status == 201
    a = (await call(admin, "POST", "/api/v1/agents",
                    json=agent_body(1, priority=3, queues=[{"name": "support"}]))).body
    b = (await call(admin, "POST", "/api/v1/agents", json=agent_body(2))).body
    r = await call(admin, "GET", f"{QUEUES}/support")
    assert [(m["agent_id"], m["penalty"], m["penalty_override"]) for m in r.body["members"]] == [
        (a["id"], 2, None)]

    member = f"{QUEUES}/support/members/{b['id']}"
    r = await call(admin, "PUT", member, json={"penalty": 7})
    assert r.status == 200, r.body
    assert r.body == {"agent_id": b["id"], "login": b["login"], "extension": b["extension"],
                      "penalty": 7, "penalty_override": 7}
    assert "X-Sipprov-Config-Version" in r.headers
    r = await call(admin, "PUT", member)  # no body: back to priority - 1
    assert r.status == 200 and r.body["penalty"] == 0 and r.body["penalty_override"] is None
    again = await call(admin, "PUT", member)
    assert again.status == 200 and "X-Sipprov-Config-Version" not in again.headers
    r = await call(admin, "PUT", member, json={"penalty": 5000})
    assert r.status == 422 and r.body["error"]["field"] == "penalty"
    agent = (await call(admin, "GET", f"/api/v1/agents/{b['id']}")).body
    assert [q["name"] for q in agent["queues"]] == ["support"]

    assert (await call(admin, "PUT", f"{QUEUES}/support/members/999999")).status == 404
    assert (await call(admin, "PUT", f"{QUEUES}/nope/members/{b['id']}")).status == 404
    assert (await call(admin, "PUT", f"{QUEUES}/support/members/abc")).status == 404
    nosip = (await call(admin, "POST", "/api/v1/agents", json=agent_body(3, is_agent=False))).body
    r = await call(admin, "PUT", f"{QUEUES}/support/members/{nosip['id']}")
    assert r.status == 422 and r.body["error"]["field"] == "agent_id"

    r = await call(admin, "DELETE", member)
    assert r.status == 204
    assert (await call(admin, "DELETE", member)).status == 404
    r = await call(admin, "GET", f"{QUEUES}/support")
    assert [m["agent_id"] for m in r.body["members"]] == [a["id"]]


async def test_queue_wait_applied_without_applier(admin: aiohttp.ClientSession) -> None:
    r = await call(admin, "POST", f"{QUEUES}?wait=applied&wait_timeout=0", json={"name": "q1"})
    assert r.status == 202 and r.body["name"] == "q1" and r.body["pending_version"] >= 1
    r = await call(admin, "POST", f"{QUEUES}?wait=applied", json={"name": "c1", "kind": "chat"})
    assert r.status == 201
