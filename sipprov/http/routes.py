"""The route table: each handler module lists its routes with what they accept and
return. app.py registers exactly these and openapi.py documents exactly these, so the
document cannot drift from the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sipprov.http.errors import Handler

JSON = "application/json"
Schema = dict[str, Any]


@dataclass(frozen=True)
class Param:
    name: str
    schema: Schema
    description: str
    where: str = "query"  # or "path"
    required: bool = False


# `?force=true`: confirm a change that drops data (else 409 confirmation_required).
FORCE_PARAM = Param("force", {"type": "boolean"},
                    "confirm a change that drops data (memberships, extension, a department's"
                    " users); without it such a change answers 409 confirmation_required")


@dataclass(frozen=True)
class Reply:
    """One documented response: a JSON schema (or a model), or a bare status."""

    description: str
    schema: Schema | type | None = None
    # One media type, or several for binary replies (images).
    media: str | tuple[str, ...] = JSON
    headers: dict[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    replies: dict[int, Reply]
    body: type[BaseModel] | Schema | None = None  # a model for JSON; a schema otherwise
    body_required: bool = True
    body_media: tuple[str, ...] = (JSON,)
    query: tuple[Param, ...] = ()
    # Extra error statuses beyond the ones every route can give (see openapi.py).
    errors: tuple[int, ...] = ()
    # Takes ?wait=applied (and may answer 202).
    waits: bool = False
    public: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__
