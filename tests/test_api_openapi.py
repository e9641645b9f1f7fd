"""The OpenAPI document: valid OpenAPI 3.1, lists exactly the routes the app serves,
and the server's real answers (successes and errors) validate against it."""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema_rs
import pytest
import schemathesis

from sipprov.context import Services
from sipprov.http import create_app
from sipprov.http.app import route_table
from sipprov.http.openapi import build_document
from tests.api_helpers import Reply, agent_body, call

pytest_plugins = ["tests.api_fixtures"]

DOC = "/api/v1/openapi.json"


@pytest.fixture
async def document(admin: aiohttp.ClientSession) -> dict[str, Any]:
    r = await call(admin, "GET", DOC)
    assert r.status == 200
    return r.body


def conforms(doc: dict[str, Any], method: str, path: str, reply: Reply) -> None:
    """The reply's status is documented for the operation and its body fits the schema."""
    op = doc["paths"][path][method.lower()]
    assert str(reply.status) in op["responses"], (method, path, reply.status, reply.body)
    response = op["responses"][str(reply.status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    if "content" not in response:
        assert reply.raw == b""
        return
    media = reply.headers["Content-Type"].split(";")[0]
    assert media in response["content"], (media, list(response["content"]))
    if media != "application/json":
        return
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **response["content"][media]["schema"], "components": doc["components"]}
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(reply.body)]
    assert not errors, (method, path, reply.status, errors)


async def test_document_is_valid_openapi_31(document: dict[str, Any],
                                            services: Services) -> None:
    assert document["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(document).validate()
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    assert document == build_document(route_table())


def test_every_route_is_documented_and_nothing_else(services: Services) -> None:
    app = create_app(services)
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None
              and r.resource.canonical.startswith("/api/")}  # the rest is the web console
    doc = build_document(route_table())
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert served == documented
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_every_operation_documents_its_errors() -> None:
    doc = build_document(route_table())
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert "503" in codes, (method, path)
            if path not in ("/api/v1/health", "/api/v1/avatars/{id}"):  # the public ones
                assert "401" in codes, (method, path)
                assert op.get("security") is None
                if method != "get":
                    assert "403" in codes, (method, path)
            if "requestBody" in op:
                assert {"413", "422"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            assert "500" not in codes


async def test_real_answers_conform(document: dict[str, Any], admin: aiohttp.ClientSession,
                                    readonly: aiohttp.ClientSession,
                                    anon: aiohttp.ClientSession) -> None:
    d = document
    conforms(d, "GET", "/api/v1/health", await call(anon, "GET", "/api/v1/health"))
    conforms(d, "GET", "/api/v1/status", await call(admin, "GET", "/api/v1/status"))
    conforms(d, "GET", "/api/v1/agents", await call(anon, "GET", "/api/v1/agents"))
    conforms(d, "POST", "/api/v1/agents",
             await call(readonly, "POST", "/api/v1/agents", json=agent_body()))

    q = await call(admin, "POST", "/api/v1/queues", json={"name": "support"})
    conforms(d, "POST", "/api/v1/queues", q)
    created = await call(admin, "POST", "/api/v1/agents",
                         json=agent_body(queues=[{"name": "support", "penalty": 4}],
                                         send_credentials=True))
    assert created.status == 201
    assert created.body["credentials_email"]["sent"] is False  # no SMTP configured
    conforms(d, "POST", "/api/v1/agents", created)
    agent = f"/api/v1/agents/{created.body['id']}"
    one = "/api/v1/agents/{id}"
    conforms(d, "POST", "/api/v1/agents", await call(admin, "POST", "/api/v1/agents",
                                                     json=agent_body()))  # 409
    conforms(d, "POST", "/api/v1/agents", await call(admin, "POST", "/api/v1/agents",
                                                     json=agent_body(priority=-1)))  # 422
    conforms(d, "POST", "/api/v1/agents", await call(
        admin, "POST", "/api/v1/agents", data=b"{", headers={"Content-Type": "application/json"}))
    conforms(d, "POST", "/api/v1/agents",
             await call(admin, "POST", "/api/v1/agents?wait=applied&wait_timeout=0",
                        json=agent_body(2)))  # 202
    conforms(d, "GET", one, await call(admin, "GET", agent))
    conforms(d, "GET", one, await call(admin, "GET", "/api/v1/agents/987654"))
    conforms(d, "GET", "/api/v1/agents", await call(admin, "GET", "/api/v1/agents?limit=1"))
    conforms(d, "PATCH", one, await call(admin, "PATCH", agent, json={"extension": 555}))
    conforms(d, "POST", one + "/password", await call(admin, "POST", agent + "/password"))
    conforms(d, "POST", one + "/password",
             await call(admin, "POST", agent + "/password", json={"password": "long enough pw"}))
    conforms(d, "POST", one + "/sip-password", await call(admin, "POST", agent + "/sip-password"))
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    conforms(d, "PUT", one + "/avatar", await call(admin, "PUT", agent + "/avatar", data=png,
                                                   headers={"Content-Type": "image/png"}))
    conforms(d, "GET", one + "/avatar", await call(admin, "GET", agent + "/avatar"))
    conforms(d, "PUT", one + "/avatar", await call(admin, "PUT", agent + "/avatar", data=b"GIF89a",
                                                   headers={"Content-Type": "image/gif"}))

    conforms(d, "GET", "/api/v1/queues", await call(admin, "GET", "/api/v1/queues"))
    conforms(d, "GET", "/api/v1/queues/{name}", await call(admin, "GET", "/api/v1/queues/support"))
    member = f"/api/v1/queues/support/members/{created.body['id']}"
    conforms(d, "PUT", "/api/v1/queues/{name}/members/{agent_id}",
             await call(admin, "PUT", member, json={"penalty": 2}))
    conforms(d, "DELETE", "/api/v1/queues/{name}/members/{agent_id}",
             await call(admin, "DELETE", member))
    conforms(d, "PATCH", "/api/v1/queues/{name}",
             await call(admin, "PATCH", "/api/v1/queues/support", json={"strategy": "linear"}))

    for base, body in [("/api/v1/roles", {"name": "qa-night"}),
                       ("/api/v1/departments", {"name": "Sales"}),
                       ("/api/v1/account-types", {"name": "gold", "max_users": 3})]:
        conforms(d, "GET", base, await call(admin, "GET", base))
        r = await call(admin, "POST", base, json=body)
        conforms(d, "POST", base, r)
        url = r.headers["Location"]
        conforms(d, "GET", base + "/{name}", await call(admin, "GET", url))
        conforms(d, "PATCH", base + "/{name}", await call(admin, "PATCH", url, json={}))
    conforms(d, "POST", "/api/v1/auth/login", await call(
        admin, "POST", "/api/v1/auth/login", json={"login": "nobody", "password": "x"}))
    conforms(d, "DELETE", one, await call(admin, "DELETE", agent))
    conforms(d, "DELETE", "/api/v1/queues/{name}", await call(admin, "DELETE", "/api/v1/queues/support"))
