"""The OpenAPI 3.1 document, built from the route table and the pydantic models.

Request bodies are the models' own JSON schemas (the same models that validate
them), responses are the schemas the handlers declare, and the error responses every
route can give are added here from one rule set, so the document says what the server
really does. Served at GET /api/v1/openapi.json.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from sipprov import __version__
from sipprov.http.keys import OPENAPI_DOCUMENT
from sipprov.http.routes import JSON, Reply, Route, Schema
from sipprov.http.waiting import PARAMS as WAIT_PARAMS
from sipprov.http.waiting import VERSION_HEADER

REF = "#/components/schemas/{model}"

ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "lost": {"type": "object",
                         "description": "confirmation_required (409): what the change "
                                        "would drop; repeat with ?force=true to confirm"},
            },
        }
    },
}

ERROR_DESCRIPTIONS = {
    400: "malformed JSON body",
    401: "missing, invalid or revoked token",
    403: "the token may not do this (readonly tokens may only GET)",
    404: "no such resource",
    409: "conflict: login, e-mail or extension taken, licence limit, pool exhausted, or "
         "confirmation_required (the change would drop data; `lost` says what)",
    413: "request body too large",
    415: "unsupported media type",
    422: "validation failed; `field` names the input",
    429: "too many failed logins; retry after the Retry-After header",
    503: "the database is unavailable",
}
RETRY_HEADERS = {429, 503}
PENDING_SCHEMA: Schema = {
    "type": "object",
    "required": ["pending_version"],
    "properties": {"pending_version": {"type": "integer",
                                       "description": "config version not yet applied"}},
}


def error_statuses(route: Route) -> list[int]:
    """Every error status a route can answer, by the rules the middlewares follow."""
    statuses = set(route.errors) | {503}
    if not route.public:
        statuses.add(401)
        if route.method != "GET":
            statuses.add(403)
    if route.body is not None:
        statuses |= {413, 422}
        if JSON in route.body_media or any(m.startswith("multipart/") for m in route.body_media):
            statuses.add(400)
    # Every route refuses query parameters it does not document (422 naming them).
    statuses.add(422)
    if "{" in route.path:
        # A name that cannot exist is a 404 for some lookups and a 422 naming the
        # parameter for others (the service layer's whitelist speaks first).
        statuses |= {404, 422}
    return sorted(statuses)


class _Models:
    """Collects the pydantic models and output dataclasses the routes name (directly,
    or as `{"$ref": cls}` inside a hand-written schema) and turns them into
    components/schemas entries and $refs."""

    def __init__(self, routes: Iterable[Route]):
        found: list[tuple[type, str]] = []
        for route in routes:
            _collect(route.body, "validation", found)
            for reply in route.replies.values():
                _collect(reply.schema, "serialization", found)
        unique = list(dict.fromkeys(found))
        models = [(cls, mode) for cls, mode in unique if _is_model(cls)]
        self.refs: dict[tuple[type, str], Schema] = {}
        self.defs: dict[str, Any] = {}
        if models:
            refs, defs = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
            self.refs.update(refs)  # type: ignore[arg-type]
            self.defs.update(defs.get("$defs", {}))
        for cls, mode in unique:
            if dataclasses.is_dataclass(cls):
                schema = TypeAdapter(cls).json_schema(mode=mode, ref_template=REF)  # type: ignore[arg-type]
                self.defs.update(schema.pop("$defs", {}))
                self.defs[cls.__name__] = schema
                self.refs[(cls, mode)] = {"$ref": REF.format(model=cls.__name__)}

    def schema(self, value: Any, mode: str) -> Schema:
        if isinstance(value, type):
            return copy.deepcopy(self.refs[(value, mode)])
        return self._resolve(value, mode)

    def _resolve(self, value: Any, mode: str) -> Any:
        if isinstance(value, dict):
            if isinstance(value.get("$ref"), type):
                return self.schema(value["$ref"], mode)
            return {k: self._resolve(v, mode) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, mode) for v in value]
        return value


def ref(cls: type) -> Schema:
    """A reference to a model or output dataclass inside a hand-written schema."""
    return {"$ref": cls}


def _collect(value: Any, mode: str, found: list[tuple[type, str]]) -> None:
    if isinstance(value, type):
        found.append((value, mode))
    elif isinstance(value, dict):
        if isinstance(value.get("$ref"), type):
            found.append((value["$ref"], mode))
        for v in value.values():
            _collect(v, mode, found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, mode, found)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _headers(names: dict[str, str]) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "string"}}
            for name, text in names.items()}


def _reply(reply: Reply, models: _Models) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.schema is not None:
        assert isinstance(reply.media, str)
        out["content"] = {reply.media: {"schema": models.schema(reply.schema, "serialization")}}
    elif reply.media != JSON:
        media = (reply.media,) if isinstance(reply.media, str) else reply.media
        out["content"] = {m: {"schema": {"type": "string", "format": "binary"}} for m in media}
    if reply.headers:
        out["headers"] = _headers(reply.headers)
    return out


def _pending_reply(route: Route, models: _Models) -> dict[str, Any]:
    ok = min(s for s in route.replies if s < 300)
    success = route.replies[ok].schema
    schema = (PENDING_SCHEMA if success is None else
              {"allOf": [models.schema(success, "serialization"), PENDING_SCHEMA]})
    return {
        "description": "the change is committed but Asterisk has not applied it in time",
        "content": {JSON: {"schema": schema}},
        "headers": _headers({VERSION_HEADER: "the config version of the change"}),
    }


def _operation(route: Route, models: _Models) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                          "tags": [route.tag]}
    params = []
    for name in _path_params(route.path):
        params.append({"name": name, "in": "path", "required": True,
                       "schema": {"type": "integer", "minimum": 1} if name.endswith("id")
                       else {"type": "string", "minLength": 1}})
    for p in route.query + (WAIT_PARAMS if route.waits else ()):
        params.append({"name": p.name, "in": p.where, "required": p.required,
                       "description": p.description, "schema": copy.deepcopy(p.schema)})
    if params:
        op["parameters"] = params
    if route.body is not None:
        content = {}
        for media in route.body_media:
            schema = (models.schema(route.body, "validation") if media == JSON
                      else {"type": "string", "format": "binary"})
            content[media] = {"schema": schema}
        op["requestBody"] = {"required": route.body_required, "content": content}
    responses: dict[str, Any] = {}
    for status, reply in sorted(route.replies.items()):
        responses[str(status)] = _reply(reply, models)
        if route.waits and status < 300:
            responses[str(status)].setdefault("headers", {}).update(
                _headers({VERSION_HEADER: "the config version of the change"}))
    if route.waits:
        responses["202"] = _pending_reply(route, models)
    for status in error_statuses(route):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
    op["responses"] = responses
    if route.public:
        op["security"] = []
    return op


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def build_document(routes: list[Route]) -> dict[str, Any]:
    models = _Models(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, models)
    responses = {}
    for status, text in ERROR_DESCRIPTIONS.items():
        responses[f"E{status}"] = {
            "description": text,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status in RETRY_HEADERS:
            responses[f"E{status}"]["headers"] = _headers({"Retry-After": "seconds"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sipprov",
            "version": __version__,
            "description": (
                "Provision contact-centre agents into Asterisk 22. Every call needs "
                "`Authorization: Bearer <token>` except GET /api/v1/health; readonly "
                "tokens may only GET. Errors are "
                '`{"error": {"code", "message", "field"}}`. Mutations that change what '
                "Asterisk sees take `?wait=applied`."),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **models.defs},
            "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "spv_<id>_<secret>"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    """The document, serialized once by create_app."""
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type=JSON)


ROUTES = [
    Route("GET", "/api/v1/openapi.json", openapi_json, "This OpenAPI 3.1 document", "meta",
          replies={200: Reply("the OpenAPI document", {"type": "object"})}),
]
